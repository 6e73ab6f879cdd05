"""``precision=int8``: the backbone's linear layers with int8 weights, for decoding on a CPU.

A CPU decoder step is bound by memory traffic: every token reads every decoder weight once (v32: 466 MB
in fp32). Here each ``nn.Linear`` of the encoder, the decoder and the output head becomes torch's dynamically
quantized linear: int8 weights with one scale per output channel, the activations quantized per call, int32
sums (``quantized::linear_dynamic``: fbgemm on x86 from AVX2 up, Windows included; qnnpack on ARM). The
decoder's cached keys and values (cross attention over the 1,024 encoder frames, and self attention) are
kept in bf16, attention computed in bf16: at v32's size they are otherwise half of what a step reads. The
embeddings, norms, the encoder's attention and the conditioning embedders stay fp32.

Why this kernel and not a weight-only one: ``torch._weight_int8pack_mm`` (int8 weights, bf16 activations) is
vectorised only on AVX512 builds without MSVC, is 2-3x slower than fp32 with fp32 activations, and was slower
than the dynamic kernel on the v32 encoder and decoder here (see bench/speed.py and the README's Speed section).
``torch.ao.quantization`` warns that it is deprecated; torch is pinned (pyproject), so the warning is silenced.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from .errors import OptionError
from .messages import Message


def int8_supported() -> bool:
    """Whether this PyTorch build has a quantized-kernel engine (x86/fbgemm, onednn or qnnpack)."""
    return any(e != "none" for e in torch.backends.quantized.supported_engines)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace the linear layers of ``model.transformer`` (encoder, decoder, output head) in place with
    dynamically quantized int8 ones; the model must be an fp32 model on the CPU."""
    if not int8_supported():
        raise OptionError(Message("error.quantize.no_int8_kernels", "precision=int8: this PyTorch build has no int8 "
                                  "kernels; use precision=fp32"))
    if next(model.parameters()).device.type != "cpu":
        raise OptionError(Message("error.quantize.cpu_only", "precision=int8 runs on the CPU only; use device=cpu, or "
                                  "precision=bf16 on a GPU"))
    if is_int8(model):
        return model
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*deprecated", category=UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantize_dynamic(model.transformer, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         inplace=True)
    model.kv_dtype = torch.bfloat16
    return model


def is_int8(model: nn.Module) -> bool:
    """Whether :func:`quantize_int8` has been applied to ``model``."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(m, DynamicLinear) for m in model.modules())
