"""The training objective and its metrics, as upstream computes them.

The loss is upstream's ``Mapperatorinator.forward(labels=...)``: cross-entropy over the output
vocabulary with per-class weights (``rhythm_weight`` on the time-shift tokens, stored in the
checkpoint as ``loss_fn.weight``) and label smoothing, summed over labelled positions and divided by
their number (not by the sum of the weights, unlike PyTorch's "mean").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .examples import IGNORE


def token_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None,
               label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over labelled positions of the weighted, smoothed cross-entropy. logits [B, L, V], labels [B, L]."""
    per_token = F.cross_entropy(logits.transpose(1, 2).float(), labels, weight=class_weights, reduction="none",
                                ignore_index=IGNORE, label_smoothing=label_smoothing)
    count = (labels != IGNORE).sum().clamp(min=1)
    return per_token.sum() / count


@torch.no_grad()
def token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, labelled) counts of greedy predictions (teacher-forced token accuracy)."""
    mask = labels != IGNORE
    correct = (logits.argmax(-1) == labels) & mask
    return int(correct.sum()), int(mask.sum())
