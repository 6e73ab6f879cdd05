"""Encoder time per audio window and decoder time per generated token.

    python bench/forward.py [--device cpu|cuda] [--precision fp32|bf16|int8] [--tokens 256] [--threads N]
                            [--compile]

Runs the tiny fixture checkpoints (when ../shared is present) and random weights at the published sizes:
v32 = varwhisper-small dims (d 768, 12+12 layers, 12 heads), v32-mini = varwhisper-base dims (d 512, 6+6, 8),
v30/v31 = ropewhisper-small dims with the 464-channel conditioned encoder input. :func:`random_model` is the one
way the benchmarks build such a model.

``--compile`` runs the encoder and the decoder step through ``torch.compile`` (dynamic shapes: the decoder's cache
grows by one position a step) after a few untimed calls that compile them (their time is printed apart), so the
figures compare with eager ones. With ``--precision int8`` each int8 linear is called through one custom op that
the compiler cannot see into: fbgemm's packed weights are a script object, and without it every quantized layer
would break the graph.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.checkpoint import load_checkpoint, new_model  # noqa: E402
from engine.lean_step import lean_step  # noqa: E402
from engine.model import ROPEWHISPER, VARWHISPER, BackboneConfig, ModelConfig, SpectrogramConfig  # noqa: E402
from engine.runtime import PRECISIONS, prepare_model, weight_dtype  # noqa: E402

SHARED = Path(os.environ.get("MAPPERATOR_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")) / "fixtures" / "upstream"


def real_size(name: str) -> ModelConfig:
    if name.startswith("v32"):
        small = name == "v32"
        d, layers, heads = (768, 12, 12) if small else (512, 6, 8)
        backbone = BackboneConfig(VARWHISPER, d, layers, layers, heads, heads, 4 * d, 4 * d, 128, 1024, 2560, 4097)
        return ModelConfig(f"OliBomby/varwhisper-{'small' if small else 'base'}", backbone,
                           SpectrogramConfig(n_mels=128), vocab_size_in=6200, vocab_size_out=4097)
    backbone = BackboneConfig(ROPEWHISPER, 768, 12, 12, 12, 12, 3072, 3072, 464, 2048, 8192 if name == "v31" else 5120,
                              5650)
    return ModelConfig("Tiger14n/ropewhisper-small", backbone, SpectrogramConfig(n_mels=80), vocab_size_in=7000,
                       vocab_size_out=5650, do_difficulty_embed=True, do_mapper_embed=True,
                       do_song_position_embed=True, num_mappers=4000, cond_size=384)


def random_model(name: str, device: torch.device | str = "cpu", precision: str = "fp32", seed: int = 0):
    """A model of ``name``'s published size with random weights (seeded: the same weights every run), in
    ``precision`` as the engine loads it: bf16 casts all but the spectrogram, int8 quantizes on the CPU."""
    model = new_model(real_size(name), seed=seed).to(device).eval()
    dtype = weight_dtype(precision)
    if dtype != torch.float32:
        spectrogram = model.spectrogram
        model.to(dtype)
        spectrogram.float()
    return prepare_model(model, precision)


def parameter_count(config: ModelConfig) -> int:
    """Parameters of a model of ``config`` (counted on the meta device: int8 weights hide from parameters())."""
    from engine.model import Mapperatorinator

    with torch.device("meta"):
        return sum(p.numel() for p in Mapperatorinator(config).parameters())


def conditioning(config: ModelConfig, device) -> dict[str, torch.Tensor]:
    cond = {}
    if config.do_difficulty_embed:
        cond["difficulty"] = torch.tensor([5.0], device=device)
    if config.do_mapper_embed:
        cond["mapper_idx"] = torch.tensor([-1], device=device)
    if config.do_song_position_embed:
        cond["song_position"] = torch.tensor([[0.0, 0.5]], device=device)
    return cond


_FORWARDS: list = []  # the int8 linears' own forward methods, by the index the custom op carries


@functools.cache
def _int8_linear_op():
    """One custom op for every int8 linear (registered on first use: only ``--compile`` needs it)."""

    @torch.library.custom_op("mapperator_bench::int8_linear", mutates_args=())
    def int8_linear(x: torch.Tensor, index: int, out_features: int) -> torch.Tensor:
        return _FORWARDS[index](x)

    @int8_linear.register_fake
    def _(x: torch.Tensor, index: int, out_features: int) -> torch.Tensor:
        return x.new_empty(*x.shape[:-1], out_features)

    return int8_linear


def opaque_int8_linears(model):
    """Each int8 linear of ``model`` called through :func:`_int8_linear_op`, one node to torch.compile."""
    from engine.quantize import Int8Linear

    for module in model.modules():
        if isinstance(module, Int8Linear):
            _FORWARDS.append(module.forward)
            module.forward = functools.partial(_int8_linear_op(), index=len(_FORWARDS) - 1,
                                               out_features=module.out_features)
    return model


def maybe_compiled(model, compile_it: bool):
    """``model`` with its encoder and decoder step run through ``torch.compile`` (``compile_it``)."""
    if compile_it:
        opaque_int8_linears(model)
        model.encode = torch.compile(model.encode, dynamic=True)
        model.decode_step = torch.compile(model.decode_step, dynamic=True)
    return model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def measure(name: str, model, config: ModelConfig, device, tokens: int, prompt: int = 32,
            compiled: bool = False) -> str:
    samples = (config.backbone.max_source_positions * 2 - 1) * config.spectrogram.hop_length
    frames = torch.randn(1, samples, device=device)
    cond = conditioning(config, device)
    warmups = 3 if compiled else 1  # compiling (and recompiling once for dynamic shapes) is not timed
    first = time.perf_counter()
    for _ in range(warmups):
        model.encode(frames, **cond)
    sync(device)
    t = time.perf_counter()
    encoder_out = model.encode(frames, **cond)
    sync(device)
    encode_ms = (time.perf_counter() - t) * 1000

    ids = torch.randint(3, config.vocab_size_out, (1, prompt), device=device)
    state = model.start_decoding(encoder_out, torch.ones(1, prompt, dtype=torch.bool, device=device), prompt + tokens + 4)
    model.decode_step(ids, state)
    if not compiled:  # the steps as decode() runs them (engine.lean_step, where it applies)
        state.lean = lean_step(model, state)
    step = ids[:, -1:]
    for _ in range(warmups):
        model.decode_step(step, state)
    sync(device)
    first = time.perf_counter() - first - encode_ms / 1000
    t = time.perf_counter()
    for _ in range(tokens):
        model.decode_step(step, state)
    sync(device)
    per_token_ms = (time.perf_counter() - t) * 1000 / tokens
    params = parameter_count(config) / 1e6
    return (f"{name:<22} {params:8.1f}M  encoder {encode_ms:9.1f} ms/window  decoder {per_token_ms:7.2f} ms/token"
            f"  ({1000 / per_token_ms:7.1f} tok/s)" + (f"  first calls (compiling) {first:.1f} s" if compiled else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", "--dtype", choices=PRECISIONS, default="fp32")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="run encoder and decoder step through torch.compile")
    ap.add_argument("--only", nargs="*", help="subset of: tiny-v30 tiny-v31 tiny-v32 v30 v31 v32 v32-mini")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = weight_dtype(args.precision)
    print(f"device {device}, precision {args.precision}, torch {torch.__version__}, threads {torch.get_num_threads()}"
          f"{', torch.compile' if args.compile else ''}")
    wanted = set(args.only or ["tiny-v30", "tiny-v31", "tiny-v32", "v30", "v31", "v32", "v32-mini"])
    for version in ("v30", "v31", "v32"):
        name = f"tiny-{version}"
        if name in wanted and (SHARED / version / "checkpoint").is_dir():
            ck = load_checkpoint(str(SHARED / version / "checkpoint"), device=device, dtype=dtype)
            model = maybe_compiled(prepare_model(ck.model, args.precision), args.compile)
            print(measure(name, model, ck.config, device, args.tokens, compiled=args.compile))
    for version in ("v30", "v31", "v32", "v32-mini"):
        if version in wanted:
            model = maybe_compiled(random_model(version, device, args.precision), args.compile)
            print(measure(f"{version} (random)", model, real_size(version), device, args.tokens, compiled=args.compile))


if __name__ == "__main__":
    main()
