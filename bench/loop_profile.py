"""Where a GPU token's time goes in ``engine.decoding.decode``: the graphed decoder step against the loop around it.

    python bench/loop_profile.py [--device cuda] [--precision bf16] [--compiled-step]

A CUDA graph makes the decoder step one launch (bench/device_check.py), but each token also runs the logit
rules, sampling and the loop's one host read. For real-size v32 and v32-mini (random weights) and a map window
(608-token prompt, 100 tokens generated) this prints milliseconds per generated token (the prompt's share taken
out: a 100-token window minus a 1-token one, over 99) for the loop as decoding runs (sampling, every rule; after
the window's first steps the whole token step replays as one graph, engine.token_graph), the same loop with
the token step never captured (each step's rules and bookkeeping launched from the host, around the graphed
decoder step), greedy, sampling without the logit rules, and the graphed step alone; then the loop's busiest
host operations (torch.profiler, self CPU time per generated token, measured the same way).

``--compiled-step`` measures all of it with ``DecodingOptions.compiled_step`` (the decoder step, and the rest of
the token step, compiled by torch.compile; the first window of each variant pays the compiling, not counted:
each figure is the best of its runs), plus the loop with only the decoder step compiled.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest.mock import patch

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.speed  # noqa: E402
import engine.decoding  # noqa: E402
import engine.token_graph  # noqa: E402
from bench.forward import random_model  # noqa: E402
from bench.speed import MAP_WINDOW, Budget, decoder_tokens_per_second, window_seconds  # noqa: E402


def per_token_ms(model, name: str, device: torch.device, precision: str, runs: int = 3, **changes) -> float:
    """Milliseconds per generated token of a map window, the prompt's share taken out. Graphs kept from the
    variant before are dropped first (a kept token graph holds its rule chain and its capture)."""
    model.__dict__.pop("_graphed_steps", None)
    def window(generate: int) -> float:
        budget = Budget(MAP_WINDOW.prompt, generate)
        return window_seconds(model, name, device, precision, budget, runs, encoded=True, **changes)[0]

    return (window(MAP_WINDOW.generate) - window(1)) / (MAP_WINDOW.generate - 1) * 1000


@torch.inference_mode()
def host_profile(model, name: str, device: torch.device, precision: str, top: int = 15) -> None:
    """The loop's busiest host operations per generated token: a 100-token window's profile minus a 1-token
    window's (the prompt's share taken out), over 99."""
    from torch.profiler import ProfilerActivity, profile

    def ops(generate: int) -> dict[str, tuple[float, int]]:
        budget = Budget(MAP_WINDOW.prompt, generate)
        window_seconds(model, name, device, precision, budget, 1, encoded=True)  # warm (graphs kept)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            window_seconds(model, name, device, precision, budget, 1, encoded=True)
        return {e.key: (e.self_cpu_time_total, e.count) for e in prof.key_averages()}

    long, short = ops(MAP_WINDOW.generate), ops(1)
    tokens = MAP_WINDOW.generate - 1
    per_token = {k: ((t - short.get(k, (0, 0))[0]) / tokens, (n - short.get(k, (0, 0))[1]) / tokens)
                 for k, (t, n) in long.items()}
    print("    host operations a generated token (self CPU time; the prompt's share taken out):")
    for key, (us, count) in sorted(per_token.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"      {us:7.1f} us  {count:5.1f}/token  {key[:70]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "amp", "int8"])
    ap.add_argument("--models", nargs="*", default=["v32-mini", "v32"])
    ap.add_argument("--compiled-step", action="store_true", help="decode with DecodingOptions.compiled_step")
    args = ap.parse_args()
    bench.speed.COMPILED_STEP = args.compiled_step  # window_seconds' options and the graphed step alone
    device = torch.device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({label}), torch {torch.__version__}, precision {args.precision}")
    for name in args.models:
        model = random_model(name, device, args.precision)
        full = per_token_ms(model, name, device, args.precision)
        with patch.object(engine.token_graph, "CAPTURE_AFTER", 10**9):
            uncaptured = per_token_ms(model, name, device, args.precision)
        greedy = per_token_ms(model, name, device, args.precision, do_sample=False)
        with patch.object(engine.decoding, "logit_rules", lambda *a, **k: []):
            bare = per_token_ms(model, name, device, args.precision)
        # the graphed step replayed alone after the same prompt (bench/speed.py's decoder tokens/s)
        step = (1000 / decoder_tokens_per_second(model, device, args.precision, 1, MAP_WINDOW.prompt, 200)
                if device.type == "cuda" else float("nan"))
        rules_eager = ""
        if args.compiled_step:  # the token step's rules and bookkeeping left uncompiled
            with patch.object(engine.token_graph, "compiled_decide", lambda: None):
                ms = per_token_ms(model, name, device, args.precision)
            rules_eager = f", only the decoder step compiled {ms:.3f}"
        print(f"  {name}: ms per token: loop {full:.3f}, token step not captured {uncaptured:.3f}, greedy "
              f"{greedy:.3f}, no logit rules {bare:.3f}, graphed step alone {step:.3f}{rules_eager}", flush=True)
        host_profile(model, name, device, args.precision)
        del model


if __name__ == "__main__":
    main()
