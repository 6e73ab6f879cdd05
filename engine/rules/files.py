"""File checks: the audio, background and video a beatmap names must exist beside it.

Mapset Verifier facts: no audio file ("Multiple or missing audio files"), no background event or
a background file that does not exist ("Missing background") are problems. A missing video is a
warning here (maps are often downloaded without video). Names are matched the way osu! on
Windows finds them: case-insensitively, with ``\\`` or ``/`` separators. Existence is only
checked when the beatmap's folder (or .osz) is known.
"""
from __future__ import annotations

import zipfile
from functools import cached_property
from pathlib import Path
from typing import Iterator

from ..beatmap import Background, Video
from ..suggestions import Severity, Suggestion
from .context import MapContext
from .registry import rule

FILES = "Files"


class FileLookup:
    """Case-insensitive lookup of names relative to a song folder or inside an .osz archive."""

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

    def exists(self, name: str) -> bool:
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            return False
        names = self._archive_names
        if names is not None:
            return "/".join(parts).lower() in names
        current = self.location
        for part in parts:
            exact = current / part
            if exact.exists():
                current = exact
                continue
            try:
                match = next((c for c in current.iterdir() if c.name.lower() == part.lower()), None)
            except OSError:
                return False
            if match is None:
                return False
            current = match
        return current.is_file()


@rule("missing-files", FILES, "Missing audio, background or video files.")
def missing_files(ctx: MapContext) -> Iterator[Suggestion]:
    lookup = FileLookup(ctx.folder) if ctx.folder is not None else None
    audio = ctx.beatmap.general.audio_filename.strip()
    if not audio:
        yield ctx.suggest("missing-files", FILES, Severity.PROBLEM, "No audio file is set ([General] AudioFilename).")
    elif lookup is not None and not lookup.exists(audio):
        yield ctx.suggest("missing-files", FILES, Severity.PROBLEM, f'The audio file "{audio}" is missing.',
                          file=audio)
    media = ctx.beatmap.events.media
    backgrounds = [m for m in media if isinstance(m, Background)]
    if not backgrounds:
        yield ctx.suggest("missing-files", FILES, Severity.PROBLEM, "The difficulty has no background.")
    if lookup is None:
        return
    for item in media:
        if lookup.exists(item.filename):
            continue
        if isinstance(item, Background):
            yield ctx.suggest("missing-files", FILES, Severity.PROBLEM,
                              f'The background file "{item.filename}" is missing.', file=item.filename)
        elif isinstance(item, Video):
            yield ctx.suggest("missing-files", FILES, Severity.WARNING,
                              f'The video file "{item.filename}" is missing.', item.start_time, file=item.filename)
