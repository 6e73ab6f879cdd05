"""Outputs are safe: files a beatmap names stay inside its folder, writes are all or nothing (signals and errors
included), and outputs get the user's default permissions, never wider than a private file they copy."""
from __future__ import annotations

import os
import shutil
import stat
import zipfile

import pytest

import engine
from engine.beatmap import read_beatmap
from engine.beatmap.files import OutputTransaction, UnsafeFileName, referenced_file
from engine.errors import AudioError, BeatmapError, OptionError
from engine.options import GenerateOptions
from engine.rules import check_beatmap
from mapperator_app import osu

from .conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
SONG = TRAINED / "audio" / "synth150.wav"
V32 = TRAINED / "v32" / "checkpoint"
STD_MAP = TRAINED / "audio" / "synth150_std.osu"
SECRET = b"\x89PNG private: never copy me"


@pytest.fixture
def tree(tmp_path):
    """``tmp/secret.png`` and ``tmp/secret.wav`` beside a mapset folder ``tmp/set`` (song + reference .osu)."""
    (tmp_path / "secret.png").write_bytes(SECRET)
    shutil.copy(need(SONG), tmp_path / "secret.wav")
    folder = tmp_path / "set"
    folder.mkdir()
    shutil.copy(SONG, folder / "synth150.wav")
    return tmp_path


def reference(folder, audio: str = "synth150.wav", background: str | None = None, name: str = "ref.osu"):
    """The trained fixture's map with a crafted AudioFilename and background event."""
    text = need(STD_MAP).read_text(encoding="utf-8").replace("AudioFilename: synth150.wav",
                                                             f"AudioFilename: {audio}")
    if background is not None:
        text = text.replace("//Background and Video events\n", f'//Background and Video events\n0,0,"{background}",0,0\n')
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def quick(**kw) -> GenerateOptions:
    """A real generation of the first 3 seconds with the tiny trained v32 (under a second on a CPU)."""
    base = dict(model_path=str(need(V32)), gamemode=0, difficulty=3.2, do_sample=False, seed=1, device="cpu",
                end_time=3000)
    base.update(kw)
    return GenerateOptions(**base)


