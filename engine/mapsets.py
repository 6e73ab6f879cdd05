"""A beatmap's set on disk: the files it names inside its folder, copying the set into osu!'s ``Songs`` folder
(osu!stable reads every folder there), and packing it as an ``.osz`` (what osu!lazer imports)."""
from __future__ import annotations

import logging
from pathlib import Path

from .beatmap import Beatmap, read_beatmap, write_osz
from .beatmap.files import OutputTransaction, UnsafeFileName, os_reason, referenced_file
from .beatmap.osz import safe_filename
from .errors import BeatmapError, OptionError
from .messages import Message

log = logging.getLogger(__name__)


def set_files(osu_path: Path) -> tuple[Beatmap, dict[str, Path], list[str]]:
    """The beatmap; its file and the song/background it names that exist inside its folder, by their names in
    the set; and the names left out because they lead outside that folder (absolute paths, ``..``, links)."""
    beatmap = read_beatmap(osu_path)
    files = {osu_path.name: osu_path}
    outside: list[str] = []
    for name in (beatmap.general.audio_filename, beatmap.background_file):
        if not name:
            continue
        try:
            candidate = referenced_file(osu_path.parent, name)
        except UnsafeFileName:
            log.warning("%s names %r, which is outside its folder; not included", osu_path.name, name)
            outside.append(name)
            continue
        if candidate.is_file():
            files[candidate.relative_to(osu_path.parent).as_posix()] = candidate
    return beatmap, files, outside


def set_folder_name(beatmap: Beatmap) -> str:
    """``Artist - Title`` as osu! names unsubmitted sets, made safe for every file system."""
    name = f"{beatmap.metadata.artist or 'Unknown Artist'} - {beatmap.metadata.title or 'Unknown Title'}"
    return safe_filename(name).strip(" .") or "Mapperator"


def install_mapset(osu_path: str | Path, songs_folder: str | Path) -> Path:
    """Copy a generated .osu with its song and background into ``Songs/Artist - Title``; returns that folder.

    Files already there are kept (another difficulty of the same song may share them); an .osu of the
    same name is never replaced.
    """
    osu_path = Path(osu_path).expanduser()
    songs = Path(songs_folder).expanduser()
    if not osu_path.is_file():
        raise OptionError(Message("osu.missing", "{path} does not exist (was it moved or deleted?)",
                                  path=str(osu_path)))
    if not songs.is_dir():
        raise OptionError(Message("error.mapsets.no_songs_folder", "the osu! Songs folder {path} does not exist; "
                                  "set it in Settings", path=str(songs)))
    beatmap, files, _ = set_files(osu_path)
    folder = songs / set_folder_name(beatmap)
    try:
        with OutputTransaction() as out:  # all files or none, and no folder left behind by a failure
            out.make_folder(folder)
            for name, source in files.items():
                target = folder / name
                if target.exists():
                    if source.suffix.lower() == ".osu":
                        raise OptionError(Message("error.mapsets.osu_exists", "{path} already exists; not replacing it",
                                                  path=str(target)))
                    continue
                out.make_folder(target.parent)
                out.copy(source, target)
    except BeatmapError as e:
        raise OptionError(_copy_failed(folder, e.reason)) from None
    except OSError as e:
        raise OptionError(_copy_failed(folder, os_reason(e))) from None
    log.info("copied %s into %s", osu_path.name, folder)
    return folder


def _copy_failed(folder: Path, reason: str) -> Message:
    return Message("error.mapsets.copy_failed", "could not copy into {folder}: {reason}", folder=str(folder),
                   reason=reason)


def pack_osz(osu_path: str | Path) -> Path:
    """An .osz beside the .osu holding it, its song and its background (a new name when one exists)."""
    osu_path = Path(osu_path).expanduser()
    _, files, _ = set_files(osu_path)
    target = osu_path.with_suffix(".osz")
    n = 2
    while target.exists():
        target = osu_path.with_name(f"{osu_path.stem} ({n}).osz")
        n += 1
    write_osz(target, files=files)
    return target
