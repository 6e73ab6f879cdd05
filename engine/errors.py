"""The engine's error types.

Every failure a user can cause (a bad file, a missing model, a wrong option) is raised as a
subclass of :class:`MapperatorError` with a message that says what to do next. The CLI and the
app print ``str(error)`` and never a traceback for these.
"""
from __future__ import annotations

from pathlib import Path


class MapperatorError(Exception):
    """Base class of every error the engine raises on purpose.

    Raised with a :class:`~engine.messages.Message` (``OptionError(Message("error.x", "...", n=1))``) it
    also has ``message_id`` and ``message_args``, so the app can say it in the user's language;
    ``str(error)`` is the English text either way.
    """

    @property
    def message_id(self) -> str | None:
        return getattr(self.args[0], "message_id", None) if self.args else None

    @property
    def message_args(self) -> dict:
        return dict(getattr(self.args[0], "message_args", None) or {}) if self.args else {}


class BeatmapError(MapperatorError):
    """A beatmap file that cannot be used, with the file, line and reason."""

    def __init__(self, reason: str, path: str | Path | None = None, line: int | None = None):
        from .messages import Message

        self.reason = reason
        self.path = Path(path) if path is not None else None
        self.line = line
        where = str(self.path) if self.path is not None else "<beatmap>"
        if line is None:
            super().__init__(Message("error.beatmap_file", "{path}: {reason}", path=where, reason=reason))
        else:
            super().__init__(Message("error.beatmap_line", "{path}, line {line}: {reason}", path=where, line=line,
                                     reason=reason))


class AudioError(MapperatorError):
    """Audio that cannot be read or used."""


class ModelError(MapperatorError):
    """A checkpoint that is missing, unsupported or malformed."""


class OptionError(MapperatorError):
    """An option value the chosen model or command cannot use."""


class Cancelled(MapperatorError):
    """The job was cancelled by the user; nothing was written."""
