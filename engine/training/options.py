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
from ..options import MAX_COUNT, PATH_OPTIONS as _GENERATE_PATHS, SEED, Range, check_options, ranged
from ..presets import PRESETS

log = logging.getLogger(__name__)

DATASET_TYPES = ("auto", "mmrs", "osz", "songs")
SCHEDULERS = ("cosine", "linear", "constant")
MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")
LOGGERS = ("none", "wandb", "tensorboard")
DESCRIPTOR_SOURCES = ("auto", "omdb", "user_tags", "none")
PATH_OPTIONS = frozenset({"pretrained_path", "checkpoint_path", "tokenizer_path", "train_dataset_path",
                          "test_dataset_path", "descriptors_path", "output_dir", "run_name"})
PROBABILITY = Range(0, 1)


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run can be asked for."""

    # the model
    version: str = "v32"  # which published recipe (data flags, vocabulary, augmentations) to train
    pretrained_path: str | None = None  # start from this checkpoint (folder, hub repo id or version name)
    pretrained_gamemode: int | None = ranged(None, 0, 3)  # use its gamemode=N subfolder when it has one
    revision: str | None = None
    checkpoint_path: str | None = None  # resume a run from one of its checkpoint folders
    tokenizer_path: str | None = None  # from scratch: reuse this checkpoint's vocabulary instead of building one
    d_model: int | None = ranged(None, 1, 65536)  # from scratch: backbone size (None = the version's)
    encoder_layers: int | None = ranged(None, 1, 1024)
    decoder_layers: int | None = ranged(None, 1, 1024)
    attention_heads: int | None = ranged(None, 1, 1024)
    ffn_dim: int | None = ranged(None, 1, 10 ** 6)
    # the data
    dataset_type: str = "auto"  # mmrs (Mapperator console app dataset), osz (folder of .osz), songs (osu! Songs folder)
    train_dataset_path: str | None = None
    test_dataset_path: str | None = None  # defaults to the training dataset
    train_dataset_start: int = ranged(0, 0, MAX_COUNT)  # mapset index range [start, end) after sorting by set id
    train_dataset_end: int | None = ranged(None, 0, MAX_COUNT)
    test_dataset_start: int = ranged(0, 0, MAX_COUNT)
    test_dataset_end: int = ranged(0, 0, MAX_COUNT)  # an empty range means no evaluation
    gamemodes: tuple[int, ...] | None = ranged(None, 0, 3)
    ranked_statuses: tuple[int, ...] | None = ranged(None, -2, 4)  # mmrs only: -2 graveyard … 4 loved
    min_year: int | None = ranged(None, 2000, 2100)
    max_year: int | None = ranged(None, 2000, 2100)
    min_difficulty: float | None = ranged(None, 0, 50)
    max_difficulty: float | None = ranged(None, 0, 50)
    descriptors_path: str | None = None  # tags json ({"tags": [{"id", "name"}]}) for a from-scratch vocabulary
    descriptor_source: str = "auto"
    min_top_tag_count: int = ranged(2, 0, MAX_COUNT)
    # augmentations and conditioning dropout (None = the version's published value)
    timing_random_offset: int | None = ranged(None, 0, 10_000)
    dt_augment_prob: float | None = ranged(None, PROBABILITY)
    dt_augment_range: tuple[float, ...] | None = ranged(None, 0, 10, low_open=True)
    dt_augment_sqrt: bool | None = None
    flip_horizontal_prob: float | None = ranged(None, PROBABILITY)
    flip_vertical_prob: float | None = ranged(None, PROBABILITY)
    snapping_random_prob: float | None = ranged(None, PROBABILITY)
    lookback: float | None = ranged(None, PROBABILITY)
    lookback_prob: float | None = ranged(None, PROBABILITY)
    frame_offset_augment_prob: float | None = ranged(None, PROBABILITY)
    class_dropout_prob: float | None = ranged(None, PROBABILITY)
    diff_dropout_prob: float | None = ranged(None, PROBABILITY)
    mapper_dropout_prob: float | None = ranged(None, PROBABILITY)
    cs_dropout_prob: float | None = ranged(None, PROBABILITY)
    year_dropout_prob: float | None = ranged(None, PROBABILITY)
    hold_note_ratio_dropout_prob: float | None = ranged(None, PROBABILITY)
    scroll_speed_ratio_dropout_prob: float | None = ranged(None, PROBABILITY)
    descriptor_dropout_prob: float | None = ranged(None, PROBABILITY)
    # the loss
    label_smoothing: float | None = ranged(None, PROBABILITY)
    rhythm_weight: float | None = ranged(None, 0, 1000)
    # optimisation (AdamW)
    seed: int = ranged(42, SEED)
    total_steps: int = ranged(1000, 1, MAX_COUNT)
    batch_size: int = ranged(8, 1, 65536)  # examples per optimizer step (per device), split over grad_acc micro-batches
    grad_acc: int = ranged(1, 1, 65536)
    base_lr: float = ranged(1e-4, 0, 10, low_open=True)
    warmup_steps: int = ranged(0, 0, MAX_COUNT)
    sustain_steps: int = ranged(0, 0, MAX_COUNT)
    lr_scheduler: str = "cosine"
    final_lr: float = ranged(1e-5, 0, 10)
    weight_decay: float = ranged(0.01, 0, 10)
    grad_clip: float = ranged(1.0, 0, 1e6)
    # where and how
    device: str = "auto"
    mixed_precision: str = "auto"  # auto: bf16 on GPUs that support it, else no
    use_accelerate: bool | None = None  # None: use accelerate when it is installed
    num_workers: int = ranged(0, 0, 1024)
    output_dir: str | None = None
    save_every_steps: int = ranged(1000, 1, MAX_COUNT)
    keep_checkpoints: int = ranged(2, 1, 10 ** 6)
    eval_every_steps: int = ranged(1000, 1, MAX_COUNT)
    eval_steps: int = ranged(50, 1, MAX_COUNT)
    log_every_steps: int = ranged(10, 1, MAX_COUNT)
    log_with: str = "none"
    run_name: str | None = None
    # LoRA
    enable_lora: bool = False
    lora_r: int = ranged(64, 1, 65536)
    lora_alpha: float = ranged(128, 0, 1e6, low_open=True)
    lora_dropout: float = ranged(0.05, PROBABILITY)
    lora_target_modules: tuple[str, ...] | None = None
    lora_bias: str = "none"
    init_lora_weights: str = "pissa"
    lora_ckpt_subfolders: tuple[str, ...] | None = None

    def __post_init__(self):
        check_options(self, paths=PATH_OPTIONS | _GENERATE_PATHS)  # each number finite and in its field's range
        checks = [
            (self.version in PRESETS, f"version={self.version!r}: known versions are {', '.join(PRESETS)}"),
            (self.dataset_type in DATASET_TYPES, f"dataset_type must be one of {', '.join(DATASET_TYPES)}"),
            (self.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.mixed_precision in MIXED_PRECISIONS,
             f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}"),
            (self.log_with in LOGGERS, f"log_with must be one of {', '.join(LOGGERS)}"),
            (self.descriptor_source in DESCRIPTOR_SOURCES,
             f"descriptor_source must be one of {', '.join(DESCRIPTOR_SOURCES)}"),
            (self.batch_size % self.grad_acc == 0, "batch_size must be a multiple of grad_acc"),
            (self.dt_augment_range is None or len(self.dt_augment_range) == 2,
             "dt_augment_range must be [min, max]"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)
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
