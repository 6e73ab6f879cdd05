"""The training run: model and data set-up, the optimisation loop, evaluation, checkpoints and resuming.

A run starts from one of three places: a new model (``new_model``, vocabulary built from the version's
flags and the dataset, or copied from ``tokenizer_path``), a published checkpoint (``pretrained_path``,
optionally with LoRA), or one of its own checkpoints (``checkpoint_path``, which resumes the step count,
optimizer and schedule). Optimisation is AdamW (no decay on biases and norms) with upstream's schedule:
linear warm-up from half the learning rate, an optional constant stretch, then cosine or linear decay
to ``final_lr``, and gradient clipping. With accelerate installed, mixed precision and several GPUs
(``accelerate launch -m mapperator_app.cli train ...``) go through it; without it one device is used.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import Cancelled, ModelError, OptionError
from ..presets import PRESETS, VersionPreset
from ..tokenizer import EventType, Tokenizer
from .augment import Augmentations
from .dataset import DataFilter, MapSet, SkipLog, apply_filter, read_dataset, read_item_beatmap, split, star_rating_at
from .examples import ExampleBuilder
from .export import config_json, save_checkpoint, unused_embedding
from .loss import token_accuracy, token_loss
from .options import TrainOptions
from .recipes import Recipe, recipe_for
from .stream import COND_KEYS, Batch, BatchStream, ExampleSource, is_exhausted
from .vocab import VocabTables, build_tokenizer

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
OPTIMIZER_STATE = "training_state.pt"
LORA_FOLDER = "lora"
_NO_DECAY = ("bias", "LayerNorm", "layernorm", "layer_norm", "ln")  # upstream's no-weight-decay names


@dataclass
class TrainProgress:
    step: int
    total_steps: int
    loss: float | None = None
    accuracy: float | None = None
    lr: float | None = None
    epoch: int = 0
    stage: str = "training"


@dataclass
class TrainResult:
    output_dir: Path
    checkpoint: Path | None  # the last checkpoint folder written
    steps: int
    loss: float | None  # mean training loss of the last logging window
    accuracy: float | None
    eval: dict[str, float] | None
    skipped: SkipLog
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


# --- model set-up ---------------------------------------------------------------------------------------------


def scratch_config(preset: VersionPreset, recipe: Recipe, tokenizer: Tokenizer, options: TrainOptions,
                   label_smoothing: float, rhythm_weight: float):
    """The ModelConfig of a new model: the version's architecture, sizes from the options."""
    from ..model import NNAUDIO, ROPEWHISPER, VARWHISPER, WHISPER, BackboneConfig, ModelConfig, SpectrogramConfig

    size = recipe.backbone
    d = preset.data
    heads = options.attention_heads or size.attention_heads
    d_model = options.d_model or size.d_model
    if d_model % heads:
        raise OptionError(f"d_model {d_model} must be divisible by attention_heads {heads}")
    flavour = (WHISPER if preset.backbone.startswith("openai/whisper")
               else ROPEWHISPER if preset.backbone.startswith("Tiger14n/ropewhisper") else VARWHISPER)
    projected = recipe.front_end == NNAUDIO  # v29 projects its 388 mels to d_model before the convolutions
    backbone = BackboneConfig(
        flavour=flavour, d_model=d_model,
        encoder_layers=options.encoder_layers or size.encoder_layers,
        decoder_layers=options.decoder_layers or size.decoder_layers,
        encoder_heads=heads, decoder_heads=heads,
        encoder_ffn_dim=options.ffn_dim or size.ffn_dim, decoder_ffn_dim=options.ffn_dim or size.ffn_dim,
        num_mel_bins=d_model if projected else recipe.n_mels + recipe.cond_size,
        max_source_positions=d.src_seq_len // 2, max_target_positions=d.tgt_seq_len,
        vocab_size=tokenizer.vocab_size_out,
    )
    ts = tokenizer.id_range(EventType.TIME_SHIFT)
    return ModelConfig(
        backbone_name=preset.backbone, backbone=backbone,
        spectrogram=SpectrogramConfig(sample_rate=d.sample_rate, hop_length=d.hop_length, n_mels=recipe.n_mels)
        if not projected else SpectrogramConfig(sample_rate=d.sample_rate, hop_length=d.hop_length, n_mels=recipe.n_mels,
                                                f_min=0, pad_mode="constant", log_scale=False, implementation=NNAUDIO),
        project_encoder_input=projected,
        vocab_size_in=tokenizer.vocab_size_in, vocab_size_out=tokenizer.vocab_size_out,
        do_difficulty_embed=recipe.do_difficulty_embed, do_mapper_embed=recipe.do_mapper_embed,
        do_song_position_embed=recipe.do_song_position_embed, num_classes=tokenizer.num_classes,
        num_mappers=tokenizer.num_mapper_classes, cond_dim=recipe.cond_dim, cond_size=recipe.cond_size,
        rhythm_weight=rhythm_weight, rhythm_token_start=ts.start, rhythm_token_end=ts.stop,
        label_smoothing=label_smoothing,
    )


