"""Training data: dataset layouts (Mapperator console app, .osz folder, Songs folder), ranges, filters,
skipping of broken items, and the options parser. Also the dataset builders the other training tests use."""
from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.errors import OptionError
from tests.conftest import BEATMAPS, need

RENATUS_STD = "Soleily - Renatus (Gamu) [Normal].osu"
RENATUS_TAIKO = "Soleily - Renatus (MMzz) [Futsuu].osu"
RENATUS_CATCH = "Soleily - Renatus (Deif) [Salad].osu"
SAMPLE_STD = "sample-beatmap-osu.osu"


# --- dataset builders (used by test_training.py and test_lora.py too) ------------------------------------------


def synth_song(seconds: float, bpm: float = 150.0, offset_ms: float = 0.0, sample_rate: int = 22050,
               seed: int = 0) -> np.ndarray:
    """A deterministic drum-and-tone loop: a kick on every beat over a quiet chord, float32 mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = 0.08 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 330 * t))
    beat = 60.0 / bpm
    n = int(0.06 * sample_rate)
    kick = np.exp(-np.arange(n) / (0.012 * sample_rate)) * np.sin(2 * np.pi * 70 * np.arange(n) / sample_rate)
    for k in range(int((seconds - offset_ms / 1000) / beat)):
        s = int((offset_ms / 1000 + k * beat) * sample_rate)
        x[s:s + n] += kick[: len(x) - s]
        x[s:s + n // 4] += 0.2 * rng.standard_normal(len(x[s:s + n // 4]))
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = 22050) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def osu_text(name: str, audio: str, beatmap_id: int | None = None, set_id: int | None = None) -> str:
    """A shared beatmap's text pointing at ``audio`` (and optionally with new ids)."""
    drop = ("AudioFilename:", "BeatmapID:", "BeatmapSetID:")
    lines = [line for line in (need(BEATMAPS / name)).read_text(encoding="utf-8-sig").splitlines()
             if not line.startswith(drop)]
    general = lines.index("[General]")
    lines.insert(general + 1, f"AudioFilename: {audio}")
    ids = [f"BeatmapID:{beatmap_id}"] if beatmap_id is not None else []
    ids += [f"BeatmapSetID:{set_id}"] if set_id is not None else []
    if "[Metadata]" not in lines:
        lines[general:general] = ["[Metadata]", ""]
    metadata = lines.index("[Metadata]")
    lines[metadata + 1:metadata + 1] = ids
    return "\n".join(lines) + "\n"


def write_zip(path: Path, files: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data.encode("utf-8") if isinstance(data, str) else data)
    return path


def make_osz_dataset(root: Path, seconds: float = 20.0, broken: bool = False) -> Path:
    """Two .osz mapsets on synthesized songs; with ``broken``, also the kinds of damage training must survive."""
    root.mkdir(parents=True, exist_ok=True)
    song = wav_bytes(synth_song(seconds, bpm=200, offset_ms=0))
    write_zip(root / "241526 Soleily - Renatus.osz", {
        "audio.wav": song,
        "std.osu": osu_text(RENATUS_STD, "audio.wav", 1001, 241526),
        "taiko.osu": osu_text(RENATUS_TAIKO, "audio.wav", 1002, 241526),
    })
    write_zip(root / "900 sample.osz", {
        "song.wav": wav_bytes(synth_song(seconds / 2, bpm=120, seed=1)),
        "sample.osu": osu_text(SAMPLE_STD, "song.wav", 2001, 900),
    })
    if broken:
        (root / "950 not a zip.osz").write_bytes(b"this is not a zip archive")
        write_zip(root / "960 no audio.osz", {"map.osu": osu_text(SAMPLE_STD, "missing.mp3", 3001, 960)})
        write_zip(root / "970 broken.osz", {
            "song.wav": wav_bytes(synth_song(5, seed=2)),
            "garbage.osu": b"\x00\xff not a beatmap",
            "notiming.osu": _without_timing(osu_text(SAMPLE_STD, "song.wav", 4001, 970)),
        })
        write_zip(root / "980 bad song.osz", {"song.wav": b"RIFF not really a wave file",
                                              "map.osu": osu_text(SAMPLE_STD, "song.wav", 5001, 980)})
    return root


