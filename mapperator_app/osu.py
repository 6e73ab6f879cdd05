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

from engine import Message, OptionError, install_mapset, pack_osz, set_folder_name, set_files

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
        raise OptionError(Message("osu.missing", "{path} does not exist (was it moved or deleted?)", path=str(target)))
    try:
        if sys.platform == "win32":
            os.startfile(str(target))  # type: ignore[attr-defined]
        elif sys.platform == "darwin":
            subprocess.Popen(["open", str(target)])
        else:
            opener = shutil.which("xdg-open") or shutil.which("gio")
            if opener is None:
                raise OptionError(Message("osu.no_opener", "no program to open {path} with (install xdg-utils); the "
                                          "path is {path}", path=str(target)))
            args = [opener, "open", str(target)] if opener.endswith("gio") else [opener, str(target)]
            subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise OptionError(Message("osu.cannot_open", "could not open {path}: {error}", path=str(target),
                                  error=str(e.strerror or e))) from None
    return Message("osu.opened", "Opened {path}", path=str(target))


def open_in_osu(path: str | Path, songs_folder: str | Path | None = None) -> str:
    """Give a generated map to osu!; returns a sentence saying what happened."""
    path = Path(path).expanduser()
    if not path.exists():
        raise OptionError(Message("osu.missing", "{path} does not exist (was it moved or deleted?)", path=str(path)))
    if path.suffix.lower() == ".osz":
        open_path(path)
        return Message("osu.opened_osz", "Opened {name}: osu! imports it (osu!lazer or osu!stable must be installed)",
                       name=path.name)
    songs = Path(songs_folder).expanduser() if songs_folder else detect_songs_folder()
    _, _, outside = set_files(path)
    left_out = [Message("osu.left_out", "Left out \"{name}\": it is outside the beatmap's folder.", name=name)
                for name in outside]
    if songs is not None and songs.is_dir():
        folder = install_mapset(path, songs)
        done = Message("osu.copied", "Copied into {folder}. In osu!stable press F5 in song select to see it.",
                       folder=str(folder))
    else:
        osz = pack_osz(path)
        open_path(osz)
        done = Message("osu.wrote_osz", "No osu!stable Songs folder found (set one in Settings), so {name} was "
                       "written and opened: osu!lazer imports it.", name=osz.name)
    return Message("osu.with_notes", "{done}{notes}", done=done, notes="".join(" " + n for n in left_out)) \
        if left_out else done
