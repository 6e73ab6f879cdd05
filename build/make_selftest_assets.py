"""Make the files ``Mapperator --selftest`` generates from: a short song, its beatmap and a tiny model.

    .venv/bin/python build/make_selftest_assets.py            # writes assets/selftest/
    .venv/bin/python build/make_selftest_assets.py --check    # only re-checks the committed files

Everything is made here, from a fixed seed: the song is synthesized with numpy (a kick on every beat, a
snare on the off-beats, a bass and a lead over one chord cycle), the beatmap is written to match it (one
red line, circles on the beats and short sliders), and a tiny v32-layout model is trained on that one map
with the project's own training code (``engine.training``) until greedy generation maps the song. It is
an overfitted toy: it checks that the frozen app can load a checkpoint, decode audio, run the model and
write a map, not that it maps well.

Output, ``assets/selftest/``:
    selftest.mp3            the song (MP3, so the bundle's libsndfile is checked on a lossy codec)
    selftest.osu            the beatmap it was trained on
    checkpoint/             config.json, generation_config.json, model.safetensors, tokenizer.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "selftest"
SEED = 20240601

SAMPLE_RATE = 22050
BPM = 150.0
OFFSET_MS = 400.0
BEATS = 16  # the last beat (and the last object) at 6800 ms
# Shorter than one model window (8.19 s), and ending before the next beat: the timing a generation gives the
# map pass runs to the song's end, so the song ends where the map's timing ends, as it did in training.
SECONDS = 7.1

TITLE, ARTIST, CREATOR, VERSION = "Selftest", "Mapperator", "Mapperator", "Selftest"
SONG, MAP = "selftest.mp3", "selftest.osu"

# Model and training: a very small v32 layout; it learns the one map in a few hundred steps (~20 s on a CPU).
MODEL = dict(d_model=32, encoder_layers=1, decoder_layers=2, attention_heads=2, ffn_dim=64)
# Conditioning values a generation without settings leaves "unknown" (circle size and hitsounds it does not:
# it asks for CS 4 and a hitsounded map, which is what the beatmap here is).
CONDITIONS = ("class", "diff", "mapper", "year", "hold_note_ratio", "scroll_speed_ratio", "descriptor")
MAX_STEPS = 3000
CHECK_EVERY = 100


# --- the song ---------------------------------------------------------------------------------------------


def synthesize(seconds: float = SECONDS, seed: int = SEED) -> np.ndarray:
    """A loud, plain rhythm: kick on every beat, noise snare between, bass on the half beat, lead on bar
    starts. Float32 mono in [-1, 1]."""
    rng = np.random.default_rng(seed)
    sr = SAMPLE_RATE
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = np.zeros(n)
    beat = 60.0 / BPM

    def hit(at_s: float, sound: np.ndarray) -> None:
        s = int(at_s * sr)
        if 0 <= s < n:
            end = min(n, s + len(sound))
            x[s:end] += sound[: end - s]

    k = np.arange(int(0.12 * sr)) / sr
    kick = np.sin(2 * np.pi * (110 * k - 200 * k * k)) * np.exp(-k / 0.035)
    snare_len = int(0.08 * sr)
    roots = (110.0, 87.31, 130.81, 98.0)  # A F C G
    for i in range(BEATS + 1):  # kicks up to the last beat
        at = OFFSET_MS / 1000 + i * beat
        hit(at, 0.9 * kick)
        snare = rng.standard_normal(snare_len) * np.exp(-np.arange(snare_len) / (0.02 * sr))
        hit(at + beat / 2, 0.25 * snare)
        root = roots[(i // 4) % 4]
        b = np.arange(int(beat / 2 * sr)) / sr
        hit(at + beat / 2, 0.3 * np.sin(2 * np.pi * root * b) * np.exp(-b / 0.1))
        if i % 4 == 0:
            lead = np.arange(int(beat * sr)) / sr
            hit(at, 0.2 * np.sin(2 * np.pi * root * 4 * lead) * np.exp(-lead / 0.3))
    x += 0.02 * np.sin(2 * np.pi * 55 * t)  # a quiet hum so no stretch is digital silence
    return (0.9 * x / np.abs(x).max()).astype(np.float32)


def write_song(path: Path, samples: np.ndarray) -> None:
    """MP3 with ID3 title and artist tags (generated maps take their metadata from them)."""
    import soundfile as sf
    from mutagen.id3 import ID3, TIT2, TPE1

    sf.write(str(path), samples, SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III")
    tags = ID3()
    tags.add(TIT2(encoding=3, text=TITLE))
    tags.add(TPE1(encoding=3, text=ARTIST))
    tags.save(str(path), v2_version=3, padding=lambda info: 0)


# --- the beatmap ------------------------------------------------------------------------------------------


def beat_ms(i: float) -> int:
    return int(round(OFFSET_MS + i * 60000.0 / BPM))


def hit_objects() -> list[str]:
    """Four bars of: circle (finish), circle (whistle), a one-beat slider from beat 3 to 4 (clap), circle on
    4.5; new combo per bar; then one circle on the fifth downbeat."""
    lines = []
    positions = [(96, 96), (256, 96), (416, 192), (256, 288)]
    for bar in range(4):
        first = bar * 4
        for j, (x, y) in enumerate(positions):
            new_combo = 4 if j == 0 else 0  # (only circles start combos here)
            if j == 2:  # one beat of a 1.4x slider: 140 px
                lines.append(f"{x},{y},{beat_ms(first + 2)},2,8,L|{x - 140}:{y},1,140")
            elif j == 3:
                lines.append(f"{x},{y},{beat_ms(first + 3.5)},1,0,0:0:0:0:")
            else:
                lines.append(f"{x},{y},{beat_ms(first + j)},{1 | new_combo},{4 if j == 0 else 2},0:0:0:0:")
    lines.append(f"256,192,{beat_ms(16)},5,4,0:0:0:0:")  # a closing circle on the next downbeat
    return lines


def beatmap_text() -> str:
    beat_length = 60000.0 / BPM
    return "\n".join([
        "osu file format v14", "",
        "[General]", f"AudioFilename: {SONG}", "AudioLeadIn: 0", "PreviewTime: -1", "Countdown: 0",
        "SampleSet: Normal", "StackLeniency: 0.7", "Mode: 0", "LetterboxInBreaks: 0", "WidescreenStoryboard: 0", "",
        "[Editor]", "DistanceSpacing: 1", "BeatDivisor: 4", "GridSize: 32", "TimelineZoom: 1", "",
        "[Metadata]", f"Title:{TITLE}", f"TitleUnicode:{TITLE}", f"Artist:{ARTIST}", f"ArtistUnicode:{ARTIST}",
        f"Creator:{CREATOR}", f"Version:{VERSION}", "Source:", "Tags:selftest", "BeatmapID:1", "BeatmapSetID:1", "",
        "[Difficulty]", "HPDrainRate:4", "CircleSize:4", "OverallDifficulty:5", "ApproachRate:6",
        "SliderMultiplier:1.4", "SliderTickRate:1", "",
        "[Events]", "//Background and Video events", "//Break Periods", "", "[TimingPoints]",
        f"{OFFSET_MS:g},{beat_length:g},4,1,0,70,1,0", "", "", "[HitObjects]", *hit_objects(), "",
    ])


# --- training ---------------------------------------------------------------------------------------------


def train_until_it_maps(dataset: Path, song: Path, reference, work: Path):
    """Train from scratch, checking greedy generation every CHECK_EVERY steps; stop once three checks in a row
    give a good map.

    Returns a dict: step, loss, accuracy, text (the judgement) and checkpoint (the training folder)."""
    import threading

    from engine.errors import Cancelled
    from engine.training import TrainOptions
    from engine.training.trainer import TrainingRun

    options = TrainOptions(
        version="v32", train_dataset_path=str(dataset), dataset_type="songs", gamemodes=(0,), **MODEL,
        total_steps=MAX_STEPS, batch_size=1, base_lr=3e-3, final_lr=3e-4, warmup_steps=20, lr_scheduler="cosine",
        # Nothing random left in an example: the window at 0 (the song is one window long), normal speed, no
        # flips, no time or snapping noise, no lookback, and the conditioning a run without settings asks for.
        # One example, learnt by heart.
        label_smoothing=0.0, frame_offset_augment_prob=0.0, dt_augment_prob=0.0, flip_horizontal_prob=0.0,
        flip_vertical_prob=0.0, timing_random_offset=0, snapping_random_prob=0.0, lookback_prob=0.0,
        **{f"{name}_dropout_prob": 1.0 for name in CONDITIONS}, cs_dropout_prob=0.0,
        save_every_steps=MAX_STEPS, keep_checkpoints=1, log_every_steps=25, output_dir=str(work / "run"),
        device="cpu", mixed_precision="no", use_accelerate=False, seed=SEED,
    )
    stop = threading.Event()
    found: dict = {}
    passes: list[bool] = []
    started = time.monotonic()

    def on_step(p) -> None:
        if p.step % CHECK_EVERY or stop.is_set():
            return
        checkpoint = run.save()
        candidate = work / f"candidate-{p.step}"  # a new path each time: the engine caches models by path
        export(checkpoint, candidate)
        out = work / f"gen{p.step}"
        out.mkdir()
        ok, text = judge(generate_with(candidate / "checkpoint", song, out), reference)
        print(f"step {p.step}: loss {p.loss:.4f}, accuracy {p.accuracy:.3f}; generated {text} "
              f"[{time.monotonic() - started:.0f} s]", flush=True)
        passes.append(ok)
        if passes[-3:] == [True] * 3:  # three times in a row: the greedy path has a margin, not luck
            found.update(step=p.step, loss=p.loss, accuracy=p.accuracy, text=text, checkpoint=checkpoint)
            stop.set()

    run = TrainingRun(options, progress=on_step, cancel=stop)
    try:
        run.run()
    except Cancelled:
        pass
    if not found:
        raise SystemExit(f"the model did not learn the map in {MAX_STEPS} steps")
    return found


def generate_with(checkpoint: Path, song: Path, out: Path):
    import engine
    from engine.options import GenerateOptions

    return engine.generate(GenerateOptions(audio_path=str(song), model_path=str(checkpoint), gamemode=0,
                                           do_sample=False, seed=1, output_path=str(out), device="cpu",
                                           precision="fp32"))


def judge(result, reference) -> tuple[bool, str]:
    """Good enough: a red line, 80 % of the reference's objects found within 20 ms, not many extra ones."""
    from engine.beatmap import read_beatmap

    made = read_beatmap(result.path)
    red = [tp for tp in made.timing_points if tp.uninherited]
    want = [o.time for o in reference.hit_objects]
    got = np.array([o.time for o in made.hit_objects]) if made.hit_objects else np.zeros(0)
    found = sum(1 for t in want if got.size and np.min(np.abs(got - t)) <= 20)
    text = (f"{len(made.hit_objects)} objects ({found}/{len(want)} of the reference's found), "
            f"{len(red)} red line(s){' at %.0f ms, %.1f ms/beat' % (red[0].time, red[0].beat_length) if red else ''}")
    ok = bool(red) and found >= 0.8 * len(want) and len(made.hit_objects) <= 1.5 * len(want)
    return ok, text


