"""Which checkpoints are on this computer: the published versions in the Hugging Face cache (complete by the
rule of :mod:`engine.checkpoint_files`), a model's vocabulary (from its tokenizer.json), and downloading a
version with its mode models.

Listing models and reading vocabularies never loads torch, so the app fills its pickers without it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .checkpoint_files import CheckpointState, checkpoint_state
from .errors import ModelError
from .messages import Message
from .gamemodes import GAMEMODE_NAMES
from .presets import PRESETS

log = logging.getLogger(__name__)


# --- the Hugging Face cache ------------------------------------------------------------------------------------


@dataclass
class InstalledModel:
    version: str  # v30, v31, v32, v32-mini, or the repo id of another repo
    repo_id: str
    root: bool = False  # the main checkpoint is complete
    gamemodes: list[int] = field(default_factory=list)  # complete gamemode=N subfolders
    size_bytes: int = 0
    snapshot: Path | None = None
    partial: bool = False  # some files are here, the checkpoint is not complete: Download finishes it

    @property
    def installed(self) -> bool:
        return self.root


def find_models(cache_dir: str | Path | None = None) -> list[InstalledModel]:
    """One row per published version (installed or not), plus other Mapperatorinator repos in the cache."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound
    from huggingface_hub.file_download import repo_folder_name

    from .hub_resume import PARTIAL_SUFFIX

    rows = {p.repo_id: InstalledModel(name, p.repo_id) for name, p in PRESETS.items()}
    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return list(rows.values())
    except OSError as e:
        log.warning("could not scan the Hugging Face cache: %s", e)
        return list(rows.values())
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        if repo.repo_id not in rows and "mapperatorinator" not in repo.repo_id.lower():
            continue
        row = rows.setdefault(repo.repo_id, InstalledModel(repo.repo_id, repo.repo_id))
        row.size_bytes = repo.size_on_disk
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        if newest is None:
            continue
        snapshot = Path(newest.snapshot_path)
        state = checkpoint_state(snapshot)
        row.root = state is CheckpointState.COMPLETE
        row.gamemodes = [m for m in GAMEMODE_NAMES
                         if checkpoint_state(snapshot / f"gamemode={m}") is CheckpointState.COMPLETE]
        row.snapshot = snapshot
        row.partial = not row.root and (state is CheckpointState.PARTIAL or bool(newest.files))
    # A cut-off weights file waits in blobs/ (possibly before any snapshot exists, which the scan skips).
    cache_root = Path(cache_dir) if cache_dir else Path(constants.HF_HUB_CACHE)
    for row in rows.values():
        blobs = cache_root / repo_folder_name(repo_id=row.repo_id, repo_type="model") / "blobs"
        if not row.root and any(p.name.endswith((".incomplete", PARTIAL_SUFFIX)) for p in blobs.glob("*")):
            row.partial = True
    return list(rows.values())


def model_folder(model: str, gamemode: int | None = None) -> Path | None:
    """The complete checkpoint folder a model choice (version, folder or cached repo id) resolves to on this
    computer, without touching the network: the ``gamemode=N`` model when there is one for ``gamemode``."""
    model = (model or "").strip()
    if not model:
        return None
    if model in PRESETS:
        row = next((m for m in find_models() if m.repo_id == PRESETS[model].repo_id), None)
        if row is None or not row.installed or row.snapshot is None:
            return None
        return row.snapshot / f"gamemode={gamemode}" if gamemode in row.gamemodes else row.snapshot
    path = Path(model).expanduser()
    if path.is_dir():
        sub = path / f"gamemode={gamemode}"
        if gamemode is not None and checkpoint_state(sub) is CheckpointState.COMPLETE:
            return sub
        return path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "tokenizer.json")
    if not isinstance(cached, str) or checkpoint_state(Path(cached).parent) is not CheckpointState.COMPLETE:
        return None
    return Path(cached).parent


