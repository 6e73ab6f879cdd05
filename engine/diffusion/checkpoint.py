"""osu-diffusion checkpoints: find the published pickles, convert them once, load the converted files.

A checkpoint is a folder (or Hugging Face repo, ``OliBomby/osu-diffusion-v2`` by default) holding
``model_ema.pkl`` and ``tokenizer.pkl``. On first use they are read through
:mod:`engine.diffusion.safe_pickle`, checked, and written to the cache as ``model.safetensors``,
``tokenizer.json`` and ``config.json``; later loads read only those, never the pickles again. The
cache entry is keyed by the pickles' resolved paths, sizes and modification times, so a replaced
file is converted again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError
from ..messages import Message
from .classes import ClassVocabulary
from .dit import DiT, DiTShape, shape_from_state_dict
from .precision import prepare_dit
from .safe_pickle import load_plain_pickle

DEFAULT_REPO = "OliBomby/osu-diffusion-v2"
MODEL_FILE, TOKENIZER_FILE = "model_ema.pkl", "tokenizer.pkl"
FORMAT = "mapperator-diffusion/1"


@dataclass
class DiffusionModel:
    dit: DiT
    classes: ClassVocabulary
    folder: Path  # the converted files
    precision: str = "fp32"  # what the DiT was prepared for (engine.diffusion.precision)

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device


def default_cache_dir() -> Path:
    import platformdirs

    return Path(os.environ.get("MAPPERATOR_CACHE") or platformdirs.user_cache_dir("Mapperator", appauthor=False)) / "diffusion"


def find_pickles(checkpoint: str | Path) -> tuple[Path, Path]:
    """(model_ema.pkl, tokenizer.pkl) of a folder, or of a Hugging Face repo (downloaded into its cache)."""
    folder = Path(checkpoint).expanduser()
    if folder.is_dir():
        files = folder / MODEL_FILE, folder / TOKENIZER_FILE
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelError(Message("error.diffusion.not_checkpoint", "{folder}: not an osu-diffusion checkpoint "
                                     "(missing {files})", folder=str(folder), files=", ".join(missing)))
        return files
    if folder.exists() or "/" not in str(checkpoint) or str(checkpoint).count("/") != 1:
        raise ModelError(Message("error.diffusion.no_such_checkpoint", "{checkpoint}: no such diffusion checkpoint "
                                 "folder or Hugging Face repo", checkpoint=str(checkpoint)))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    from ..checkpoint import hub_online

    offline = not hub_online()  # as model downloads: one quick check, then the cache answers offline
    try:
        return tuple(Path(hf_hub_download(str(checkpoint), name, local_files_only=offline))  # type: ignore[return-value]
                     for name in (MODEL_FILE, TOKENIZER_FILE))
    except RepositoryNotFoundError:
        raise ModelError(Message("error.diffusion.no_such_repo", "Hugging Face has no diffusion model {repo} (or it is "
                                 "private); set diff_ckpt to a repo id such as {default} or a local folder",
                                 repo=repr(str(checkpoint)), default=DEFAULT_REPO)) from None
    except LocalEntryNotFoundError:
        raise ModelError(Message("error.diffusion.offline_missing", "{checkpoint} ({files}) is not downloaded yet and "
                                 "the Hugging Face hub cannot be reached. Connect once to download it, or set "
                                 "diff_ckpt to a local folder holding both files", checkpoint=str(checkpoint),
                                 files=f"{MODEL_FILE}, {TOKENIZER_FILE}")) from None
    except Exception as e:  # noqa: BLE001 - network failures and a missing file: one actionable message
        raise ModelError(Message("error.diffusion.download_failed", "could not get {checkpoint} ({files}) from Hugging "
                                 "Face: {reason}. Connect once to download it, or give a local folder holding both "
                                 "files", checkpoint=str(checkpoint), files=f"{MODEL_FILE}, {TOKENIZER_FILE}",
                                 reason=str(e))) from e


def _reason(error: BaseException) -> str:
    """An exception's text, keeping its :class:`Message` when it was raised with one."""
    first = error.args[0] if len(error.args) == 1 else None
    return first if isinstance(first, Message) else str(error)


def _cache_key(files: tuple[Path, Path], heads: int | None) -> str:
    digest = hashlib.sha256(FORMAT.encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
    digest.update(str(heads).encode())
    return digest.hexdigest()[:32]


def _checked_state(path: Path, state) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not state:
        raise ModelError(Message("error.diffusion.not_state_dict", "{path}: expected a state dict of tensors, found "
                                 "{type}", path=str(path), type=type(state).__name__))
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor) or not v.is_floating_point()]
    if bad:
        raise ModelError(Message("error.diffusion.not_float_tensor", "{path}: entry {entry} is not a float tensor",
                                 path=str(path), entry=repr(bad[0])))
    return {k: v.float().contiguous() for k, v in state.items()}


