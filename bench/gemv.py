"""The one-row matrix products of a decoder step: cuBLAS against kernels of our own.

    python bench/gemv.py [--device cuda] [--models v32 v32-mini] [--rows 1 2] [--all]

In v32's graphed, compiled bf16 step on an H200 the matrix products were 312 us of the step's 602 (cuBLAS's
one-row kernels, 4.2-4.7 us each, plus split-K reductions): the rest of the way to 1,500 tokens/s is there. This
prints, for each product shape of one decoder step (per layer: the fused query/key/value projection, the
attention output, the cross-attention query and output, the two feed-forward layers; then the vocabulary head),
microseconds per product for

- ``F.linear`` as the engine runs it (cuBLAS, torch's choice of kernel),
- ``F.linear`` with cuBLASLt preferred (``torch.backends.cuda.preferred_blas_library``),
- the product written as a multiplication and a sum, compiled by torch.compile (Inductor's own reduction
  kernel, the bias in it: what a compiled step would run if its linears were written so),
- a GEMV in Triton: each program computes a block of outputs for every row, reading its block of weights once
  (the best of ``CONFIGS``; ``--all`` prints each),

each timed in a CUDA graph of 32 products in a row with weights of their own (as a step reads its 12 layers'
weights from memory, not from cache; launch gaps included), with the largest difference from the fp32 product
of the same bf16 numbers; then the whole step's products in order, one graph, per variant: what the step would
take in matrix products.

On a CPU it only checks the Triton kernel's numbers against ``F.linear`` (in Triton's interpreter:
``TRITON_INTERPRET=1``, with triton installed; slow, so on two small shapes).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.forward import real_size  # noqa: E402

REPEATS = 32  # products a timing graph holds in a row, each with weights of its own
REPLAYS = 30
# (block_n, block_k, warps) tried for each shape: each a compile per shape and row count (~0.5 s on a GPU's host)
CONFIGS = [(block_n, block_k, 4) for block_n in (8, 16, 32) for block_k in (256, 512)]


@dataclass(frozen=True)
class Product:
    out: int
    into: int
    bias: bool
    per_step: int  # how many a decoder step makes


def step_products(name: str) -> list[Product]:
    """The distinct matrix products of one decoder step of ``name`` (the cross-attention's keys and values are
    made once a window, not a step)."""
    cfg = real_size(name).backbone
    d, ffn, layers, bias = cfg.d_model, cfg.decoder_ffn_dim, cfg.decoder_layers, cfg.attention_bias
    made: dict[tuple[int, int, bool], int] = {}
    for shape in [(3 * d, d, bias), (d, d, bias), (d, d, bias), (d, d, bias), (ffn, d, True), (d, ffn, True)]:
        made[shape] = made.get(shape, 0) + layers
    made[(cfg.vocab_size, d, False)] = 1
    return [Product(o, i, b, n) for (o, i, b), n in made.items()]


def triton_gemv():
    """The Triton kernel and its launcher ``gemv(x, w, b, block_n, block_k, warps) -> x @ w.T + b``; None
    without triton."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def kernel(x, w, b, out, M, N, K: tl.constexpr, HAS_BIAS: tl.constexpr, ROWS: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        rows = tl.arange(0, ROWS)
        acc = tl.zeros((ROWS, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            wt = tl.load(w + n[:, None] * K + k[None, :], mask=(n[:, None] < N) & (k[None, :] < K), other=0.0)
            xt = tl.load(x + rows[:, None] * K + k[None, :], mask=(rows[:, None] < M) & (k[None, :] < K), other=0.0)
            acc += tl.sum(xt.to(tl.float32)[:, None, :] * wt.to(tl.float32)[None, :, :], axis=2)
        if HAS_BIAS:
            acc += tl.load(b + n, mask=n < N, other=0.0).to(tl.float32)[None, :]
        tl.store(out + rows[:, None] * N + n[None, :], acc.to(out.dtype.element_ty),
                 mask=(rows[:, None] < M) & (n[None, :] < N))

    def gemv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, block_n: int, block_k: int,
             warps: int) -> torch.Tensor:
        m, k = x.shape
        n = w.shape[0]
        out = torch.empty(m, n, device=x.device, dtype=x.dtype)
        kernel[(triton.cdiv(n, block_n),)](x, w, b if b is not None else w, out, m, n, k, HAS_BIAS=b is not None,
                                           ROWS=triton.next_power_of_2(m), BLOCK_N=block_n, BLOCK_K=block_k,
                                           num_warps=warps)
        return out

    return gemv


def graphed_us(run, device: torch.device, products: int = REPEATS) -> float:
    """Microseconds per product of ``run()`` (that many products) replayed as one CUDA graph."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        run()  # warm-up: Triton compiles, cuBLAS makes its workspace
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(REPLAYS):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000 / REPLAYS / products


@contextlib.contextmanager
def blas(library: str | None):
    if library is None:
        yield
        return
    before = torch.backends.cuda.preferred_blas_library()
    torch.backends.cuda.preferred_blas_library(library)
    try:
        yield
    finally:
        torch.backends.cuda.preferred_blas_library(before)


def check_numbers(gemv, device: torch.device, products: list[Product], rows: int) -> float:
    """Largest |Triton - F.linear| in fp32 over ``products`` (every configuration's block sizes)."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for p in products:
        x = torch.randn(rows, p.into, generator=gen).to(device)
        w = (torch.randn(p.out, p.into, generator=gen) / p.into ** 0.5).to(device)
        b = torch.randn(p.out, generator=gen).to(device) if p.bias else None
        expected = F.linear(x, w, b)
        for block_n, block_k in {(c[0], c[1]) for c in CONFIGS}:
            worst = max(worst, float((gemv(x, w, b, block_n, block_k, 1) - expected).abs().max()))
    return worst


def inductor_gemv():
    """``x @ w.T + b`` written as a product and a sum (fp32), compiled: Inductor makes it one reduction kernel of
    its own, the casts and the bias in it, instead of calling cuBLAS."""
    import torch._dynamo.config

    def product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        y = (x[:, None, :].float() * w[None].float()).sum(-1)
        return (y if b is None else y + b.float()).to(x.dtype)

    # one compile per shape: past torch's default of 8 it would run uncompiled, timed as if compiled
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(product, dynamic=False)


def measure(name: str, device: torch.device, rows: int, gemv, show_all: bool) -> None:
    dtype = torch.bfloat16
    products = step_products(name)
    gen = torch.Generator().manual_seed(1)
    weights = {p: [((torch.randn(p.out, p.into, generator=gen) / p.into ** 0.5).to(device, dtype),
                    torch.randn(p.out, generator=gen).to(device, dtype) if p.bias else None)
                   for _ in range(REPEATS)] for p in products}
    x = {p: torch.randn(rows, p.into, generator=gen).to(device, dtype) for p in products}
    # label -> (product(x, w, b), the BLAS library it runs under)
    fixed = {"cuBLAS": (F.linear, None), "cuBLASLt": (F.linear, "cublaslt"), "Inductor": (inductor_gemv(), None)}
    print(f"{name}, {rows} row(s), bf16: us per product (graph of {REPEATS}, weights of their own); "
          f"largest |difference| from the fp32 product of the same bf16 numbers")
    best: dict[Product, tuple] = {}
    totals: dict[str, float] = {}
    for p in products:
        w0, b0 = weights[p][0]
        exact = F.linear(x[p].float(), w0.float(), None if b0 is None else b0.float())
        line, error = {}, {}
        for label, (product, library) in fixed.items():
            with blas(library):
                line[label] = graphed_us(lambda: [product(x[p], w, b) for w, b in weights[p]], device)
                error[label] = float((product(x[p], w0, b0).float() - exact).abs().max())
        if gemv is not None:
            timed = {}
            for config in CONFIGS:
                try:
                    timed[config] = graphed_us(lambda: [gemv(x[p], w, b, *config) for w, b in weights[p]], device)
                except Exception as e:  # noqa: BLE001 - a configuration Triton cannot build (registers): skipped
                    if show_all:
                        print(f"    {config}: {type(e).__name__}: {str(e)[:80]}")
            if not timed:
                sys.exit(f"no Triton configuration built for {p}")
            config = min(timed, key=timed.get)
            best[p], line["Triton"] = config, timed[config]
            error["Triton"] = float((gemv(x[p], w0, b0, *config).float() - exact).abs().max())
            if show_all:
                print("    " + ", ".join(f"{c}: {t:.2f}" for c, t in sorted(timed.items(), key=lambda kv: kv[1])))
        for label, us in line.items():
            totals[label] = totals.get(label, 0.0) + us * p.per_step
        shown = ", ".join(f"{label} {us:6.2f} ({error[label]:.1e})" for label, us in line.items())
        print(f"  {p.out:5d} x {p.into:5d}{' +bias' if p.bias else '      '} x{p.per_step:3d} a step: {shown}"
              + (f"  (Triton block_n, block_k, warps = {best[p]})" if p in best else ""), flush=True)
    print("  the step's products, summed from the above: "
          + ", ".join(f"{label} {us:.0f} us" for label, us in totals.items()), flush=True)
    # the step's products in order, one graph (each product once per layer, the layers' own weights)
    cfg = real_size(name).backbone
    by_shape = {(p.out, p.into): p for p in products}
    d, ffn = cfg.d_model, cfg.decoder_ffn_dim
    shapes = [(3 * d, d), (d, d), (d, d), (d, d), (ffn, d), (d, ffn)] * cfg.decoder_layers + [(cfg.vocab_size, d)]
    used = {p: 0 for p in products}
    order = []
    for shape in shapes:
        p = by_shape[shape]
        order.append((p, weights[p][used[p] % REPEATS]))
        used[p] += 1
    step = {}
    for label, (product, library) in fixed.items():
        with blas(library):
            step[label] = graphed_us(lambda: [product(x[p], *wb) for p, wb in order], device, 1)
    if gemv is not None:
        step["Triton"] = graphed_us(lambda: [gemv(x[p], *wb, *best[p]) for p, wb in order], device, 1)
    print(f"  the step's {len(order)} products in order, one graph: "
          + ", ".join(f"{label} {us:.0f} us" for label, us in step.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="*", default=["v32", "v32-mini"])
    ap.add_argument("--rows", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--all", action="store_true", help="print every Triton configuration's time")
    args = ap.parse_args()
    device = torch.device(args.device)
    gemv = triton_gemv()
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({label}), torch {torch.__version__}, "
          f"triton {__import__('triton').__version__ if gemv else 'absent'}")
    if device.type != "cuda":
        if gemv is None or os.environ.get("TRITON_INTERPRET") != "1":
            sys.exit("on a CPU this checks the Triton kernel's numbers only: install triton, set TRITON_INTERPRET=1")
        small = [Product(96, 64, True, 1), Product(40, 200, False, 1)]
        for rows in args.rows:
            worst = check_numbers(gemv, device, small, rows)
            print(f"  {rows} row(s): largest |Triton - F.linear| in fp32: {worst:.2e}")
        return
    for name in args.models:
        for rows in args.rows:
            measure(name, device, rows, gemv, args.all)


if __name__ == "__main__":
    main()
