"""Find, download and load Mapperatorinator checkpoints.

A checkpoint is a folder (local, or a Hugging Face repo revision) holding ``config.json``,
``tokenizer.json``, ``generation_config.json`` and ``model.safetensors`` (or safetensors shards). The
published repos keep one model at the root and per-mode models in ``gamemode=N/`` subfolders.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

from .checked_json import DAMAGED, Fields, read_json, show
from .checkpoint_files import CheckpointState, checkpoint_state
from .errors import MapperatorError, ModelError
from .messages import Message, joined
from .model import (
    NNAUDIO, ROPEWHISPER, SIZE_LIMITS, UNUSED_CHECKPOINT_KEYS, VARWHISPER, WHISPER, BackboneConfig, Mapperatorinator,
    ModelConfig, SpectrogramConfig, parameter_count,
)
from .presets import PRESETS, VersionPreset, detect_version
from .tokenizer import VOCAB_LIMIT, Tokenizer

CHECKPOINT_FILES = ("config.json", "tokenizer.json", "generation_config.json")
WEIGHT_PATTERNS = ("model.safetensors", "model-*.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network, its vocabulary and the version facts that go with it."""

    model: Mapperatorinator
    tokenizer: Tokenizer
    config: ModelConfig
    preset: VersionPreset
    path: Path  # the local folder the files came from
    source: str  # what the user asked for (version name, repo id or folder)
    subfolder: str | None
    generation_config: dict[str, Any]

    @property
    def version(self) -> str:
        return self.preset.name


# --- locating files -------------------------------------------------------------------------------------------


def resolve_source(source: str) -> tuple[str, bool]:
    """(local folder or repo id, is_local). A version name such as ``v32`` means its published repo."""
    if source in PRESETS:
        return PRESETS[source].repo_id, False
    path = Path(source).expanduser()
    if path.exists():
        return str(path), True
    if _REPO_ID.match(source) and not source.startswith((".", "/")) and "\\" not in source:
        return source, False
    raise ModelError(Message("checkpoint.unknown_source", "model {source} is neither a folder, a Hugging Face repo id, "
                             "nor a version ({versions})", source=repr(source), versions=", ".join(PRESETS)))


def gamemode_subfolder(files: list[str], gamemode: int | None) -> str | None:
    """The ``gamemode=N`` subfolder to use for a mode, when the checkpoint has one."""
    if gamemode is None:
        return None
    name = f"gamemode={gamemode}"
    return name if any(f.startswith(name + "/") for f in files) else None


def _local_files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]


_REACHABLE: dict[str, tuple[float, bool]] = {}