@dataclass
class Vocabulary:
    """The conditioning choices a checkpoint was trained with (descriptor names, mapper ids, top difficulty)."""

    descriptors: list[str] = field(default_factory=list)
    mapper_ids: list[int] = field(default_factory=list)
    max_difficulty: float | None = None
    folder: Path | None = None
    note: str = ""
    version: str | None = None  # the published version the checkpoint belongs to (v30 ... v32-mini), when known


def model_vocabulary(model: str, gamemode: int | None = None) -> Vocabulary:
    """Descriptor names and mapper ids from the checkpoint's own tokenizer.json (empty, with a note saying why,
    when it is not on this computer or cannot be read)."""
    from .tokenizer import Tokenizer

    folder = model_folder(model, gamemode)
    if folder is None:
        if model in PRESETS:
            return Vocabulary(note=Message(
                "model.not_downloaded", "{model} is not downloaded yet: it is downloaded when you press Generate, or "
                "get it in the Models tab. Descriptors and mappers appear once it is here.", model=model))
        return Vocabulary(note=Message("model.not_found", "{model} is not a checkpoint folder on this computer or a "
                                       "downloaded model", model=repr(model)))
    try:
        tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
    except Exception as e:  # a damaged file: say so, keep the form usable
        return Vocabulary(folder=folder, note=Message("model.unreadable_tokenizer", "could not read {path}: {error}",
                                                      path=str(folder / "tokenizer.json"), error=str(e)))
    descriptors = list(tokenizer.descriptor_names())
    mappers = sorted(int(m) for m in tokenizer.mapper_idx)
    top = float(tokenizer.max_difficulty) if tokenizer.max_difficulty else None
    version = model if model in PRESETS else _detected_version(folder, tokenizer)
    note = Message("model.vocabulary", "{version} in {folder}: {descriptors} descriptors, {mappers} mappers",
                   version=version or "checkpoint", folder=str(folder), descriptors=len(descriptors), mappers=len(mappers))
    return Vocabulary(descriptors, mappers, top, folder, note, version)


def _detected_version(folder: Path, tokenizer) -> str | None:
    """The version by the loader's rule (config.json's backbone and the tokenizer's contexts); None when the
    config cannot say."""
    from .presets import detect_version

    try:
        backbone = json.loads((folder / "config.json").read_text("utf-8")).get("backbone_model_name")
    except (OSError, ValueError, AttributeError):
        return None
    return detect_version(backbone, set(tokenizer.context_sos)) if isinstance(backbone, str) else None


# --- downloading --------------------------------------------------------------------------------------------


def download_model(source: str, gamemodes: Iterable[int] = (), *, revision: str | None = None,
                   bars: Callable[[int, int, str | None], type | None] | None = None) -> Path:
    """Download (or complete) a version's or repo's main checkpoint and its ``gamemode=N`` models for
    ``gamemodes`` (only the modes the repo has a model for); returns the snapshot folder.

    ``bars(index, count, subfolder)`` is called before each part and returns the tqdm-compatible class for its
    byte progress (or None); raising there (e.g. Cancelled) stops the download.
    """
    from .checkpoint import download, hub_gamemode_subfolder, resolve_source

    repo_id, local = resolve_source(source)
    if local:
        raise ModelError(Message("checkpoint.local_download", "{source} is a folder on this computer; there is "
                                 "nothing to download", source=source))
    parts: list[str | None] = [None] + [sub for m in gamemodes
                                        if (sub := hub_gamemode_subfolder(repo_id, int(m), revision, online=True))]
    snapshot = None
    for index, subfolder in enumerate(parts):
        progress = bars(index, len(parts), subfolder) if bars is not None else None
        snapshot = download(repo_id, revision=revision, subfolder=subfolder, progress=progress)
    assert snapshot is not None
    return snapshot


def fetch_model(source: str, gamemode: int | None = None, revision: str | None = None,
                progress: type | None = None) -> tuple[Path, str | None]:
    """The local folder of a model (downloading it when needed) and the ``gamemode=N`` subfolder used."""
    from .checkpoint import locate

    return locate(source, gamemode=gamemode, revision=revision, progress=progress)
