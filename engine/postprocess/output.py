"""Writing the result: a ``.osu`` file or an ``.osz`` with the audio and background.

Both go through :mod:`engine.beatmap` (canonical v14 text, atomic writes that keep a backup of a
file they replace). Files are named as osu! names them, ``Artist - Title (Creator) [Version].osu``.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..beatmap import Beatmap, write_beatmap, write_osz
from ..beatmap.osz import beatmap_filename, safe_filename
from ..errors import BeatmapError


def osu_filename(beatmap: Beatmap) -> str:
    return beatmap_filename(beatmap)


def save_beatmap(beatmap: Beatmap, path: str | Path) -> Path:
    """Write ``beatmap`` to ``path``, or into ``path`` under its osu! name when it is a folder.
    Returns the file written."""
    path = Path(path)
    if path.is_dir():
        path = path / osu_filename(beatmap)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_beatmap(beatmap, path)
    return path


def export_osz(beatmap: Beatmap, path: str | Path, audio_path: str | Path,
               background_path: str | Path | None = None) -> Path:
    """Write an ``.osz`` holding ``beatmap``, its audio and (when the file exists) its background;
    into ``path`` under ``Artist - Title (Creator).osz`` when it is a folder. Returns the archive."""
    path = Path(path)
    audio_path = Path(audio_path)
    if not audio_path.is_file():
        raise BeatmapError("the audio file to pack is missing", audio_path)
    if path.is_dir():
        m = beatmap.metadata
        path = path / safe_filename(f"{m.artist} - {m.title} ({m.creator}).osz")
    path.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {audio_path.name: audio_path}
    if background_path and os.path.isfile(background_path):
        files[Path(background_path).name] = Path(background_path)
    write_osz(path, beatmaps=[beatmap], files=files)
    return path