def dataset_tables(sets: list[MapSet], recipe: Recipe, options: TrainOptions) -> VocabTables:
    """Mapper and descriptor tables of a dataset, for a new vocabulary (upstream's MMRS tokenizer set-up)."""
    tables = VocabTables()
    source = recipe.descriptor_source if options.descriptor_source == "auto" else options.descriptor_source
    tag_names = _read_tag_names(options.descriptors_path) if options.descriptors_path else None
    if source == "user_tags" and tag_names is not None:
        tables.descriptor_idx = {name: i for i, name in tag_names.items()}
        tables.num_descriptor_classes = max(tag_names, default=-1) + 1
    for s in sets:
        for item in s.beatmaps:
            tables.add_mapper(item.beatmap_id, item.user_id)
            if item.beatmap_idx is not None and item.beatmap_id is not None:
                tables.beatmap_idx[item.beatmap_id] = item.beatmap_idx
            if source == "omdb" and item.omdb_tags and item.beatmap_id is not None:
                for tag in item.omdb_tags:
                    tables.descriptor_idx.setdefault(tag, len(tables.descriptor_idx))
                tables.beatmap_descriptors[item.beatmap_id] = [tables.descriptor_idx[t] for t in item.omdb_tags]
            elif source == "user_tags" and item.top_tags and item.beatmap_id is not None:
                ids = [i for i, votes in item.top_tags if votes >= options.min_top_tag_count]
                if tag_names is None:
                    for i in ids:
                        tables.descriptor_idx.setdefault(f"tag_{i}", i)
                if ids:
                    tables.beatmap_descriptors[item.beatmap_id] = ids
    if source == "user_tags" and tag_names is None and tables.descriptor_idx:
        tables.num_descriptor_classes = max(tables.descriptor_idx.values()) + 1
    return tables


def extend_lookups(tokenizer: Tokenizer, sets: list[MapSet], recipe: Recipe, options: TrainOptions) -> int:
    """Teach an existing vocabulary's lookup tables who mapped the dataset's beatmaps and their descriptors.

    Only entries that fit the vocabulary are added (known mappers, known descriptor classes); the id
    layout never changes. Returns how many beatmaps gained an entry.
    """
    source = recipe.descriptor_source if options.descriptor_source == "auto" else options.descriptor_source
    added = 0
    for s in sets:
        for item in s.beatmaps:
            bid = item.beatmap_id
            if bid is None:
                continue
            if item.user_id in tokenizer.mapper_idx and bid not in tokenizer.beatmap_mapper:
                tokenizer.beatmap_mapper[bid] = item.user_id
                added += 1
            if bid in tokenizer.beatmap_descriptors or not tokenizer.num_descriptor_classes:
                continue
            if source == "omdb":
                ids = [tokenizer.descriptor_idx[t] for t in item.omdb_tags if t in tokenizer.descriptor_idx]
            elif source == "user_tags":
                ids = [i for i, votes in item.top_tags
                       if votes >= options.min_top_tag_count and 0 <= i < tokenizer.num_descriptor_classes]
            else:
                ids = []
            if ids:
                tokenizer.beatmap_descriptors[bid] = ids
    return added


