"""The model manager: which published versions are in the Hugging Face cache, and downloading one.

Downloads go through :func:`engine.download_model` (huggingface_hub's ``snapshot_download``) into the
normal Hugging Face cache, so the CLI, the app and other tools share them. Byte progress reaches the UI
through a tqdm class whose bars report to a callback; cancelling raises inside that callback, which stops
the download threads. An interrupted download keeps every finished file and the bytes of a cut-off weights
file, and the next one fetches only the rest.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from tqdm import tqdm

import engine
from engine import Cancelled, Message, ModelError

from . import i18n

log = logging.getLogger(__name__)


def scan_models(cache_dir: str | Path | None = None) -> list[engine.InstalledModel]:
    """One row per published version (installed or not), plus other Mapperatorinator repos in the cache."""
    return engine.find_models(cache_dir)


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
        return Message("download.unreachable_reason", "{endpoint} cannot be reached ({kind}: {error})",
                       endpoint=constants.ENDPOINT, kind=type(e).__name__, error=str(e))
    return None


def offline_advice(version: str, installed: bool) -> str:
    """What to tell a user whose computer cannot reach the hub."""
    if installed:
        return Message("download.offline_installed", "{version} is installed and keeps working offline; to check "
                       "for updates, connect to the internet and press Download again.", version=version)
    return Message("download.offline_missing", "{version} is not downloaded yet. Connect this computer to the "
                   "internet (or set HTTPS_PROXY if you are behind a proxy) and press Download again; it continues "
                   "where it stopped. Without internet here: run `mapperator download {version}` on a computer that "
                   "has it and copy its Hugging Face cache folder (~/.cache/huggingface/hub) to this one, or choose "
                   "a checkpoint folder as the model.", version=version)


def format_bytes(n: float, lang: str = i18n.DEFAULT) -> str:
    """``1.5 GB`` (``1,5 GB`` where ``lang`` writes a decimal comma)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{i18n.number(n, lang, '.1f')} {unit}"
        n /= 1000
    return f"{i18n.number(n, lang, '.1f')} GB"


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
            raise Cancelled(Message("download.cancelled_kept", "download cancelled; what was already downloaded is "
                                    "kept, and Download continues from there"))

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
                     progress: Callable | None = None, cancel: threading.Event | None = None) -> engine.InstalledModel:
    """Download (or complete) a version's main checkpoint and its ``gamemode=N`` models; returns the new state.

    ``progress`` receives ``(fraction, stage, rate_text)`` tuples (the worker's plain progress form).
    """
    repo_id, local = engine.resolve_source(version)
    if local:
        raise ModelError(Message("download.local_folder", "{version} is a folder on this computer; there is nothing "
                                 "to download", version=version))
    installed = next((m for m in scan_models() if m.repo_id == repo_id), None)
    problem = hub_problem(repo_id)
    if problem is not None:
        raise ModelError(Message("download.unreachable", "Hugging Face cannot be reached: {problem}. {advice}",
                                 problem=problem,
                                 advice=offline_advice(version, installed is not None and installed.installed)))
    current: list[ByteProgress] = []

    def bars(index: int, count: int, subfolder: str | None) -> type:
        """The byte progress of one part (the main checkpoint, then each mode's model)."""
        finish_part()
        mode = engine.GAMEMODE_NAMES[int(subfolder.split("=")[1])] if subfolder else None
        what = Message("download.mode_model", "{version} ({mode} model)", version=version, mode=mode) if mode \
            else version

        def report(done: int, total: int, rate: float) -> None:
            if progress is None:
                return
            share = (done / total) if total else 0.0
            text = (Message("download.bytes", "{done} of {total}", done=format_bytes(done), total=format_bytes(total))
                    if total else Message("download.checking", "checking files"))
            progress(((index + share) / count, Message("download.stage_bytes", "Downloading {what}: {text}",
                                                       what=what, text=text), f"{format_bytes(rate)}/s"))

        current.append(ByteProgress(report, cancel))
        if progress is not None:
            progress((index / count, Message("download.stage", "Downloading {what}", what=what), None))
        return current[-1].tqdm_class

    def finish_part() -> None:
        if current:
            current[-1].check_cancel()
            current[-1].changed(force=True)
        elif cancel is not None and cancel.is_set():
            raise Cancelled(Message("download.cancelled", "download cancelled"))

    try:
        engine.download_model(version, gamemodes, bars=bars)
    except ModelError:
        if current:  # a cancel raised inside the hub client comes back as a download error
            current[-1].check_cancel()
        raise
    finish_part()
    state = next((m for m in scan_models() if m.repo_id == repo_id), None)
    if progress is not None:
        progress((1.0, Message("download.ready", "{version} is ready", version=version), None))
    if state is None or not state.installed:
        raise ModelError(Message("download.incomplete", "the download of {version} finished but its files are "
                                 "incomplete; press Download again", version=version))
    return state


def checkpoint_vocabulary(model: str, gamemode: int | None = None) -> engine.Vocabulary:
    """Descriptor names and mapper ids from the checkpoint's own tokenizer.json (nothing when not installed)."""
    return engine.model_vocabulary(model, gamemode)
