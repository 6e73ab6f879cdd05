"""The decoder's one-token step on a CPU as plain calls of its kernels.

A CPU decoder step runs ~40 kernels a layer, each on a few kilobytes, between weight reads that stream tens of
megabytes through the caches. The Python around each kernel in the module step (module calls, parameter lookups,
the branches that serve three checkpoint layouts and the GPU) then runs with cold caches too. :class:`LeanStep`
runs the same kernels, in the same order and with the same arguments, bound once a window, and computes the
window's rotary angles once: on this project's 2-core CPU its int8 steps take 0.86x (v32-mini), 0.90x (v32)
and 0.91x (v30) the module step's time. Its logits are the module step's bit for bit (tests/test_lean_step.py),
and in fp32 the golden runs check it against upstream's tokens.

It takes what the token loop feeds on a CPU (one token a row, fewer rows than :data:`engine.quantize.WIDE_ROWS`,
no autocast) for every layout (v32's fused ``Wqkv``, v30/v31's separate projections with rotary positions, v29's
with learned positions and LayerNorms) with the engine's own layers: ``nn.Linear`` or int8 linears, RMS norms or
LayerNorms. Everything else (prompts, GPUs, a LoRA layer left unmerged) keeps
:meth:`Mapperatorinator.decode_step`.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import (ROPEWHISPER, VARWHISPER, WHISPER, DecoderState, EuclideanRMSNorm, LayerNorm, Mapperatorinator,
                    RMSNorm, attend, cross_kv_rows, rotate)
from .quantize import WIDE_ROWS, int8_product

Kernel = Callable[[torch.Tensor], torch.Tensor]


def _product(layer: nn.Module) -> Kernel | None:
    if type(layer) is nn.Linear:  # noqa: E721 (a subclass, e.g. a LoRA layer, may compute more)
        return functools.partial(F.linear, weight=layer.weight, bias=layer.bias)
    return int8_product(layer)


def _norm(layer: nn.Module, dtype: torch.dtype) -> Kernel | None:
    if type(layer) is EuclideanRMSNorm and layer.weight.dtype == dtype:  # int8's norms: its forward is lean
        return layer.forward
    if type(layer) is LayerNorm and layer.weight.dtype == dtype:  # v29's; LayerNorm.forward's casts are no-ops then
        return functools.partial(F.layer_norm, normalized_shape=layer.normalized_shape, weight=layer.weight,
                                 bias=layer.bias, eps=layer.eps)
    # RMSNorm.forward's usual case (input in the weights' dtype), as one call
    if type(layer) is not RMSNorm or layer.weight.dtype != dtype:
        return None
    return functools.partial(torch.rms_norm, normalized_shape=layer.normalized_shape, weight=layer.weight,
                             eps=layer.eps)


class _Layer:
    """One decoder layer's kernels; self-attention's projections either fused (``qkv``: v32) or apart (``q``,
    ``k``, ``v``: v30/v31), the other None."""

    __slots__ = ("norm_self", "qkv", "q", "k", "v", "out_self", "norm_cross", "q_cross", "out_cross", "norm_ffn",
                 "fc1", "fc2")

    def __init__(self, kernels: dict[str, Kernel | None]):
        for name in self.__slots__:
            setattr(self, name, kernels.get(name))


class LeanStep:
    """A window's decoder step for one token a row, the module step's kernels called directly. Build with
    :func:`lean_step`."""

    def __init__(self, model: Mapperatorinator, state: DecoderState, layers: list[_Layer], final_norm: Kernel,
                 head: Kernel):
        decoder = model.transformer.model.decoder
        self.model, self.layers, self.final_norm, self.head = model, layers, final_norm, head
        self.heads = decoder.cfg.decoder_heads
        self.act = decoder.layers[0].act  # the layers' own (int8 swaps in erf_gelu)
        self.embed = model.decoder_embedder
        # The rotary angles of every position the window may reach, computed once (the same elementwise kernels
        # as a step's own: the same numbers); a step takes its row of each table as views. Not where a dynamic
        # rotary (v30/v31) would scale them past its trained length: there each step's own length decides.
        self.positions, self.first = decoder.positions, state.length
        # v29's learned positions: a step adds its row of the table (what the module step's lookup gives)
        self.learned = decoder.embed_positions.weight if decoder.cfg.flavour == WHISPER else None
        max_len = state.key_padding.shape[1]
        self.no_angles = None if self.positions.rotary else [None] * len(layers)  # v29: no rotary positions
        self.tables: list | None = None
        rotaries = self.positions.rotary.values()
        if rotaries and not any(rotary.reads_positions(max_len) for rotary in rotaries):
            per_layer = self.positions.angles(torch.arange(self.first, max_len), model.dtype)
            self.tables = list({id(angles): angles for angles in per_layer}.values())
            self.table_of_layer = [next(i for i, t in enumerate(self.tables) if t is a) for a in per_layer]
        # Rows without padding stay so (steps add real tokens, rows only leave), and global layers then need no
        # mask: step_inputs would find that every step, reading the padding on the host.
        self.no_masks = None
        if bool(state.key_padding.all()) and all(window is None for window in self.positions.windows):
            self.no_masks = [None] * len(layers)

    def __call__(self, ids: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """:meth:`Mapperatorinator.decode_step` for ``ids`` [batch, 1]: the logits [batch, vocab]."""
        masks = self.no_masks or self.model.step_inputs(1, state)[1]
        x = self.embed(ids)
        if self.learned is not None:
            self.model.check_length(state.length + 1)  # the table's end (step_inputs checks it where it runs)
            x = x + self.learned[state.length: state.length + 1].to(x.dtype)
        b, t, d = x.shape
        heads, head_dim = self.heads, d // self.heads
        row = state.length - self.first
        if self.no_angles is not None:
            angles = self.no_angles
        elif self.tables is not None and row < len(self.tables[0][0]):
            row_angles = [(cos[row: row + 1], sin[row: row + 1]) for cos, sin in self.tables]
            angles = [row_angles[i] for i in self.table_of_layer]
        else:  # past the window's length (the cache may grow on), or a dynamic rotary
            angles = self.positions.angles(torch.arange(state.length, state.length + 1), x.dtype)
        for layer, rope, mask, cross_kv, cache in zip(self.layers, angles, masks, state.cross_kv, state.caches):
            h = layer.norm_self(x)
            if layer.qkv is not None:  # queries and keys rotated in one pass (Attention.project_qkv)
                qkv = layer.qkv(h)
                qk = rotate(qkv[..., : 2 * d].view(b, t, 2, heads, head_dim), *rope)
                q, k = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2)
                v = qkv[..., 2 * d:].view(b, t, heads, head_dim).transpose(1, 2)
            else:
                q, k, v = (project(h).view(b, t, heads, head_dim).transpose(1, 2)
                           for project in (layer.q, layer.k, layer.v))
                if rope is not None:
                    q, k = rotate(q, *rope), rotate(k, *rope)
            k, v = cache.append(k, v)
            attended = attend(q, k, v, mask)
            x = x + layer.out_self(attended.transpose(1, 2).reshape(b, t, d))
            q = layer.q_cross(layer.norm_cross(x)).view(b, t, heads, head_dim).transpose(1, 2)
            x = x + layer.out_cross(attend(q, *cross_kv_rows(cross_kv, b), None).transpose(1, 2).reshape(b, t, d))
            x = x + layer.fc2(self.act(layer.fc1(layer.norm_ffn(x))))
        return self.head(self.final_norm(x))[:, -1]


def lean_step(model: Mapperatorinator, state: DecoderState) -> LeanStep | None:
    """A :class:`LeanStep` for the window ``state`` holds (its prompt fed), or None where the module step must
    run (see the module's text)."""
    decoder = model.transformer.model.decoder
    flavour = decoder.cfg.flavour
    if (flavour not in (VARWHISPER, ROPEWHISPER, WHISPER) or model.device.type != "cpu"
            or state.key_padding.shape[0] >= WIDE_ROWS or torch.is_autocast_enabled("cpu")):
        return None
    dtype = model.dtype
    layers = []
    for layer in decoder.layers:
        attn, cross = layer.self_attn, layer.cross
        if flavour == VARWHISPER:
            projections = {"qkv": _product(attn.Wqkv), "out_self": _product(attn.Wo),
                           "q_cross": _product(cross.Wq), "out_cross": _product(cross.Wo)}
        else:
            projections = {"q": _product(attn.q_proj), "k": _product(attn.k_proj), "v": _product(attn.v_proj),
                           "out_self": _product(attn.out_proj), "q_cross": _product(cross.q_proj),
                           "out_cross": _product(cross.out_proj)}
        kernels = {
            "norm_self": _norm(layer.self_attn_layer_norm, dtype), "norm_cross": _norm(layer.cross_norm, dtype),
            "norm_ffn": _norm(layer.final_layer_norm, dtype), "fc1": _product(layer.fc1), "fc2": _product(layer.fc2),
            **projections,
        }
        if any(kernel is None for kernel in kernels.values()):
            return None
        layers.append(_Layer(kernels))
    final_norm, head = _norm(decoder.layer_norm, dtype), _product(model.transformer.proj_out)
    if final_norm is None or head is None:
        return None
    return LeanStep(model, state, layers, final_norm, head)
