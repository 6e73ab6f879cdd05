"""Time the diffusion position refinement adds per minute of audio (osu-diffusion-v2 size, random weights).

    python bench/diffusion.py [--device cpu|cuda] [--precision auto|fp32|bf16|int8] [--gate] [--isa avx2]
                              [--threads N] [--minutes 1] [--beatmap FILE.osu] [--skip-unconditional]

Builds a DiT-B (768 wide, 12 blocks, 12 heads; the published osu-diffusion-v2 size) with random weights,
turns the first ``--minutes`` of a real osu! map into V29-style events (32 px grid positions, distances,
scroll speeds) and times :func:`engine.diffusion.refine_positions` on them: 100 respaced steps, each one
batched forward pass over all objects of the window (conditional and unconditional rows; the unconditional
row is skipped at guidance 1 outside fp32). ``--precision auto`` is what a V29 job on ``--device`` runs the
DiT in (engine.diffusion.diffusion_precision); ``--gate`` also refines the same events in fp32 and prints how
far the written positions moved from fp32's, and the speed against it. ``--isa avx2`` runs the kernels, and
chooses, as on a CPU without AVX512 (bench/isa.py).
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

from bench.isa import ISA_CAPS, ISA_HELP, restart_capped  # noqa: E402
from engine.beatmap.decoder import read_beatmap  # noqa: E402
from engine.diffusion import (DIFFUSION_PRECISIONS, ClassVocabulary, DiffusionConditioning,  # noqa: E402
                              DiffusionModel, DiffusionOptions, build_sequence, diffusion_precision, refine_positions)
from engine.diffusion.dit import DiT, DiTShape  # noqa: E402
from engine.diffusion.precision import prepare_dit  # noqa: E402
from engine.runtime import pick_device, resolve_precision  # noqa: E402
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


def build_model(device: str, precision: str) -> DiffusionModel:
    classes = ClassVocabulary(num_diff_classes=26, max_difficulty=12, num_mapper_classes=3000,
                              num_descriptor_classes=200, num_cs_classes=22)
    torch.manual_seed(0)
    dit = DiT(DiTShape(width=768, depth=12, heads=12, context_size=272, class_size=classes.size))
    for p in dit.parameters():
        torch.nn.init.normal_(p, 0, 0.02)
    return DiffusionModel(dit=prepare_dit(dit.eval().to(device), precision), classes=classes, folder=Path("."),
                          precision=precision)


def refine(model: DiffusionModel, events, red, multiplier, skip_unconditional: bool | None, device: str):
    """(seconds, the refined events) of one refinement."""
    options = DiffusionOptions(model=model, seed=0, skip_unconditional=skip_unconditional)
    conditioning = DiffusionConditioning(difficulty=5.0, circle_size=4, slider_multiplier=multiplier, red_lines=red)
    began = time.perf_counter()
    out = refine_positions(events, conditioning, options)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - began, out


def position_differences(a, b) -> list[float]:
    """Per written position (each POS_X/POS_Y pair), how far apart (px) two refinements of the same events put it."""
    def positions(events):
        xs = [e.value for e in events if e.type == EventType.POS_X]
        ys = [e.value for e in events if e.type == EventType.POS_Y]
        return torch.tensor([xs, ys], dtype=torch.float64)
    return (positions(a) - positions(b)).norm(dim=0).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=("auto", *DIFFUSION_PRECISIONS))
    parser.add_argument("--gate", action="store_true", help="also refine in fp32 and compare the positions")
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), help=ISA_HELP)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--beatmap", type=Path, default=DEFAULT_MAP)
    parser.add_argument("--skip-unconditional", action="store_true", default=None,
                        help="skip the unconditional row in fp32 too")
    parser.add_argument("--estimate", type=int, default=0, metavar="N",
                        help="time only N of the 100 steps' forward passes and extrapolate (for slow machines)")
    args = parser.parse_args()
    restart_capped(args.isa)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    precision = args.precision
    if precision == "auto":
        precision = diffusion_precision(device, resolve_precision(device, "auto"))
    model = build_model(args.device, precision)
    skips = args.skip_unconditional if args.skip_unconditional is not None else precision != "fp32"

    events, red, multiplier = v29_style_events(args.beatmap, args.minutes)
    entries = len(build_sequence(events, red_lines=red))
    if args.estimate:
        seconds = estimate(model, build_sequence(events, red_lines=red), 1 if skips else 2, args.estimate, args.device)
    else:
        seconds, refined = refine(model, events, red, multiplier, args.skip_unconditional, args.device)
    kernels = f", kernels {torch.backends.cpu.get_cpu_capability()}" if device.type == "cpu" else ""
    print(f"device {args.device}{kernels}, threads {torch.get_num_threads()}, precision {precision}, {args.beatmap.name}: "
          f"{args.minutes:g} min, {entries} sequence entries, 100 steps{' (no unconditional pass)' if skips else ''}"
          f"{f', estimated from {args.estimate} forward passes' if args.estimate else ''}")
    print(f"refinement: {seconds:.1f} s, {seconds / args.minutes:.1f} s per minute of audio")
    if args.gate and not args.estimate:
        exact_seconds, exact = refine(build_model(args.device, "fp32"), events, red, multiplier, None, args.device)
        moved = position_differences(refined, exact)
        print(f"fp32: {exact_seconds:.1f} s ({exact_seconds / seconds:.2f}x the time of {precision})")
        print(f"positions against fp32's, {len(moved)} written: largest difference {max(moved):.1f} px, mean "
              f"{sum(moved) / len(moved):.2f} px, {sum(d > 1 for d in moved)} moved more than 1 px, "
              f"{sum(d > 8 for d in moved)} more than 8 px")


if __name__ == "__main__":
    main()