def hub_online(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (checked at most once a minute; ``HF_HUB_OFFLINE=1`` means no).

    huggingface_hub retries an unreachable host for about 25 s per call; one quick connection attempt first
    keeps an offline start fast and lets the cache answer instead.
    """
    import socket
    import time
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    checked = _REACHABLE.get(host)
    if checked is not None and time.monotonic() - checked[0] < 60:
        return checked[1]
    try:
        with socket.create_connection((host, port), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _REACHABLE[host] = (time.monotonic(), ok)
    return ok


def _offline_advice(repo_id: str, subfolder: str | None) -> Message:
    extra = f" --gamemode {subfolder.split('=')[1]}" if subfolder else ""
    return Message("checkpoint.offline_advice", "Connect to the internet and run `mapperator download {repo}` (or "
                   "use Models in the app), or point model_path at a local checkpoint folder.", repo=repo_id + extra)


def download(
    repo_id: str,
    revision: str | None = None,
    subfolder: str | None = None,
    progress: type | None = None,
    *,
    online: bool | None = None,
) -> Path:
    """Fetch the files of one checkpoint into the Hugging Face cache and return the snapshot folder. Files already
    downloaded are not fetched again, and a cut-off weights file continues from its last byte.
    Offline, the cached snapshot is used; a missing one is a ModelError saying what to do.
    ``progress`` is a tqdm-compatible class for byte-level progress.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    prefix = f"{subfolder}/" if subfolder else ""
    kwargs: dict[str, Any] = {"repo_id": repo_id, "revision": revision,
                              "allow_patterns": [prefix + f for f in CHECKPOINT_FILES + WEIGHT_PATTERNS]}
    online = hub_online() if online is None else online
    where = f"{repo_id}{'/' + subfolder if subfolder else ''}"
    try:
        if online:
            _fetch_weights_resumably(repo_id, revision, prefix, progress)
            snapshot = Path(snapshot_download(**kwargs, **({"tqdm_class": progress} if progress else {})))
        else:
            snapshot = Path(snapshot_download(**kwargs, local_files_only=True))
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise ModelError(Message("checkpoint.no_such_repo", "Hugging Face has no model {repo} (or it is private)",
                                 repo=repr(repo_id) + (" at " + revision if revision else ""))) from None
    except LocalEntryNotFoundError:
        raise ModelError(Message("checkpoint.offline_missing", "{where} is not downloaded yet and the Hugging Face "
                                 "hub cannot be reached. {advice}", where=where,
                                 advice=_offline_advice(repo_id, subfolder))) from None
    except MapperatorError:  # e.g. Cancelled, raised by a progress callback
        raise
    except Exception as e:  # network failures surface as several httpx/hub/OS error types
        log.warning("download of %s failed", where, exc_info=True)
        raise ModelError(Message("checkpoint.download_failed", "could not download {where}: {reason}. {advice}",
                                 where=where, reason=str(e), advice=_offline_advice(repo_id, subfolder))) from None
    if checkpoint_state(snapshot / subfolder if subfolder else snapshot) is not CheckpointState.COMPLETE:
        raise ModelError(Message("checkpoint.cache_incomplete", "{where} in the Hugging Face cache is incomplete. "
                                 "{advice}", where=where, advice=_offline_advice(repo_id, subfolder)))
    _drop_finished_partials(snapshot.parent.parent / "blobs")
    return snapshot


def _drop_finished_partials(blobs: Path) -> None:
    """Remove resumable-download leftovers whose blob huggingface_hub fetched in full after all."""
    from .hub_resume import PARTIAL_SUFFIX

    for partial in blobs.glob("*" + PARTIAL_SUFFIX):
        if (blobs / partial.name[: -len(PARTIAL_SUFFIX)]).exists():
            partial.unlink(missing_ok=True)


def _fetch_weights_resumably(repo_id: str, revision: str | None, prefix: str, progress: type | None) -> None:
    """Fetch the weight files with :mod:`engine.hub_resume` (which continues a cut-off file) before
    snapshot_download does the rest. Anything but a cancel only logs: snapshot_download then tries itself
    and reports what is wrong."""
    from huggingface_hub import HfApi

    from .hub_resume import fetch_blob

    try:
        names = [s.rfilename for s in HfApi().model_info(repo_id, revision=revision).siblings or []]
    except Exception:
        return
    weights = [n for n in names if n.startswith(prefix) and "/" not in n[len(prefix):]
               and any(fnmatch.fnmatch(n[len(prefix):], p) for p in WEIGHT_PATTERNS if p.endswith(".safetensors"))]
    for name in weights:
        try:
            fetch_blob(repo_id, name, revision, progress)
        except MapperatorError:
            raise
        except Exception:
            log.warning("resumable download of %s/%s failed; leaving it to huggingface_hub", repo_id, name,
                        exc_info=True)


def hub_gamemode_subfolder(repo_id: str, gamemode: int, revision: str | None = None,
                           online: bool | None = None) -> str | None:
    """``gamemode=N`` when the hub repo has a model for that mode (asked of the cache first, then the hub)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    name = f"gamemode={gamemode}"
    cached = try_to_load_from_cache(repo_id, f"{name}/config.json", revision=revision)
    if isinstance(cached, str):
        return name
    if cached is not None:  # the hub said before that there is no such file
        return None
    if not (hub_online() if online is None else online):
        log.warning("offline: cannot tell whether %s has a %s model; using its root model", repo_id, name)
        return None
    try:
        hf_hub_download(repo_id, f"{name}/config.json", revision=revision)
        return name
    except EntryNotFoundError:
        return None
    except Exception:  # unreachable after all: fall back as offline
        log.warning("could not ask the hub for %s/%s; using the root model", repo_id, name, exc_info=True)
        return None


def locate(
    source: str,
    gamemode: int | None = None,
    subfolder: str | None = None,
    revision: str | None = None,
    progress: type | None = None,
) -> tuple[Path, str | None]:
    """Local folder of the checkpoint for ``source`` (downloading it when needed) and the subfolder used."""
    where, local = resolve_source(source)
    if local:
        root = Path(where)
        if subfolder is None:
            subfolder = gamemode_subfolder(_local_files(root), gamemode)
        folder = root / subfolder if subfolder else root
        if not folder.is_dir():
            raise ModelError(Message("checkpoint.no_folder", "{folder} does not exist", folder=str(folder)))
        return folder, subfolder
    online = hub_online()
    if subfolder is None and gamemode is not None:
        subfolder = hub_gamemode_subfolder(where, gamemode, revision, online)
    snapshot = download(where, revision=revision, subfolder=subfolder, progress=progress, online=online)
    return (snapshot / subfolder if subfolder else snapshot), subfolder


# --- config.json -> ModelConfig ------------------------------------------------------------------------------------


_PAD_MODES = ("reflect", "constant", "replicate", "circular")  # what torch.stft accepts


def parse_config(cfg: dict, where: str = "config.json") -> ModelConfig:
    """Validate a checkpoint's config.json and turn it into a ModelConfig.

    Every field's type and range is checked (sizes within :data:`engine.model.SIZE_LIMITS`), so a damaged file is a
    ModelError naming ``where`` and the field before anything is sized by it.
    """
    if not isinstance(cfg, dict):
        raise ModelError(Message("error.checkpoint.no_object", "{where} holds no JSON object; {damaged}", where=where,
                                 damaged=DAMAGED))
    f = Fields(cfg, where)
    if f.raw("model_type", "mapperatorinator") != "mapperatorinator":
        raise f.error("model_type", Message("error.checkpoint.model_type", "={value} is not 'mapperatorinator'",
                                            value=show(cfg["model_type"])))
    name = f.text("backbone_model_name")
    if name.startswith("Tiger14n/ropewhisper"):
        flavour = ROPEWHISPER
    elif name.startswith("OliBomby/varwhisper"):
        flavour = VARWHISPER
    elif name.startswith("openai/whisper"):
        flavour = WHISPER
    else:
        raise ModelError(Message(
            "checkpoint.unsupported_backbone", "{where}: backbone_model_name={name} is not supported; supported "
            "backbones are openai/whisper-* (v29), Tiger14n/ropewhisper-* (v30, v31) and OliBomby/varwhisper-* "
            "(v32, v32-mini)", where=where, name=repr(name)))
    for key, ok in (("input_features", True), ("input_raw_wave", False), ("embed_decoder_input", True)):
        if f.flag(key, ok) != ok:
            raise ModelError(Message("error.checkpoint.unsupported_flag", "{where}: {key}={value} is not supported "
                                     "(published models use {ok})", where=where, key=key, value=repr(cfg[key]),
                                     ok=str(ok)))
    impl = f.text("spectrogram_implementation", "torchaudio", choices=("torchaudio", NNAUDIO))
    bf = f.obj("backbone_config")
    backbone = _parse_backbone(bf, flavour)
    spectrogram = _parse_spectrogram(f, impl)
    vocab_size_in = f.integer("vocab_size_in", 1, VOCAB_LIMIT)
    vocab_size_out = f.integer("vocab_size", 1, vocab_size_in)
    limit = SIZE_LIMITS
    config = ModelConfig(
        backbone_name=name,
        backbone=backbone,
        spectrogram=spectrogram,
        vocab_size_in=vocab_size_in,
        vocab_size_out=vocab_size_out,
        do_style_embed=f.flag("do_style_embed", False),
        do_difficulty_embed=f.flag("do_difficulty_embed", False),
        do_mapper_embed=f.flag("do_mapper_embed", False),
        do_song_position_embed=f.flag("do_song_position_embed", False),
        project_encoder_input=f.flag("project_encoder_input", False),
        num_classes=f.integer("num_classes", 0, VOCAB_LIMIT, 0),
        num_mappers=f.integer("num_mappers", 0, VOCAB_LIMIT, 0),
        cond_dim=f.integer("cond_dim", 1, limit["cond_dim"], 128),
        cond_size=f.integer("cond_size", 0, limit["cond_size"], 0),
        rhythm_weight=f.number("rhythm_weight", 0.0, 1e6, 1.0),
        rhythm_token_start=f.integer("rhythm_token_start", 0, vocab_size_out, 0),
        rhythm_token_end=f.integer("rhythm_token_end", 0, vocab_size_out, 0),
        label_smoothing=f.number("label_smoothing", 0.0, 1.0, 0.0),
        init_std=f.number("init_std", 0.0, 100.0, 0.02),
    )
    expected_in = backbone.d_model if config.project_encoder_input else spectrogram.n_mels + config.cond_size
    if backbone.num_mel_bins != expected_in:
        source = "d_model" if config.project_encoder_input else "n_mels + cond_size"
        raise bf.error("num_mel_bins", Message("error.checkpoint.mel_bins", "={value} but {source} gives {expected}",
                                               value=backbone.num_mel_bins, source=source, expected=expected_in))
    conditioning = backbone.d_model * config.do_style_embed + config.cond_dim * (
        config.do_difficulty_embed + config.do_mapper_embed + config.do_song_position_embed)
    if config.cond_size != conditioning:
        raise f.error("cond_size", Message("error.checkpoint.cond_size", "={value} but the enabled do_*_embed "
                                           "conditioning gives {expected}", value=config.cond_size,
                                           expected=conditioning))
    if backbone.vocab_size != config.vocab_size_out:
        raise bf.error("vocab_size", Message("error.checkpoint.vocab_size", "={value} differs from "
                                             "vocab_size={expected}", value=backbone.vocab_size,
                                             expected=config.vocab_size_out))
    return config


def _parse_backbone(f: Fields, flavour: str) -> BackboneConfig:
    limit = SIZE_LIMITS
    if f.raw("scale_embedding", False) is not False:
        raise ModelError(Message("error.checkpoint.scale_embedding", "{where}: backbone_config.scale_embedding={value} "
                                 "is not supported (only false)", where=f.where, value=show(f.data["scale_embedding"])))
    if f.has("rope_scaling"):
        rope_scaling = f.obj("rope_scaling")
        kind = rope_scaling.raw("rope_type", rope_scaling.raw("type", "default"))
        if flavour == VARWHISPER and kind != "default":
            raise ModelError(Message("error.checkpoint.rope_scaling", "{where}: backbone_config.rope_scaling type "
                                     "{value} is not supported (only the default rope)", where=f.where,
                                     value=show(kind)))
    d_model = f.integer("d_model", 1, limit["d_model"])
    backbone = BackboneConfig(
        flavour=flavour,
        d_model=d_model,
        encoder_layers=f.integer("encoder_layers", 1, limit["layers"]),
        decoder_layers=f.integer("decoder_layers", 1, limit["layers"]),
        encoder_heads=f.integer("encoder_attention_heads", 1, limit["attention_heads"]),
        decoder_heads=f.integer("decoder_attention_heads", 1, limit["attention_heads"]),
        encoder_ffn_dim=f.integer("encoder_ffn_dim", 1, limit["ffn_dim"]),
        decoder_ffn_dim=f.integer("decoder_ffn_dim", 1, limit["ffn_dim"]),
        # n_mels + cond_size, or d_model when the encoder input is projected
        num_mel_bins=f.integer("num_mel_bins", 1, max(limit["n_mels"] + limit["cond_size"], limit["d_model"])),
        max_source_positions=f.integer("max_source_positions", 1, limit["max_source_positions"]),
        max_target_positions=f.integer("max_target_positions", 1, limit["max_target_positions"]),
        vocab_size=f.integer("vocab_size", 1, VOCAB_LIMIT),
        activation=f.text("activation_function", "gelu", choices=("gelu", "relu")),
        rope_type=f.text("rope_type", "dynamic"),
        rope_encoder_scaling=f.number("rope_encoder_scaling_factor", 1e-3, 1e3, 1.0),
        rope_decoder_scaling=f.number("rope_decoder_scaling_factor", 1e-3, 1e3, 1.0),
        attention_bias=f.flag("attention_bias", True),
        global_attn_every_n_layers=f.integer("global_attn_every_n_layers", 1, limit["layers"], 1),
        local_attention=f.integer("local_attention", 2, limit["local_attention"], 128),
        global_rope_theta=f.number("global_rope_theta", 1.0, 1e12, 10000.0),
        local_rope_theta=f.number("local_rope_theta", 1.0, 1e12, 10000.0),
    )
    for key, heads in (("encoder_attention_heads", backbone.encoder_heads),
                       ("decoder_attention_heads", backbone.decoder_heads)):
        if d_model % heads:
            raise f.error("d_model", Message("error.checkpoint.heads_divide", "={value} is not divisible by "
                                             "{key}={heads}", value=d_model, key=key, heads=heads))
        rotary = flavour != WHISPER  # rotary positions turn pairs of values
        if rotary and ((d_model // heads) % 2 or d_model // heads < 4):
            raise f.error("d_model", Message("error.checkpoint.rotary_heads", "={value} / {key}={heads} gives "
                                             "{per_head} values per head; rotary positions need an even number of "
                                             "at least 4",
                                             value=d_model, key=key, heads=heads, per_head=d_model // heads))
    return backbone


def _parse_spectrogram(f: Fields, implementation: str) -> SpectrogramConfig:
    limit = SIZE_LIMITS
    sample_rate = f.integer("sample_rate", 1000, limit["sample_rate"], 16000)
    f_min = f.number("f_min", 0.0, sample_rate / 2, 0.0)
    return SpectrogramConfig(
        sample_rate=sample_rate,
        n_fft=f.integer("n_fft", 2, limit["n_fft"], 1024),
        n_mels=f.integer("n_mels", 1, limit["n_mels"]),
        hop_length=f.integer("hop_length", 1, limit["hop_length"], 128),
        f_min=f_min,
        f_max=f.number("f_max", f_min, sample_rate / 2, 8000.0),
        pad_mode=f.text("pad_mode", "constant", choices=_PAD_MODES),
        log_scale=f.flag("spectrogram_log_scale", False),
        implementation=implementation,
    )


# --- weights ---------------------------------------------------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder; refuses pickle-only checkpoints."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = Fields(read_json(index), str(index)).obj("weight_map")
        for key, shard in weight_map.data.items():
            if not isinstance(shard, str) or Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise weight_map.error(key, Message("error.checkpoint.shard_name", "={value} is not the name of a "
                                                     "safetensors file beside it", value=show(shard)))
        files = [folder / s for s in sorted(set(weight_map.data.values()))]
    elif (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    else:
        files = sorted(folder.glob("model-*.safetensors"))
    if files:
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelError(Message("checkpoint.missing_shards", "{folder} lacks weight shards {shards} (download "
                                     "incomplete?)", folder=str(folder), shards=", ".join(missing)))
        return files
    pickles = [name for name in PICKLE_FILES if (folder / name).exists()]
    if pickles:
        raise ModelError(Message(
            "checkpoint.pickle_only", "{folder} has only pickle weights ({files}). Pickle files can run arbitrary "
            "code, so Mapperator loads safetensors only: convert them with safetensors' torch.save_file, or use the "
            "published model.", folder=str(folder), files=", ".join(pickles)))
    raise ModelError(Message("checkpoint.no_weights", "{folder} has no model.safetensors", folder=str(folder)))


def load_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelError(Message("checkpoint.bad_safetensors", "{file} is not a valid safetensors file ({reason}); "
                                     "delete it and download again", file=str(f), reason=str(e))) from None
    return state


def load_weights(model: Mapperatorinator, state: dict[str, torch.Tensor], where: Path) -> None:
    """Strict load: every model tensor must come from the file; only documented unused keys may be left over."""
    state = {k: v for k, v in state.items() if k not in UNUSED_CHECKPOINT_KEYS}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        details = []
        if missing:
            details.append(Message("error.checkpoint.missing_weights", "missing {keys}", keys=_first_five(missing)))
        if unexpected:
            details.append(Message("error.checkpoint.unexpected_weights", "unexpected {keys}",
                                   keys=_first_five(unexpected)))
        raise ModelError(Message("error.checkpoint.weights_misfit", "weights in {where} do not fit its config.json: "
                                 "{details}", where=str(where), details=joined(details, "; ")))
    for key, tensor in state.items():
        if tuple(own[key].shape) != tuple(tensor.shape):
            raise ModelError(Message("error.checkpoint.weight_shape", "weights in {where}: {key} has shape {shape}, "
                                     "config.json implies {expected}", where=str(where), key=key,
                                     shape=str(tuple(tensor.shape)), expected=str(tuple(own[key].shape))))
    model.load_state_dict(state, strict=True)


def _first_five(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" …" if len(names) > 5 else "")


# --- the entry point ----------------------------------------------------------------------------------------------


def load_checkpoint(
    source: str,
    *,
    gamemode: int | None = None,
    subfolder: str | None = None,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    version: str | None = None,
    progress: type | None = None,
) -> Checkpoint:
    """Load a checkpoint from a version name (``v32``), a hub repo id or a local folder.

    With ``gamemode`` set and no explicit ``subfolder``, a ``gamemode=N`` subfolder is used when the
    checkpoint has one (the published v32 keeps per-mode models there and the timing model at the root).
    """
    folder, used_subfolder = locate(source, gamemode=gamemode, subfolder=subfolder, revision=revision,
                                    progress=progress)
    config = parse_config(read_json(folder / "config.json"), str(folder / "config.json"))
    tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
    gen_path = folder / "generation_config.json"
    generation_config = read_json(gen_path) if gen_path.is_file() else {}
    if tokenizer.vocab_size_in != config.vocab_size_in or tokenizer.vocab_size_out != config.vocab_size_out:
        raise ModelError(Message(
            "error.checkpoint.vocab_sizes", "{folder}: tokenizer.json vocab sizes ({tokenizer_out}/{tokenizer_in}) "
            "differ from config.json ({config_out}/{config_in})", folder=str(folder),
            tokenizer_out=tokenizer.vocab_size_out, tokenizer_in=tokenizer.vocab_size_in,
            config_out=config.vocab_size_out, config_in=config.vocab_size_in))
    name = version or (source if source in PRESETS else None) or detect_version(
        config.backbone_name, set(tokenizer.context_sos))
    if name is None:
        raise ModelError(Message("checkpoint.unknown_version", "{folder}: cannot tell which Mapperatorinator version "
                                 "this checkpoint is; pass version=", folder=str(folder)))
    files = weight_files(folder)
    check_memory(config, device, files, folder / "config.json")
    with torch.device("meta"), _WithoutInitializers():
        model = Mapperatorinator(config)
    try:
        model = _materialized(model)
        _reinit_nonpersistent_buffers(model)
        load_weights(model, load_state_dict(files), folder)
        model = model.to(device=device)
        if dtype != torch.float32:
            _cast_keeping_spectrogram(model, dtype)
    except (MemoryError, RuntimeError) as e:  # what the estimate missed: other programs' memory, fragmentation
        if not isinstance(e, MemoryError) and not any(w in str(e) for w in ("allocate", "out of memory")):
            raise
        raise ModelError(Message("checkpoint.out_of_memory", "{folder}: not enough memory to load this model on "
                                 "{device} ({reason})", folder=str(folder), device=str(device),
                                 reason=str(e).strip().splitlines()[0] if str(e).strip() else "out of memory")) from None
    model.eval()
    return Checkpoint(model, tokenizer, config, PRESETS[name], folder, source, used_subfolder, generation_config)


# --- memory ----------------------------------------------------------------------------------------------------


def check_memory(config: ModelConfig, device: str | torch.device, files: list[Path], where: Path | str) -> None:
    """ModelError, before anything is allocated, when the model cannot fit where it is loaded.

    Loading holds the fp32 weights and the file's tensors on the host, then moves the fp32 weights to ``device``.
    Where the memory cannot be found out (Windows, MPS), nothing is checked.
    """
    params = parameter_count(config)
    fp32 = 4 * params
    file_bytes = sum(f.stat().st_size for f in files if f.is_file())
    device = torch.device(device)
    checks: list[tuple[Message, int, int | None]] = [
        (Message("checkpoint.host_memory", "this computer's memory"), fp32 + file_bytes, host_memory_bytes())]
    if device.type == "cuda":
        checks.append((Message("checkpoint.device_memory", "free memory of {device}", device=str(device)), fp32,
                       cuda_memory_bytes(device)))
    for what, need, have in checks:
        if have is not None and need > have:
            size = f"{params / 1e9:.1f} G" if params >= 1e9 else f"{params / 1e6:.0f} M"
            raise ModelError(Message("checkpoint.too_large", "{where}: this model has {size} parameters and needs "
                                     "about {need:.1f} GB of memory to load, but only {have:.1f} GB is available "
                                     "({what}); the checkpoint is damaged, or too large for this computer",
                                     where=str(where), size=size, need=need / 1e9, have=have / 1e9, what=what))


def host_memory_bytes() -> int | None:
    """Memory this process may use on the host: physical memory, lowered by a cgroup limit or an address-space
    limit (``ulimit -v``) where one is set; None where none of these can be read."""
    known = []
    try:
        known.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # no sysconf on Windows
        pass
    for cgroup_limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(cgroup_limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            known.append(int(text))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            known.append(max(soft - _address_space_used(), 0))
    except (ImportError, OSError, ValueError):
        pass
    return min(known) if known else None


def _address_space_used() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def cuda_memory_bytes(device: torch.device) -> int | None:
    """Memory a CUDA device can still give this process: free memory plus what torch holds cached but unused."""
    try:
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    except Exception:  # no driver, or a device torch cannot query: do not guess
        return None


class _WithoutInitializers(TorchFunctionMode):
    """Skips torch.nn.init's weight initializers while a model's skeleton is built on the meta device, whose
    values the checkpoint replaces. Drawing random numbers on meta tensors goes through torch's Python
    references, whose first use imports torch._dynamo: ~1 s of every process's first model load. A mode
    is active in its own thread only, so a model built meanwhile in another thread (training) keeps its init."""

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _materialized(model: Mapperatorinator) -> Mapperatorinator:
    """``model.to_empty(device="cpu")`` without its ``torch.empty_like`` of meta tensors, which goes through
    torch's Python references and imports sympy and torch.fx's symbolic shapes (~0.4-0.6 s) on first use."""
    return model._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device="cpu"))


def _reinit_nonpersistent_buffers(model: Mapperatorinator) -> None:
    """Buffers not stored in checkpoints (rotary frequencies) must be recomputed after meta construction."""
    for module in model.modules():
        if hasattr(module, "_inv_freq") and hasattr(module, "inv_freq"):
            module.inv_freq = module._inv_freq(module.base)


def _cast_keeping_spectrogram(model: Mapperatorinator, dtype: torch.dtype) -> None:
    spectrogram = model.spectrogram
    model.to(dtype)
    spectrogram.float()


def new_model(config: ModelConfig, seed: int | None = None) -> Mapperatorinator:
    """A freshly initialised model (training from scratch), weights drawn like upstream's init."""
    if seed is not None:
        torch.manual_seed(seed)
    model = Mapperatorinator(config)
    std = config.init_std
    for module in model.transformer.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
            torch.nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    torch.nn.init.normal_(model.decoder_embedder.weight, 0.0, std)
    if config.backbone.flavour == WHISPER:  # as transformers inits Whisper's position tables
        encoder, decoder = model.transformer.model.encoder, model.transformer.model.decoder
        with torch.no_grad():
            encoder.embed_positions.weight.copy_(_sinusoids(*encoder.embed_positions.weight.shape))
        torch.nn.init.normal_(decoder.embed_positions.weight, 0.0, std)
    return model


def _sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed sinusoidal encoder positions [length, channels] (sines, then cosines)."""
    increment = torch.log(torch.tensor(max_timescale)) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2))
    scaled = torch.arange(length).view(-1, 1) * inv_timescales.view(1, -1)
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


ProgressFactory = Callable[..., Any]
