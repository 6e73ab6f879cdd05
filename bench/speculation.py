"""Would speculative decoding pay? v32-mini drafting k tokens, v32 checking them in one step.

    python bench/speculation.py [--device cpu|cuda] [--precision auto|fp32|bf16|int8]

Speculation gives exactly v32's greedy tokens but only pays when the draft agrees with v32 often enough: a
round costs k draft steps plus one v32 step over k+1 tokens, and yields (1 - a^(k+1)) / (1 - a) tokens at
acceptance rate a. This prints those step costs (real-size random weights, after a 600-token prompt, best of 7)
and, for each k, the acceptance rate at which a round breaks even with plain v32 steps and the gain at a = 0.8
and 0.9. Not counted, and against it: the draft's own encoder and prompt for every window. The acceptance rate
itself needs the two published checkpoints, which this project cannot download.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.forward import random_model  # noqa: E402
from engine.runtime import PRECISION_CHOICES, pick_device, resolve_precision  # noqa: E402

PROMPT = 600
TOKENS = (1, 2, 3, 4, 5, 6)


@torch.inference_mode()
def step_costs(name: str, device: torch.device, precision: str) -> dict[int, float]:
    """Milliseconds of one decoder step feeding n tokens at once, for each n in TOKENS."""
    model = random_model(name, device, precision)
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(1, 2047 * model.config.spectrogram.hop_length, generator=gen).to(device)
    ids = torch.randint(3, model.config.vocab_size_out, (1, PROMPT + max(TOKENS)), generator=gen).to(device)
    with torch.autocast(device.type, torch.bfloat16, enabled=precision == "amp"):
        state = model.start_decoding(model.encode(frames), torch.ones(1, PROMPT, dtype=torch.bool, device=device),
                                     PROMPT + 2 * max(TOKENS))
        model.decode_step(ids[:, :PROMPT], state)
        costs = {}
        for n in TOKENS:
            best = float("inf")
            for _ in range(7):
                for cache in state.caches:  # back to the prompt: each try checks the same n tokens
                    cache.length = PROMPT
                torch.cuda.synchronize(device) if device.type == "cuda" else None
                t = time.perf_counter()
                model.decode_step(ids[:, PROMPT: PROMPT + n], state)
                torch.cuda.synchronize(device) if device.type == "cuda" else None
                best = min(best, time.perf_counter() - t)
            costs[n] = best * 1000
    return costs


def tokens_per_round(k: int, a: float) -> float:
    return (1 - a ** (k + 1)) / (1 - a)


def break_even(k: int, draft_ms: float, verify_ms: float, target_ms: float) -> float:
    """The acceptance rate at which k drafted tokens and one check cost what plain steps do (bisection)."""
    low, high = 0.0, 0.999999
    for _ in range(60):
        a = (low + high) / 2
        low, high = (a, high) if (k * draft_ms + verify_ms) / tokens_per_round(k, a) > target_ms else (low, a)
    return high


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    precision = resolve_precision(device, args.precision)
    target, draft = step_costs("v32", device, precision), step_costs("v32-mini", device, precision)
    print(f"{device.type}, {torch.get_num_threads()} threads, precision {precision}, {time.strftime('%Y-%m-%d')}")
    print("ms per decoder step feeding n tokens: "
          + "; ".join(f"n={n}: v32 {target[n]:.1f}, v32-mini {draft[n]:.1f}" for n in TOKENS))
    print()
    print("| drafted k | round ms | break-even acceptance | gain at a=0.8 | gain at a=0.9 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for k in TOKENS[1:-1]:
        round_ms = k * draft[1] + target[k + 1]
        gains = [target[1] / (round_ms / tokens_per_round(k, a)) for a in (0.8, 0.9)]
        print(f"| {k} | {round_ms:.1f} | {break_even(k, draft[1], target[k + 1], target[1]):.2f} "
              f"| {gains[0]:.2f}x | {gains[1]:.2f}x |")


if __name__ == "__main__":
    main()
