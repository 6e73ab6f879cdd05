"""``precision=int8``: the backbone's linear layers with int8 weights, for decoding on a CPU.

A CPU decoder step is bound by memory traffic: every token reads every decoder weight once (v32: 466 MB
in fp32). Here each ``nn.Linear`` of the encoder, the decoder and the output head becomes an
:class:`Int8Linear`, torch's dynamically quantized linear in its numbers: int8 weights with one scale per
output channel, the activations quantized per call, int32 sums (``quantized::linear_dynamic``: fbgemm on x86
from AVX2 up, Windows included; qnnpack on ARM). The decoder's cached keys and values (cross attention over
the 1,024 encoder frames, and self attention) are kept in bf16, attention computed in bf16, where oneDNN
multiplies bf16 (:func:`bf16_attention`): at v32's size they are otherwise half of what a step reads. On
AVX2-only CPUs they stay fp32, since there torch's bf16 attention takes twice fp32's time. The embeddings,
norms, the encoder's attention and the conditioning embedders stay fp32. On a CPU with bf16 matrix units
(:func:`native_bf16`) the encoder instead runs in bf16 (weights stored in bf16, autocast): there it takes about
half the int8 encoder's time (v32: ~0.3 s a window instead of ~0.6 s on 2 cores).

Why this kernel and not a weight-only one: ``torch._weight_int8pack_mm`` (int8 weights, bf16 activations) is
vectorised only on AVX512 builds without MSVC, is 2-3x slower than fp32 with fp32 activations, and was slower
than the dynamic kernel on the v32 encoder and decoder here (bench/speed.py; the record: bench/README.md).
torch warns that its quantized tensors (``torch.quantize_per_channel``, which the op's weights are made from) are
deprecated; torch is pinned (pyproject), so the warning is silenced. torch.ao.quantization's Python modules are
not used.

Activations use all 8 bits where the kernels sum them exactly (:func:`full_range_exact`: AVX512-VNNI, AMX), not
the 7 of torch's own module (``reduce_range``, which keeps kernels that add pairs of products in saturating 16
bits exact): on real-size random models the largest logit difference from fp32 went 0.083 -> 0.062 (v32) and
0.068 -> 0.047 (v32-mini), the mean 0.016 -> 0.011 and 0.012 -> 0.008, at the same speed.

On CPUs with AMX (Intel Xeons since Sapphire Rapids) each int8 linear also keeps its weights prepacked for
oneDNN's int8 product (:class:`OneDnnInt8`), which takes inputs of :data:`WIDE_ROWS` rows or more: a window's
prompt, the cross attention's keys and values over the 1,024 encoder frames. There it is 2-2.8x fbgemm's speed
(608 rows), and slower below ~32 rows, where the decoder's steps stay with fbgemm. The two compute the same
integer sums (results within an fp32 rounding). v32: a map window's prompt ~330 -> ~245 ms, a whole window ~5 %
faster, for ~110 MB more peak memory (the weights once more, in oneDNN's layout) and ~0.3 s more loading.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import OptionError
from .messages import Message
from .model import EuclideanRMSNorm, RMSNorm, erf_gelu

# The op's C++ entry: the Python overload checks its arguments for tracing's fake objects on every call first.
_LINEAR_DYNAMIC = getattr(torch.ops.quantized.linear_dynamic.default, "_op", torch.ops.quantized.linear_dynamic.default)

WIDE_ROWS = 64  # from here oneDNN's int8 product beat fbgemm's on AMX for every v32 shape (crossover 16-64 rows)


def int8_supported() -> bool:
    """Whether this PyTorch build has a quantized-kernel engine (x86/fbgemm, onednn or qnnpack)."""
    return any(e != "none" for e in torch.backends.quantized.supported_engines)


def avx512_kernels() -> bool:
    """Whether torch runs its CPU kernels with AVX512 (read from torch, so ``ATEN_CPU_CAPABILITY=avx2`` makes the
    engine choose as on an AVX2-only CPU, most laptops': ``bench/speed.py --isa avx2``)."""
    return torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX: Intel since Cooper Lake and
    Sapphire Rapids, AMD since Zen 4)."""
    cpu = torch.cpu
    return avx512_kernels() and bf16_attention() and any(
        getattr(cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def bf16_attention() -> bool:
    """Whether attention over bf16 keys and values keeps pace with fp32 here: where oneDNN multiplies bf16 (x86
    CPUs with AVX512, natively or emulated; ARM with its bf16 extension). Elsewhere (AVX2-only CPUs, most
    laptops') torch's attention falls back to its own bf16 products, and fp32 keys and values are faster
    though they are twice the bytes: a v32 int8 step 26.5 -> 18.5 ms, v32-mini 6.6 -> 4.0 ms (AVX2 emulated on
    this project's CPU: bench/README.md)."""
    try:  # oneDNN's own check, which ONEDNN_MAX_CPU_ISA narrows
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def amx_int8() -> bool:
    """Whether this CPU has AMX tiles (int8 and bf16 matrix units) and this torch build oneDNN's int8 ops."""
    return (hasattr(torch.ops.onednn, "qlinear_pointwise") and avx512_kernels()
            and torch.cpu._is_amx_tile_supported())


def check_int8_runs(model: nn.Module) -> None:
    """Refuse, with the way out, to quantize ``model`` where int8 cannot run: a build without int8 kernels, or
    weights off the CPU."""
    if not int8_supported():
        raise OptionError(Message("error.quantize.no_int8_kernels", "precision=int8: this PyTorch build has no int8 "
                                  "kernels; use precision=fp32"))
    if next(model.parameters()).device.type != "cpu":
        raise OptionError(Message("error.quantize.cpu_only", "precision=int8 runs on the CPU only; use device=cpu, or "
                                  "precision=bf16 on a GPU"))


def quantize_int8(model: nn.Module, bf16_encoder: bool | None = None, amx_kernel: bool | None = None,
                  bf16_cache: bool | None = None) -> nn.Module:
    """Replace the linear layers of ``model.transformer`` (encoder, decoder, output head) in place with
    :class:`Int8Linear` ones; the model must be an fp32 model on the CPU.

    ``bf16_encoder`` (default: :func:`native_bf16`): the encoder keeps bf16 weights and runs under bf16
    autocast instead. Its big matrices (1,024 frames a window) suit bf16 units, which halve its time; the
    decoder's one-token steps are bound by memory, where int8 weights (half of bf16's bytes) stay ahead.

    ``amx_kernel`` (default: :func:`amx_int8`): inputs of :data:`WIDE_ROWS` rows or more go through oneDNN's
    int8 product (:class:`OneDnnInt8`).

    ``bf16_cache`` (default: :func:`bf16_attention`): the decoder keeps its keys and values in bf16 and attends
    in bf16 (else in fp32).

    The decoder's RMS norms and GELUs also take their cheaper forms for a step's few rows
    (:func:`_lean_elementwise`)."""
    check_int8_runs(model)
    if is_int8(model):
        return model
    if bf16_encoder is None:
        bf16_encoder = native_bf16()
    transformer = model.transformer.eval()
    if bf16_encoder:
        for layer in transformer.model.encoder.modules():
            if isinstance(layer, nn.Linear):
                layer.to(torch.bfloat16)
    amx = amx_int8() if amx_kernel is None else amx_kernel
    reduce_range = seven_bit_activations(amx)
    for name, layer in list(transformer.named_modules()):
        # exactly nn.Linear: a subclass (a LoRA layer) computes more than its weight
        if type(layer) is nn.Linear and not (bf16_encoder and name.startswith("model.encoder.")):  # noqa: E721
            transformer.set_submodule(name, Int8Linear(layer, reduce_range, amx))
    _lean_elementwise(transformer)
    model.kv_dtype = torch.bfloat16 if (bf16_attention() if bf16_cache is None else bf16_cache) else None
    model.encoder_bf16 = bool(bf16_encoder)
    return model


def _lean_elementwise(transformer: nn.Module) -> None:
    """The decoder's RMS norms and GELUs computed with fewer CPU kernels (:class:`EuclideanRMSNorm`,
    :func:`erf_gelu`, for a step's few rows: the same values but for roundings, which int8 already moves): in
    the token loop these small calls cost more than their arithmetic (v32-mini 23.4 -> 22.2 s per minute of
    audio, v32 78.3 -> 75.8: bench/README.md)."""
    for name, module in list(transformer.named_modules()):
        if not name.startswith("model.decoder."):
            continue
        if type(module) is RMSNorm:  # noqa: E721 (exactly: a subclass may compute otherwise)
            transformer.set_submodule(name, EuclideanRMSNorm(module))
        if getattr(module, "act", None) is F.gelu:
            module.act = erf_gelu


def int8_weights(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` (fp32, one row per output channel) as int8 integers and one fp32 scale per row: symmetric, the
    row's largest magnitude over 127.5 (at least fp32's epsilon), zero points 0. These are the numbers of
    torch's per-channel weight observer (``default_per_channel_weight_observer``) that torch's dynamic
    quantization uses, so the int8 model is the one ``torch.ao.quantization.quantize_dynamic`` makes."""
    low, high = torch.aminmax(weight, dim=1)
    scales = (torch.maximum(-low.clamp(max=0), high.clamp(min=0)) / 127.5).clamp(min=torch.finfo(torch.float32).eps)
    # torch.quantize_per_channel's arithmetic (times the fp32 reciprocal, rounded half to even, clamped), in
    # vectorised ops: the same integers (tests/test_quantize.py) in a third of its time (0.1 s for v32)
    return torch.mul(weight, (1.0 / scales)[:, None]).round_().clamp_(-128, 127).to(torch.int8), scales


def _qint8(integers: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """:func:`int8_weights`' numbers as the per-channel qint8 tensor fbgemm's (and qnnpack's) packing takes."""
    with warnings.catch_warnings():  # quantized tensors are deprecated too; torch is pinned (module docstring)
        warnings.filterwarnings("ignore", message=".*quantiz.*deprecated", category=UserWarning)
        return torch._make_per_channel_quantized_tensor(integers, scales.double(),
                                                        torch.zeros(len(scales), dtype=torch.long), 0)


class Int8Linear(nn.Module):
    """An ``nn.Linear`` with int8 weights (:func:`int8_weights`) computed by torch's dynamic int8 op: the
    activations quantized per call with one scale for the tensor, int32 sums, then each output channel's scale
    (``quantized::linear_dynamic``; fbgemm on x86, qnnpack on ARM). The numbers of torch.ao's dynamically
    quantized linear, without its module: its constructor packs a zero weight of full size before the real one
    (~0.3 s of v32's load), and its forward's Python checks cost ~5 us a call (73 calls a v32 decoder step).

    ``reduce_range``: activations quantized to 7 bits, as torch's module does (see :func:`full_range_exact`).
    ``wide``: the :class:`OneDnnInt8` for inputs of :data:`WIDE_ROWS` rows or more (``amx``), or None."""

    def __init__(self, linear: nn.Linear, reduce_range: bool, amx: bool):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        integers, scales = int8_weights(linear.weight.detach().float())
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.packed = torch.ops.quantized.linear_prepack(_qint8(integers, scales), bias)
        self.reduce_range = reduce_range
        self.wide = OneDnnInt8(integers, scales, bias) if amx else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.wide is not None and x.numel() >= WIDE_ROWS * x.shape[-1]:
            return self.wide(x, self.reduce_range)
        return _LINEAR_DYNAMIC(x, self.packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, reduce_range={self.reduce_range}"


class OneDnnInt8:
    """One linear layer's int8 weights prepacked for oneDNN (``onednn::qlinear_pointwise``, the kernel of
    torch.compile's x86 int8 path), computed as the dynamic linear is: the activations quantized per call,
    one scale for the tensor, int32 sums, one scale per output channel."""

    def __init__(self, integers: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None):
        """``integers``, ``scales``: :func:`int8_weights`' (zero points 0)."""
        self.weight = torch.ops.onednn.qlinear_prepack(integers, None)
        self.scales, self.zero_points = scales, torch.zeros(len(scales), dtype=torch.long)
        self.bias = bias

    def __call__(self, x: torch.Tensor, reduce_range: bool) -> torch.Tensor:
        qx = torch.quantize_per_tensor_dynamic(x, torch.quint8, reduce_range)
        return torch.ops.onednn.qlinear_pointwise(qx.int_repr(), qx.q_scale(), qx.q_zero_point(), self.weight,
                                                  self.scales, self.zero_points, self.bias, 1.0, 0, torch.float32,
                                                  "none", [], "")


def seven_bit_activations(amx: bool) -> bool:
    """The ``reduce_range`` an :class:`Int8Linear` takes here: 7-bit activations unless every kernel it may
    call (fbgemm's, and oneDNN's with ``amx``) sums 8-bit ones exactly."""
    return not (full_range_exact() and (not amx or full_range_exact(amx=True)))


@functools.cache
def full_range_exact(amx: bool = False) -> bool:
    """Whether the int8 kernel (fbgemm's, or with ``amx`` :class:`OneDnnInt8`'s) sums activations quantized
    to all 8 bits exactly. Kernels without VNNI add pairs of uint8 x int8 products in saturating 16-bit lanes,
    so torch's module quantizes activations to 7 bits; where the CPU (and fbgemm's choice of code, which
    FBGEMM_ENABLE_INSTRUCTIONS can narrow) sums in 32 bits, 8 bits are exact and halve the rounding. Probed,
    not read off CPU flags: 255s against 127s saturate a 16-bit pair at 64,770."""
    x = torch.full((WIDE_ROWS, 64), 2.0)
    x[0, 0] = 0.0  # the activations' range [0, 2]: 2.0 quantizes to 255
    try:
        integers, scales = int8_weights(torch.ones(8, 64))  # every weight 127
        got = OneDnnInt8(integers, scales, None)(x, False) if amx else _LINEAR_DYNAMIC(
            x, torch.ops.quantized.linear_prepack(_qint8(integers, scales), None), False)
    except RuntimeError:  # an engine that cannot run the probe keeps torch's own 7 bits
        return False
    return bool(torch.allclose(got[1:], x[1].sum().expand_as(got[1:]), rtol=1e-2))


def int8_product(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``layer``'s int8 product as one call bound to its weights, for inputs under :data:`WIDE_ROWS` rows (what
    its forward runs there, without the module call: engine.lean_step); None if ``layer`` is not one of
    :func:`quantize_int8`'s linears."""
    if not isinstance(layer, Int8Linear):
        return None
    return functools.partial(_LINEAR_DYNAMIC, W_prepack=layer.packed, reduce_range=layer.reduce_range)


def is_int8(model: nn.Module) -> bool:
    """Whether :func:`quantize_int8` has been applied to ``model``."""
    return any(isinstance(m, Int8Linear) for m in model.modules())
