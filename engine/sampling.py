"""The next token from a step's filtered scores: the argmax, or the draw ``torch.multinomial`` makes.

``torch.multinomial`` draws one sample a row as argmax(p / q) with q ~ Exp(1) drawn from the random stream.
Here the same two halves are split: :func:`draw_noise` draws q (host work: a random stream lives on the host)
and :func:`choose` takes the argmax (device work, which a CUDA graph can replay). The same stream gives the
same tokens as ``torch.multinomial``, so seeded runs still draw upstream's tokens.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .tokenizer import PAD_ID

Streams = torch.Generator | Sequence[torch.Generator | None] | None


def draw_noise(noise: torch.Tensor, streams: Streams, skip: Sequence[bool] = ()) -> torch.Tensor:
    """Fill ``noise`` [rows, vocab] with the exponential draws ``torch.multinomial`` makes: for the whole batch
    from one stream (a generator, or None for torch's default one), or row by row from each row's own stream (a
    list), leaving out the rows ``skip`` marks (a stopped row draws nothing more)."""
    if isinstance(streams, (list, tuple)):
        for row, stream in enumerate(streams):
            if not (skip and skip[row]):
                noise[row: row + 1].exponential_(1, generator=stream)
    else:
        noise.exponential_(1, generator=streams)
    return noise


def choose(scores: torch.Tensor, noise: torch.Tensor | None, done: torch.Tensor, invalid: torch.Tensor,
           host: bool = False) -> torch.Tensor:
    """The next token of each row: the argmax of ``scores`` (``noise`` None), or the draw from their softmax
    for ``noise`` from :func:`draw_noise`. Without ``torch.multinomial``'s own checks: they cost a dozen kernels a
    step, and on a GPU a failed one is a device-side assert that ends the process's whole CUDA context. A row
    whose scores hold a NaN, an infinity or nothing but -inf (no token to choose) sets ``invalid`` (a 0-dim bool
    tensor, for the caller to read once) instead, greedy or sampled. Rows ``done`` get PAD. ``host``: the
    tensors are on the CPU, run eagerly, where reading a few numbers costs less than the operations that keep
    the check and the stops on the device (six of them)."""
    best = scores.amax(dim=-1)  # NaN where any score is, +inf where one is, -inf where all are
    if host:
        stopped = done.tolist()
        if not all(math.isfinite(b) or s for b, s in zip(best.tolist(), stopped)):
            invalid.fill_(True)
    else:
        best = best.masked_fill(done, 0.0)
        invalid.logical_or_((best - best).isnan().any())  # x - x is NaN just where x is not finite: 2 kernels, not 4
    if noise is None:
        token = scores.argmax(dim=-1)
    else:
        token = F.softmax(scores, dim=-1).div_(noise).argmax(dim=-1)
    return token.masked_fill(done, PAD_ID) if not host or any(stopped) else token


def default_stream(device: torch.device) -> torch.Generator:
    """torch's own random stream for ``device`` (what a draw without a generator uses)."""
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator
