"""Generation wall time of a whole ``engine.generate`` run with the tiny trained fixture checkpoint.

    python bench/generate.py [--device cpu|cuda] [--precision auto|fp32|bf16|amp|int8] [--threads N] [--super-timing]

Runs ../shared/fixtures/upstream/trained/v32 on a real song (Debian's asc-music, else the fixture song;
``--audio`` picks one) and prints wall time and tokens. The tiny model only knows its training song: on other
music some of its windows never close their context and decode to the length cap, which makes super timing
(20 passes, windows batched) far slower than a published model would be. ``--audio
../shared/fixtures/upstream/trained/audio/synth150.wav`` times it on the song it knows.

The published model sizes (seconds per minute of audio, tokens/s, encoder windows/s, memory, quality gate) are
measured by bench/speed.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.audio import audio_duration_ms  # noqa: E402
from engine.options import GenerateOptions  # noqa: E402
from engine.runtime import PRECISION_CHOICES  # noqa: E402

SHARED = Path(os.environ.get("MAPPERATOR_SHARED", ROOT.parent / "shared")) / "fixtures" / "upstream"
ASC = Path("/usr/share/games/asc/music")


def song(args) -> Path:
    if args.audio:
        return Path(args.audio)
    songs = sorted(ASC.glob("*.mp3"))
    return songs[0] if songs else SHARED / "trained" / "audio" / "synth150.wav"


def bench_tiny(args) -> None:
    import engine

    audio = song(args)
    minutes = audio_duration_ms(audio) / 60000
    for super_timing in ([False, True] if args.super_timing else [False]):
        with tempfile.TemporaryDirectory() as out:
            opts = GenerateOptions(audio_path=str(audio), output_path=out, model_path=str(SHARED / "trained" / "v32" / "checkpoint"),
                                   gamemode=0, difficulty=3.2, do_sample=False, seed=1, device=args.device,
                                   precision=args.precision, super_timing=super_timing)
            t = time.perf_counter()
            result = engine.generate(opts)
            wall = time.perf_counter() - t
        label = "tiny v32" + (" + super timing" if super_timing else "")
        print(f"{label:<28} {audio.name} ({minutes:.2f} min): {wall:7.1f} s wall, {wall / minutes:7.1f} s per minute, "
              f"{result.tokens} tokens, {result.tokens_per_second:7.1f} tok/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--super-timing", action="store_true", help="also time a super-timing run")
    ap.add_argument("--audio", help="song for the tiny-model runs (default: the first asc-music mp3, else the "
                                    "fixture's synth150.wav, the song the tiny model was trained on)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, precision {args.precision}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if not (SHARED / "trained" / "v32" / "checkpoint").is_dir():
        sys.exit(f"the trained fixture checkpoint is not at {SHARED / 'trained' / 'v32' / 'checkpoint'}")
    bench_tiny(args)


if __name__ == "__main__":
    main()
