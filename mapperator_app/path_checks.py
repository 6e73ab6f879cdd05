"""Paths the app's API takes, checked for their role before any work is queued.

A song must decode as audio, a background must be a PNG or JPEG image, a beatmap must parse, and a folder
the app writes into must exist (or be a new folder in one that does), be writable and not be a system
folder. So a call cannot make a job read a private file into a map or write outside the user's folders.
Each check raises a :class:`~engine.errors.MapperatorError` whose message the UI shows as it is.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import engine
from engine import AudioError, BeatmapError, Message, OptionError

# Folders (and everything in them) no map, timing file or setting may point at. Filesystem roots are
# refused too. Checked after resolving links, so /etc is refused as /private/etc on macOS.
POSIX_SYSTEM_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin",
                        "/sys", "/usr", "/var/lib", "/var/log", "/var/spool", "/var/cache", "/var/db", "/System",
                        "/Library", "/private/etc", "/private/var/db", "/cores")
# Top-level folders that hold other users' or the system's folders: refused themselves, not what is inside.
POSIX_CONTAINERS = ("/home", "/Users", "/run", "/var", "/private", "/private/var", "/media", "/mnt", "/opt", "/srv")
IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def _system_folders() -> list[Path]:
    if sys.platform == "win32":
        return [Path(os.environ.get("SystemRoot") or r"C:\Windows")]
    return [Path(p) for p in POSIX_SYSTEM_FOLDERS]


def is_system_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a filesystem root, a top-level container, or in a system folder."""
    resolved = Path(folder).expanduser().resolve()
    if resolved == Path(resolved.anchor):
        return True
    if sys.platform != "win32" and str(resolved) in POSIX_CONTAINERS:
        return True
    return any(resolved == s or resolved.is_relative_to(s) for s in _system_folders())


def _path(value: str | Path, field: str) -> Path:
    text = str(value).strip()
    if not text or "\0" in text:
        raise OptionError(Message("path.not_a_path", "{field}: {value} is not a path", field=field, value=repr(value)))
    return Path(text).expanduser()


def check_audio(value: str | Path, field: str = "audio_path") -> Path:
    """A song: a file whose header decodes as audio."""
    path = _path(value, field)
    if not path.is_file():
        raise AudioError(Message("path.audio_not_found", "{field}: {path}: audio file not found", field=field,
                                 path=str(path)) if not path.exists() else
                         Message("path.audio_not_file", "{field}: {path} is not a file; choose an audio file",
                                 field=field, path=str(path)))
    engine.audio_duration_ms(path)  # reads the header; raises AudioError naming the file when it is not audio
    return path


def check_beatmap(value: str | Path, field: str = "beatmap_path"):
    """A beatmap: an .osu file that parses; returns (path, Beatmap)."""
    path = _path(value, field)
    if path.suffix.lower() != ".osu":
        raise OptionError(Message("path.not_osu", "{field} must be an .osu file, not {name}", field=field,
                                  name=path.name))
    if not path.is_file():
        raise BeatmapError(Message("path.file_not_found", "file not found"), path)
    return path, engine.read_beatmap(path)


def check_image(value: str | Path, field: str = "background") -> Path:
    """A background: a PNG or JPEG file (by its first bytes, whatever its name says)."""
    path = _path(value, field)
    if not path.is_file():
        raise OptionError(Message("path.image_not_found", "{field}: {path}: image file not found", field=field,
                                  path=str(path)))
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise OptionError(Message("path.unreadable", "{field}: cannot read {path}: {error}", field=field,
                                  path=str(path), error=str(e.strerror or e))) from None
    if not any(head.startswith(signature) for signature in IMAGE_SIGNATURES):
        raise OptionError(Message("path.not_image", "{field}: {name} is not a PNG or JPEG image", field=field,
                                  name=path.name))
    return path


