"""LoRA adapters (via peft): wrap a model for fine-tuning, save the adapter, and merge one at load time.

An adapter folder holds peft's ``adapter_config.json`` and ``adapter_model.safetensors`` plus
``mapperatorinator_lora_metadata.json``. Upstream writes that file with ``format_version`` and
``ckpt_subfolders`` (which checkpoint subfolders, e.g. ``["gamemode=0"]``, the adapter may be applied
to; ``null`` = any). Adapters trained here add a ``base_model`` entry naming the model they were
trained on: its source (folder or hub repo), subfolder, version and a fingerprint of its weights.

:func:`apply_lora` refuses, with a :class:`~engine.errors.ModelError`, an adapter made for another
base: another version, a subfolder it does not list, other weights, or modules the model lacks.
Adapters trained by upstream (no ``base_model`` entry) are checked by subfolder and by their modules
and tensor shapes, and load as upstream loads them (``PeftModel.from_pretrained`` + merge). That
includes PiSSA adapters: peft re-derives the same residual base from the same base weights.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from .checkpoint import read_json
from .errors import ModelError
from .messages import Message

if TYPE_CHECKING:  # pragma: no cover
    from .checkpoint import Checkpoint

log = logging.getLogger(__name__)

METADATA_FILE = "mapperatorinator_lora_metadata.json"  # upstream's name
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FORMAT_VERSION = 1
_GAMEMODE_FOLDER = re.compile(r"^gamemode=\d+$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FINGERPRINT_TENSOR = "decoder_embedder.weight"  # present in every checkpoint, cheap to hash


@dataclass(frozen=True)
class LoraSettings:
    """peft LoraConfig values (upstream's ``lora:`` group)."""

    r: int = 64
    alpha: float = 128
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
    bias: str = "none"
    init_weights: str | bool = "pissa"


@dataclass(frozen=True)
class BaseModel:
    """The checkpoint an adapter was trained on."""

    source: str  # hub repo id or folder, as given
    subfolder: str  # "" for the root, "gamemode=N" for a per-mode model
    version: str
    fingerprint: str | None  # sha256 of the decoder embedding's bytes in the checkpoint file

    def describe(self) -> str:
        where = f"{self.source}/{self.subfolder}" if self.subfolder else self.source
        return f"{where} ({self.version})"


# --- training side -------------------------------------------------------------------------------------------


def wrap_for_training(model: torch.nn.Module, settings: LoraSettings):
    """The model with LoRA layers on ``target_modules``; only the adapter (and biases, if asked) trains."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ModelError("LoRA needs the peft package: pip install peft") from None
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in settings.target_modules if t in present]
    if not targets:
        raise ModelError(f"none of the LoRA target modules {list(settings.target_modules)} exist in this model "
                         f"(its attention layers are named {', '.join(sorted(_attention_names(model)))})")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, bias=settings.bias, init_lora_weights=settings.init_weights)
    return get_peft_model(model, config)


def save_adapter(peft_model, folder: str | Path, base: BaseModel, ckpt_subfolders: Sequence[str] | None = None) -> Path:
    """Write the adapter and its metadata (upstream's fields plus ``base_model``) into ``folder``."""
    folder = Path(folder)
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = base.source
    peft_model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # peft's empty model card template
    metadata = {
        "format_version": FORMAT_VERSION,
        "ckpt_subfolders": _normalise_subfolders(ckpt_subfolders),
        "base_model": {"source": base.source, "subfolder": base.subfolder, "version": base.version,
                       "fingerprint": base.fingerprint},
    }
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def load_adapter_weights(peft_model, folder: str | Path) -> None:
    """Load a saved adapter's weights into a model wrapped with the same settings (resuming training)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(folder) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise ModelError(f"{path.parent} holds no LoRA adapter ({ADAPTER_WEIGHTS} is missing)")
    result = set_peft_model_state_dict(peft_model, load_file(str(path)))
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ModelError(f"{path}: adapter tensors do not fit this model ({', '.join(unexpected[:3])} …)")


def base_model_of(checkpoint: "Checkpoint", source: str | None = None) -> BaseModel:
    """How an adapter trained on ``checkpoint`` names its base."""
    return BaseModel(
        source=source or checkpoint.source,
        subfolder=checkpoint_subfolder(checkpoint),
        version=checkpoint.version,
        fingerprint=weights_fingerprint(checkpoint.path),
    )


# --- inference side -----------------------------------------------------------------------------------------


def apply_lora(checkpoint: "Checkpoint", lora_path: str, *, revision: str | None = None) -> "Checkpoint":
    """Merge the adapter at ``lora_path`` (folder or hub repo id) into ``checkpoint.model``, in place.

    Raises ModelError when the adapter cannot be found or read, or was made for another base model.
    """
    folder = locate_adapter(lora_path, revision=revision)
    metadata = read_metadata(folder)
    check_compatible(checkpoint, metadata, folder)
    adapter_config = read_json(folder / ADAPTER_CONFIG, "LoRA adapter")
    _check_modules(checkpoint.model, adapter_config, folder)
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelError(Message("error.lora.needs_peft", "lora_path needs the peft package, which the double-click "
                                 "app does not include: install Mapperator with pip (README) to use LoRA adapters, "
                                 "or pip install peft")) from None

    model = checkpoint.model
    dtype = model.dtype
    spectrogram_dtype = next(model.spectrogram.buffers()).dtype
    if dtype != torch.float32:
        model.float()  # merging (and PiSSA's SVD) in full precision
    try:
        wrapped = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
        merged = wrapped.merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as e:
        raise ModelError(Message("error.lora.does_not_fit", "LoRA adapter {adapter} does not fit {model}: {reason}",
                                 adapter=lora_path, model=checkpoint.source, reason=_first_line(e))) from None
    if dtype != torch.float32:
        merged.to(dtype)
        merged.spectrogram.to(spectrogram_dtype)
    merged.eval()
    checkpoint.model = merged
    log.info("merged LoRA adapter %s into %s", lora_path, checkpoint.source)
    return checkpoint


def locate_adapter(lora_path: str, revision: str | None = None) -> Path:
    """The local folder of an adapter: the folder itself, or the hub repo's snapshot (downloaded if needed)."""
    path = Path(lora_path).expanduser()
    if path.is_dir():
        if not (path / ADAPTER_CONFIG).is_file() and (path / "lora" / ADAPTER_CONFIG).is_file():
            path = path / "lora"  # a training checkpoint folder: the adapter lives in its lora/ subfolder
        if not (path / ADAPTER_CONFIG).is_file():
            raise ModelError(Message("error.lora.not_adapter_folder", "{path} is not a LoRA adapter folder ({file} is "
                                     "missing)", path=str(path), file=ADAPTER_CONFIG))
        return path
    if path.exists():
        raise ModelError(Message("error.lora.path_is_file", "lora_path {path} is a file; give the adapter's folder",
                                 path=str(path)))
    if not _REPO_ID.match(lora_path) or lora_path.startswith((".", "/")) or "\\" in lora_path:
        raise ModelError(Message("error.lora.bad_path", "lora_path {path} is neither a folder nor a Hugging Face repo "
                                 "id", path=repr(lora_path)))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        snapshot = Path(snapshot_download(lora_path, revision=revision,
                                          allow_patterns=[ADAPTER_CONFIG, ADAPTER_WEIGHTS, METADATA_FILE,
                                                          "adapter_model.bin"]))
    except RepositoryNotFoundError:
        raise ModelError(Message("error.lora.no_such_repo", "Hugging Face has no repo {repo} (or it is private)",
                                 repo=repr(lora_path))) from None
    except LocalEntryNotFoundError:
        raise ModelError(Message("error.lora.offline_missing", "LoRA adapter {adapter} is not downloaded yet and the "
                                 "Hugging Face hub cannot be reached; connect to the internet or point lora_path at a "
                                 "local folder", adapter=lora_path)) from None
    except (HfHubHTTPError, OSError) as e:
        raise ModelError(Message("error.lora.download_failed", "could not download LoRA adapter {adapter}: {reason}",
                                 adapter=lora_path, reason=str(e))) from None
    if not (snapshot / ADAPTER_CONFIG).is_file():
        raise ModelError(Message("error.lora.not_adapter_repo", "{adapter} is not a LoRA adapter repo ({file} is "
                                 "missing)", adapter=lora_path, file=ADAPTER_CONFIG))
    if not (snapshot / ADAPTER_WEIGHTS).is_file():
        raise ModelError(Message("error.lora.no_safetensors", "{adapter} has no {file} (pickle adapters are not "
                                 "loaded)", adapter=lora_path, file=ADAPTER_WEIGHTS))
    return snapshot


def read_metadata(folder: Path) -> dict[str, Any] | None:
    """The adapter's metadata file, or None when it has none (adapters made without it load anywhere)."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return None
    data = read_json(path, "LoRA adapter")
    subfolders = data.get("ckpt_subfolders")
    if subfolders is not None and not (isinstance(subfolders, list) and all(isinstance(s, str) for s in subfolders)):
        raise ModelError(Message("error.lora.bad_subfolders", "{path}: 'ckpt_subfolders' must be a list of folder "
                                 "names or null, not {value}", path=str(path), value=repr(subfolders)))
    data["ckpt_subfolders"] = _normalise_subfolders(subfolders)
    return data


def check_compatible(checkpoint: "Checkpoint", metadata: dict[str, Any] | None, where: Path | str = "") -> None:
    """Raise ModelError unless the adapter described by ``metadata`` was made for ``checkpoint``."""
    if metadata is None:
        return
    here = checkpoint_subfolder(checkpoint)
    allowed = metadata.get("ckpt_subfolders")
    if allowed is not None and here not in allowed:
        raise ModelError(Message(
            "error.lora.other_subfolder", "LoRA adapter {adapter} applies to the checkpoint subfolder(s) {allowed}, "
            "but the loaded model is {model} {subfolder}; pick the matching model (gamemode) or another adapter",
            adapter=str(where), allowed=", ".join(map(repr, allowed)), model=checkpoint.source,
            subfolder="/" + here if here else Message("error.lora.root", "(root)")))
    base = metadata.get("base_model")
    if not isinstance(base, dict):
        return
    trained_on = BaseModel(str(base.get("source", "?")), str(base.get("subfolder") or ""),
                           str(base.get("version", "?")), base.get("fingerprint"))
    if trained_on.version != checkpoint.version:
        raise ModelError(Message("error.lora.other_version", "LoRA adapter {adapter} was trained on {base}, a "
                                 "{version} model; it cannot be applied to this {model_version} model ({model})",
                                 adapter=str(where), base=trained_on.describe(), version=trained_on.version,
                                 model_version=checkpoint.version, model=checkpoint.source))
    if trained_on.fingerprint:
        mine = weights_fingerprint(checkpoint.path)
        if mine is not None and mine != trained_on.fingerprint:
            raise ModelError(Message("error.lora.other_weights", "LoRA adapter {adapter} was trained on {base}, whose "
                                     "weights differ from the loaded model ({model}); load that base model with it",
                                     adapter=str(where), base=trained_on.describe(), model=checkpoint.source))


def checkpoint_subfolder(checkpoint: "Checkpoint") -> str:
    """The checkpoint's subfolder in upstream's sense: ``gamemode=N`` or "" for the root model."""
    if checkpoint.subfolder:
        return _normalise_subfolder(checkpoint.subfolder)
    name = Path(checkpoint.path).name
    return name if _GAMEMODE_FOLDER.match(name) else ""


def weights_fingerprint(folder: str | Path) -> str | None:
    """sha256 of one weight tensor as stored in the checkpoint's safetensors; None if it cannot be read."""
    folder = Path(folder)
    files = sorted(folder.glob("model*.safetensors"))
    try:
        from safetensors import safe_open

        for file in files:
            with safe_open(str(file), framework="pt") as f:
                if _FINGERPRINT_TENSOR in f.keys():
                    tensor = f.get_tensor(_FINGERPRINT_TENSOR)
                    return hashlib.sha256(tensor.float().contiguous().numpy().tobytes()).hexdigest()
    except Exception:  # an unreadable file is reported by the weight loader, not here
        return None
    return None


def _check_modules(model: torch.nn.Module, adapter_config: dict, folder: Path) -> None:
    targets = adapter_config.get("target_modules") or []
    if isinstance(targets, str):  # a regex in peft's format: let peft match it
        return
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if targets and len(missing) == len(targets):
        raise ModelError(Message("error.lora.missing_modules", "LoRA adapter {adapter} targets {targets}, which this "
                                 "model does not have (its attention layers are {layers}): it was made for another "
                                 "model version", adapter=str(folder), targets=", ".join(targets),
                                 layers=", ".join(sorted(_attention_names(model)))))
    try:
        from safetensors import safe_open

        with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise ModelError(Message("json.unreadable", "{path} cannot be read: {reason}",
                                 path=str(folder / ADAPTER_WEIGHTS), reason=_first_line(e))) from None
    modules = dict(model.named_modules())
    for key, shape in shapes.items():
        m = re.match(r"^(?:base_model\.model\.)?(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
        if not m or m.group(1) not in modules or not isinstance(modules[m.group(1)], torch.nn.Linear):
            continue
        layer = modules[m.group(1)]
        expected = layer.in_features if m.group(2) == "A" else layer.out_features
        actual = shape[1] if m.group(2) == "A" else shape[0]
        if actual != expected:
            raise ModelError(Message("error.lora.other_shape", "LoRA adapter {adapter} was made for another model: "
                                     "{module} has {expected} features here, {actual} in the adapter",
                                     adapter=str(folder), module=m.group(1), expected=expected, actual=actual))


def _attention_names(model: torch.nn.Module) -> set[str]:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return names & {"q_proj", "k_proj", "v_proj", "out_proj", "Wq", "Wkv", "Wqkv", "Wo"}


def _normalise_subfolder(name: str | None) -> str:
    return (name or "").strip().replace("\\", "/").strip("/")


def _normalise_subfolders(names: Sequence[str] | None) -> list[str] | None:
    return None if names is None else sorted({_normalise_subfolder(n) for n in names})


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
