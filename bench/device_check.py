"""Fidelity on another device or precision: upstream goldens replayed on e.g. a CUDA GPU.

    python bench/device_check.py --device cuda

Prints, per precision, the largest logit difference against upstream's fp32 CPU goldens (forward goldens),
whether greedy generation with the trained fixture checkpoints reproduces upstream's tokens (decoding as users
get it: CUDA graphs on, eight windows an encoder call), whether the draw is torch.multinomial's and a sampled
window through the captured token step gives the uncaptured step's tokens (and how much faster), and for
real-size v32 and v32-mini (random weights) the decoder's steps/s with and without CUDA graphs (batch 1, a
guided pair, four rows as a mapset) and whether both give the same tokens, and the encoder's windows/s one
window a call against the engine's eight (runtime.encoder_batch). Needs the shared fixtures (../shared or
MAPPERATOR_SHARED). ``precision=auto`` is bf16 on such a GPU: its lines are the default's. ``--parts`` picks
what runs (default: all but ``compile``, an experiment: the graph step compiled by torch.compile, against the
plain graph: speed, compile time, logits).
The graphs part also times 32 rows (super timing's batches, above GRAPH_ROWS) as if they were graphed, to
say whether GRAPH_ROWS should rise.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from unittest.mock import patch
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("MAPPERATOR_SHARED", ROOT.parent / "shared")) / "fixtures" / "upstream"

import engine  # noqa: E402
import engine.decoding  # noqa: E402
from engine.checkpoint import load_checkpoint  # noqa: E402
from engine.runtime import weight_dtype  # noqa: E402

FORWARD = [("v30", "aimod_teacher_forced"), ("v32", "timingctx_call0_map")]
RUNS = {
    "v30/pipeline_greedy_std": dict(gamemode=0, difficulty=3.2, mapper_id=2),
    "v32/pipeline_greedy_std": dict(gamemode=0, difficulty=3.2, mapper_id=2, year=2023),
    "v32/pipeline_greedy_taiko": dict(gamemode=1, difficulty=1.16, mapper_id=1002, scroll_speed_ratio=0.0, year=2023),
    "v32/pipeline_greedy_mania": dict(gamemode=3, difficulty=1.04, mapper_id=3002, keycount=4, scroll_speed_ratio=0.0,
                                      hold_note_ratio=0.0, year=2023),
}


@torch.inference_mode()
def forward_diffs(device: torch.device, precision: str) -> None:
    for version, name in FORWARD:
        ck = load_checkpoint(str(SHARED / version / "checkpoint"), device=device, dtype=weight_dtype(precision))
        inputs = json.loads((SHARED / version / "forward" / f"{name}_inputs.json").read_text())
        ids = torch.tensor(inputs["decoder_input_ids"], device=device).reshape(1, -1)
        cond = {k: torch.tensor(v, device=device) for k, v in inputs.get("cond", {}).items()}
        frames = torch.from_numpy(np.load(SHARED / version / "preprocess" / "window0_samples.npy"))[None].to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "amp"):
            logits = ck.model(frames, decoder_input_ids=ids, causal=version != "v32", **cond)[0].float().cpu().numpy()
        golden = np.load(SHARED / version / "forward" / f"{name}_logits.npy")
        same = (logits.argmax(-1) == golden.argmax(-1)).mean()
        print(f"  forward {version}/{name:<22} max |logit diff| {np.abs(logits - golden).max():.2e}, argmax equal {same:.1%}")


def generation(device: torch.device, precision: str) -> None:
    real = engine.decoding.decode
    for run, extra in RUNS.items():
        calls = json.loads((SHARED / "trained" / run / "generate_calls.json").read_text())
        expected = [ast.literal_eval(c["generated"]) if isinstance(c["generated"], str) else c["generated"] for c in calls]
        expected = [g[0] if g and isinstance(g[0], list) else g for g in expected]
        seen = []

        def spy(*args, **kwargs):
            rows = real(*args, **kwargs)
            seen.extend(rows)
            return rows

        engine.decoding.decode = spy
        try:
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                result = engine.generate(engine.GenerateOptions(
                    audio_path=str(SHARED / "trained" / "audio" / "synth150.wav"), output_path=out,
                    model_path=str(SHARED / "trained" / run.split("/")[0] / "checkpoint"), do_sample=False, seed=12345,
                    device=str(device), precision=precision, **extra))
                wall = time.perf_counter() - t
        finally:
            engine.decoding.decode = real
        equal = sum(a == b for a, b in zip(seen, expected))
        print(f"  generate {run:<30} calls with upstream's tokens {equal}/{len(expected)}, "
              f"{len(result.beatmap.hit_objects)} objects, {wall:.1f} s, {result.tokens_per_second:.0f} tok/s")


def graph_speed(device: torch.device, precision: str, tokens: int = 256) -> None:
    """Greedy decoding of a fixed budget with and without CUDA graphs (engine.cuda_graph)."""
    rows_limit = engine.decoding.GRAPH_ROWS
    try:
        _graph_cases(device, precision, tokens, rows_limit)
    finally:
        engine.decoding.GRAPH_ROWS = rows_limit


def _best_rate(device: torch.device, precision: str, decode_window: Callable[[], list[list[int]]],
               runs: int = 3) -> tuple[list[list[int]], float]:
    """A decode call timed ``runs`` times: its rows and its best rate (the first row's tokens a second, encoder
    and prompt included)."""
    from bench.speed import _clock
    from engine.runtime import autocast

    best, rows = float("inf"), None
    for _ in range(runs):
        t = _clock(device)
        with autocast(device, precision):
            rows = decode_window()
        best = min(best, _clock(device) - t)
    return rows, len(rows[0]) / best


def _graph_cases(device: torch.device, precision: str, tokens: int, rows_limit: int) -> None:
    from bench.forward import random_model
    from bench.speed import _tokenizer
    from engine.decoding import DecodingOptions, decode

    for name in ("v32", "v32-mini"):
        model = random_model(name, device, precision)
        tokenizer = _tokenizer(name)
        gen = torch.Generator().manual_seed(0)
        frames = torch.randn(1, 2047 * model.config.spectrogram.hop_length, generator=gen)
        prompt = torch.randint(tokenizer.offset, tokenizer.vocab_size_out, (608,), generator=gen).tolist()
        cases = (("batch 1", 1, 1.0), ("guided pair", 1, 2.0), ("4 rows (mapset)", 4, 1.0),
                 ("32 rows (timing)", 32, 1.0))
        for label, batch, cfg_scale in cases:
            results = {}
            for graph in (False, True):
                engine.decoding.GRAPH_ROWS = max(rows_limit, batch)  # 32 rows: measured as if graphed
                opts = DecodingOptions(do_sample=False, max_length=608 + tokens, cfg_scale=cfg_scale, cuda_graph=graph)
                negative = [prompt[:-8]] * batch if cfg_scale > 1 else None
                results[graph] = _best_rate(device, precision, lambda: decode(
                    model, tokenizer, frames.expand(batch, -1), [prompt] * batch, opts, stop=(),
                    negative_prompts=negative))
            same = results[False][0] == results[True][0]
            print(f"  {name:<9} {label:<15}: eager {results[False][1]:7.0f} steps/s, CUDA graph {results[True][1]:7.0f} "
                  f"steps/s (window incl. encoder and prompt), same tokens: {same}")


@torch.inference_mode()
def token_step(device: torch.device, precision: str, tokens: int = 200) -> None:
    """The draw (engine.sampling) against torch.multinomial from the same stream on this device, then a sampled
    window (every logit rule, a guided pair, and three rows on one stream) through the captured token step
    (engine.token_graph) against the same window with the token step never captured: same tokens, and tokens/s."""
    from bench.forward import random_model
    from bench.speed import _tokenizer
    import engine.token_graph
    from engine.decoding import DecodingOptions, decode
    from engine.sampling import choose, draw_noise

    scores = torch.randn(4, 5000, device=device, generator=torch.Generator(device).manual_seed(0)) * 4
    done, invalid = torch.zeros(4, dtype=torch.bool, device=device), torch.zeros((), dtype=torch.bool, device=device)
    same = same_rows = 0
    for seed in range(50):
        theirs, ours = (torch.Generator(device).manual_seed(seed) for _ in range(2))
        expected = torch.multinomial(scores.softmax(-1), 1, generator=theirs).squeeze(1)
        same += torch.equal(choose(scores, draw_noise(torch.empty_like(scores), ours), done, invalid), expected)
        theirs, ours = ([torch.Generator(device).manual_seed(seed * 4 + r) for r in range(4)] for _ in range(2))
        expected = torch.cat([torch.multinomial(scores[r: r + 1].softmax(-1), 1, generator=theirs[r])[0]
                              for r in range(4)])
        same_rows += torch.equal(choose(scores, draw_noise(torch.empty_like(scores), ours), done, invalid), expected)
    print(f"  draw: torch.multinomial's tokens {same}/50 (one stream), {same_rows}/50 (a stream per row)")
    capture_after = engine.token_graph.CAPTURE_AFTER
    for name in ("v32", "v32-mini"):
        model, tokenizer = random_model(name, device, precision), _tokenizer(name)
        gen = torch.Generator().manual_seed(0)
        frames = torch.randn(1, 2047 * model.config.spectrogram.hop_length, generator=gen)
        for label, batch, cfg_scale in (("batch 1", 1, 1.0), ("guided pair", 1, 2.0), ("3 rows", 3, 1.0),
                                        ("3 own streams", 3, 1.0)):
            prompts = [torch.randint(tokenizer.offset, tokenizer.vocab_size_out, (608,), generator=gen).tolist()
                       for _ in range(batch)]
            opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, top_k=50, timeshift_bias=0.3,
                                   max_length=608 + tokens, cfg_scale=cfg_scale)
            results = {}
            for captured in (False, True):
                model.__dict__.pop("_graphed_steps", None)  # no kept graph (nor token graph) from the run before

                def run() -> list[list[int]]:
                    streams = ([torch.Generator(device).manual_seed(5 + r) for r in range(batch)]
                               if label.endswith("streams") else torch.Generator(device).manual_seed(5))
                    return decode(model, tokenizer, frames.expand(batch, -1), prompts, opts, stop=(),
                                  lookback_ms=2000.0, generator=streams,
                                  negative_prompts=[p[:-8] for p in prompts] if cfg_scale > 1 else None)

                with patch.object(engine.token_graph, "CAPTURE_AFTER", capture_after if captured else 10**9):
                    results[captured] = _best_rate(device, precision, run)
            print(f"  {name:<9} {label:<13}: token step uncaptured {results[False][1]:6.0f} tok/s, captured "
                  f"{results[True][1]:6.0f} tok/s (window incl. encoder and prompt), same tokens: "
                  f"{results[False][0] == results[True][0]}")
        del model


@torch.inference_mode()
def encoder_batching(device: torch.device, precision: str, repeats: int = 5) -> None:
    """Windows/s with one window a call and with runtime.encoder_batch's windows a call, and how far the
    batched outputs are from the one-window ones (the goldens above already ran batched on CUDA)."""
    from bench.forward import random_model
    from engine.runtime import autocast, encoder_batch

    batch = max(2, encoder_batch(device))
    for name in ("v32", "v32-mini"):
        model = random_model(name, device, precision)
        frames = torch.randn(batch, 2047 * model.config.spectrogram.hop_length,
                             generator=torch.Generator().manual_seed(3)).to(device)
        rates = {}
        with autocast(device, precision):
            alone = torch.cat([model.encode(frames[i:i + 1]) for i in range(batch)])
            together = model.encode(frames)
            for rows in (1, batch):
                torch.cuda.synchronize(device) if device.type == "cuda" else None
                t = time.perf_counter()
                for _ in range(repeats):
                    for i in range(0, batch, rows):
                        model.encode(frames[i:i + rows])
                torch.cuda.synchronize(device) if device.type == "cuda" else None
                rates[rows] = batch * repeats / (time.perf_counter() - t)
        diff = (alone.float() - together.float()).abs().max().item()
        print(f"  encoder {name:<9}: 1 window a call {rates[1]:6.1f} windows/s, {batch} a call {rates[batch]:6.1f} "
              f"windows/s, max |output diff| {diff:.2e}")


COMPILE_MODES = ["default", "max-autotune-no-cudagraphs"]  # --compile-modes


def one_row_sums(step: Callable) -> Callable:
    """``step`` with each one-token ``F.linear`` written as a multiplication and a sum in fp32 (mode flag
    ``sums``): compiled, Inductor makes each product a reduction kernel of its own, the bias and what follows
    (activation, residual) fused into it, instead of calling cuBLAS's one-row kernels."""
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class Sums(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is F.linear and args[0].dim() == 3 and args[0].shape[1] == 1:
                x, w = args[0], args[1]
                b = args[2] if len(args) > 2 else kwargs.get("bias")
                y = (x.float()[..., None, :] * w.float()).sum(-1)
                return (y if b is None else y + b.float()).to(x.dtype)
            return func(*args, **kwargs)

    def summed(*args):
        with Sums():
            return step(*args)

    return summed


@torch.inference_mode()
def compiled_step(device: torch.device, precision: str, steps: int = 200) -> None:
    """Experiment (part ``compile``): the graphed step as ``DecodingOptions.compiled_step`` makes it (the whole
    static step compiled by torch.compile, then captured), in each of COMPILE_MODES (Inductor fuses the small
    kernels a step is made of; max-autotune also tries its own matrix kernels, with their bias and activation
    fused in). Prints steps/s against the plain graph, the compile time, graph breaks, how far the logits are
    from the plain step's, and the compiled step's kernels (count, GPU time, the costliest). A mode's flags
    (``MODE+FLAG+...``) set Inductor config flags, except ``sums``: the step's one-row products written as sums
    (:func:`one_row_sums`)."""
    import torch._dynamo
    import torch._inductor.config as inductor_config
    from bench.forward import random_model
    from bench.step_profile import print_kernels
    from engine import cuda_graph
    from engine.runtime import autocast

    for name in ("v32", "v32-mini"):
        model = random_model(name, device, precision)
        gen = torch.Generator().manual_seed(4)
        frames = torch.randn(1, 2047 * model.config.spectrogram.hop_length, generator=gen).to(device)
        prompt = torch.randint(3, model.config.vocab_size_out, (1, 600), generator=gen).to(device)
        length = 600 + steps + 64

        def graphed(compiled: bool) -> cuda_graph.GraphedStep:
            state = model.start_decoding(encoder_out, torch.ones(1, 600, dtype=torch.bool, device=device), length)
            model.decode_step(prompt, state)
            return cuda_graph.GraphedStep(model, model.static_decoding(state, length), 1, compiled)

        def timed(step: cuda_graph.GraphedStep) -> tuple[float, list[torch.Tensor]]:
            token, logits = prompt[:, -1], []
            torch.cuda.synchronize(device) if device.type == "cuda" else None
            t = time.perf_counter()
            for _ in range(steps):
                out = step(token)
                token = out.argmax(-1)
                logits.append(out[0, :16].clone())
            torch.cuda.synchronize(device) if device.type == "cuda" else None
            return steps / (time.perf_counter() - t), logits

        with autocast(device, precision):
            encoder_out = model.encode(frames)
            plain_rate, plain = timed(graphed(False))
            print(f"  compiled {name:<9}: plain graph {plain_rate:7.0f} steps/s", flush=True)
            for mode in COMPILE_MODES:
                torch._dynamo.reset()
                torch._dynamo.utils.counters.clear()
                model.__dict__.pop("_compiled_step_on_device", None)
                base, *flags = mode.split("+")  # "default+coordinate_descent_tuning": Inductor flags set for it
                cuda_graph.COMPILE_MODE = None if base == "default" else base
                if "sums" in flags:  # compiled_step_on_device compiles the instance's step: this one
                    flags.remove("sums")
                    plain_step = type(model).static_step_on_device.__get__(model)
                    model.__dict__["static_step_on_device"] = one_row_sums(plain_step)
                try:
                    with inductor_config.patch({flag: True for flag in flags}):
                        t = time.perf_counter()
                        step = graphed(True)  # compiles in its first call, then captures
                        compile_s = time.perf_counter() - t
                        if step.on_device is None:
                            raise RuntimeError("compiling failed (see the warning above)")
                        rate, logits = timed(step)
                        breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
                        diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(plain, logits))
                        print(f"    {mode:<27}: compiled + graph {rate:7.0f} steps/s, compile {compile_s:.0f} s, "
                              f"graph breaks {breaks}, max |logit diff| {diff:.2e}", flush=True)
                        if device.type == "cuda":
                            def eager_step():  # as the graph runs it: another autocast state would compile it again
                                with step._casting():
                                    step._step()

                            print_kernels(eager_step, device, calls=10)
                except Exception:  # noqa: BLE001 - one mode failing must not cost the next
                    print(f"    {mode} FAILED:\n{traceback.format_exc()}", flush=True)
                finally:
                    model.__dict__.pop("static_step_on_device", None)
        cuda_graph.COMPILE_MODE = None
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


