"""The model manager: which published versions are in the Hugging Face cache, and downloading one.

Downloads go through :func:`engine.checkpoint.download` (huggingface_hub's ``snapshot_download``) into the
normal Hugging Face cache, so the CLI, the app and other tools share them. Byte progress reaches the UI
through a tqdm class whose bars report to a callback; cancelling raises inside that callback, which stops
the download threads. An interrupted download keeps every finished file and the bytes of a cut-off weights
file (:mod:`engine.hub_resume`), and the next one fetches only the rest.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from engine.errors import Cancelled, ModelError
from engine.presets import PRESETS

log = logging.getLogger(__name__)

GAMEMODE_NAMES = {0: "osu!", 1: "taiko", 2: "catch", 3: "mania"}
_CHECKPOINT_FILES = ("config.json", "tokenizer.json")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


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


def _complete(files: set[str], prefix: str = "") -> bool:
    return all(prefix + f in files for f in _CHECKPOINT_FILES) and (
        any(prefix + w in files for w in _WEIGHTS)
        or any(f.startswith(prefix + "model-") and f.endswith(".safetensors") for f in files))


def scan_models(cache_dir: str | Path | None = None) -> list[InstalledModel]:
    """One row per published version (installed or not), plus other Mapperatorinator repos in the cache."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound
    from huggingface_hub.file_download import repo_folder_name

    from engine.hub_resume import PARTIAL_SUFFIX

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
        files = {Path(f.file_path).relative_to(newest.snapshot_path).as_posix() for f in newest.files}
        row.root = _complete(files)
        row.gamemodes = [m for m in GAMEMODE_NAMES if _complete(files, f"gamemode={m}/")]
        row.snapshot = Path(newest.snapshot_path)
        row.partial = bool(files) and not row.root
    # A cut-off weights file waits in blobs/ (possibly before any snapshot exists, which the scan skips).
    cache_root = Path(cache_dir) if cache_dir else Path(constants.HF_HUB_CACHE)
    for row in rows.values():
        blobs = cache_root / repo_folder_name(repo_id=row.repo_id, repo_type="model") / "blobs"
        if not row.root and any(p.name.endswith((".incomplete", PARTIAL_SUFFIX)) for p in blobs.glob("*")):
            row.partial = True
    return list(rows.values())


def installed_versions(cache_dir: str | Path | None = None) -> set[str]:
    return {m.version for m in scan_models(cache_dir) if m.installed}


