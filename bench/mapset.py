"""What batching the rows of a mapset buys: one difficulty, a 4-difficulty mapset, 4 variants, same song and model.

    python bench/mapset.py [--model PATH] [--audio SONG] [--device cpu|cuda] [--precision fp32|...] [--threads N]

Defaults: the tiny trained fixture checkpoint (../shared/fixtures/upstream/trained/v32) on its own song, greedy
for the single map and the mapset, sampling (seeds 1-4) for the variants. The model is loaded (and warmed up by
a first run that is not timed) before anything is timed. Prints each wall time and its ratio to the single map;
the target is a mapset or 4 variants within 2.5x one map.
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

import engine  # noqa: E402
from engine.mapset_job import MapsetOptions  # noqa: E402
from engine.options import GenerateOptions  # noqa: E402

SHARED = Path(os.environ.get("MAPPERATOR_SHARED", ROOT.parent / "shared")) / "fixtures" / "upstream" / "trained"
DIFFICULTIES = (2.0, 3.5, 5.0, 6.5)


def timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHARED / "v32" / "checkpoint"))
    ap.add_argument("--audio", default=str(SHARED / "audio" / "synth150.wav"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--end-time", type=int, default=None, help="map only the song's first N ms")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = dict(audio_path=args.audio, model_path=args.model, gamemode=0, mapper_id=None, year=2023,
                  device=args.device, precision=args.precision, end_time=args.end_time)
    with tempfile.TemporaryDirectory() as out:
        def single():
            return engine.generate(GenerateOptions(**common, output_path=f"{out}/one", difficulty=DIFFICULTIES[1],
                                                   do_sample=False, seed=1))

        single()  # loads the models and warms up
        one, result = timed(single)
        mapset, sets = timed(lambda: engine.generate_mapset(MapsetOptions(
            **common, output_path=f"{out}/set", difficulties=DIFFICULTIES, do_sample=False, seed=1)))
        variants, tries = timed(lambda: engine.generate_mapset(MapsetOptions(
            **common, output_path=f"{out}/variants", difficulty=DIFFICULTIES[1], do_sample=True, num_variants=4,
            seed=1)))
    print(f"model {args.model}, song {Path(args.audio).name}, {args.device} {args.precision}, "
          f"{torch.get_num_threads()} threads")
    print(f"1 difficulty:           {one:7.1f} s  ({result.tokens} tokens)")
    print(f"mapset of 4:            {mapset:7.1f} s  ({sets.tokens} tokens)  {mapset / one:4.2f}x one")
    print(f"4 variants (sampled):   {variants:7.1f} s  ({tries.tokens} tokens)  {variants / one:4.2f}x one")


if __name__ == "__main__":
    main()