def _without_timing(text: str) -> str:
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line.strip() == "[TimingPoints]"
            if skipping:
                out.append(line)
                continue
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def make_mmrs_dataset(root: Path, seconds: float = 12.0) -> Path:
    """A Mapperator console app dataset (metadata.parquet + data/) of three mapsets."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sets = [
        (241526, "241526 Soleily - Renatus", [(1001, RENATUS_STD, 0, 2.1, 2011, 1, 5000, ["tech", "jumps"]),
                                               (1002, RENATUS_TAIKO, 1, 2.4, 2011, 1, 5001, []),
                                               (1003, RENATUS_CATCH, 2, 1.9, 2012, 1, 5002, ["tech"])]),
        (300000, "300000 sample", [(2001, SAMPLE_STD, 0, 0.8, 2019, 2, 5000, ["streams"])]),
        (400000, "400000 old", [(3001, SAMPLE_STD, 0, 1.5, 2008, 4, 5003, [])]),
    ]
    rows = []
    for set_id, folder, maps in sets:
        d = root / "data" / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "audio.wav").write_bytes(wav_bytes(synth_song(seconds, seed=set_id % 7)))
        for beatmap_id, name, mode, stars, year, ranked, user, tags in maps:
            file = f"{beatmap_id}.osu"
            (d / file).write_text(osu_text(name, "audio.wav", beatmap_id, set_id), encoding="utf-8")
            rows.append({
                "Id": beatmap_id, "BeatmapSetId": set_id, "BeatmapSetFolder": folder, "BeatmapFile": file,
                "AudioFile": "audio.wav", "ModeInt": mode, "UserId": user, "DifficultyRating": stars,
                "StarRating": [stars * f for f in (0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8)],
                "SubmittedDate": dt.datetime(year, 3, 1), "RankedDate": dt.datetime(year, 6, 1), "Ranked": ranked,
                "OmdbTags": tags, "TopTagIds": [], "TopTagCounts": [],
            })
    pq.write_table(pa.Table.from_pylist(rows), root / "metadata.parquet")
    return root


# --- dataset layouts ------------------------------------------------------------------------------------------


def test_osz_folder_lists_sets_in_set_id_order(tmp_path):
    from engine.training.dataset import SkipLog, read_dataset

    root = make_osz_dataset(tmp_path / "osz")
    sets = read_dataset(root, "auto", SkipLog())
    assert [s.key[0] for s in sets] == [900, 241526]
    renatus = sets[1]
    assert renatus.audio_member == "audio.wav" and renatus.osz_path.name.startswith("241526")
    assert [(b.osz_member, b.mode, b.beatmap_id) for b in renatus.beatmaps] == [("std.osu", 0, 1001),
                                                                              ("taiko.osu", 1, 1002)]


def test_broken_items_are_skipped_with_a_reason(tmp_path):
    from engine.training.dataset import SkipLog, read_dataset

    skipped = SkipLog()
    sets = read_dataset(make_osz_dataset(tmp_path / "osz", broken=True), "osz", skipped)
    assert {s.key[0] for s in sets} == {900, 241526, 970, 980}
    reasons = dict(skipped.counts)
    assert any(r.startswith("unreadable .osz") for r in reasons), reasons
    assert reasons.get("audio file missing from the .osz") == 1
    assert sum(n for r, n in reasons.items() if r.startswith("unreadable beatmap")) == 1
    assert "960 no audio.osz/map.osu" in skipped.summary()


def test_mmrs_dataset_metadata(tmp_path):
    from engine.training.dataset import SkipLog, read_dataset

    sets = read_dataset(make_mmrs_dataset(tmp_path / "mmrs"), "auto", SkipLog())
    assert [s.key[0] for s in sets] == [241526, 300000, 400000]
    std = sets[0].beatmaps[0]
    assert (std.beatmap_id, std.mode, std.user_id, std.year, std.ranked, std.stars) == (1001, 0, 5000, 2011, 1, 2.1)
    assert std.beatmap_idx == 0 and sets[1].beatmaps[0].beatmap_idx == 3  # the parquet row, as upstream's BeatmapIdx
    assert std.omdb_tags == ("tech", "jumps") and len(std.star_curve) == 7
    assert sets[0].audio_path == tmp_path / "mmrs" / "data" / "241526 Soleily - Renatus" / "audio.wav"


def test_songs_folder_groups_by_audio(tmp_path):
    from engine.training.dataset import SkipLog, read_dataset

    folder = tmp_path / "Songs" / "241526 Soleily - Renatus"
    folder.mkdir(parents=True)
    (folder / "Audio.WAV").write_bytes(wav_bytes(synth_song(4)))
    (folder / "std.osu").write_text(osu_text(RENATUS_STD, "audio.wav"), encoding="utf-8")
    (folder / "lost.osu").write_text(osu_text(RENATUS_TAIKO, "other.mp3"), encoding="utf-8")
    skipped = SkipLog()
    sets = read_dataset(tmp_path / "Songs", "auto", skipped)
    assert len(sets) == 1 and sets[0].audio_path.name == "Audio.WAV" and sets[0].key[0] == 241526
    assert skipped.counts["audio file not found"] == 1


def test_ranges_and_filters(tmp_path):
    from engine.training.dataset import DataFilter, SkipLog, apply_filter, read_dataset, split

    sets = read_dataset(make_mmrs_dataset(tmp_path / "mmrs"), "mmrs", SkipLog())
    assert [s.key[0] for s in split(sets, 1, None)] == [300000, 400000]
    assert [s.key[0] for s in split(sets, 0, 2)] == [241526, 300000]

    def ids(rule):
        return [b.beatmap_id for s in apply_filter(sets, rule, SkipLog()) for b in s.beatmaps]

    assert ids(DataFilter(gamemodes=(1, 2))) == [1002, 1003]
    assert ids(DataFilter(min_year=2010, max_year=2011)) == [1001, 1002]
    assert ids(DataFilter(min_difficulty=2.0)) == [1001, 1002]
    assert ids(DataFilter(ranked_statuses=(2, 4))) == [2001, 3001]
    skipped = SkipLog()
    apply_filter(sets, DataFilter(gamemodes=(0,)), skipped)
    assert skipped.counts["filtered: game mode not selected"] == 2


def test_unknown_metadata_passes_filters(tmp_path):
    from engine.training.dataset import DataFilter, SkipLog, apply_filter, read_dataset, star_rating_at

    sets = read_dataset(make_osz_dataset(tmp_path / "osz"), "osz", SkipLog())
    # .osz files carry no dates or ranked status: those filters keep them; difficulty is rated with rosu-pp
    kept = apply_filter(sets, DataFilter(min_year=2015, ranked_statuses=(1,)), SkipLog())
    assert sum(len(s.beatmaps) for s in kept) == 3
    from engine.training.dataset import read_item_beatmap

    def stars(s, item):
        return star_rating_at(s, item, read_item_beatmap(s, item))

    rated = apply_filter(sets, DataFilter(min_difficulty=2.0, max_difficulty=3.0), SkipLog(), stars)
    # rosu-pp 3.1.0: Renatus Normal 2.04, Futsuu 2.05, the sample map 3.3
    assert [(b.beatmap_id, b.stars) for s in rated for b in s.beatmaps] == [(1001, 2.04), (1002, 2.05)]


# --- options --------------------------------------------------------------------------------------------------


def test_train_words_and_paths():
    from engine.training import parse_train_words

    o = parse_train_words([r"train_dataset_path=C:\osu\my maps [2024]", "total_steps=20", "gamemodes=[0,3]",
                           "enable_lora=true", "pretrained_path=OliBomby/Mapperatorinator-v32",
                           "lora_target_modules=[Wq,Wkv]", "dt_augment_range=[1.0,1.1]"])
    assert o.train_dataset_path == r"C:\osu\my maps [2024]"
    assert o.total_steps == 20 and o.gamemodes == (0, 3) and o.enable_lora
    assert o.lora_target_modules == ("Wq", "Wkv") and o.dt_augment_range == (1.0, 1.1)


@pytest.mark.parametrize("words, message", [
    (["train_dataset_path=x", "totl_steps=5"], "total_steps"),
    (["total_steps=5"], "train_dataset_path is required"),
    (["train_dataset_path=x", "enable_lora=true"], "pretrained_path"),
    (["train_dataset_path=x", "batch_size=5", "grad_acc=2"], "multiple of grad_acc"),
    (["train_dataset_path=x", "version=v99"], "known versions"),
    (["train_dataset_path=x", "lookback_prob=1.5"], "between 0 and 1"),
])
def test_bad_train_options(words, message):
    from engine.training import parse_train_words

    with pytest.raises(OptionError, match=message):
        parse_train_words(words)


def test_upstream_style_config_file(tmp_path):
    from engine.training import parse_train_words

    cfg = tmp_path / "lora_mine.yaml"
    cfg.write_text("""