def hub_problem(repo_id: str, timeout: float = 5.0) -> str | None:
    """Why the Hugging Face hub cannot be reached right now (None when it answers), without retries."""
    import httpx
    from huggingface_hub import constants

    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{repo_id}"
    try:
        httpx.head(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as e:
        return f"{constants.ENDPOINT} cannot be reached ({type(e).__name__}: {e})"
    return None


def offline_advice(version: str, installed: bool) -> str:
    """What to tell a user whose computer cannot reach the hub."""
    if installed:
        return (f"{version} is installed and keeps working offline; to check for updates, connect to the "
                f"internet and press Download again.")
    return (f"{version} is not downloaded yet. Connect this computer to the internet (or set HTTPS_PROXY if you "
            f"are behind a proxy) and press Download again; it continues where it stopped. Without "
            f"internet here: run `mapperator download {version}` on a computer that has it and copy its "
            f"Hugging Face cache folder (~/.cache/huggingface/hub) to this one, or choose a checkpoint folder "
            f"as the model.")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class ByteProgress:
    """Collects the numbers of every tqdm bar huggingface_hub opens and reports the byte total.

    ``report(done_bytes, total_bytes, rate_bytes_per_s)`` is called at most every ``interval`` seconds
    (and once at the end); when ``cancel`` is set the next update raises :class:`Cancelled`.
    """

    def __init__(self, report: Callable[[int, int, float], None], cancel: threading.Event | None = None,
                 interval: float = 0.2):
        self.report, self.cancel, self.interval = report, cancel, interval
        self._bars: list[tqdm] = []
        self._lock = threading.Lock()
        self._last = 0.0
        self._start = time.monotonic()
        owner = self

        class Bar(tqdm):
            def __init__(self, *args, **kwargs):
                kwargs.pop("name", None)  # huggingface_hub's own bar option; plain tqdm rejects it
                kwargs["file"] = io.StringIO()
                kwargs["disable"] = False
                super().__init__(*args, **kwargs)
                with owner._lock:
                    owner._bars.append(self)

            def update(self, n=1):
                owner.check_cancel()
                result = super().update(n)
                owner.changed()
                return result

        self.tqdm_class = Bar

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("download cancelled; what was already downloaded is kept, and Download continues from there")

    def totals(self) -> tuple[int, int]:
        """(bytes done, bytes expected) from the byte bars (the largest one: they track the same files)."""
        with self._lock:
            byte_bars = [b for b in self._bars if getattr(b, "unit", "") == "B" and (b.total or 0) > 0]
        if not byte_bars:
            return 0, 0
        bar = max(byte_bars, key=lambda b: b.total or 0)
        return int(min(bar.n, bar.total)), int(bar.total)

    def changed(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        done, total = self.totals()
        rate = done / max(now - self._start, 1e-6)
        self.report(done, total, rate)


def download_version(version: str, gamemodes: list[int] | tuple[int, ...] = (),
                     progress: Callable | None = None, cancel: threading.Event | None = None) -> InstalledModel:
    """Download (or complete) a version's main checkpoint and its ``gamemode=N`` models; returns the new state.

    ``progress`` receives ``(fraction, stage, rate_text)`` tuples (the worker's plain progress form).
    """
    from engine.checkpoint import download, hub_gamemode_subfolder, resolve_source

    repo_id, local = resolve_source(version)
    if local:
        raise ModelError(f"{version} is a folder on this computer; there is nothing to download")
    installed = next((m for m in scan_models() if m.repo_id == repo_id), None)
    problem = hub_problem(repo_id)
    if problem is not None:
        raise ModelError(f"Hugging Face cannot be reached: {problem}. "
                         + offline_advice(version, installed is not None and installed.installed))
    # only the modes the repo has a model for (the others use the main checkpoint)
    parts: list[str | None] = [None] + [sub for m in gamemodes
                                        if (sub := hub_gamemode_subfolder(repo_id, int(m), online=True))]
    for index, subfolder in enumerate(parts):
        what = version + (f" ({GAMEMODE_NAMES[int(subfolder.split('=')[1])]} model)" if subfolder else "")

        def report(done: int, total: int, rate: float, index=index, what=what) -> None:
            if progress is None:
                return
            share = (done / total) if total else 0.0
            text = (f"{format_bytes(done)} of {format_bytes(total)}" if total else "checking files")
            progress(((index + share) / len(parts), f"Downloading {what}: {text}", f"{format_bytes(rate)}/s"))

        bytes_progress = ByteProgress(report, cancel)
        if progress is not None:
            progress((index / len(parts), f"Downloading {what}", None))
        try:
            download(repo_id, subfolder=subfolder, progress=bytes_progress.tqdm_class)
        except ModelError:
            bytes_progress.check_cancel()  # a cancel raised inside the hub client comes back as a download error
            raise
        bytes_progress.check_cancel()
        bytes_progress.changed(force=True)
    state = next((m for m in scan_models() if m.repo_id == repo_id), None)
    if progress is not None:
        progress((1.0, f"{version} is ready", None))
    if state is None or not state.installed:
        raise ModelError(f"the download of {version} finished but its files are incomplete; press Download again")
    return state


@dataclass
class Vocabulary:
    """The conditioning choices a checkpoint was trained with, for the Generate tab's pickers."""

    descriptors: list[str] = field(default_factory=list)
    mapper_ids: list[int] = field(default_factory=list)
    max_difficulty: float | None = None
    folder: Path | None = None
    note: str = ""


def local_checkpoint_folder(model: str, gamemode: int | None = None) -> Path | None:
    """The checkpoint folder a model choice resolves to on this computer, without touching the network."""
    model = (model or "").strip()
    if not model:
        return None
    if model in PRESETS:
        row = next((m for m in scan_models() if m.repo_id == PRESETS[model].repo_id), None)
        if row is None or not row.installed or row.snapshot is None:
            return None
        root = row.snapshot
        if gamemode is not None and gamemode in row.gamemodes:
            return root / f"gamemode={gamemode}"
        return root
    path = Path(model).expanduser()
    if path.is_dir():
        sub = path / f"gamemode={gamemode}"
        return sub if gamemode is not None and (sub / "tokenizer.json").is_file() else path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "tokenizer.json")
    return Path(cached).parent if isinstance(cached, str) else None


def checkpoint_vocabulary(model: str, gamemode: int | None = None) -> Vocabulary:
    """Descriptor names and mapper ids from the checkpoint's own tokenizer.json (nothing when not installed)."""
    from engine.tokenizer import Tokenizer

    folder = local_checkpoint_folder(model, gamemode)
    if folder is None:
        if model in PRESETS:
            return Vocabulary(note=f"{model} is not downloaded yet: it is downloaded when you press Generate, or "
                                   f"get it in the Models tab. Descriptors and mappers appear once it is here.")
        return Vocabulary(note=f"{model!r} is not a checkpoint folder on this computer or a downloaded model")
    try:
        tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
    except Exception as e:  # a damaged file: say so, keep the form usable
        return Vocabulary(folder=folder, note=f"could not read {folder / 'tokenizer.json'}: {e}")
    descriptors = list(tokenizer.descriptor_names())
    mappers = sorted(int(m) for m in tokenizer.mapper_idx)
    top = float(tokenizer.max_difficulty) if tokenizer.max_difficulty else None
    note = f"{folder}: {len(descriptors)} descriptors, {len(mappers)} mappers"
    return Vocabulary(descriptors, mappers, top, folder, note)
