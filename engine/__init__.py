"""Mapperator engine: everything that knows osu! or the model.

The public names below are imported lazily so that ``import engine`` stays cheap (the desktop
app imports it at start-up; torch is only loaded when a model-facing function is first used).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import AudioError, BeatmapError, Cancelled, MapperatorError, ModelError, OptionError
from .messages import Message

_LAZY = {
    # beatmaps
    "Beatmap": "engine.beatmap",
    "read_beatmap": "engine.beatmap",
    "write_beatmap": "engine.beatmap",
    "parse_beatmap": "engine.beatmap",
    "read_osz": "engine.beatmap",
    "write_osz": "engine.beatmap",
    "preview_json": "engine.preview",
    "HitCircle": "engine.beatmap",
    "Slider": "engine.beatmap",
    "Spinner": "engine.beatmap",
    "HoldNote": "engine.beatmap",
    "mania_column": "engine.beatmap",
    "star_rating": "engine.beatmap_stats",
    "editor_timestamp": "engine.suggestions",
    "GAMEMODE_NAMES": "engine.gamemodes",
    "gamemode_index": "engine.gamemodes",
    # a beatmap's set on disk
    "set_files": "engine.mapsets",
    "set_folder_name": "engine.mapsets",
    "install_mapset": "engine.mapsets",
    "pack_osz": "engine.mapsets",
    # audio
    "load_audio": "engine.audio",
    "read_tags": "engine.audio",
    "audio_duration_ms": "engine.audio",
    # models
    "load_checkpoint": "engine.checkpoint",
    "PRESETS": "engine.presets",
    "DEFAULT_VERSION": "engine.presets",
    "VersionPreset": "engine.presets",
    "ContextType": "engine.tokenizer",
    "Tokenizer": "engine.tokenizer",
    "CheckpointState": "engine.checkpoint_files",
    "checkpoint_state": "engine.checkpoint_files",
    "InstalledModel": "engine.model_files",
    "find_models": "engine.model_files",
    "model_folder": "engine.model_files",
    "Vocabulary": "engine.model_files",
    "model_vocabulary": "engine.model_files",
    "download_model": "engine.model_files",
    "fetch_model": "engine.model_files",
    "resolve_source": "engine.checkpoint",
    "PARTIAL_SUFFIX": "engine.hub_resume",
    # jobs
    "Eta": "engine.progress",
    "eta_text": "engine.progress",
    "GenerateOptions": "engine.options",
    "PRECISION_CHOICES": "engine.options",
    "PATH_OPTIONS": "engine.options",
    "build_options": "engine.options",
    "parse_overrides": "engine.options",
    "options_to_words": "engine.options",
    "check_generate_options": "engine.validation",
    "check_output_writable": "engine.beatmap.files",
    "generate": "engine.generation",
    "auto_device_type": "engine.runtime",
    "GenerationResult": "engine.generation",
    "Progress": "engine.generation",
    "train": "engine.training",
    "TrainOptions": "engine.training",
    "train_from_words": "engine.training",
    "timing": "engine.timing_job",
    "TimingResult": "engine.timing_job",
    "TimingOptions": "engine.timing_job",
    "mod": "engine.modding",
    "ModOptions": "engine.modding",
    "evaluate": "engine.evaluation",
    "evaluate_all": "engine.evaluation",
    "check_result": "engine.result_check",
    "generate_mapset": "engine.mapset_job",
    "MapsetOptions": "engine.mapset_job",
    "MapsetResult": "engine.mapset_job",
    "difficulty_name": "engine.mapset_job",
    "discard_variants": "engine.mapset_job",
}

__all__ = sorted([*_LAZY, "AudioError", "BeatmapError", "Cancelled", "MapperatorError", "Message", "ModelError",
                  "OptionError"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from .audio import audio_duration_ms, load_audio, read_tags
    from .beatmap import HitCircle, HoldNote, Slider, Spinner, mania_column
    from .beatmap_stats import star_rating
    from .checkpoint import load_checkpoint, resolve_source
    from .gamemodes import GAMEMODE_NAMES, gamemode_index
    from .hub_resume import PARTIAL_SUFFIX
    from .mapsets import install_mapset, pack_osz, set_files, set_folder_name
    from .checkpoint_files import CheckpointState, checkpoint_state
    from .model_files import (InstalledModel, Vocabulary, download_model, fetch_model, find_models, model_folder,
                              model_vocabulary)
    from .suggestions import editor_timestamp
    from .tokenizer import ContextType, Tokenizer
    from .validation import check_generate_options
    from .beatmap.files import check_output_writable
    from .generation import GenerationResult, Progress, generate
    from .progress import Eta, eta_text
    from .options import PATH_OPTIONS, GenerateOptions, build_options, options_to_words, parse_overrides
    from .presets import DEFAULT_VERSION, PRESETS, VersionPreset
    from .modding import ModOptions, mod
    from .evaluation import evaluate, evaluate_all
    from .mapset_job import MapsetOptions, MapsetResult, difficulty_name, discard_variants, generate_mapset
    from .timing_job import TimingOptions, TimingResult, timing
    from .training import TrainOptions, train, train_from_words
    from .beatmap import Beatmap, parse_beatmap, read_beatmap, read_osz, write_beatmap, write_osz