def export(checkpoint: Path, out: Path) -> None:
    """Copy the inference files only (no optimizer state), fp16 weights, into ``out/checkpoint``."""
    from safetensors.torch import load_file, save_file

    target = out / "checkpoint"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        shutil.copyfile(checkpoint / name, target / name)
    weights = load_file(str(checkpoint / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
              str(target / "model.safetensors"), metadata={"format": "pt"})


def check(out: Path) -> int:
    """Generate from the files in ``out`` and judge the result (what the bundle's selftest relies on)."""
    from engine.beatmap import read_beatmap

    with tempfile.TemporaryDirectory() as tmp:
        result = generate_with(out / "checkpoint", out / SONG, Path(tmp))
        ok, text = judge(result, read_beatmap(out / MAP))
    print(f"{'ok' if ok else 'NOT GOOD ENOUGH'}: {text}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="only check the files already in --out")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.manual_seed(SEED)
    if args.check:
        return check(args.out)

    from engine.beatmap import read_beatmap

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mapperator-selftest-") as tmp:
        work = Path(tmp)
        song_folder = work / "songs" / "1 Mapperator - Selftest"
        song_folder.mkdir(parents=True)
        write_song(song_folder / SONG, synthesize())
        (song_folder / MAP).write_text(beatmap_text(), encoding="utf-8")
        reference = read_beatmap(song_folder / MAP)
        found = train_until_it_maps(work / "songs", song_folder / SONG, reference, work)
        shutil.copyfile(song_folder / SONG, args.out / SONG)
        shutil.copyfile(song_folder / MAP, args.out / MAP)
        export(found["checkpoint"], args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file() and p.name != "made.json")
    info = {"seed": SEED, "steps": found["step"], "model": MODEL, "bytes": size,
            "train_loss": round(found["loss"], 5), "train_accuracy": round(found["accuracy"], 4),
            "generated": found["text"]}
    (args.out / "made.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({size / 1e6:.2f} MB) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
