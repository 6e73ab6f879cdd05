"""Mapperator engine: everything that knows osu! or the model.

The public names below are imported lazily so that ``import engine`` stays cheap (the desktop
app imports it at start-up; torch is only loaded when a model-facing function is first used).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import AudioError, BeatmapError, Cancelled, MapperatorError, ModelError, OptionError

_LAZY = {
    # beatmaps
    "Beatmap": "engine.beatmap",
    "read_beatmap": "engine.beatmap",
    "write_beatmap": "engine.beatmap",
    "parse_beatmap": "engine.beatmap",
    "read_osz": "engine.beatmap",
    "write_osz": "engine.beatmap",
    "preview_json": "engine.preview",
    # audio
    "load_audio": "engine.audio",
    "read_tags": "engine.audio",
    "audio_duration_ms": "engine.audio",
    # models
    "load_checkpoint": "engine.checkpoint",
    "PRESETS": "engine.presets",
    "DEFAULT_VERSION": "engine.presets",
    # jobs
    "GenerateOptions": "engine.options",
    "generate": "engine.generation",
    "GenerationResult": "engine.generation",
    "Progress": "engine.generation",
    "train": "engine.training",
    "TrainOptions": "engine.training",
    "timing": "engine.timer",
    "TimingResult": "engine.timer",
    "mod": "engine.modding",
    "ModOptions": "engine.modding",
    "evaluate": "engine.evaluation",
    "evaluate_all": "engine.evaluation",
}

__all__ = sorted([*_LAZY, "AudioError", "BeatmapError", "Cancelled", "MapperatorError", "ModelError", "OptionError"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from .audio import audio_duration_ms, load_audio, read_tags
    from .checkpoint import load_checkpoint
    from .generation import GenerationResult, Progress, generate
    from .options import GenerateOptions
    from .presets import DEFAULT_VERSION, PRESETS
    from .modding import ModOptions, mod
    from .evaluation import evaluate, evaluate_all
    from .timer import TimingResult, timing
    from .training import TrainOptions, train
    from .beatmap import Beatmap, parse_beatmap, read_beatmap, read_osz, write_beatmap, write_osz
