"""The precision the diffusion model runs in, and the DiT prepared for it.

A DiT forward pass takes every object of a window at once (a minute of a dense map: ~620 entries, twice with
the unconditional row), so unlike a decoder step it is bound by arithmetic, as the v32 encoder is, and each
precision pays where the CPU has the units for it (bench/diffusion.py prints the speed and the positions'
differences from fp32):

- ``fp32``: the published model's own numbers, ``nn.MultiheadAttention`` included (the golden tests).
- ``bf16``: the blocks' linear layers (:class:`Bf16Linear`) and their attention in bf16; the norms, the
  residual stream and the conditioning path stay fp32. On CPUs with bf16 matrix units
  (:func:`engine.quantize.native_bf16`) a pass takes about a quarter of fp32's time.
- ``int8`` (CPU only): the blocks' linear layers with int8 weights (:class:`engine.quantize.Int8Linear`); on
  CPUs without bf16 units (AVX2) a pass takes about half of fp32's time.

Both faster precisions also take the attention through torch's fused ``scaled_dot_product_attention``
(:class:`FusedAttention`), which skips the masked scores' softmax that ``nn.MultiheadAttention`` materialises,
and the sampler then skips the unconditional row at guidance 1 (``DiffusionOptions.skip_unconditional``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError
from ..messages import Message
from .dit import DiT

DIFFUSION_PRECISIONS = ("fp32", "bf16", "int8")


def diffusion_precision(device: torch.device, precision: str) -> str:
    """The DiT's precision for a job whose models run in ``precision`` (already resolved) on ``device``: fp32
    stays fp32; bf16 and amp run the DiT in bf16; int8 (the CPU's default) runs it in bf16 where the CPU
    multiplies bf16 natively and in int8 elsewhere."""
    if precision in ("bf16", "amp"):
        return "bf16"
    if precision == "int8" and device.type == "cpu":
        from ..quantize import int8_supported, native_bf16

        if native_bf16():
            return "bf16"
        return "int8" if int8_supported() else "fp32"
    return "fp32"


# Queries per fused attention call under a banded mask: the fastest of 64, 128 and 256 in fp32 (618 and 1,024
# entries) and in bf16 at 1,024 (256 was 10 % faster in bf16 at 618).
QUERY_CHUNK = 128


class FusedAttention(nn.Module):
    """A DiT block's self-attention with torch's fused attention kernel; ``allowed`` (L, L) says which entries
    each entry may attend to. Its two products are plain ``nn.Linear`` (queries, keys and values in one; the
    output), so a precision converts them as it converts the others. Under the sampler's banded mask (each
    entry sees the 128 on either side) it attends :data:`QUERY_CHUNK` queries at a time over only the keys
    they may see: at a window's 1,024 entries in fp32 30 -> 16 ms a call. The same numbers as the
    ``nn.MultiheadAttention`` it replaces within fp32 roundings (~1e-6), not bit for bit."""

    def __init__(self, attention: nn.MultiheadAttention):
        super().__init__()
        width = attention.embed_dim
        self.heads = attention.num_heads
        self.in_proj = nn.Linear(width, 3 * width, device="meta")  # no initialisation (nor draws from torch's RNG)
        self.in_proj.weight, self.in_proj.bias = attention.in_proj_weight, attention.in_proj_bias
        self.out_proj = attention.out_proj
        self._spans: tuple[torch.Tensor, list[tuple[int, int, int, int]]] | None = None  # (mask, its spans)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        b, n, width = x.shape
        q, k, v = self.in_proj(x).view(b, n, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if allowed is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = torch.cat([F.scaled_dot_product_attention(q[:, :, q0:q1], k[:, :, k0:k1], v[:, :, k0:k1],
                                                            attn_mask=allowed[q0:q1, k0:k1])
                             for q0, q1, k0, k1 in self.spans(allowed)], dim=2)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, width))

    def spans(self, allowed: torch.Tensor) -> list[tuple[int, int, int, int]]:
        """(first query, end, first key, end) for each chunk of queries: the keys any of them may see (the
        sampler passes one mask for all of a window's steps, so they are found once a window)."""
        if self._spans is None or self._spans[0] is not allowed:
            spans = []
            for q0 in range(0, allowed.shape[0], QUERY_CHUNK):
                q1 = min(q0 + QUERY_CHUNK, allowed.shape[0])
                seen = allowed[q0:q1].any(0).nonzero().flatten().tolist() or [0, allowed.shape[1] - 1]
                spans.append((q0, q1, seen[0], seen[-1] + 1))
            self._spans = (allowed, spans)
        return self._spans[1]


class Bf16Linear(nn.Module):
    """An ``nn.Linear`` with bf16 weights that takes its input in bf16 and gives bf16 (as autocast would,
    without casting the weights on every call)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16),
                                                                  requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias)


def _block_linears(dit: DiT) -> list[str]:
    """The blocks' attention and feed-forward products, where the time goes: each is applied to every entry of
    the window. The context embedding (one product of 528 inputs), the conditioning path (a row or two a
    pass) and the output layer stay fp32."""
    return [name for name, layer in dit.named_modules()
            if isinstance(layer, nn.Linear) and name.startswith("blocks.") and (".attn." in name or ".mlp." in name)]


def prepare_dit(dit: DiT, precision: str) -> DiT:
    """``dit`` (fp32, as loaded) made ready for ``precision``, in place. bf16 and int8 swap in
    :class:`FusedAttention`, then replace the blocks' linear layers with :class:`Bf16Linear` or
    :class:`engine.quantize.Int8Linear` ones."""
    if precision not in DIFFUSION_PRECISIONS:
        raise OptionError(Message("error.runtime.bad_precision", "precision={precision} is not one of {choices}",
                                  precision=repr(precision), choices=", ".join(DIFFUSION_PRECISIONS)))
    if precision == "fp32":
        return dit
    if precision == "int8":
        from ..quantize import Int8Linear, amx_int8, check_int8_runs, seven_bit_activations

        check_int8_runs(dit)
        amx = amx_int8()
        reduce_range = seven_bit_activations(amx)
        convert = lambda layer: Int8Linear(layer, reduce_range, amx)  # noqa: E731
    else:
        convert = Bf16Linear
    for block in dit.blocks:
        if isinstance(block.attn, nn.MultiheadAttention):
            block.attn = FusedAttention(block.attn)
    for name in _block_linears(dit):
        dit.set_submodule(name, convert(dit.get_submodule(name)))
    return dit