defaults:
  - v32
  - _self_
compile: true
enable_lora: true
pretrained_path: "OliBomby/Mapperatorinator-v32"
pretrained_gamemode: 0
data:
  dataset_type: "mmrs"
  train_dataset_path: "/datasets/mine"
  train_dataset_end: 10
  gamemodes: [0]
  add_diff_token: true
optim:
  name: muon
  base_lr: 0.0004
  batch_size: 32
  grad_acc: 16
  total_steps: 1000
  final_cosine: 0
lora:
  r: 16
  lora_alpha: 32
  target_modules: ['Wq', 'Wkv', 'Wqkv', 'Wo']
lora_metadata:
  ckpt_subfolders: ["gamemode=0"]
""", encoding="utf-8")
    o = parse_train_words([f"config={cfg}", "total_steps=50"])
    assert (o.version, o.enable_lora, o.pretrained_gamemode, o.dataset_type) == ("v32", True, 0, "mmrs")
    assert (o.train_dataset_path, o.train_dataset_end, o.gamemodes) == ("/datasets/mine", 10, (0,))
    assert (o.base_lr, o.batch_size, o.grad_acc, o.final_lr) == (0.0004, 32, 16, 0)
    assert o.total_steps == 50  # words override the file
    assert (o.lora_r, o.lora_alpha, o.lora_target_modules) == (16, 32, ("Wq", "Wkv", "Wqkv", "Wo"))
    assert o.lora_ckpt_subfolders == ("gamemode=0",)


def test_flat_config_file_rejects_typos(tmp_path):
    from engine.training import parse_train_words

    cfg = tmp_path / "mine.yaml"
    cfg.write_text("train_dataset_path: /x\ntotal_stpes: 5\n", encoding="utf-8")
    with pytest.raises(OptionError, match="total_steps"):
        parse_train_words([f"config={cfg}"])


def test_learning_rate_schedule():
    from engine.training import TrainOptions
    from engine.training.trainer import lr_factor

    o = TrainOptions(train_dataset_path="x", total_steps=100, warmup_steps=10, sustain_steps=20, base_lr=1e-3,
                     final_lr=1e-5, lr_scheduler="cosine")
    assert lr_factor(0, o) == 0.5 and lr_factor(5, o) == pytest.approx(0.75)
    assert lr_factor(10, o) == lr_factor(29, o) == 1.0
    assert lr_factor(65, o) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(100, o) == pytest.approx(0.01)
    linear = TrainOptions(train_dataset_path="x", total_steps=10, base_lr=1e-3, final_lr=0.0, lr_scheduler="linear")
    assert [round(lr_factor(s, linear), 3) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