PARTS = {"forward": forward_diffs, "generate": generation, "token": token_step, "graphs": graph_speed,
         "encoder": encoder_batching, "compile": compiled_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precisions", nargs="*", default=["fp32", "bf16", "amp"])
    ap.add_argument("--parts", nargs="*", choices=list(PARTS), default=[p for p in PARTS if p != "compile"],
                    help="what to run, for each precision (compile: an experiment, not in the default)")
    ap.add_argument("--compile-modes", nargs="*", default=COMPILE_MODES,
                    help="torch.compile modes the compile part tries (default: the default mode, max-autotune "
                         "without its own CUDA graphs); MODE+FLAG sets an Inductor config flag for it, e.g. "
                         "default+coordinate_descent_tuning; the flag sums writes the step's one-row products "
                         "as sums (default+sums)")
    ap.add_argument("--compiled-step", action="store_true",
                    help="the other parts decode with the graphed step compiled (DecodingOptions.compiled_step)")
    args = ap.parse_args()
    COMPILE_MODES[:] = args.compile_modes
    if args.compiled_step:
        import engine.cuda_graph

        plain = engine.cuda_graph.graphed_step
        engine.cuda_graph.graphed_step = lambda model, state, max_len, rows, compiled=False: plain(
            model, state, max_len, rows, True)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}{', compiled step' if args.compiled_step else ''}")
    failed = 0
    parts = [PARTS[p] for p in args.parts]
    for precision in args.precisions:
        print(f"precision {precision}")
        # one part failing (an out-of-memory, a capture error) must not cost the others: device time is scarce
        for part in parts:
            try:
                part(device, precision)
            except Exception:  # noqa: BLE001 - printed in full, counted in the exit status
                failed += 1
                print(f"  {part.__name__} FAILED:\n{traceback.format_exc()}")
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