def _read_tag_names(path: str) -> dict[int, str]:
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return {int(t["id"]): str(t["name"]) for t in data["tags"]}
    except FileNotFoundError:
        raise OptionError(f"descriptors_path {p} not found") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OptionError(f"descriptors_path {p} is not a tags file ({{\"tags\": [{{\"id\", \"name\"}}]}}): {e}") from None


# --- devices, precision and processes ------------------------------------------------------------------------


class _Runtime:
    """One device, no accelerate: autocast and (for fp16) gradient scaling by hand."""

    num_processes = 1
    process_index = 0
    is_main = True

    def __init__(self, device: torch.device, mixed_precision: str):
        self.device = device
        self.mixed_precision = mixed_precision
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
        self._dtype = dtype
        self.scaler = torch.amp.GradScaler(device.type) if mixed_precision == "fp16" else None

    def prepare(self, model, optimizer):
        return model.to(self.device), optimizer

    def autocast(self):
        if self._dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._dtype)

    def no_sync(self, model):
        return nullcontext()

    def backward(self, loss):
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer, params, max_norm: float) -> float | None:
        norm = None
        if self.scaler:
            self.scaler.unscale_(optimizer)
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if max_norm > 0 else None
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if max_norm > 0 else None
            optimizer.step()
        return norm

    def unwrap(self, model):
        return model

    def reduce_sum(self, values: list[float]) -> list[float]:
        return values

    def wait(self):
        pass


