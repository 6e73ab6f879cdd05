"""Writing the result: a ``.osu`` file or an ``.osz`` with the audio and background.

Both go through :mod:`engine.beatmap` (canonical v14 text, atomic writes that keep a backup of a
file they replace). Files are named as osu! names them, ``Artist - Title (Creator) [Version].osu``.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

from ..beatmap import Beatmap, beatmap_bytes, write_osz
from ..beatmap.files import OutputTransaction
from ..beatmap.osz import beatmap_filename, safe_filename
from ..errors import BeatmapError
from ..messages import Message


def osu_filename(beatmap: Beatmap) -> str:
    return beatmap_filename(beatmap)


def save_beatmap(beatmap: Beatmap, path: str | Path) -> Path:
    """Write ``beatmap`` to ``path``, or into ``path`` under its osu! name when it is a folder.
    Returns the file written."""
    path = Path(path)
    if path.is_dir():
        path = path / osu_filename(beatmap)
    with OutputTransaction() as out:
        out.make_folder(path.parent)
        out.write(path, beatmap_bytes(beatmap), replace=True)
    return path


def export_osz(beatmap: Beatmap, path: str | Path, audio_path: str | Path,
               background_path: str | Path | None = None, transaction: OutputTransaction | None = None) -> Path:
    """Write an ``.osz`` holding ``beatmap``, its audio and (when the file exists) its background;
    into ``path`` under ``Artist - Title (Creator).osz`` when it is a folder. Returns the archive.
    With ``transaction`` the archive (and its folder) are staged there instead of written at once."""
    path = Path(path)
    audio_path = Path(audio_path)
    if not audio_path.is_file():
        raise BeatmapError(Message("error.output.audio_missing", "the audio file to pack is missing"), audio_path)
    if path.is_dir():
        m = beatmap.metadata
        path = path / safe_filename(f"{m.artist} - {m.title} ({m.creator}).osz")
    files: dict[str, Path] = {audio_path.name: audio_path}
    if background_path and os.path.isfile(background_path):
        files[Path(background_path).name] = Path(background_path)
    with OutputTransaction() if transaction is None else nullcontext(transaction) as out:
        out.make_folder(path.parent)
        write_osz(path, beatmaps=[beatmap], files=files, transaction=out)
    return path
