"""Settings that survive between runs: folders and the last options of each tab.

Stored as JSON in ``platformdirs.user_config_dir("Mapperator")`` (e.g. ``~/.config/Mapperator`` on Linux,
``%LOCALAPPDATA%\\Mapperator`` on Windows). A missing or damaged file means defaults, never an error.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import platformdirs

from .logs import APP_NAME

log = logging.getLogger(__name__)


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


class Settings:
    """``songs_folder``, ``output_folder`` and ``language``, plus one dict of last-used values per tab."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else config_dir() / "settings.json"
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"songs_folder": "", "output_folder": "", "language": "auto", "tabs": {}}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable settings file %s: %s", self.path, e)
            return
        if not isinstance(data, dict):
            return
        for key in ("songs_folder", "output_folder", "language"):
            if isinstance(data.get(key), str):
                self._data[key] = data[key]
        if isinstance(data.get("tabs"), dict):
            self._data["tabs"] = {k: v for k, v in data["tabs"].items() if isinstance(v, dict)}

    @property
    def songs_folder(self) -> str:
        return self._data["songs_folder"]

    @property
    def output_folder(self) -> str:
        return self._data["output_folder"]

    @property
    def language(self) -> str:
        """``auto`` (the system's or browser's language) or a language code of :data:`.i18n.LANGUAGES`."""
        return self._data["language"]

    def set_language(self, language: str) -> None:
        with self._lock:
            self._data["language"] = (language or "auto").strip()
        self.save()

    def set_folders(self, songs_folder: str | None = None, output_folder: str | None = None) -> None:
        with self._lock:
            if songs_folder is not None:
                self._data["songs_folder"] = songs_folder.strip()
            if output_folder is not None:
                self._data["output_folder"] = output_folder.strip()
        self.save()

    def tab(self, name: str) -> dict[str, Any]:
        """A copy of the last values saved for a tab."""
        with self._lock:
            return dict(self._data["tabs"].get(name, {}))

    def remember(self, name: str, values: dict[str, Any]) -> None:
        """Store a tab's values (JSON-able ones only) and write the file."""
        clean = {}
        for key, value in values.items():
            if isinstance(value, tuple):
                value = list(value)
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue
            clean[key] = value
        with self._lock:
            self._data["tabs"][name] = clean
        self.save()

    def save(self) -> None:
        with self._lock:
            text = json.dumps(self._data, indent=2, ensure_ascii=False)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".settings-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only config folder costs the user their settings, not the app
            log.warning("could not save settings to %s: %s", self.path, e)
