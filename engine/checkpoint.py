"""Find, download and load Mapperatorinator checkpoints.

A checkpoint is a folder (local, or a Hugging Face repo revision) holding ``config.json``,
``tokenizer.json``, ``generation_config.json`` and ``model.safetensors`` (or safetensors shards). The
published repos keep one model at the root and per-mode models in ``gamemode=N/`` subfolders.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import MapperatorError, ModelError
from .model import (
    ROPEWHISPER, UNUSED_CHECKPOINT_KEYS, VARWHISPER, BackboneConfig, Mapperatorinator, ModelConfig,
    SpectrogramConfig,
)
from .presets import PRESETS, VersionPreset, detect_version
from .tokenizer import Tokenizer

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
    raise ModelError(
        f"model {source!r} is neither a folder, a Hugging Face repo id, nor a version "
        f"({', '.join(PRESETS)})"
    )


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


def _offline_advice(repo_id: str, subfolder: str | None) -> str:
    extra = f" --gamemode {subfolder.split('=')[1]}" if subfolder else ""
    return (f"Connect to the internet and run `mapperator download {repo_id}{extra}` (or use Models in the app), "
            f"or point model_path at a local checkpoint folder.")


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file() and (
        (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file())


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
        raise ModelError(f"Hugging Face has no model {repo_id!r}{' at ' + revision if revision else ''} "
                         "(or it is private)") from None
    except LocalEntryNotFoundError:
        raise ModelError(f"{where} is not downloaded yet and the Hugging Face hub cannot be reached. "
                         + _offline_advice(repo_id, subfolder)) from None
    except MapperatorError:  # e.g. Cancelled, raised by a progress callback
        raise
    except Exception as e:  # network failures surface as several httpx/hub/OS error types
        log.warning("download of %s failed", where, exc_info=True)
        raise ModelError(f"could not download {where}: {e}. " + _offline_advice(repo_id, subfolder)) from None
    if not _complete(snapshot / subfolder if subfolder else snapshot):
        raise ModelError(f"{where} in the Hugging Face cache is incomplete. " + _offline_advice(repo_id, subfolder))
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
            raise ModelError(f"{folder} does not exist")
        return folder, subfolder
    online = hub_online()
    if subfolder is None and gamemode is not None:
        subfolder = hub_gamemode_subfolder(where, gamemode, revision, online)
    snapshot = download(where, revision=revision, subfolder=subfolder, progress=progress, online=online)
    return (snapshot / subfolder if subfolder else snapshot), subfolder


# --- config.json -> ModelConfig ------------------------------------------------------------------------------------


def _field(d: dict, key: str, kind: type | tuple, where: str = "config.json", default: Any = ...) -> Any:
    if key not in d or d[key] is None:
        if default is not ...:
            return default
        raise ModelError(f"{where} lacks the field {key!r}")
    value = d[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelError(f"{where} field {key!r} has an unsupported value {value!r}")
    return value


def parse_config(cfg: dict) -> ModelConfig:
    """Validate a checkpoint's config.json and turn it into a ModelConfig; errors name the field."""
    if cfg.get("model_type") not in (None, "mapperatorinator"):
        raise ModelError(f"config.json field 'model_type' is {cfg.get('model_type')!r}, not 'mapperatorinator'")
    name = _field(cfg, "backbone_model_name", str)
    if name.startswith("Tiger14n/ropewhisper"):
        flavour = ROPEWHISPER
    elif name.startswith("OliBomby/varwhisper"):
        flavour = VARWHISPER
    else:
        raise ModelError(
            f"config.json field 'backbone_model_name' is {name!r}; supported backbones are "
            "Tiger14n/ropewhisper-* (v30, v31) and OliBomby/varwhisper-* (v32, v32-mini)"
        )
    for key, ok in (("input_features", True), ("input_raw_wave", False), ("embed_decoder_input", True)):
        if bool(cfg.get(key, ok)) != ok:
            raise ModelError(f"config.json field {key!r} = {cfg.get(key)!r} is not supported (published models use {ok})")
    impl = cfg.get("spectrogram_implementation", "torchaudio")
    if impl != "torchaudio":
        raise ModelError(f"config.json field 'spectrogram_implementation' = {impl!r} is not supported (only torchaudio)")

    bc = cfg.get("backbone_config")
    if not isinstance(bc, dict):
        raise ModelError("config.json lacks the field 'backbone_config'")
    w = "config.json backbone_config"
    if bc.get("scale_embedding"):
        raise ModelError(f"{w} field 'scale_embedding' = true is not supported")
    rope_scaling = bc.get("rope_scaling") or {"rope_type": "default", "factor": 1.0}
    if flavour == VARWHISPER and (rope_scaling.get("rope_type", rope_scaling.get("type")) != "default"):
        raise ModelError(f"{w} field 'rope_scaling' = {rope_scaling!r} is not supported (only the default rope)")
    backbone = BackboneConfig(
        flavour=flavour,
        d_model=_field(bc, "d_model", int, w),
        encoder_layers=_field(bc, "encoder_layers", int, w),
        decoder_layers=_field(bc, "decoder_layers", int, w),
        encoder_heads=_field(bc, "encoder_attention_heads", int, w),
        decoder_heads=_field(bc, "decoder_attention_heads", int, w),
        encoder_ffn_dim=_field(bc, "encoder_ffn_dim", int, w),
        decoder_ffn_dim=_field(bc, "decoder_ffn_dim", int, w),
        num_mel_bins=_field(bc, "num_mel_bins", int, w),
        max_source_positions=_field(bc, "max_source_positions", int, w),
        max_target_positions=_field(bc, "max_target_positions", int, w),
        vocab_size=_field(bc, "vocab_size", int, w),
        activation=_field(bc, "activation_function", str, w, "gelu"),
        rope_type=_field(bc, "rope_type", str, w, "dynamic"),
        rope_encoder_scaling=_field(bc, "rope_encoder_scaling_factor", float, w, 1.0),
        rope_decoder_scaling=_field(bc, "rope_decoder_scaling_factor", float, w, 1.0),
        attention_bias=_field(bc, "attention_bias", bool, w, True),
        global_attn_every_n_layers=_field(bc, "global_attn_every_n_layers", int, w, 1),
        local_attention=_field(bc, "local_attention", int, w, 128),
        global_rope_theta=_field(bc, "global_rope_theta", float, w, 10000.0),
        local_rope_theta=_field(bc, "local_rope_theta", float, w, 10000.0),
    )
    if backbone.activation not in ("gelu", "relu"):
        raise ModelError(f"{w} field 'activation_function' = {backbone.activation!r} is not supported")
    if backbone.d_model % backbone.encoder_heads or backbone.d_model % backbone.decoder_heads:
        raise ModelError(f"{w}: d_model {backbone.d_model} is not divisible by the attention heads")
    spectrogram = SpectrogramConfig(
        sample_rate=_field(cfg, "sample_rate", int, default=16000),
        n_fft=_field(cfg, "n_fft", int, default=1024),
        n_mels=_field(cfg, "n_mels", int),
        hop_length=_field(cfg, "hop_length", int, default=128),
        f_min=_field(cfg, "f_min", float, default=0.0),
        f_max=_field(cfg, "f_max", float, default=8000.0),
        pad_mode=_field(cfg, "pad_mode", str, default="constant"),
        log_scale=_field(cfg, "spectrogram_log_scale", bool, default=False),
    )
    config = ModelConfig(
        backbone_name=name,
        backbone=backbone,
        spectrogram=spectrogram,
        vocab_size_in=_field(cfg, "vocab_size_in", int),
        vocab_size_out=_field(cfg, "vocab_size", int),
        do_style_embed=_field(cfg, "do_style_embed", bool, default=False),
        do_difficulty_embed=_field(cfg, "do_difficulty_embed", bool, default=False),
        do_mapper_embed=_field(cfg, "do_mapper_embed", bool, default=False),
        do_song_position_embed=_field(cfg, "do_song_position_embed", bool, default=False),
        project_encoder_input=_field(cfg, "project_encoder_input", bool, default=False),
        num_classes=_field(cfg, "num_classes", int, default=0),
        num_mappers=_field(cfg, "num_mappers", int, default=0),
        cond_dim=_field(cfg, "cond_dim", int, default=128),
        cond_size=_field(cfg, "cond_size", int, default=0),
        rhythm_weight=_field(cfg, "rhythm_weight", float, default=1.0),
        rhythm_token_start=_field(cfg, "rhythm_token_start", int, default=0),
        rhythm_token_end=_field(cfg, "rhythm_token_end", int, default=0),
        label_smoothing=_field(cfg, "label_smoothing", float, default=0.0),
        init_std=_field(cfg, "init_std", float, default=0.02),
    )
    expected_in = backbone.d_model if config.project_encoder_input else spectrogram.n_mels + config.cond_size
    if backbone.num_mel_bins != expected_in:
        raise ModelError(
            f"{w} field 'num_mel_bins' is {backbone.num_mel_bins} but n_mels + cond_size gives {expected_in}"
        )
    if backbone.vocab_size != config.vocab_size_out:
        raise ModelError(f"{w} field 'vocab_size' {backbone.vocab_size} differs from config.json 'vocab_size' "
                         f"{config.vocab_size_out}")
    return config