class _AccelerateRuntime(_Runtime):
    """accelerate: device placement, mixed precision and distributed data parallel over processes."""

    def __init__(self, device_name: str, mixed_precision: str):
        from accelerate import Accelerator, DistributedDataParallelKwargs

        self.accelerator = Accelerator(
            cpu=device_name == "cpu", mixed_precision=mixed_precision,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        a = self.accelerator
        self.device = a.device
        self.mixed_precision = mixed_precision
        self.num_processes = a.num_processes
        self.process_index = a.process_index
        self.is_main = a.is_main_process
        self.scaler = None

    def prepare(self, model, optimizer):
        return self.accelerator.prepare(model, optimizer)

    def autocast(self):
        return self.accelerator.autocast()

    def no_sync(self, model):
        return self.accelerator.no_sync(model)

    def backward(self, loss):
        self.accelerator.backward(loss)

    def step(self, optimizer, params, max_norm: float) -> float | None:
        norm = float(self.accelerator.clip_grad_norm_(params, max_norm)) if max_norm > 0 else None
        optimizer.step()
        return norm

    def unwrap(self, model):
        return self.accelerator.unwrap_model(model)

    def reduce_sum(self, values: list[float]) -> list[float]:
        if self.num_processes == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()

    def wait(self):
        self.accelerator.wait_for_everyone()


def make_runtime(options: TrainOptions) -> _Runtime:
    from ..runtime import pick_device

    wanted = options.use_accelerate
    have = _accelerate_available()
    if wanted and not have:
        raise OptionError("use_accelerate=true needs accelerate: pip install 'mapperator[train]'")
    device = pick_device(options.device)
    mp = options.mixed_precision
    if mp == "auto":
        mp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    if mp == "fp16" and device.type != "cuda":
        raise OptionError("mixed_precision=fp16 needs a CUDA GPU; use bf16 or no")
    if (wanted is None and have) or wanted:
        return _AccelerateRuntime(device.type, mp)
    return _Runtime(device, mp)


def _accelerate_available() -> bool:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        return False
    return True


# --- optimiser and schedule ---------------------------------------------------------------------------------


def make_optimizer(model: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if any(k in name for k in _NO_DECAY) else decay).append(p)
    groups = [{"params": decay, "weight_decay": options.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=options.base_lr)


def lr_factor(step: int, options: TrainOptions) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps (upstream's SequentialLR, as a function)."""
    warm, sustain = options.warmup_steps, options.sustain_steps
    if step < warm:
        return 0.5 + 0.5 * step / warm
    step -= warm
    if step < sustain:
        return 1.0
    step -= sustain
    decay_steps = max(1, options.total_steps - warm - sustain)
    t = min(step, decay_steps) / decay_steps
    final = options.final_lr / options.base_lr
    if options.lr_scheduler == "cosine":
        return final + (1 - final) * (1 + math.cos(math.pi * t)) / 2
    if options.lr_scheduler == "linear":
        return 1 + (final - 1) * t
    return 1.0


# --- the run ---------------------------------------------------------------------------------------------------


class TrainingRun:
    """Holds everything of one run; :meth:`run` trains and returns a :class:`TrainResult`."""

    def __init__(self, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None,
                 cancel: threading.Event | None = None, show_progress: bool = False):
        self.options = options
        self.progress = progress
        self.cancel = cancel
        self.show_progress = show_progress
        self.skipped = SkipLog()
        self.history: list[dict[str, Any]] = []
        self.saved: list[Path] = []
        self.step = 0
        self.epoch = 0
        self._setup()

    # set-up

    def _setup(self) -> None:
        o = self.options
        torch.manual_seed(o.seed)
        self.resume = self._read_resume_state() if o.checkpoint_path else None
        self.lora = bool(o.enable_lora or (self.resume and self.resume.get("lora")))
        self.base_config_json: dict | None = None
        self.base_folder: Path | None = None
        self._load_model()
        self.recipe = recipe_for(self.preset)
        self._load_data()
        self.runtime = make_runtime(o)
        self._prepare_training()

    def _read_resume_state(self) -> dict:
        folder = Path(self.options.checkpoint_path).expanduser()
        path = folder / TRAINER_STATE
        if not path.is_file():
            raise ModelError(f"{folder} is not a training checkpoint of this program ({TRAINER_STATE} is missing); "
                             "to start from a published model use pretrained_path")
        from ..checkpoint import read_json

        state = read_json(path, "training checkpoint")
        state["folder"] = folder
        return state

    def _load_model(self) -> None:
        from ..checkpoint import load_checkpoint, new_model, read_json

        o = self.options
        r = self.resume
        self.checkpoint = None
        if r is not None and not r.get("lora"):
            ck = load_checkpoint(str(r["folder"]), version=r.get("version"))
            self._use_checkpoint(ck)
            self.base_config_json = read_json(r["folder"] / "config.json")
            self.base_folder = r["folder"]
            self.base_source = r.get("base_source") or str(r["folder"])
            return
        source = o.pretrained_path
        if source is None and r is not None:
            source = (r.get("base") or {}).get("source")
        if source:
            gamemode = o.pretrained_gamemode
            subfolder = None
            if r is not None and not o.pretrained_path:
                subfolder = (r.get("base") or {}).get("subfolder") or None
            ck = load_checkpoint(source, gamemode=gamemode, subfolder=subfolder, revision=o.revision,
                                 version=o.version if source in PRESETS else None)
            self._use_checkpoint(ck)
            self.base_config_json = read_json(ck.path / "config.json")
            self.base_folder = ck.path
            self.base_source = source
            return
        # a new model
        self.preset = PRESETS[o.version]
        recipe = recipe_for(self.preset)
        self.tokenizer = Tokenizer.from_file(_tokenizer_file(o.tokenizer_path)) if o.tokenizer_path else None
        self._new_model_parts = (recipe, new_model)
        self.model = None  # built after the dataset is read (the vocabulary may come from it)
        self.base_source = None

    def _use_checkpoint(self, ck) -> None:
        self.checkpoint = ck
        self.preset = ck.preset
        self.tokenizer = ck.tokenizer
        self.model = ck.model.float()
        self.model_config = ck.config
        if self.options.version != ck.preset.name and self.options.version != TrainOptions.version:
            log.warning("the checkpoint is a %s model; training with its recipe, not %s", ck.preset.name,
                        self.options.version)

    def _filter(self, pretrained: bool) -> DataFilter:
        o, d, r = self.options, self.preset.data, self.recipe
        modes = o.gamemodes if o.gamemodes is not None else tuple(d.gamemodes)
        unsupported = set(modes) - set(d.gamemodes)
        if unsupported:
            raise OptionError(f"{self.preset.name} models know only the game modes {list(d.gamemodes)}, not "
                              f"{sorted(unsupported)}")
        if pretrained:  # fine-tuning: the user's own maps, whatever their status, year or difficulty
            return DataFilter(modes, o.ranked_statuses, o.min_year, o.max_year, o.min_difficulty, o.max_difficulty)
        return DataFilter(
            modes, o.ranked_statuses if o.ranked_statuses is not None else r.ranked_statuses,
            o.min_year if o.min_year is not None else d.min_year, o.max_year if o.max_year is not None else d.max_year,
            o.min_difficulty if o.min_difficulty is not None else r.min_difficulty,
            o.max_difficulty if o.max_difficulty is not None else r.max_difficulty,
        )

    def _load_data(self) -> None:
        o = self.options
        pretrained = self.model is not None
        rule = self._filter(pretrained)

        def stars(s, item):
            try:
                return star_rating_at(s, item, read_item_beatmap(s, item))
            except Exception:
                return None

        train_all = read_dataset(o.train_dataset_path, o.dataset_type, self.skipped)
        self.train_sets = apply_filter(split(train_all, o.train_dataset_start, o.train_dataset_end), rule,
                                       self.skipped, stars)
        self.test_sets: list[MapSet] = []
        if o.test_dataset_end > o.test_dataset_start:
            test_path = o.test_dataset_path or o.train_dataset_path
            test_all = train_all if test_path == o.train_dataset_path else read_dataset(test_path, o.dataset_type,
                                                                                       self.skipped)
            self.test_sets = apply_filter(split(test_all, o.test_dataset_start, o.test_dataset_end), rule,
                                          self.skipped, stars)
        if not self.train_sets:
            raise OptionError(f"no training data: {o.train_dataset_path} has {len(train_all)} mapset(s); after the "
                              f"range [{o.train_dataset_start}, {o.train_dataset_end}) and the filters none is left. "
                              f"{self.skipped.summary()}")
        log.info("training on %d mapset(s) (%d beatmaps), evaluating on %d", len(self.train_sets),
                 sum(len(s.beatmaps) for s in self.train_sets), len(self.test_sets))

        r = self.recipe
        if self.model is None:
            if self.tokenizer is None:
                self.tokenizer = build_tokenizer(self.preset, r, dataset_tables(self.train_sets, r, o))
            else:
                extend_lookups(self.tokenizer, self.train_sets, r, o)
            smoothing = o.label_smoothing if o.label_smoothing is not None else r.label_smoothing
            rhythm = o.rhythm_weight if o.rhythm_weight is not None else r.rhythm_weight
            self.model_config = scratch_config(self.preset, r, self.tokenizer, o, smoothing, rhythm)
            _, new_model = self._new_model_parts
            self.model = new_model(self.model_config, seed=o.seed)
        else:
            extend_lookups(self.tokenizer, self.train_sets, r, o)
            changes = {}
            if o.label_smoothing is not None:
                changes["label_smoothing"] = o.label_smoothing
            if o.rhythm_weight is not None:
                changes["rhythm_weight"] = o.rhythm_weight
                weights = self.model.loss_fn.weight
                weights.fill_(1.0)
                weights[self.model_config.rhythm_token_start: self.model_config.rhythm_token_end] = o.rhythm_weight
            if changes:
                self.model_config = dataclasses.replace(self.model_config, **changes)
                self.model.config = self.model_config

        self.augment = Augmentations.for_version(
            self.preset, r, **{k: getattr(o, k) for k in (
                "timing_random_offset", "dt_augment_prob", "dt_augment_range", "dt_augment_sqrt",
                "flip_horizontal_prob", "flip_vertical_prob", "snapping_random_prob", "lookback", "lookback_prob",
                "frame_offset_augment_prob", "class_dropout_prob", "diff_dropout_prob", "mapper_dropout_prob",
                "cs_dropout_prob", "year_dropout_prob", "hold_note_ratio_dropout_prob",
                "scroll_speed_ratio_dropout_prob", "descriptor_dropout_prob")})
        self.builder = ExampleBuilder(self.preset, self.tokenizer, self.augment)
        self.cond_keys = tuple(k for k, on in zip(COND_KEYS, (
            self.model_config.do_style_embed, self.model_config.do_difficulty_embed,
            self.model_config.do_mapper_embed, self.model_config.do_song_position_embed)) if on)

    def _prepare_training(self) -> None:
        from ..lora import LoraSettings, base_model_of, load_adapter_weights, wrap_for_training

        o, rt = self.options, self.runtime
        model = self.model
        self.base_model_info = None
        if self.lora:
            if self.checkpoint is None:
                raise OptionError("LoRA needs a base model: give pretrained_path")
            saved = (self.resume or {}).get("lora_settings")
            settings = LoraSettings(**saved) if saved else LoraSettings(
                r=o.lora_r, alpha=o.lora_alpha, dropout=o.lora_dropout,
                target_modules=tuple(o.lora_target_modules or self.recipe.lora_target_modules),
                bias=o.lora_bias, init_weights=_init_weights(o.init_lora_weights))
            self.lora_settings = settings
            model = wrap_for_training(model, settings)
            self.base_model_info = base_model_of(self.checkpoint, self.base_source)
            if self.resume is not None:
                load_adapter_weights(model, Path(self.resume["folder"]) / LORA_FOLDER)
        self.unused = unused_embedding(self.model_config, self.base_folder, seed=o.seed)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("%s model, %s parameters, %s trainable", self.preset.name, f"{total:,}", f"{trainable:,}")
        optimizer = make_optimizer(model, o)
        model.train()
        self.model, self.optimizer = rt.prepare(model, optimizer)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, o))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if self.resume is not None:
            state = torch.load(Path(self.resume["folder"]) / OPTIMIZER_STATE, map_location="cpu", weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = int(self.resume["step"])
            self.epoch = int(self.resume.get("epoch", 0)) + 1
            if self.step >= o.total_steps:
                raise OptionError(f"the checkpoint is at step {self.step}; set total_steps above it to train on")
        self.class_weights = self._unwrapped_base().loss_fn.weight
        self.label_smoothing = self.model_config.label_smoothing
        out = Path(o.output_dir).expanduser() if o.output_dir else \
            Path.cwd() / "mapperator-training" / f"{self.preset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.output_dir = out
        if rt.is_main:
            out.mkdir(parents=True, exist_ok=True)

    def _unwrapped_base(self):
        model = self.runtime.unwrap(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    # the loop

    def _loader(self, sets, train: bool):
        source = ExampleSource(sets, self.builder, self.augment, train=train, seed=self.options.seed)
        micro = self.options.batch_size // self.options.grad_acc
        stream = BatchStream(source, micro, repeat=train, shard=self.runtime.process_index,
                             shards=self.runtime.num_processes, cond_keys=self.cond_keys,
                             start_epoch=self.epoch if train else 0)
        workers = self.options.num_workers if train else 0
        return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                           persistent_workers=False, collate_fn=_as_is)

    def _forward(self, batch: Batch, model=None):
        with self.runtime.autocast():
            logits = (model or self.model)(frames=batch.frames, decoder_input_ids=batch.decoder_input_ids,
                                           **batch.cond)
        loss = token_loss(logits, batch.labels, self.class_weights.to(logits.device), self.label_smoothing)
        return logits, loss

    def _note_skips(self, batch: Batch) -> None:
        for reason, what in batch.skipped:
            self.skipped.add(reason, what)

    def run(self) -> TrainResult:
        o, rt = self.options, self.runtime
        started = time.time()
        bar = None
        if self.show_progress and rt.is_main:
            from tqdm import tqdm

            bar = tqdm(total=o.total_steps, initial=self.step, unit="step", dynamic_ncols=True)
        trackers = _Trackers(o, self.output_dir) if rt.is_main else None
        window = {"loss": 0.0, "correct": 0, "count": 0, "n": 0}
        last: dict[str, Any] = {}
        last_eval = None
        checkpoint = None
        micro_batches = iter(self._loader(self.train_sets, True))
        try:
            while self.step < o.total_steps:
                if self.cancel is not None and self.cancel.is_set():
                    checkpoint = self.save()
                    raise Cancelled(f"training stopped at step {self.step}; continue it with "
                                    f"checkpoint_path=\"{checkpoint}\"")
                self.optimizer.zero_grad(set_to_none=True)
                for k in range(o.grad_acc):
                    batch = self._next_batch(micro_batches)
                    self.epoch = max(self.epoch, batch.epoch)
                    batch = batch.to(rt.device)
                    sync = rt.no_sync(self.model) if k < o.grad_acc - 1 else nullcontext()
                    with sync:
                        logits, loss = self._forward(batch)
                        rt.backward(loss / o.grad_acc)
                    correct, count = token_accuracy(logits, batch.labels)
                    window["loss"] += float(loss.detach()) / o.grad_acc
                    window["correct"] += correct
                    window["count"] += count
                rt.step(self.optimizer, self.params, o.grad_clip)
                self.scheduler.step()
                self.step += 1
                window["n"] += 1
                if self.step % o.log_every_steps == 0 or self.step == o.total_steps:
                    loss_sum, correct, count, n = rt.reduce_sum(
                        [window["loss"], window["correct"], window["count"], window["n"]])
                    last = {"step": self.step, "epoch": self.epoch,
                            "loss": loss_sum / max(n, 1), "accuracy": correct / max(count, 1),
                            "lr": self.scheduler.get_last_lr()[0], "seconds": round(time.time() - started, 2)}
                    self.history.append(last)
                    window = {"loss": 0.0, "correct": 0, "count": 0, "n": 0}
                    if trackers:
                        trackers.log(last, self.step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{last['loss']:.4f}", acc=f"{last['accuracy']:.3f}",
                                        lr=f"{last['lr']:.2e}")
                if bar is not None:
                    bar.update(1)
                if self.progress is not None and rt.is_main:
                    self.progress(TrainProgress(self.step, o.total_steps, last.get("loss"), last.get("accuracy"),
                                                self.scheduler.get_last_lr()[0], self.epoch))
                if self.test_sets and (self.step % o.eval_every_steps == 0 or self.step == o.total_steps):
                    last_eval = self.evaluate()
                    if trackers:
                        trackers.log(last_eval, self.step)
                if self.step % o.save_every_steps == 0 or self.step == o.total_steps:
                    checkpoint = self.save()
        finally:
            if bar is not None:
                bar.close()
            if trackers:
                trackers.close()
        if self.skipped.total and rt.is_main:
            log.info("%s", self.skipped.summary())
        return TrainResult(self.output_dir, checkpoint, self.step, last.get("loss"), last.get("accuracy"), last_eval,
                           self.skipped, time.time() - started, self.history)

    def _next_batch(self, batches) -> Batch:
        while True:
            try:
                batch = next(batches)
            except StopIteration:  # pragma: no cover - the training stream repeats forever
                raise OptionError("the training data ran out") from None
            self._note_skips(batch)
            if is_exhausted(batch):
                raise OptionError("none of the training data can be used:\n" + self.skipped.summary())
            if batch.size:
                return batch

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and token accuracy on (up to ``eval_steps`` batches of) the test sets, without augmentation."""
        o, rt = self.options, self.runtime
        # The unwrapped model: processes may see different numbers of test batches, so no collective calls here.
        model = rt.unwrap(self.model)
        model.eval()
        loss_sum = tokens = correct = 0.0
        try:
            for i, batch in enumerate(self._loader(self.test_sets, False)):
                if i >= o.eval_steps:
                    break
                self._note_skips(batch)
                if not batch.size:
                    continue
                batch = batch.to(rt.device)
                logits, loss = self._forward(batch, model)
                c, n = token_accuracy(logits, batch.labels)
                loss_sum += float(loss) * n
                tokens += n
                correct += c
        finally:
            model.train()
        loss_sum, tokens, correct = rt.reduce_sum([loss_sum, tokens, correct])
        result = {"step": self.step, "test_loss": loss_sum / max(tokens, 1), "test_accuracy": correct / max(tokens, 1)}
        self.history.append(result)
        return result

    # checkpoints

    def save(self) -> Path:
        """Write ``checkpoint-STEP`` (model or adapter, vocabulary, optimizer state) and prune old ones."""
        rt = self.runtime
        rt.wait()
        folder = self.output_dir / f"checkpoint-{self.step}"
        if not rt.is_main:
            return folder
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self._write_checkpoint(tmp)
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        except BaseException:  # an error or Ctrl-C: no half-written checkpoint folder is left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.saved.append(folder)
        self._prune()
        log.info("saved %s", folder)
        return folder

    def _write_checkpoint(self, tmp: Path) -> None:
        from ..lora import save_adapter

        model = self.runtime.unwrap(self.model)
        state: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "version": self.preset.name,
                                 "lora": self.lora, "options": _jsonable(dataclasses.asdict(self.options))}
        if self.lora:
            save_adapter(model, tmp / LORA_FOLDER, self.base_model_info, self.options.lora_ckpt_subfolders)
            state["base"] = dataclasses.asdict(self.base_model_info)
            state["lora_settings"] = _jsonable(dataclasses.asdict(self.lora_settings))
        else:
            config = config_json(self.model_config, self.preset.data.src_seq_len, self.preset.data.tgt_seq_len,
                                 self.base_config_json)
            save_checkpoint(tmp, model, self.tokenizer, config, self.preset.data.tgt_seq_len, self.unused)
            state["base_source"] = self.base_source
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   tmp / OPTIMIZER_STATE)
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    def _prune(self) -> None:
        keep = self.options.keep_checkpoints
        mine = sorted({p for p in self.saved if p.exists()}, key=lambda p: int(p.name.split("-")[-1]))
        for old in mine[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
            self.saved.remove(old)


def _as_is(batch: Batch) -> Batch:
    return batch


def _init_weights(value: str) -> str | bool:
    low = str(value).lower()
    if low in ("true", "default", "kaiming"):
        return True
    if low in ("false", "zeros"):
        return False
    return value


def _tokenizer_file(path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise OptionError(f"tokenizer_path {path}: no tokenizer.json there")
    return p


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class _Trackers:
    """train_log.jsonl always; wandb or tensorboard when asked for (and installed)."""

    def __init__(self, options: TrainOptions, output_dir: Path):
        self.file = (output_dir / "train_log.jsonl").open("a", encoding="utf-8")
        self.wandb = self.tb = None
        if options.log_with == "wandb":
            try:
                import wandb
            except ImportError:
                raise OptionError("log_with=wandb needs the wandb package: pip install wandb") from None
            self.wandb = wandb.init(project="mapperator", name=options.run_name,
                                    config=_jsonable(dataclasses.asdict(options)))
        elif options.log_with == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise OptionError("log_with=tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.tb = SummaryWriter(str(output_dir / "tensorboard"))

    def log(self, values: dict[str, Any], step: int) -> None:
        self.file.write(json.dumps(values) + "\n")
        self.file.flush()
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and k != "step"}
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.file.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.tb is not None:
            self.tb.close()


def train(options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None,
          cancel: threading.Event | None = None, *, show_progress: bool = False) -> TrainResult:
    """Train (or fine-tune, or resume) as ``options`` say; see the module docstring."""
    return TrainingRun(options, progress, cancel, show_progress).run()
