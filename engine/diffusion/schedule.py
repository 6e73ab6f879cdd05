"""The noise schedule and one reverse step of the respaced sampler.

osu-diffusion-v2 is trained with a 1000-step squared-cosine schedule and only ever sees its last
10% (the 100 least noisy steps); sampling keeps those 100 steps (respacing ``[100, 0, 0, ...]``)
and starts from the decoder's grid positions instead of noise. The model predicts the noise and a
variance between the posterior's and beta's (learned range). Tables are computed in float64 and
used in float32, as the published sampler does, so steps reproduce it to float rounding.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

MAX_BETA = 0.999


def squared_cosine_betas(steps: int) -> np.ndarray:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), MAX_BETA) for i in range(steps)])


def linear_betas(steps: int) -> np.ndarray:
    scale = 1000 / steps
    return np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)


SCHEDULES = {"squaredcos_cap_v2": squared_cosine_betas, "linear": linear_betas}


def kept_steps(total: int, section_counts: Sequence[int]) -> list[int]:
    """The original steps kept when ``total`` steps are cut into equal sections and section i is
    strided down to ``section_counts[i]`` evenly spaced steps (0 keeps none of that section)."""
    size, extra = divmod(total, len(section_counts))
    start, kept = 0, set()
    for i, count in enumerate(section_counts):
        length = size + (1 if i < extra else 0)
        if length < count:
            raise ValueError(f"cannot take {count} steps from a section of {length}")
        stride = 1 if count <= 1 else (length - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.add(start + round(position))
            position += stride
        start += length
    return sorted(kept)


class RespacedSchedule:
    """The reverse process over the kept steps; index ``i`` (0 = least noisy) of ``len(self)`` steps."""

    def __init__(self, schedule: str = "squaredcos_cap_v2", total_steps: int = 1000,
                 sections: Sequence[int] = (100, 0, 0, 0, 0, 0, 0, 0, 0, 0)):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
        base = np.cumprod(1.0 - SCHEDULES[schedule](total_steps))
        self.model_steps = kept_steps(total_steps, list(sections))
        betas, last = [], 1.0
        for step in self.model_steps:
            betas.append(1 - base[step] / last)
            last = base[step]
        betas = np.array(betas, dtype=np.float64)
        alphas_cumprod = np.cumprod(1.0 - betas)
        prev = np.append(1.0, alphas_cumprod[:-1])
        posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
        f32 = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64)).float()  # noqa: E731
        self.recip = f32(np.sqrt(1.0 / alphas_cumprod))
        self.recip_minus_one = f32(np.sqrt(1.0 / alphas_cumprod - 1))
        self.coef_start = f32(betas * np.sqrt(prev) / (1.0 - alphas_cumprod))
        self.coef_current = f32((1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod))
        clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:])) if len(betas) > 1 else np.zeros(1)
        self.min_log = f32(clipped)
        self.max_log = f32(np.log(betas))

    def __len__(self) -> int:
        return len(self.model_steps)

    def predict_start(self, i: int, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.recip[i] * x - self.recip_minus_one[i] * eps

    def step(self, i: int, x: torch.Tensor, start: torch.Tensor, variance_frac_raw: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
        """x at step i -> x at step i-1, given the (processed) start prediction and the model's variance output."""
        frac = (variance_frac_raw + 1) / 2
        log_variance = frac * self.max_log[i] + (1 - frac) * self.min_log[i]
        mean = self.coef_start[i] * start + self.coef_current[i] * x
        if i == 0:  # the last step adds no noise
            return mean
        return mean + torch.exp(0.5 * log_variance) * noise