def _check_folder(folder: Path, field: str) -> None:
    if not folder.is_dir():
        raise OptionError(Message("path.not_folder", "{field}: {folder} is not a folder", field=field,
                                  folder=str(folder)) if folder.exists() else
                          Message("path.folder_missing", "{field}: the folder {folder} does not exist", field=field,
                                  folder=str(folder)))
    if is_system_folder(folder):
        raise OptionError(_system_folder(field, folder))


def _system_folder(field: str, folder: Path) -> Message:
    return Message("path.system_folder", "{field}: {folder} is a system folder; choose one of your own folders",
                   field=field, folder=str(folder))


def check_writable_folder(folder: Path, field: str) -> Path:
    """An existing folder this user may write into that is not a system folder."""
    _check_folder(folder, field)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OptionError(Message("path.not_writable", "{field}: you cannot write in {folder}; choose another folder",
                                  field=field, folder=str(folder)))
    return folder


def check_output_folder(value: str | Path, field: str = "output_path") -> Path:
    """Where a generated map goes: an existing writable folder, or a new folder inside one."""
    folder = _path(value, field)
    if folder.exists() and not folder.is_dir():
        raise OptionError(Message("path.is_file", "{field}: {folder} is a file; choose a folder", field=field,
                                  folder=str(folder)))
    if folder.is_dir():
        return check_writable_folder(folder, field)
    if is_system_folder(folder.parent):
        raise OptionError(_system_folder(field, folder.parent))
    check_writable_folder(folder.parent, field)
    return folder


def check_settings_folder(value: str | Path, field: str, writable: bool) -> Path:
    """A folder kept in the settings: existing, not a system folder, writable when the app writes there."""
    folder = _path(value, field)
    if writable:
        return check_writable_folder(folder, field)
    _check_folder(folder, field)
    return folder


def check_save_path(value: str, default_folder: Path | None, default_name: str, suffix: str = ".osu") -> Path:
    """Where to save a file: a folder (``default_name`` in it), a file path (``suffix`` added when it has
    another one), or nothing (``default_name`` in ``default_folder``); its folder must pass
    :func:`check_writable_folder`."""
    text = (value or "").strip()
    if not text:
        if default_folder is None:
            raise OptionError(Message("path.choose_save", "choose where to save the file"))
        target = default_folder / default_name
    else:
        path = _path(text, Message("path.field_save", "save path"))
        if path.is_dir():
            target = path / default_name
        else:
            target = path if path.suffix.lower() == suffix else path.with_name(path.name + suffix)
    check_writable_folder(target.parent, Message("path.field_save", "save path"))
    if target.exists() and not target.is_file():
        raise OptionError(Message("path.save_not_file", "save path: {target} exists and is not a file",
                                  target=str(target)))
    return target


def check_generate(options: Any) -> None:
    """The paths of a GenerateOptions: song, reference beatmap, background and the folder written into."""
    beatmap_path = audio_path = None
    if options.beatmap_path:
        beatmap_path, beatmap = check_beatmap(options.beatmap_path)
        if not options.audio_path and beatmap.general.audio_filename:
            check_audio(beatmap_path.parent / beatmap.general.audio_filename,
                        Message("path.field_reference_song", "the reference beatmap's song"))
    if options.audio_path:
        audio_path = check_audio(options.audio_path)
    if beatmap_path is None and audio_path is None:
        raise OptionError(Message("path.choose_song", "choose the song (audio file), or a reference beatmap whose "
                                  "folder holds its song"))
    if options.background:
        check_image(options.background)
    if options.output_path:
        check_output_folder(options.output_path)
    else:
        where = (beatmap_path or audio_path).parent
        try:
            check_writable_folder(where, Message("settings.field_output", "output folder"))
        except OptionError as e:
            reason = e.args[0] if len(e.args) == 1 else str(e)
            if beatmap_path:
                raise OptionError(Message("path.output_next_to_reference", "{reason}; the map would be written next "
                                          "to the reference beatmap: choose an output folder", reason=reason)) from None
            raise OptionError(Message("path.output_next_to_song", "{reason}; the map would be written next to the "
                                      "song: choose an output folder", reason=reason)) from None
