"""Time the diffusion position refinement adds per minute of audio (osu-diffusion-v2 size, random weights).

    python bench/diffusion.py [--device cpu|cuda] [--threads N] [--minutes 1] [--beatmap FILE.osu] [--skip-unconditional]

Builds a DiT-B (768 wide, 12 blocks, 12 heads; the published osu-diffusion-v2 size) with random weights,
turns the first ``--minutes`` of a real osu! map into V29-style events (32 px grid positions, distances,
scroll speeds) and times :func:`engine.diffusion.refine_positions` on them: 100 respaced steps, each one
batched forward pass over all objects of the window (conditional and unconditional rows).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.beatmap.decoder import read_beatmap  # noqa: E402
from engine.diffusion import (ClassVocabulary, DiffusionConditioning, DiffusionModel, DiffusionOptions,  # noqa: E402
                              build_sequence, refine_positions)
from engine.diffusion.dit import DiT, DiTShape  # noqa: E402
from engine.events._view import view_of  # noqa: E402
from engine.events.hit_objects import objects_stream  # noqa: E402
from engine.presets import PRESETS  # noqa: E402
from engine.tokenizer import Event, EventType  # noqa: E402

SHARED = Path(os.environ.get("MAPPERATOR_SHARED", ROOT.parent / "shared"))
DEFAULT_MAP = SHARED / "data" / "beatmaps" / "Himeringo - Yotsuya-san ni Yoroshiku (RLC) [Winber1's Extreme].osu"


def v29_style_events(path: Path, minutes: float):
    beatmap = read_beatmap(path)
    flags = dataclasses.replace(next(iter(PRESETS.values())).data, types_first=True, add_distances=True, add_positions=True,
                                position_precision=32, position_split_axes=True, position_refinement=None,
                                add_sv=True, sustain_interval=None)
    events, times = objects_stream(view_of(beatmap), flags)
    start = next(t for e, t in zip(events, times) if e.type == EventType.TIME_SHIFT)
    cut = next((i for i, (e, t) in enumerate(zip(events, times))
                if t > start + minutes * 60000 and e.type in (EventType.CIRCLE, EventType.SLIDER_HEAD, EventType.SPINNER)),
               len(events))
    events = [Event(e.type, e.value * 32 + 16) if e.type in (EventType.POS_X, EventType.POS_Y) else e for e in events[:cut]]
    red = [(tp.time, tp.beat_length) for tp in beatmap.timing_points if tp.uninherited]
    return events, red, beatmap.difficulty.slider_multiplier


@torch.no_grad()
def estimate(model, seq, batch: int, passes: int, device: str) -> float:
    """Seconds for 100 steps from ``passes`` timed forward passes over the whole sequence (one window)."""
    n = len(seq)
    x = seq.positions.unsqueeze(0).expand(batch, -1, -1).to(device)
    context = seq.context.unsqueeze(0).expand(batch, -1, -1).to(device)
    classes = torch.zeros(batch, model.classes.size, device=device)
    band = (torch.arange(n)[:, None] - torch.arange(n)[None]).abs() < 128
    model.dit(x, torch.full((batch,), 99, device=device), context, classes, band.to(device))  # warm-up
    began = time.perf_counter()
    for _ in range(passes):
        model.dit(x, torch.full((batch,), 99, device=device), context, classes, band.to(device))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / passes * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--beatmap", type=Path, default=DEFAULT_MAP)
    parser.add_argument("--skip-unconditional", action="store_true")
    parser.add_argument("--estimate", type=int, default=0, metavar="N",
                        help="time only N of the 100 steps' forward passes and extrapolate (for slow machines)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    classes = ClassVocabulary(num_diff_classes=26, max_difficulty=12, num_mapper_classes=3000,
                              num_descriptor_classes=200, num_cs_classes=22)
    torch.manual_seed(0)
    dit = DiT(DiTShape(width=768, depth=12, heads=12, context_size=272, class_size=classes.size))
    for p in dit.parameters():
        torch.nn.init.normal_(p, 0, 0.02)
    model = DiffusionModel(dit=dit.eval().to(args.device), classes=classes, folder=Path("."))

    events, red, multiplier = v29_style_events(args.beatmap, args.minutes)
    options = DiffusionOptions(model=model, seed=0, skip_unconditional=args.skip_unconditional)
    conditioning = DiffusionConditioning(difficulty=5.0, circle_size=4, slider_multiplier=multiplier, red_lines=red)
    entries = len(build_sequence(events, red_lines=red))
    if args.estimate:
        seconds = estimate(model, build_sequence(events, red_lines=red), 1 if args.skip_unconditional else 2,
                           args.estimate, args.device)
    else:
        began = time.perf_counter()
        refine_positions(events, conditioning, options)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - began
    print(f"device {args.device}, threads {torch.get_num_threads()}, {args.beatmap.name}: {args.minutes:g} min, "
          f"{entries} sequence entries, 100 steps{' (no unconditional pass)' if args.skip_unconditional else ''}"
          f"{f', estimated from {args.estimate} forward passes' if args.estimate else ''}")
    print(f"refinement: {seconds:.1f} s, {seconds / args.minutes:.1f} s per minute of audio")


if __name__ == "__main__":
    main()
