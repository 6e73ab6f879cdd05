"""The osu-diffusion position model: a DiT over one sequence of hit objects.

Each entry of the sequence is one object (circle, slider head, anchor, slider end, spinner) with its
(x, y) in [-1, 1]. The model sees sinusoidal embeddings of the positions next to a fixed context
per entry (time, distance and object type), and predicts the noise and the variance interpolation
for every position, conditioned through adaLN-Zero modulation on the diffusion step and a multi-hot
class vector (difficulty, mapper, descriptors, circle size).

Parameter names follow the published ``model_ema.pkl`` state dict so it loads unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..messages import Message

POSITION_FREQUENCIES = 128  # sinusoid size per coordinate
STEP_FREQUENCIES = 256  # sinusoid size of the diffusion step
# Published DiT sizes: width -> heads (the width alone names the variant).
HEADS_BY_WIDTH = {1152: 16, 1024: 16, 768: 12, 384: 6}


def sinusoid(values: torch.Tensor, size: int, max_period: float = 10000.0) -> torch.Tensor:
    """(N,) values -> (N, size) embedding: cosines then sines over geometric frequencies."""
    half = size // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    args = values[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@dataclass(frozen=True)
class DiTShape:
    width: int
    depth: int
    heads: int
    context_size: int
    class_size: int
    channels: int = 2  # x and y
    mlp_ratio: float = 4.0


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class _Attention(nn.MultiheadAttention):
    """Batch-first self-attention; ``allowed`` (L, L) says which entries each entry may attend to."""

    def __init__(self, width: int, heads: int):
        super().__init__(width, heads, batch_first=True)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        mask = None if allowed is None else ~allowed
        return super().forward(x, x, x, need_weights=False, attn_mask=mask)[0]


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class _Block(nn.Module):
    def __init__(self, shape: DiTShape):
        super().__init__()
        w = shape.width
        self.attn = _Attention(w, shape.heads)
        self.mlp = _Mlp(w, int(w * shape.mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(w, 6 * w))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(cond).chunk(6, dim=1)
        w = x.shape[-1]
        x = x + gate_a.unsqueeze(1) * self.attn(_modulate(F.layer_norm(x, (w,), eps=1e-6), shift_a, scale_a), allowed)
        return x + gate_m.unsqueeze(1) * self.mlp(_modulate(F.layer_norm(x, (w,), eps=1e-6), shift_m, scale_m))


class _FinalLayer(nn.Module):
    def __init__(self, width: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(width, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(cond).chunk(2, dim=1)
        return self.linear(_modulate(F.layer_norm(x, (x.shape[-1],), eps=1e-6), shift, scale))


class _Mlp2(nn.Module):
    """Linear-SiLU-Linear held in a ``Sequential`` named as in the checkpoint."""

    def __init__(self, inputs: int, width: int, name: str):
        super().__init__()
        self.name = name
        setattr(self, name, nn.Sequential(nn.Linear(inputs, width), nn.SiLU(), nn.Linear(width, width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.name)(x)


class _ContextEmbedder(nn.Module):
    def __init__(self, shape: DiTShape):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(shape.channels * POSITION_FREQUENCIES + shape.context_size, shape.width))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        freq = sinusoid((x * 512).flatten(), POSITION_FREQUENCIES).reshape(n, t, d * POSITION_FREQUENCIES)
        return self.mlp(torch.cat((freq, context), -1))


class DiT(nn.Module):
    """``forward(x (B,2,L), step (B,), context (B,E,L), classes (B,C), allowed (L,L) bool) -> (B,4,L)``:
    per position the predicted noise (2 channels) then the variance interpolation (2 channels)."""

    def __init__(self, shape: DiTShape):
        super().__init__()
        self.shape = shape
        self.context_embedder = _ContextEmbedder(shape)
        self.t_embedder = _Mlp2(STEP_FREQUENCIES, shape.width, "mlp")
        self.y_embedder = _Mlp2(shape.class_size, shape.width, "class_embedding")
        self.blocks = nn.ModuleList(_Block(shape) for _ in range(shape.depth))
        self.final_layer = _FinalLayer(shape.width, 2 * shape.channels)

    def forward(self, x, step, context, classes, allowed=None) -> torch.Tensor:
        h = self.context_embedder(x.transpose(1, 2), context.transpose(1, 2))
        cond = self.t_embedder(sinusoid(step, STEP_FREQUENCIES)) + self.y_embedder(classes)
        for block in self.blocks:
            h = block(h, cond, allowed)
        return self.final_layer(h, cond).transpose(1, 2)


def shape_from_state_dict(state: dict[str, torch.Tensor], heads: int | None = None) -> DiTShape:
    """The DiT's sizes read from its weights (the head count from the published width table)."""
    width, first_inputs = state["context_embedder.mlp.0.weight"].shape
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    heads = heads or HEADS_BY_WIDTH.get(width)
    if heads is None or width % heads:
        raise ValueError(Message("error.diffusion.unpublished_width", "a DiT {width} wide is not a published size; "
                                 "give its head count", width=width))
    return DiTShape(
        width=width,
        depth=depth,
        heads=heads,
        context_size=first_inputs - 2 * POSITION_FREQUENCIES,
        class_size=state["y_embedder.class_embedding.0.weight"].shape[1],
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / width if depth else 4.0,
    )
