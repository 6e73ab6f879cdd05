"""Logging: details to a file in the user's log folder, warnings (or everything with --verbose) to stderr."""
from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

import platformdirs

APP_NAME = "Mapperator"


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def setup(verbose: bool = False, console: bool = True) -> Path:
    """Configure the root logger once; returns the log file path."""
    folder = log_dir()
    path = folder / "mapperator.log"
    root = logging.getLogger()
    if getattr(root, "_mapperator_configured", False):
        return path
    root.setLevel(logging.INFO)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    except OSError:
        pass  # a read-only home must not stop the app; the console still gets messages
    if console and sys.stderr is not None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(logging.INFO if verbose else logging.WARNING)
        stream.setFormatter(_ShortFormatter("%(levelname)s: %(message)s", verbose))
        root.addHandler(stream)
    for noisy in ("httpx", "httpcore", "urllib3", "huggingface_hub", "gradio", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._mapperator_configured = True
    return path


class _ShortFormatter(logging.Formatter):
    """Console lines without tracebacks (they go to the log file) unless verbose."""

    def __init__(self, fmt: str, verbose: bool):
        super().__init__(fmt)
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose or not record.exc_info:
            return super().format(record)
        return logging.Formatter.format(self, logging.makeLogRecord({**record.__dict__, "exc_info": None,
                                                                      "exc_text": None}))