def output_bytes(folder) -> dict[str, bytes]:
    """Every file under ``folder`` and every member of every .osz there."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            found[str(path.relative_to(folder))] = path.read_bytes()
            if path.suffix == ".osz":
                with zipfile.ZipFile(path) as z:
                    found.update({f"{path.name}/{n}": z.read(n) for n in z.namelist()})
    return found


def leftovers(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".part" in p.name or p.name.startswith("."))


# --- files a beatmap names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../secret.png", "sub/../../secret.png", "{abs}", "C:\\secret.png", "C:secret.png",
                                  "\\\\server\\share\\secret.png", "//server/share/secret.png", "link.png",
                                  "sub/link.png", "bg.png\x00.txt", "bg.png:stream"])
def test_names_leading_outside_the_folder_are_refused(tree, name):
    folder = tree / "set"
    (folder / "sub").mkdir()
    (folder / "link.png").symlink_to(tree / "secret.png")
    (folder / "sub" / "link.png").symlink_to("../../secret.png")
    with pytest.raises(UnsafeFileName):
        referenced_file(folder, name.format(abs=tree / "secret.png"))


def test_names_inside_the_folder_are_found_as_osu_finds_them(tree):
    folder = tree / "set"
    (folder / "sb").mkdir()
    (folder / "sb" / "BG.png").write_bytes(b"bg")
    (folder / "inner.png").symlink_to(folder / "sb" / "BG.png")
    assert referenced_file(folder, "sb\\bg.PNG") == folder / "sb" / "BG.png"
    assert referenced_file(folder, "sb/../SYNTH150.wav") == folder / "synth150.wav"
    assert referenced_file(folder, "inner.png") == folder / "inner.png"  # a link that stays inside
    assert referenced_file(folder, "not-there.png") == folder / "not-there.png"  # safe, but missing
    assert not referenced_file(folder, "not-there.png").exists()


def test_reference_song_outside_its_folder_is_refused_and_nothing_is_written(tree):
    out = tree / "out"
    for audio in ("../secret.wav", str(tree / "secret.wav")):
        ref = reference(tree / "set", audio=audio)
        with pytest.raises(OptionError, match="outside"):
            engine.generate(quick(beatmap_path=str(ref), in_context=("TIMING",), output_path=str(out)))
        assert not out.exists()


@pytest.mark.parametrize("export_osz", [False, True])
def test_reference_background_outside_its_folder_is_never_copied(tree, export_osz):
    out = tree / "out"
    for i, background in enumerate(("../secret.png", str(tree / "secret.png"))):
        ref = reference(tree / "set", background=background, name=f"ref{i}.osu")
        result = engine.generate(quick(beatmap_path=str(ref), in_context=("TIMING",), output_path=str(out),
                                       export_osz=export_osz))
        written = output_bytes(out)
        assert SECRET not in written.values() and not any("secret" in k for k in written), sorted(written)
        assert all(b"secret" not in data for name, data in written.items() if name.endswith(".osu"))
        assert "synth150.wav" in {k.split("/")[-1] for k in written}
        assert any("outside" in w and background in w for w in result.warnings), result.warnings


def test_background_in_the_reference_folder_is_still_copied(tree):
    (tree / "set" / "bg.png").write_bytes(b"my background")
    ref = reference(tree / "set", background="bg.png")
    result = engine.generate(quick(beatmap_path=str(ref), in_context=("TIMING",), output_path=str(tree / "out")))
    assert (tree / "out" / "bg.png").read_bytes() == b"my background" and not result.warnings
    assert read_beatmap(result.path).background_file == "bg.png"


def test_rules_do_not_look_outside_the_folder(tree):
    folder = tree / "set"
    (folder / "link.png").symlink_to(tree / "secret.png")
    (folder / "link.wav").symlink_to(tree / "secret.wav")
    ref = reference(folder, audio="link.wav", background="link.png")
    messages = [s.message for s in check_beatmap(read_beatmap(ref), beatmap_path=ref, checks=["missing-files"])]
    assert len(messages) == 2 and all("outside" in m for m in messages), messages


def test_modding_does_not_take_a_song_from_outside(tree, monkeypatch):
    songs = []
    monkeypatch.setattr("engine.maimod.ai_mod", lambda beatmap, audio, *a, **k: songs.append(audio) or [])
    ref = reference(tree / "set", audio="../secret.wav")
    with pytest.raises(AudioError, match="outside"):
        engine.mod(engine.ModOptions(beatmap_path=str(ref), rules=False))
    assert songs == []
    assert engine.mod(engine.ModOptions(beatmap_path=str(ref),
                                        ai=False)) is not None  # the rule checks run without the song


def test_open_in_osu_never_packs_or_copies_files_from_outside(tree):
    folder = tree / "set"
    ref = reference(folder, audio=str(tree / "secret.wav"), background="../secret.png")
    osz = osu.pack_osz(ref)
    with zipfile.ZipFile(osz) as z:
        assert z.namelist() == [ref.name]
    songs = tree / "Songs"
    songs.mkdir()
    message = osu.open_in_osu(ref, songs)
    assert "outside" in message
    installed = [p.name for p in songs.rglob("*") if p.is_file()]
    assert installed == [ref.name]


def test_open_in_osu_keeps_subfolders_of_the_set(tree):
    folder = tree / "set"
    (folder / "sb").mkdir()
    (folder / "sb" / "bg.png").write_bytes(b"bg")
    ref = reference(folder, background="sb/bg.png")
    with zipfile.ZipFile(osu.pack_osz(ref)) as z:
        assert sorted(z.namelist()) == sorted([ref.name, "synth150.wav", "sb/bg.png"])


# --- all or nothing --------------------------------------------------------------------------------------------


def fail_when_renaming(monkeypatch, suffix: str, error: BaseException):
    """Make the rename that puts a file ending with ``suffix`` into place raise ``error``."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).endswith(suffix):
            raise error
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("suffix,error", [(".osu", KeyboardInterrupt()), (".wav", KeyboardInterrupt()),
                                          (".osu", BeatmapError("disk says no")), (".wav", OSError(28, "No space"))])
