"""Training options: one frozen dataclass, filled from ``key=value`` words and YAML files.

Names follow upstream's training config where one exists, flattened: ``data.train_dataset_path`` is
``train_dataset_path``, ``optim.base_lr`` is ``base_lr``, ``lora.r`` is ``lora_r``. An upstream YAML
(``configs/train/lora_v32.yaml`` style, nested groups and a ``defaults:`` list) is read too: its groups
are flattened and settings that have no meaning here (data flags fixed by the version, hydra,
profiling) are reported and ignored. ``None`` means "the version's published value".
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import OptionError
from ..presets import PRESETS

log = logging.getLogger(__name__)

DATASET_TYPES = ("auto", "mmrs", "osz", "songs")
SCHEDULERS = ("cosine", "linear", "constant")
MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")
LOGGERS = ("none", "wandb", "tensorboard")
DESCRIPTOR_SOURCES = ("auto", "omdb", "user_tags", "none")
PATH_OPTIONS = frozenset({"pretrained_path", "checkpoint_path", "tokenizer_path", "train_dataset_path",
                          "test_dataset_path", "descriptors_path", "output_dir", "run_name"})


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run can be asked for."""

    # the model
    version: str = "v32"  # which published recipe (data flags, vocabulary, augmentations) to train
    pretrained_path: str | None = None  # start from this checkpoint (folder, hub repo id or version name)
    pretrained_gamemode: int | None = None  # use its gamemode=N subfolder when it has one
    revision: str | None = None
    checkpoint_path: str | None = None  # resume a run from one of its checkpoint folders
    tokenizer_path: str | None = None  # from scratch: reuse this checkpoint's vocabulary instead of building one
    d_model: int | None = None  # from scratch: backbone size (None = the version's)
    encoder_layers: int | None = None
    decoder_layers: int | None = None
    attention_heads: int | None = None
    ffn_dim: int | None = None
    # the data
    dataset_type: str = "auto"  # mmrs (Mapperator console app dataset), osz (folder of .osz), songs (osu! Songs folder)
    train_dataset_path: str | None = None
    test_dataset_path: str | None = None  # defaults to the training dataset
    train_dataset_start: int = 0  # mapset index range [start, end) after sorting by set id
    train_dataset_end: int | None = None
    test_dataset_start: int = 0
    test_dataset_end: int = 0  # an empty range means no evaluation
    gamemodes: tuple[int, ...] | None = None
    ranked_statuses: tuple[int, ...] | None = None  # mmrs only: -2 graveyard … 4 loved
    min_year: int | None = None
    max_year: int | None = None
    min_difficulty: float | None = None
    max_difficulty: float | None = None
    descriptors_path: str | None = None  # tags json ({"tags": [{"id", "name"}]}) for a from-scratch vocabulary
    descriptor_source: str = "auto"
    min_top_tag_count: int = 2
    # augmentations and conditioning dropout (None = the version's published value)
    timing_random_offset: int | None = None
    dt_augment_prob: float | None = None
    dt_augment_range: tuple[float, ...] | None = None
    dt_augment_sqrt: bool | None = None
    flip_horizontal_prob: float | None = None
    flip_vertical_prob: float | None = None
    snapping_random_prob: float | None = None
    lookback: float | None = None
    lookback_prob: float | None = None
    frame_offset_augment_prob: float | None = None
    class_dropout_prob: float | None = None
    diff_dropout_prob: float | None = None
    mapper_dropout_prob: float | None = None
    cs_dropout_prob: float | None = None
    year_dropout_prob: float | None = None
    hold_note_ratio_dropout_prob: float | None = None
    scroll_speed_ratio_dropout_prob: float | None = None
    descriptor_dropout_prob: float | None = None
    # the loss
    label_smoothing: float | None = None
    rhythm_weight: float | None = None
    # optimisation (AdamW)
    seed: int = 42
    total_steps: int = 1000
    batch_size: int = 8  # examples per optimizer step (per device), split over grad_acc micro-batches
    grad_acc: int = 1
    base_lr: float = 1e-4
    warmup_steps: int = 0
    sustain_steps: int = 0
    lr_scheduler: str = "cosine"
    final_lr: float = 1e-5
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # where and how
    device: str = "auto"
    mixed_precision: str = "auto"  # auto: bf16 on GPUs that support it, else no
    use_accelerate: bool | None = None  # None: use accelerate when it is installed
    num_workers: int = 0
    output_dir: str | None = None
    save_every_steps: int = 1000
    keep_checkpoints: int = 2
    eval_every_steps: int = 1000
    eval_steps: int = 50
    log_every_steps: int = 10
    log_with: str = "none"
    run_name: str | None = None
    # LoRA
    enable_lora: bool = False
    lora_r: int = 64
    lora_alpha: float = 128
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] | None = None
    lora_bias: str = "none"
    init_lora_weights: str = "pissa"
    lora_ckpt_subfolders: tuple[str, ...] | None = None

    def __post_init__(self):
        checks = [
            (self.version in PRESETS, f"version={self.version!r}: known versions are {', '.join(PRESETS)}"),
            (self.dataset_type in DATASET_TYPES, f"dataset_type must be one of {', '.join(DATASET_TYPES)}"),
            (self.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.mixed_precision in MIXED_PRECISIONS,
             f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}"),
            (self.log_with in LOGGERS, f"log_with must be one of {', '.join(LOGGERS)}"),
            (self.descriptor_source in DESCRIPTOR_SOURCES,
             f"descriptor_source must be one of {', '.join(DESCRIPTOR_SOURCES)}"),
            (self.total_steps > 0, "total_steps must be at least 1"),
            (self.batch_size > 0 and self.grad_acc > 0, "batch_size and grad_acc must be at least 1"),
            (self.batch_size % self.grad_acc == 0, "batch_size must be a multiple of grad_acc"),
            (self.base_lr > 0, "base_lr must be positive"),
            (self.warmup_steps >= 0 and self.sustain_steps >= 0, "warmup_steps and sustain_steps cannot be negative"),
            (self.num_workers >= 0, "num_workers cannot be negative"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be at least 1"),
            (min(self.save_every_steps, self.eval_every_steps, self.log_every_steps) > 0,
             "save_every_steps, eval_every_steps and log_every_steps must be at least 1"),
            (self.lora_r > 0, "lora_r must be at least 1"),
            (self.pretrained_gamemode in (None, 0, 1, 2, 3), "pretrained_gamemode must be 0, 1, 2 or 3"),
            (self.dt_augment_range is None or len(self.dt_augment_range) == 2,
             "dt_augment_range must be [min, max]"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)
        if self.gamemodes is not None and not set(self.gamemodes) <= {0, 1, 2, 3}:
            raise OptionError("gamemodes may only contain 0 (osu!), 1 (taiko), 2 (catch) and 3 (mania)")
        for name in ("lookback", "lookback_prob", "dt_augment_prob", "flip_horizontal_prob", "flip_vertical_prob",
                     "snapping_random_prob", "frame_offset_augment_prob", "label_smoothing", "lora_dropout"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise OptionError(f"{name} must be between 0 and 1, not {value}")
        if self.enable_lora and not self.pretrained_path and not self.checkpoint_path:
            raise OptionError("enable_lora=true fine-tunes an existing model: give pretrained_path "
                              "(a version such as v32, a hub repo id or a checkpoint folder)")
        if not self.train_dataset_path:
            raise OptionError("train_dataset_path is required: a Mapperator console app dataset (with "
                              "metadata.parquet), a folder of .osz files, or an osu! Songs folder")


# --- upstream YAML files ---------------------------------------------------------------------------------

# upstream nested key -> our flat name (groups not listed here flatten to the key's own name)
_RENAMES = {
    ("optim", "final_cosine"): "final_lr",
    ("lora", "r"): "lora_r",
    ("lora", "lora_alpha"): "lora_alpha",
    ("lora", "lora_dropout"): "lora_dropout",
    ("lora", "target_modules"): "lora_target_modules",
    ("lora", "bias"): "lora_bias",
    ("lora", "init_lora_weights"): "init_lora_weights",
    ("lora_metadata", "ckpt_subfolders"): "lora_ckpt_subfolders",
    ("dataloader", "num_workers"): "num_workers",
    ("checkpoint", "every_steps"): "save_every_steps",
    ("checkpoint", "local_total_limit"): "keep_checkpoints",
    ("eval", "every_steps"): "eval_every_steps",
    ("eval", "steps"): "eval_steps",
    ("logging", "log_with"): "log_with",
    ("logging", "every_steps"): "log_every_steps",
    ("logging", "run_name"): "run_name",
}
_GROUPS = {"data", "optim", "lora", "lora_metadata", "dataloader", "checkpoint", "eval", "logging"}
# upstream top-level settings that have no counterpart here (compile, weight precision, attention kind, ...)
_UPSTREAM_ONLY = {"compile", "precision", "attn_implementation", "mode", "pretrained_t5_compat", "profile",
                  "model", "hydra", "defaults", "train", "diffusion"}


def flatten_config(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Flat TrainOptions values from a (possibly upstream-style) config mapping, and the ignored keys."""
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    values: dict[str, Any] = {}
    ignored: list[str] = []
    for item in data.get("defaults") or []:
        if isinstance(item, str) and item in PRESETS:
            values["version"] = item  # `defaults: [v32]` picks the recipe the file builds on
        elif isinstance(item, str) and item.startswith("lora_") and item[5:] in PRESETS:
            values["version"] = item[5:]
    for key, value in data.items():
        if key in _GROUPS and isinstance(value, dict):
            for sub, sub_value in value.items():
                name = _RENAMES.get((key, sub), sub)
                if name == "dataset_type" and sub_value not in DATASET_TYPES:
                    ignored.append(f"{key}.{sub}={sub_value}")
                elif name in names:
                    values[name] = sub_value
                else:
                    ignored.append(f"{key}.{sub}")
        elif key in names:
            values[key] = value
        elif key in _UPSTREAM_ONLY:
            ignored.append(key)
        else:
            from ..options import suggest

            raise OptionError(f"unknown training option {key!r}{suggest(key, sorted(names))}")
    return values, ignored


def load_train_config(path: str | Path) -> dict[str, Any]:
    """Flat values of a YAML training config; upstream-only settings are logged and dropped."""
    from ..options import read_yaml_mapping

    values, ignored = flatten_config(read_yaml_mapping(path))
    if ignored:
        log.warning("%s: ignored settings that are fixed by the model version or have no use here: %s",
                    Path(path).expanduser(), ", ".join(ignored))
    return values


def parse_train_words(words: Sequence[str]) -> TrainOptions:
    """TrainOptions from ``key=value`` words; ``config=FILE.yaml`` is read first and the words override it."""
    from ..options import parse_overrides

    base: dict[str, Any] = {}
    paths: dict[str, str] = {}
    rest = []
    for word in words:
        key, sep, value = word.partition("=")
        key = key.strip().lstrip("+").replace("-", "_")
        if sep and key == "config":
            base.update(load_train_config(value))
        elif sep and key in PATH_OPTIONS:
            paths[key] = value  # taken verbatim: Windows paths, spaces and brackets need no quoting
        else:
            rest.append(word)
    return parse_overrides(TrainOptions, rest, base={**base, **paths})
