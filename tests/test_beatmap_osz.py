""".osz archives and safe writes: atomic, backed up, nothing half-written."""
from __future__ import annotations

import zipfile

import pytest

from engine.beatmap import parse_beatmap, read_beatmap, read_osz, write_beatmap, write_osz
from engine.beatmap.files import atomic_write
from engine.errors import BeatmapError

SOLEILY = ["Soleily - Renatus (Gamu) [Normal].osu", "Soleily - Renatus (MMzz) [Oni].osu",
           "Soleily - Renatus (Deif) [Salad].osu"]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_and_read_an_osz_from_beatmaps(beatmaps_dir, tmp_path):
    beatmaps = [read_beatmap(beatmaps_dir / name) for name in SOLEILY]
    audio, image = b"ID3 fake audio", b"\x89PNG fake image"
    for b in beatmaps:
        b.general.audio_filename = "audio.mp3"
    target = tmp_path / "set.osz"
    assert write_osz(target, beatmaps=beatmaps, files={"audio.mp3": audio, "machinetop_background.jpg": image}) is None
    archive = read_osz(target)
    assert sorted(archive.names) == sorted(["audio.mp3", "machinetop_background.jpg"] +
                                           [f"Soleily - Renatus ({b.metadata.creator}) [{b.metadata.version}].osu"
                                            for b in beatmaps])
    by_version = {e.beatmap.metadata.version: e.beatmap for e in archive.difficulties}
    assert sorted(by_version) == sorted(b.metadata.version for b in beatmaps)
    for b in beatmaps:
        assert by_version[b.metadata.version] == b
    assert archive.audio_file == "audio.mp3" and archive.read("audio.mp3") == audio
    assert archive.background_file == "machinetop_background.jpg"
    assert _leftovers(tmp_path) == []


def test_write_an_osz_from_a_folder(beatmaps_dir, tmp_path):
    folder = tmp_path / "set"
    (folder / "sb").mkdir(parents=True)
    for name in SOLEILY[:2]:
        (folder / name).write_bytes((beatmaps_dir / name).read_bytes())
    (folder / "sb" / "star.png").write_bytes(b"png")
    write_osz(tmp_path / "set.osz", folder)
    archive = read_osz(tmp_path / "set.osz")
    assert sorted(archive.names) == sorted(SOLEILY[:2] + ["sb/star.png"])
    assert archive.read(SOLEILY[0]) == (beatmaps_dir / SOLEILY[0]).read_bytes()
    assert archive.audio_files == [] and archive.read("sb/star.png") == b"png"
    # packing into the folder itself never packs the archive or its backups
    for _ in range(3):
        (folder / "sb" / "star.png").write_bytes(b"png" + bytes(_))
        write_osz(folder / "set.osz", folder)
    assert sorted(read_osz(folder / "set.osz").names) == sorted(SOLEILY[:2] + ["sb/star.png"])
    assert (folder / "set.osz.bak").exists() and (folder / "set.osz.1.bak").exists()


def test_existing_files_are_backed_up(beatmaps_dir, tmp_path):
    beatmap = read_beatmap(beatmaps_dir / SOLEILY[0])
    target = tmp_path / "map.osu"
    target.write_bytes(b"the user's own file")
    backup = write_beatmap(beatmap, target)
    assert backup == tmp_path / "map.osu.bak" and backup.read_bytes() == b"the user's own file"
    assert read_beatmap(target) == beatmap
    assert write_beatmap(beatmap, target) is None  # same content: nothing to back up
    beatmap.metadata.version = "Edited"
    second = write_beatmap(beatmap, target)
    assert second == tmp_path / "map.osu.1.bak" and read_beatmap(second).metadata.version == "Normal"
    assert (tmp_path / "map.osu.bak").read_bytes() == b"the user's own file"
    assert _leftovers(tmp_path) == []


def test_failed_writes_leave_nothing_behind(beatmaps_dir, tmp_path):
    target = tmp_path / "map.osu"
    target.write_bytes(b"original")

    def explode(f):
        f.write(b"half a beatmap")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_bytes() == b"original" and _leftovers(tmp_path) == [] and len(list(tmp_path.iterdir())) == 1

    beatmap = read_beatmap(beatmaps_dir / SOLEILY[0])
    with pytest.raises(BeatmapError) as error:
        write_osz(tmp_path / "set.osz", beatmaps=[beatmap], files={"audio.mp3": tmp_path / "missing.mp3"})
    assert "not found" in error.value.reason
    assert not (tmp_path / "set.osz").exists() and _leftovers(tmp_path) == []
    with pytest.raises(BeatmapError):
        write_beatmap(beatmap, tmp_path / "no" / "such" / "folder.osu")
    with pytest.raises(BeatmapError):
        write_beatmap(beatmap, tmp_path)  # a folder
    with pytest.raises(BeatmapError):
        write_osz(tmp_path / "x.osz", files={"../escape.mp3": b"x"})


def test_bad_archives(tmp_path):
    not_zip = tmp_path / "a.osz"
    not_zip.write_bytes(b"this is not a zip")
    with pytest.raises(BeatmapError) as error:
        read_osz(not_zip)
    assert error.value.path == not_zip
    with pytest.raises(BeatmapError):
        read_osz(tmp_path / "missing.osz")

    broken = tmp_path / "b.osz"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("empty.osu", b"")
        z.writestr("good.osu", b"osu file format v14\n[General]\nAudioFilename: song.ogg\n")
        z.writestr("Song.OGG", b"OggS")
    archive = read_osz(broken)
    with pytest.raises(BeatmapError):
        archive.difficulties[0].beatmap
    assert archive.difficulties[1].beatmap.general.audio_filename == "song.ogg"
    assert archive.audio_files == ["Song.OGG"]  # matched case-insensitively, broken difficulty skipped
    with pytest.raises(BeatmapError):
        archive.read("nope.png")


def test_written_osu_reads_back(beatmaps_dir, tmp_path):
    for name in SOLEILY:
        beatmap = read_beatmap(beatmaps_dir / name)
        write_beatmap(beatmap, tmp_path / name)
        assert parse_beatmap((tmp_path / name).read_bytes()) == beatmap