def test_an_interrupted_write_leaves_nothing(tree, monkeypatch, suffix, error):
    out = tree / "new" / "out"
    fail_when_renaming(monkeypatch, suffix, error)
    with pytest.raises((type(error), BeatmapError, OptionError)):
        engine.generate(quick(audio_path=str(tree / "set" / "synth150.wav"), output_path=str(out)))
    assert leftovers(tree) == []
    assert not (tree / "new").exists()


def test_an_interrupted_osz_leaves_nothing(tree, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "write", interrupted)
    out = tree / "out"
    with pytest.raises(KeyboardInterrupt):
        engine.generate(quick(audio_path=str(tree / "set" / "synth150.wav"), output_path=str(out), export_osz=True))
    assert not out.exists() and leftovers(tree) == []


def test_a_failed_run_leaves_no_empty_folder(tree):
    out = tree / "new" / "out"
    with pytest.raises(OptionError, match="year"):
        engine.generate(quick(audio_path=str(tree / "set" / "synth150.wav"), output_path=str(out), year=2031))
    assert not (tree / "new").exists()


def test_the_transaction_rolls_back_what_it_committed(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b"
    keep = tmp_path / "keep.osu"
    keep.write_bytes(b"old")
    fail_when_renaming(monkeypatch, "second.osu", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        with OutputTransaction() as out:
            out.make_folder(target)
            out.write(keep, b"new", replace=True)
            out.write(target / "first.osu", b"1")
            out.write(target / "second.osu", b"2")
    assert keep.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.osu"]


# --- permissions -----------------------------------------------------------------------------------------------


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_follow_the_umask(tree, umask):
    song = tree / "song.wav"
    shutil.copy(SONG, song)
    song.chmod(0o644)
    umask(0o077)
    result = engine.generate(quick(audio_path=str(song), output_path=str(tree / "out")))
    assert mode(result.path) == 0o600 and mode(tree / "out" / "song.wav") == 0o600
    assert mode(tree / "out") == 0o700


def test_a_private_source_stays_private(tree, umask):
    song = tree / "private.wav"
    shutil.copy(SONG, song)
    song.chmod(0o600)
    umask(0o022)
    result = engine.generate(quick(audio_path=str(song), output_path=str(tree / "out")))
    assert mode(result.path) == 0o644 and mode(tree / "out" / "private.wav") == 0o600
    packed = engine.generate(quick(audio_path=str(song), output_path=str(tree / "out"), export_osz=True))
    assert mode(packed.path) == 0o600  # the archive holds the private song


# --- training checkpoints ------------------------------------------------------------------------------------


def test_an_interrupted_checkpoint_save_leaves_no_partial_folder(tmp_path, monkeypatch):
    from engine.training import trainer
    from mapperator_app.cli import main

    from .test_training_data import make_mmrs_dataset

    real = trainer.save_checkpoint

    def save_then_interrupt(folder, *args, **kwargs):
        real(folder, *args, **kwargs)  # the weights are on disk, the optimizer state is not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)
    data = make_mmrs_dataset(tmp_path / "mmrs", seconds=10)
    out = tmp_path / "out"
    code = main(["train", "version=v30", f"train_dataset_path={data}", "d_model=32", "encoder_layers=2",
                 "decoder_layers=2", "attention_heads=2", "ffn_dim=64", "total_steps=2", "batch_size=2",
                 "use_accelerate=false", f"output_dir={out}", "device=cpu", "min_difficulty=0"])
    assert code == 130
    assert not list(out.rglob("*.partial")) and not list(out.glob("checkpoint-*"))