def convert(files: tuple[Path, Path], target: Path, heads: int | None = None) -> None:
    """Read the two pickles safely, check them and write the converted files into ``target`` (atomically)."""
    from safetensors.torch import save_file

    model_path, tokenizer_path = files
    state = _checked_state(model_path, load_plain_pickle(model_path))
    tokenizer_state = load_plain_pickle(tokenizer_path)
    if not isinstance(tokenizer_state, dict):
        raise ModelError(Message("error.diffusion.not_tokenizer_state", "{path}: expected the tokenizer's state dict, "
                                 "found {type}", path=str(tokenizer_path), type=type(tokenizer_state).__name__))
    try:
        classes = ClassVocabulary.from_state(tokenizer_state)
    except ValueError as e:
        raise ModelError(Message("error.diffusion.bad_tokenizer", "{path}: {reason}", path=str(tokenizer_path),
                                 reason=_reason(e))) from e
    try:
        shape = shape_from_state_dict(state, heads)
    except (KeyError, ValueError, IndexError) as e:
        raise ModelError(Message("error.diffusion.not_dit", "{path}: not an osu-diffusion DiT state dict ({reason})",
                                 path=str(model_path), reason=_reason(e))) from e
    if shape.class_size != classes.size:
        raise ModelError(Message("error.diffusion.class_count", "{path}: takes {count} classes but {tokenizer} "
                                 "describes {size}", path=str(model_path), count=shape.class_size,
                                 tokenizer=tokenizer_path.name, size=classes.size))
    _build(shape, state, model_path)  # refuses wrong keys or shapes before anything is cached
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        save_file(state, str(staging / "model.safetensors"))
        (staging / "tokenizer.json").write_text(json.dumps(classes.to_json()), encoding="utf-8")
        config = {"format": FORMAT, **shape.__dict__,
                  "source": {"model": str(model_path), "tokenizer": str(tokenizer_path)}}
        (staging / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:  # another process converted it meanwhile
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build(shape: DiTShape, state: dict[str, torch.Tensor], source: Path) -> DiT:
    dit = DiT(shape)
    try:
        dit.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(Message("error.diffusion.weights_do_not_fit", "{path}: weights do not fit a DiT {width} wide, "
                                 "{depth} deep: {reason}", path=str(source), width=shape.width, depth=shape.depth,
                                 reason=str(e))) from e
    return dit.eval()


def load_converted(folder: Path, device: str | torch.device = "cpu", precision: str = "fp32") -> DiffusionModel:
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise ModelError(Message("error.diffusion.other_format", "{folder}: converted with another format "
                                     "({format}); delete the folder", folder=str(folder),
                                     format=str(config.get("format"))))
        shape = DiTShape(**{k: config[k] for k in DiTShape.__dataclass_fields__})
        classes = ClassVocabulary.from_json(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
        state = load_file(str(folder / "model.safetensors"))
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise ModelError(Message("error.diffusion.damaged_conversion", "{folder}: damaged converted diffusion "
                                 "checkpoint ({reason}); delete the folder to convert again", folder=str(folder),
                                 reason=str(e))) from e
    dit = prepare_dit(_build(shape, state, folder / "model.safetensors").to(device), precision)
    return DiffusionModel(dit=dit, classes=classes, folder=folder, precision=precision)


def load_diffusion_model(checkpoint: str | Path = DEFAULT_REPO, device: str | torch.device = "cpu", *,
                         precision: str = "fp32", cache_dir: str | Path | None = None,
                         heads: int | None = None) -> DiffusionModel:
    """The diffusion model of ``checkpoint`` (a folder with the two pickles, or a Hugging Face repo id),
    converted on first use, prepared for ``precision`` (:func:`engine.diffusion.precision.prepare_dit`).
    ``heads`` is needed only for DiT widths that are not a published size. A folder holding converted files
    (``config.json``, ``model.safetensors``, ``tokenizer.json``) is loaded as it is."""
    folder = Path(checkpoint).expanduser()
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return load_converted(folder, device, precision)
    files = find_pickles(checkpoint)
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / _cache_key(files, heads)
    if not (target / "config.json").is_file():
        convert(files, target, heads)
    return load_converted(target, device, precision)
