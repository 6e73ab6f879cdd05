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
from .classes import ClassVocabulary
from .dit import DiT, DiTShape, shape_from_state_dict
from .safe_pickle import load_plain_pickle

DEFAULT_REPO = "OliBomby/osu-diffusion-v2"
MODEL_FILE, TOKENIZER_FILE = "model_ema.pkl", "tokenizer.pkl"
FORMAT = "mapperator-diffusion/1"


@dataclass
class DiffusionModel:
    dit: DiT
    classes: ClassVocabulary
    folder: Path  # the converted files

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
            raise ModelError(f"{folder}: not an osu-diffusion checkpoint (missing {', '.join(missing)})")
        return files
    if folder.exists() or "/" not in str(checkpoint) or str(checkpoint).count("/") != 1:
        raise ModelError(f"{checkpoint}: no such diffusion checkpoint folder or Hugging Face repo")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    from ..checkpoint import hub_online

    offline = not hub_online()  # as model downloads: one quick check, then the cache answers offline
    try:
        return tuple(Path(hf_hub_download(str(checkpoint), name, local_files_only=offline))  # type: ignore[return-value]
                     for name in (MODEL_FILE, TOKENIZER_FILE))
    except RepositoryNotFoundError:
        raise ModelError(f"Hugging Face has no diffusion model {str(checkpoint)!r} (or it is private); set diff_ckpt "
                         f"to a repo id such as {DEFAULT_REPO} or a local folder") from None
    except LocalEntryNotFoundError:
        raise ModelError(f"{checkpoint} ({MODEL_FILE}, {TOKENIZER_FILE}) is not downloaded yet and the Hugging Face "
                         "hub cannot be reached. Connect once to download it, or set diff_ckpt to a local folder "
                         "holding both files") from None
    except Exception as e:  # noqa: BLE001 - network failures and a missing file: one actionable message
        raise ModelError(f"could not get {checkpoint} ({MODEL_FILE}, {TOKENIZER_FILE}) from Hugging Face: {e}. "
                         "Connect once to download it, or give a local folder holding both files") from e


def _cache_key(files: tuple[Path, Path], heads: int | None) -> str:
    digest = hashlib.sha256(FORMAT.encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
    digest.update(str(heads).encode())
    return digest.hexdigest()[:32]


def _checked_state(path: Path, state) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor) or not v.is_floating_point()]
    if bad:
        raise ModelError(f"{path}: entry {bad[0]!r} is not a float tensor")
    return {k: v.float().contiguous() for k, v in state.items()}


def convert(files: tuple[Path, Path], target: Path, heads: int | None = None) -> None:
    """Read the two pickles safely, check them and write the converted files into ``target`` (atomically)."""
    from safetensors.torch import save_file

    model_path, tokenizer_path = files
    state = _checked_state(model_path, load_plain_pickle(model_path))
    tokenizer_state = load_plain_pickle(tokenizer_path)
    if not isinstance(tokenizer_state, dict):
        raise ModelError(f"{tokenizer_path}: expected the tokenizer's state dict, found {type(tokenizer_state).__name__}")
    try:
        classes = ClassVocabulary.from_state(tokenizer_state)
    except ValueError as e:
        raise ModelError(f"{tokenizer_path}: {e}") from e
    try:
        shape = shape_from_state_dict(state, heads)
    except (KeyError, ValueError, IndexError) as e:
        raise ModelError(f"{model_path}: not an osu-diffusion DiT state dict ({e})") from e
    if shape.class_size != classes.size:
        raise ModelError(f"{model_path}: takes {shape.class_size} classes but {tokenizer_path.name} describes {classes.size}")
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
        raise ModelError(f"{source}: weights do not fit a DiT {shape.width} wide, {shape.depth} deep: {e}") from e
    return dit.eval()


def load_converted(folder: Path, device: str | torch.device = "cpu") -> DiffusionModel:
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise ModelError(f"{folder}: converted with another format ({config.get('format')}); delete the folder")
        shape = DiTShape(**{k: config[k] for k in DiTShape.__dataclass_fields__})
        classes = ClassVocabulary.from_json(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
        state = load_file(str(folder / "model.safetensors"))
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{folder}: damaged converted diffusion checkpoint ({e}); delete the folder to convert again") from e
    dit = _build(shape, state, folder / "model.safetensors").to(device)
    return DiffusionModel(dit=dit, classes=classes, folder=folder)


def load_diffusion_model(checkpoint: str | Path = DEFAULT_REPO, device: str | torch.device = "cpu", *,
                         cache_dir: str | Path | None = None, heads: int | None = None) -> DiffusionModel:
    """The diffusion model of ``checkpoint`` (a folder with the two pickles, or a Hugging Face repo id),
    converted on first use. ``heads`` is needed only for DiT widths that are not a published size. A folder
    holding converted files (``config.json``, ``model.safetensors``, ``tokenizer.json``) is loaded as it is."""
    folder = Path(checkpoint).expanduser()
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return load_converted(folder, device)
    files = find_pickles(checkpoint)
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / _cache_key(files, heads)
    if not (target / "config.json").is_file():
        convert(files, target, heads)
    return load_converted(target, device)