def read_json(path: Path, folder_kind: str = "checkpoint") -> dict:
    """The JSON object in ``path``, a file of a checkpoint (or other ``folder_kind``) folder; ModelError naming
    the file when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: {path.parent} is not a complete {folder_kind}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path} cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} does not hold a JSON object")
    return data


# --- weights ---------------------------------------------------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder; refuses pickle-only checkpoints."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        files = [folder / s for s in shards]
    elif (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    else:
        files = sorted(folder.glob("model-*.safetensors"))
    if files:
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelError(f"{folder} lacks weight shards {', '.join(missing)} (download incomplete?)")
        return files
    pickles = [name for name in PICKLE_FILES if (folder / name).exists()]
    if pickles:
        raise ModelError(
            f"{folder} has only pickle weights ({', '.join(pickles)}). Pickle files can run arbitrary code, so "
            "Mapperator loads safetensors only: convert them with safetensors' torch.save_file, or use the "
            "published model."
        )
    raise ModelError(f"{folder} has no model.safetensors")


def load_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelError(f"{f} is not a valid safetensors file ({e}); delete it and download again") from None
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
            details.append(f"missing {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}")
        raise ModelError(f"weights in {where} do not fit its config.json: {'; '.join(details)}")
    for key, tensor in state.items():
        if tuple(own[key].shape) != tuple(tensor.shape):
            raise ModelError(f"weights in {where}: {key} has shape {tuple(tensor.shape)}, "
                             f"config.json implies {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=True)


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
    config = parse_config(read_json(folder / "config.json"))
    tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
    gen_path = folder / "generation_config.json"
    generation_config = read_json(gen_path) if gen_path.is_file() else {}
    if tokenizer.vocab_size_in != config.vocab_size_in or tokenizer.vocab_size_out != config.vocab_size_out:
        raise ModelError(
            f"{folder}: tokenizer.json vocab sizes ({tokenizer.vocab_size_out}/{tokenizer.vocab_size_in}) differ "
            f"from config.json ({config.vocab_size_out}/{config.vocab_size_in})"
        )
    name = version or (source if source in PRESETS else None) or detect_version(
        config.backbone_name, set(tokenizer.context_sos))
    if name is None:
        raise ModelError(f"{folder}: cannot tell which Mapperatorinator version this checkpoint is; pass version=")
    with torch.device("meta"):
        model = Mapperatorinator(config)
    model = model.to_empty(device="cpu")
    _reinit_nonpersistent_buffers(model)
    load_weights(model, load_state_dict(weight_files(folder)), folder)
    model = model.to(device=device)
    if dtype != torch.float32:
        _cast_keeping_spectrogram(model, dtype)
    model.eval()
    return Checkpoint(model, tokenizer, config, PRESETS[name], folder, source, used_subfolder, generation_config)


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
    return model


ProgressFactory = Callable[..., Any]
