"""Where a GPU decoder step's time goes, and which attention kernels make it shorter.

    python bench/step_profile.py [--device cuda] [--precision bf16]

A CUDA graph removes the host from the token loop (bench/device_check.py), so what is left is the GPU's own
time: a few hundred small kernels a step. For real-size v32 and v32-mini (random weights) this prints

- a kernel profile of the static decoder step (torch.profiler, eager steps after a 600-token prompt): kernels
  a step, GPU microseconds a step, and the kernels that take most of it;
- for each attention implementation below, the graph step's steps/s for 1, 2 (a guided pair), 4 and 16 rows,
  the largest logit difference from the engine's own (``engine``), and whether greedy generation with the trained
  fixtures still gives upstream's tokens in this precision and in fp32 (device_check's ``generate``).

Attention implementations (``engine.model.attend`` replaced for the run): ``engine`` the engine's own (for the
static step's fixed key length cuDNN's kernel first), ``flash`` PyTorch's flash / memory-efficient kernels only
(what the growing cache uses), ``matmul`` three plain kernels (scaled scores with the mask added, softmax,
weighted sum), ``none`` no attention at all (the floor: what everything else costs; its tokens mean nothing).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import math
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine.model  # noqa: E402
from bench.forward import random_model  # noqa: E402
from engine.cuda_graph import GraphedStep  # noqa: E402
from engine.runtime import autocast  # noqa: E402

PROMPT = 600
ENGINE_ATTEND = engine.model.attend


def _flash(q, k, v, mask, causal=False, fixed_length=False):
    return ENGINE_ATTEND(q, k, v, mask, causal)


def _matmul(q, k, v, mask, causal=False, fixed_length=False):
    if q.shape[2] != 1 or q.dtype != k.dtype:
        return ENGINE_ATTEND(q, k, v, mask, causal)
    b, h, t, d = q.shape
    keys = k.shape[2]
    q3, k3, v3 = q.reshape(b * h, t, d), k.reshape(b * h, keys, d), v.reshape(b * h, keys, d)
    if mask is None:
        scores = torch.bmm(q3, k3.transpose(1, 2)).mul_(1 / math.sqrt(d))
    else:
        scores = torch.baddbmm(mask.expand(b, h, t, keys).reshape(b * h, t, keys), q3, k3.transpose(1, 2),
                               alpha=1 / math.sqrt(d))
    return torch.bmm(scores.softmax(-1), v3).view(b, h, t, d)


def _none(q, k, v, mask, causal=False, fixed_length=False):
    return ENGINE_ATTEND(q, k, v, mask, causal) if q.shape[2] != 1 else q


VARIANTS = {"engine": ENGINE_ATTEND, "flash": _flash, "matmul": _matmul, "none": _none}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _static_state(model, device: torch.device, rows: int, length: int):
    gen = torch.Generator().manual_seed(7)
    frames = torch.randn(1, 2047 * model.config.spectrogram.hop_length, generator=gen).to(device)
    ids = torch.randint(3, model.config.vocab_size_out, (rows, PROMPT), generator=gen).to(device)
    state = model.start_decoding(model.encode(frames).expand(rows, -1, -1),
                                 torch.ones(rows, PROMPT, dtype=torch.bool, device=device), length)
    model.decode_step(ids, state)
    return model.static_decoding(state, length), ids[:, -1]


@torch.inference_mode()
def kernel_profile(model, device: torch.device, precision: str, steps: int = 20) -> None:
    with autocast(device, precision):
        state, token = _static_state(model, device, 1, PROMPT + steps + 8)
        ids = token[:, None]
        model.decode_step_static(ids, state)  # warm
        print_kernels(lambda: model.decode_step_static(ids, state), device, steps)


def print_kernels(step, device: torch.device, calls: int, top: int = 12) -> None:
    """Profiles ``calls`` calls of ``step()`` (one decoder step each, already warm) and prints its GPU kernels:
    how many a step, GPU time a step, and the ``top`` costliest."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    _sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            step()
        _sync(device)
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    if not kernels:
        print("    kernel profile: no GPU kernels seen (needs CUDA)")
        return
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    for e in kernels:
        by_name[e.name].append(e.time_range.elapsed_us())
    total = sum(sum(v) for v in by_name.values()) / calls
    print(f"    kernel profile: {len(kernels) / calls:.0f} kernels a step, {total:.0f} us of GPU time a step")
    for name, times in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]:
        print(f"      {sum(times) / calls:7.1f} us/step  {len(times) / calls:5.1f}/step  {sum(times) / len(times):6.1f} us "
              f"each  {name[:90]}", flush=True)


@torch.inference_mode()
def graph_rate(model, device: torch.device, precision: str, rows: int, steps: int = 200) -> tuple[float, torch.Tensor]:
    """Steps/s of the graphed static step for ``rows`` rows, and the logits of its first 16 steps."""
    with autocast(device, precision):
        state, token = _static_state(model, device, rows, PROMPT + steps + 24)
        step = GraphedStep(model, state, rows)
        if step.graph is None and device.type == "cuda":
            raise RuntimeError("capture failed")
        logits = []
        for _ in range(16):
            out = step(token)
            token = out.argmax(-1)
            logits.append(out.clone())
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            token = step(token).argmax(-1)
        _sync(device)
    return steps / (time.perf_counter() - t), torch.stack(logits)


def goldens(device: torch.device, precision: str) -> str:
    """device_check's greedy golden runs, condensed to one line."""
    from bench.device_check import generation

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        generation(device, precision)
    same = [line.split("tokens ")[1].split(",")[0] for line in printed.getvalue().splitlines() if "tokens " in line]
    return " ".join(same)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "amp"])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--rows", nargs="*", type=int, default=[1, 2, 4, 16])
    ap.add_argument("--no-goldens", dest="goldens", action="store_false")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, precision {args.precision}")
    for model_name in ("v32", "v32-mini"):
        model = random_model(model_name, device, args.precision)
        reference: dict[int, torch.Tensor] = {}
        for variant in args.variants:
            engine.model.attend = VARIANTS[variant]
            try:
                print(f"  {model_name} attention {variant}")
                kernel_profile(model, device, args.precision)
                rates = []
                for rows in args.rows:
                    rate, logits = graph_rate(model, device, args.precision, rows)
                    reference.setdefault(rows, logits)
                    diff = (logits.float() - reference[rows].float()).abs().max().item()
                    rates.append(f"{rows} rows {rate:6.0f} steps/s (logit diff {diff:.1e})")
                print("    graph: " + "; ".join(rates))
                if args.goldens and model_name == "v32" and variant != "none":
                    print(f"    goldens (upstream's tokens): {args.precision} {goldens(device, args.precision)}; "
                          f"fp32 {goldens(device, 'fp32')}")
            except Exception:  # noqa: BLE001 - one variant failing must not cost the others
                print(f"    FAILED:\n{traceback.format_exc()}")
            finally:
                engine.model.attend = ENGINE_ATTEND
                if device.type == "cuda":
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
