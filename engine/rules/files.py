"""File checks: the audio, background and video a beatmap names must exist beside it.

Mapset Verifier facts: no audio file ("Multiple or missing audio files"), no background event or
a background file that does not exist ("Missing background") are problems. A missing video is a
warning here (maps are often downloaded without video). Names are matched the way osu! on
Windows finds them: case-insensitively, with ``\\`` or ``/`` separators. Existence is only
checked when the beatmap's folder (or .osz) is known, and never outside it: a name that is absolute or
leads out of the folder (``..``, a link) is a problem of its own.
"""
from __future__ import annotations

import zipfile
from functools import cached_property
from pathlib import Path
from typing import Iterator

from ..beatmap import Background, Video
from ..beatmap.files import UnsafeFileName, referenced_file, relative_name
from ..messages import Message
from ..suggestions import Severity, Suggestion
from .context import MapContext
from .registry import rule

FILES = "Files"


class FileLookup:
    """Case-insensitive lookup of names relative to a song folder or inside an .osz archive; a name that
    leads outside the folder is never looked at (:func:`~engine.beatmap.files.referenced_file`)."""

    FOUND, MISSING, OUTSIDE = "found", "missing", "outside"

    def __init__(self, location: Path):
        self.location = location

    @cached_property
    def _archive_names(self) -> set[str] | None:
        if self.location.is_dir() or self.location.suffix.lower() != ".osz":
            return None
        try:
            with zipfile.ZipFile(self.location) as archive:
                return {n.replace("\\", "/").strip("/").lower() for n in archive.namelist()}
        except (OSError, zipfile.BadZipFile):
            return set()

    def status(self, name: str) -> str:
        """FOUND, MISSING, or OUTSIDE (an absolute name, ``..`` out of the folder or a link out of it)."""
        try:
            names = self._archive_names
            if names is not None:
                return self.FOUND if relative_name(name).lower() in names else self.MISSING
            return self.FOUND if referenced_file(self.location, name).is_file() else self.MISSING
        except UnsafeFileName:
            return self.OUTSIDE

    def exists(self, name: str) -> bool:
        return self.status(name) == self.FOUND


@rule("missing-files", FILES, "Missing audio, background or video files.")
def missing_files(ctx: MapContext) -> Iterator[Suggestion]:
    lookup = FileLookup(ctx.folder) if ctx.folder is not None else None
    audio = ctx.beatmap.general.audio_filename.strip()
    if not audio:
        yield ctx.suggest("missing-files", FILES, Severity.PROBLEM,
                          Message("rule.files.no_audio", "No audio file is set ([General] AudioFilename)."))
    elif lookup is not None and (status := lookup.status(audio)) != lookup.FOUND:
        yield ctx.suggest("missing-files", FILES, Severity.PROBLEM, _problem("audio", audio, status), file=audio)
    media = ctx.beatmap.events.media
    backgrounds = [m for m in media if isinstance(m, Background)]
    if not backgrounds:
        yield ctx.suggest("missing-files", FILES, Severity.PROBLEM,
                          Message("rule.files.no_background", "The difficulty has no background."))
    if lookup is None:
        return
    for item in media:
        status = lookup.status(item.filename)
        if status == lookup.FOUND:
            continue
        if isinstance(item, Background):
            yield ctx.suggest("missing-files", FILES, Severity.PROBLEM, _problem("background", item.filename, status),
                              file=item.filename)
        elif isinstance(item, Video):
            severity = Severity.PROBLEM if status == lookup.OUTSIDE else Severity.WARNING
            yield ctx.suggest("missing-files", FILES, severity, _problem("video", item.filename, status),
                              item.start_time, file=item.filename)


def _problem(what: str, name: str, status: str) -> Message:
    outside = status == FileLookup.OUTSIDE
    if what == "audio":
        return Message("rule.files.audio_outside", _OUTSIDE.format(what="audio"), name=name) if outside else \
            Message("rule.files.audio_missing", 'The audio file "{name}" is missing.', name=name)
    if what == "background":
        return Message("rule.files.background_outside", _OUTSIDE.format(what="background"), name=name) if outside \
            else Message("rule.files.background_missing", 'The background file "{name}" is missing.', name=name)
    return Message("rule.files.video_outside", _OUTSIDE.format(what="video"), name=name) if outside else \
        Message("rule.files.video_missing", 'The video file "{name}" is missing.', name=name)


_OUTSIDE = 'The {what} file "{{name}}" is outside the beatmap\'s folder; osu! only uses files inside it.'
