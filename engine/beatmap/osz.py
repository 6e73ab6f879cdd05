"""``.osz`` beatmap archives (zip files holding the .osu difficulties, audio and images).

:func:`read_osz` lists the difficulties and parses each lazily; :func:`write_osz` packs a folder,
or beatmaps plus their files, atomically (see :mod:`.files`). :func:`write_beatmap` writes a
single ``.osu`` the same safe way.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Mapping, Sequence

from ..errors import BeatmapError
from .decoder import MAX_FILE_SIZE, parse_beatmap
from .encoder import beatmap_bytes
from .files import OutputTransaction, atomic_write
from .model import Beatmap

_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_TEXT_SUFFIXES = (".osu", ".osb", ".txt")


@dataclass
class OszEntry:
    """One ``.osu`` file in an archive; ``beatmap`` parses it on first use."""

    name: str
    data: bytes = field(repr=False)
    archive_path: Path | None = field(default=None, repr=False)

    @cached_property
    def beatmap(self) -> Beatmap:
        where = f"{self.archive_path}/{self.name}" if self.archive_path else self.name
        return parse_beatmap(self.data, where)


@dataclass
class OszArchive:
    """The content of an ``.osz``: file names, difficulties, audio and background."""

    path: Path
    names: list[str]
    difficulties: list[OszEntry]

    def read(self, name: str) -> bytes:
        """The bytes of one file of the archive."""
        try:
            with zipfile.ZipFile(self.path) as z:
                info = z.getinfo(name)
                if info.file_size > 4 * MAX_FILE_SIZE:
                    raise BeatmapError(f"{name} is too large to read", self.path)
                return z.read(info)
        except KeyError:
            raise BeatmapError(f"the archive has no file {name!r}", self.path) from None
        except (OSError, zipfile.BadZipFile) as e:
            raise BeatmapError(f"cannot read the archive: {e}", self.path) from e

    def _find(self, wanted: str | None) -> str | None:
        if not wanted:
            return None
        wanted = wanted.replace("\\", "/").lower()
        return next((n for n in self.names if n.lower() == wanted), None)

    def _referenced(self, pick) -> list[str]:
        found: list[str] = []
        for entry in self.difficulties:
            try:
                name = self._find(pick(entry.beatmap))
            except BeatmapError:
                continue
            if name and name not in found:
                found.append(name)
        return found

    @property
    def audio_files(self) -> list[str]:
        """Archive names of the audio files the difficulties use (first = most common case)."""
        return self._referenced(lambda b: b.general.audio_filename)

    @property
    def background_files(self) -> list[str]:
        """Archive names of the background images the difficulties use."""
        return self._referenced(lambda b: b.background_file)

    @property
    def audio_file(self) -> str | None:
        return next(iter(self.audio_files), None)

    @property
    def background_file(self) -> str | None:
        return next(iter(self.background_files), None)


def read_osz(path: str | Path) -> OszArchive:
    """Open an ``.osz``; difficulties are read now and parsed when first used."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            entries = []
            for info in infos:
                if info.filename.lower().endswith(".osu"):
                    if info.file_size > MAX_FILE_SIZE:
                        raise BeatmapError(f"{info.filename} is too large to be a beatmap", path)
                    entries.append(OszEntry(info.filename, z.read(info), path))
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError, ValueError) as e:
        raise BeatmapError(f"not a readable .osz archive: {e}", path) from e
    return OszArchive(path, [i.filename for i in infos], entries)


def beatmap_filename(beatmap: Beatmap) -> str:
    """The file name osu! gives a difficulty: ``Artist - Title (Creator) [Version].osu``."""
    m = beatmap.metadata
    return safe_filename(f"{m.artist} - {m.title} ({m.creator}) [{m.version}].osu")


def safe_filename(name: str) -> str:
    """``name`` without characters Windows or zip paths do not allow."""
    cleaned = _UNSAFE_CHARS.sub("", name).strip().rstrip(".")
    return cleaned or "untitled"


def _archive_name(name: str) -> str:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise BeatmapError(f"unsafe file name for an archive: {name!r}")
    return "/".join(parts)


def write_osz(path: str | Path, folder: str | Path | None = None, *, beatmaps: Sequence[Beatmap] = (),
              files: Mapping[str, bytes | str | Path] | None = None,
              transaction: OutputTransaction | None = None) -> Path | None:
    """Write an ``.osz`` from a beatmap folder and/or beatmaps plus their files.

    ``folder``: every file under it is added with its relative path. ``beatmaps`` are added as
    ``Artist - Title (Creator) [Version].osu``; ``files`` maps archive names to bytes or to files
    on disk (audio, background, ...). The archive is written atomically; a previous file at
    ``path`` is kept as a backup, whose path is returned. With ``transaction`` it is only staged
    there (a new file, no backup). It is no more readable than the files packed into it.
    """
    entries: dict[str, bytes | Path] = {}
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise BeatmapError("not a folder", folder)
        target = Path(path).resolve()
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            resolved = file.resolve()
            if resolved == target or (resolved.parent == target.parent and resolved.name.startswith(target.name)
                                      and resolved.name.endswith(".bak")):
                continue  # the archive being written into the folder it packs, and its backups
            entries[file.relative_to(folder).as_posix()] = file
    for name, content in (files or {}).items():
        entries[_archive_name(name)] = Path(content) if isinstance(content, (str, Path)) else bytes(content)
    for beatmap in beatmaps:
        entries[beatmap_filename(beatmap)] = beatmap_bytes(beatmap)
    if not entries:
        raise BeatmapError("nothing to put into the archive", Path(path))
    for name, content in entries.items():
        if isinstance(content, Path) and not content.is_file():
            raise BeatmapError(f"file for {name!r} not found", content)

    def write(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w") as z:
            for name, content in entries.items():
                compress = zipfile.ZIP_DEFLATED if name.lower().endswith(_TEXT_SUFFIXES) else zipfile.ZIP_STORED
                if isinstance(content, Path):
                    z.write(content, name, compress_type=compress)
                else:
                    z.writestr(name, content, compress_type=compress)

    sources = [c for c in entries.values() if isinstance(c, Path)]
    if transaction is not None:
        transaction.write(path, write, private_as=sources)
        return None
    return atomic_write(path, write, private_as=sources)


def write_beatmap(beatmap: Beatmap, path: str | Path) -> Path | None:
    """Write ``beatmap`` as a v14 ``.osu`` atomically; returns the backup of a previous file."""
    return atomic_write(path, beatmap_bytes(beatmap))
