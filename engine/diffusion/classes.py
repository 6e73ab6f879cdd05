"""The diffusion model's conditioning: a multi-hot class vector built from the map's metadata.

The vector is laid out as [beatmap styles | difficulty | mapper | descriptors | circle size], each
block ending with its "unknown" class. This is what ``tokenizer.pkl`` of osu-diffusion describes;
only the fields needed to build vectors are kept.

One deliberate difference from upstream: a ``mapper_id`` selects that mapper's class. Upstream
looks the mapper id up as if it were a beatmap id, so its diffusion pass always used the unknown
mapper (or, by coincidence, the mapper of a beatmap with that id).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..messages import Message

INT_FIELDS = ("num_classes", "num_diff_classes", "max_difficulty", "num_mapper_classes",
              "num_descriptor_classes", "num_cs_classes")


@dataclass(frozen=True)
class ClassVocabulary:
    num_classes: int = 0  # beatmap style classes (0 in osu-diffusion-v2)
    num_diff_classes: int = 0
    max_difficulty: float = 0
    num_mapper_classes: int = 0
    num_descriptor_classes: int = 0
    num_cs_classes: int = 0
    beatmap_idx: Mapping[int, int] = field(default_factory=dict)
    mapper_idx: Mapping[int, int] = field(default_factory=dict)
    descriptor_idx: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "ClassVocabulary":
        """From the tokenizer's state dict (as pickled in ``tokenizer.pkl``); raises ValueError naming a bad field."""
        missing = [key for key in ("num_classes", "num_diff_classes", "max_difficulty") if key not in state]
        if missing:
            raise ValueError(Message("error.diffusion.tokenizer_missing", "missing {fields}",
                                     fields=", ".join(missing)))
        values: dict[str, Any] = {}
        for key in INT_FIELDS:
            value = state.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(Message("error.diffusion.tokenizer_count", "{key} must be a count, got {value}",
                                         key=key, value=repr(value)))
            values[key] = value
        for key, key_type, value_type in (("beatmap_idx", int, int), ("mapper_idx", int, int), ("descriptor_idx", str, int)):
            mapping = state.get(key, {})
            if not isinstance(mapping, Mapping) or not all(
                    isinstance(k, key_type) and isinstance(v, value_type) for k, v in mapping.items()):
                raise ValueError(Message("error.diffusion.tokenizer_mapping", "{key} must map {key_type} to "
                                         "{value_type}", key=key, key_type=key_type.__name__, value_type=value_type.__name__))
            values[key] = dict(mapping)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = {key: getattr(self, key) for key in INT_FIELDS}
        data["beatmap_idx"] = sorted(self.beatmap_idx.items())  # JSON keys are strings: keep int ids as pairs
        data["mapper_idx"] = sorted(self.mapper_idx.items())
        data["descriptor_idx"] = self.descriptor_idx
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ClassVocabulary":
        state = dict(data)
        state["beatmap_idx"] = {int(k): int(v) for k, v in data.get("beatmap_idx", [])}
        state["mapper_idx"] = {int(k): int(v) for k, v in data.get("mapper_idx", [])}
        return cls.from_state(state)

    @property
    def size(self) -> int:
        return (self.num_classes + self.num_diff_classes + self.num_mapper_classes + self.num_descriptor_classes
                + self.num_cs_classes)

    def vector(self, *, difficulty: float | None = None, mapper_id: int | None = None,
               descriptors: Sequence[str] | None = None, circle_size: float | None = None,
               beatmap_id: int | None = None) -> torch.Tensor:
        """The multi-hot class vector (float32, ``size`` long). Unknown values use the block's unknown class;
        descriptors the model does not know are skipped (all unknown: the unknown descriptor)."""
        v = torch.zeros(self.size)
        base = 0
        if self.num_classes:
            v[self.beatmap_idx.get(beatmap_id, self.num_classes - 1) if beatmap_id is not None else self.num_classes - 1] = 1
        base += self.num_classes
        if self.num_diff_classes:
            top = self.num_diff_classes - 2
            index = top + 1 if difficulty is None else int(np.clip(int(difficulty * top / self.max_difficulty), 0, top))
            v[base + index] = 1
        base += self.num_diff_classes
        if self.num_mapper_classes:
            v[base + self.mapper_idx.get(mapper_id, self.num_mapper_classes - 1)] = 1
        base += self.num_mapper_classes
        if self.num_descriptor_classes:
            known = [self.descriptor_idx[d] for d in descriptors or () if d in self.descriptor_idx]
            for index in known or [self.num_descriptor_classes - 1]:
                v[base + index] = 1
        base += self.num_descriptor_classes
        if self.num_cs_classes:
            top = self.num_cs_classes - 2
            index = top + 1 if circle_size is None else int(np.clip(int(circle_size * top / 10), 0, top))
            v[base + index] = 1
        return v
