"""The random choices behind each training example, as one object.

Upstream draws them from Python's and torch's global generators in the middle of its dataset code;
here every choice goes through a :class:`Draws` object, so that training is reproducible from a seed
(:class:`RandomDraws`), evaluation has no augmentation at all (:class:`FixedDraws`), and a test can
script an exact example.

The numbers (how likely each augmentation is, how strong) are an :class:`Augmentations`, filled from
the version's published recipe and any overrides in :class:`~engine.training.options.TrainOptions`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..presets import VersionPreset
from .recipes import Recipe


@dataclass(frozen=True)
class Augmentations:
    """How likely and how strong each training augmentation is."""

    context_weights: tuple[float, ...] = (1.0,)
    dt_augment_prob: float = 0.0
    dt_augment_range: tuple[float, float] = (1.0, 1.0)
    dt_augment_sqrt: bool = False
    flip_horizontal_prob: float = 0.0
    flip_vertical_prob: float = 0.0
    frame_offset_augment_prob: float = 0.0
    lookback: float = 0.0
    lookback_prob: float = 0.0
    timing_random_offset: int = 0
    snapping_random_prob: float = 0.0
    dropout: dict[str, float] = field(default_factory=dict)  # conditioning input -> chance it is "unknown"

    @classmethod
    def for_version(cls, preset: VersionPreset, recipe: Recipe, **overrides) -> "Augmentations":
        """The published settings of a version; ``overrides`` (None values ignored) replace single numbers."""
        d = preset.data
        r = recipe
        values = dict(
            context_weights=r.context_weights,
            dt_augment_prob=d.dt_augment_prob,
            dt_augment_range=tuple(d.dt_augment_range),
            dt_augment_sqrt=d.dt_augment_sqrt,
            flip_horizontal_prob=d.flip_horizontal_prob,
            flip_vertical_prob=d.flip_vertical_prob,
            frame_offset_augment_prob=r.frame_offset_augment_prob,
            lookback=d.train_lookback,
            lookback_prob=d.lookback_prob,
            timing_random_offset=d.timing_random_offset,
            snapping_random_prob=d.snapping_random_prob,
        )
        dropout = {
            "style": r.class_dropout_prob, "beatmap_idx": r.class_dropout_prob,
            "difficulty": r.diff_dropout_prob,
            "mapper": r.mapper_dropout_prob, "mapper_idx": r.mapper_dropout_prob,
            "year": r.year_dropout_prob, "cs": r.cs_dropout_prob,
            "hold_note_ratio": r.hold_note_ratio_dropout_prob,
            "scroll_speed_ratio": r.scroll_speed_ratio_dropout_prob,
            "descriptor": r.descriptor_dropout_prob,
        }
        for key, value in overrides.items():
            if value is None:
                continue
            if key.endswith("_dropout_prob"):
                name = {"class": ("style", "beatmap_idx"), "diff": ("difficulty",),
                        "mapper": ("mapper", "mapper_idx")}.get(key[: -len("_dropout_prob")],
                                                                 (key[: -len("_dropout_prob")],))
                for n in name:
                    dropout[n] = float(value)
            else:
                values[key] = tuple(value) if isinstance(value, (list, tuple)) else value
        return cls(**values, dropout=dropout)


class Draws(Protocol):
    """Every random choice an example needs."""

    def speed(self) -> float: ...

    def flip(self) -> tuple[bool, bool]: ...

    def template(self, weights: tuple[float, ...]) -> int: ...

    def other_beatmap(self, count: int) -> int: ...

    def frame_offset(self, limit: int) -> int: ...

    def use_lookback(self) -> bool: ...

    def keep(self, what: str) -> bool: ...

    def timing_noise(self, n: int) -> np.ndarray: ...

    def snapping_noise(self, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]: ...


class RandomDraws:
    """Draws from a seeded numpy generator with the probabilities of ``augment``."""

    def __init__(self, augment: Augmentations, rng: np.random.Generator):
        self.a = augment
        self.rng = rng

    def speed(self) -> float:
        a = self.a
        if self.rng.random() >= a.dt_augment_prob:
            return 1.0
        low, high = a.dt_augment_range
        u = self.rng.random()
        return float(low + (high - low) * (np.sqrt(u) if a.dt_augment_sqrt else u))

    def flip(self) -> tuple[bool, bool]:
        return bool(self.rng.random() < self.a.flip_horizontal_prob), bool(self.rng.random() < self.a.flip_vertical_prob)

    def template(self, weights: tuple[float, ...]) -> int:
        w = np.asarray(weights, dtype=float)
        return int(self.rng.choice(len(w), p=w / w.sum()))

    def other_beatmap(self, count: int) -> int:
        return int(self.rng.integers(count))

    def frame_offset(self, limit: int) -> int:
        if self.rng.random() >= self.a.frame_offset_augment_prob:
            return 0
        return int(self.rng.integers(0, limit + 1))

    def use_lookback(self) -> bool:
        return bool(self.rng.random() < self.a.lookback_prob)

    def keep(self, what: str) -> bool:
        return bool(self.rng.random() >= self.a.dropout.get(what, 0.0))

    def timing_noise(self, n: int) -> np.ndarray:
        k = self.a.timing_random_offset
        return self.rng.integers(-k, k + 1, size=n) if k > 0 else np.zeros(n, dtype=np.int64)

    def snapping_noise(self, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(which positions to replace, the replacement snapping classes)."""
        mask = self.rng.random(n) < self.a.snapping_random_prob
        return mask, self.rng.integers(0, classes, size=n)


@dataclass
class FixedDraws:
    """No randomness: evaluation examples (upstream's test split), or a scripted example in tests.

    By default nothing is augmented or dropped, the first template is used and windows start at frame 0.
    ``dropped`` names conditioning values to replace by "unknown"; ``noise`` (an array, consumed from the
    start) offsets time-shift tokens; ``snaps`` maps token positions to the snapping class that replaces
    a snapping token there.
    """

    template_index: int = 0
    offset: int = 0
    lookback: bool = False
    dropped: frozenset[str] = frozenset()
    noise: np.ndarray | None = None
    speed_value: float = 1.0
    flips: tuple[bool, bool] = (False, False)
    other_index: int = 0
    snaps: dict[int, int] = field(default_factory=dict)

    def speed(self) -> float:
        return self.speed_value

    def flip(self) -> tuple[bool, bool]:
        return self.flips

    def template(self, weights: tuple[float, ...]) -> int:
        return self.template_index

    def other_beatmap(self, count: int) -> int:
        return min(self.other_index, count - 1)

    def frame_offset(self, limit: int) -> int:
        return min(self.offset, limit)

    def use_lookback(self) -> bool:
        return self.lookback

    def keep(self, what: str) -> bool:
        return what not in self.dropped

    def timing_noise(self, n: int) -> np.ndarray:
        if self.noise is None:
            return np.zeros(n, dtype=np.int64)
        noise, self.noise = self.noise[:n], self.noise[n:]
        return np.pad(noise, (0, n - len(noise)))

    def snapping_noise(self, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
        mask, values = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        for position, snap in self.snaps.items():
            if position < n:
                mask[position], values[position] = True, snap
        return mask, values
