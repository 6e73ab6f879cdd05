"""The desktop side of a finished map: opening folders, finding osu!'s Songs folder, handing a map to osu!.

osu!stable reads every folder under ``Songs`` (press F5 in song select after a copy); osu!lazer has no
Songs folder and imports an ``.osz`` opened with it, so without a Songs folder the map is packed into an
``.osz`` and opened with the system's handler.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from engine.beatmap.files import OutputTransaction
from engine.errors import BeatmapError, OptionError

log = logging.getLogger(__name__)


def _osu_install_candidates() -> list[Path]:
    """Folders osu!stable is usually installed in, per OS (the first existing one wins)."""
    home = Path.home()
    found: list[Path] = []
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        if local:
            found.append(Path(local) / "osu!")
        found.extend(_registry_install())
        found.append(Path("C:/Program Files/osu!"))
        found.append(Path("C:/Program Files (x86)/osu!"))
    elif sys.platform == "darwin":
        for apps in (home / "Applications", Path("/Applications")):
            found.append(apps / "osu!.app/Contents/Resources/drive_c/osu!")
            found.append(apps / "osu!.app/Contents/Resources/drive_c/Program Files/osu!")
    else:
        data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local/share")
        found += [data / "osu-wine/osu!", data / "osu-wine/OSU", data / "osu-stable", data / "osu!"]
        wine = Path(os.environ.get("WINEPREFIX") or home / ".wine")
        user = os.environ.get("USER") or home.name
        found += [wine / "drive_c/users" / user / "AppData/Local/osu!", wine / "drive_c/osu!",
                  wine / "drive_c/Program Files/osu!"]
    return found


def _registry_install() -> list[Path]:
    """osu!'s folder from the ``osu://`` protocol handler it registers on Windows."""
    try:
        import winreg  # type: ignore[import-not-found]

        with winreg.OpenKey(winreg.HKEY_CLASSES_ROOT, r"osu\shell\open\command") as key:
            command = winreg.QueryValue(key, None)
    except (ImportError, OSError):
        return []
    match = re.match(r'\s*"([^"]+)"', command) or re.match(r"\s*(\S+)", command)
    return [Path(match.group(1)).parent] if match else []


def _configured_songs(install: Path) -> Path:
    """``BeatmapDirectory`` from osu!'s per-user config (relative to the install), default ``Songs``."""
    for cfg in sorted(install.glob("osu!.*.cfg")):
        try:
            for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "BeatmapDirectory" and value.strip():
                    path = Path(value.strip())
                    return path if path.is_absolute() else install / path
        except OSError:
            continue
    return install / "Songs"


def detect_songs_folder() -> Path | None:
    """osu!stable's Songs folder on this computer, or None when osu!stable is not found."""
    for install in _osu_install_candidates():
        songs = _configured_songs(install)
        if songs.is_dir():
            return songs
    return None


def open_path(path: str | Path) -> str:
    """Show a folder (or open a file) with the system's file manager / default app; returns what was done."""
    target = Path(path).expanduser()
    if not target.exists():
        raise OptionError(f"{target} does not exist (was it moved or deleted?)")
    try:
        if sys.platform == "win32":
            os.startfile(str(target))  # type: ignore[attr-defined]
        elif sys.platform == "darwin":
            subprocess.Popen(["open", str(target)])
        else:
            opener = shutil.which("xdg-open") or shutil.which("gio")
            if opener is None:
                raise OptionError(f"no program to open {target} with (install xdg-utils); the path is {target}")
            args = [opener, "open", str(target)] if opener.endswith("gio") else [opener, str(target)]
            subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise OptionError(f"could not open {target}: {e.strerror or e}") from None
    return f"Opened {target}"


def _set_files(osu_path: Path) -> tuple[object, dict[str, Path], list[str]]:
    """The beatmap; its file and the song/background it names that exist inside its folder, by their names in
    the set; and the names left out because they lead outside that folder (absolute paths, ``..``, links)."""
    from engine.beatmap import read_beatmap
    from engine.beatmap.files import UnsafeFileName, referenced_file

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


def set_folder_name(beatmap) -> str:
    """``Artist - Title`` as osu! names unsubmitted sets, made safe for every file system."""
    from engine.beatmap.osz import safe_filename

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
        raise OptionError(f"{osu_path} does not exist (was it moved or deleted?)")
    if not songs.is_dir():
        raise OptionError(f"the osu! Songs folder {songs} does not exist; set it in Settings")
    beatmap, files, _ = _set_files(osu_path)
    folder = songs / set_folder_name(beatmap)
    try:
        with OutputTransaction() as out:  # all files or none, and no folder left behind by a failure
            out.make_folder(folder)
            for name, source in files.items():
                target = folder / name
                if target.exists():
                    if source.suffix.lower() == ".osu":
                        raise OptionError(f"{target} already exists; not replacing it")
                    continue
                out.make_folder(target.parent)
                out.copy(source, target)
    except BeatmapError as e:
        raise OptionError(f"could not copy into {folder}: {e.reason}") from None
    except OSError as e:
        raise OptionError(f"could not copy into {folder}: {e.strerror or e}") from None
    log.info("copied %s into %s", osu_path.name, folder)
    return folder


def pack_osz(osu_path: str | Path) -> Path:
    """An .osz beside the .osu holding it, its song and its background (a new name when one exists)."""
    from engine.beatmap import write_osz

    osu_path = Path(osu_path).expanduser()
    _, files, _ = _set_files(osu_path)
    target = osu_path.with_suffix(".osz")
    n = 2
    while target.exists():
        target = osu_path.with_name(f"{osu_path.stem} ({n}).osz")
        n += 1
    write_osz(target, files=files)
    return target


def open_in_osu(path: str | Path, songs_folder: str | Path | None = None) -> str:
    """Give a generated map to osu!; returns a sentence saying what happened."""
    path = Path(path).expanduser()
    if not path.exists():
        raise OptionError(f"{path} does not exist (was it moved or deleted?)")
    if path.suffix.lower() == ".osz":
        open_path(path)
        return f"Opened {path.name}: osu! imports it (osu!lazer or osu!stable must be installed)"
    songs = Path(songs_folder).expanduser() if songs_folder else detect_songs_folder()
    _, _, outside = _set_files(path)
    note = "".join(f' Left out "{name}": it is outside the beatmap\'s folder.' for name in outside)
    if songs is not None and songs.is_dir():
        folder = install_mapset(path, songs)
        return f"Copied into {folder}. In osu!stable press F5 in song select to see it.{note}"
    osz = pack_osz(path)
    open_path(osz)
    return (f"No osu!stable Songs folder found (set one in Settings), so {osz.name} was written and opened: "
            f"osu!lazer imports it.{note}")
