"""``.osz`` beatmap archives (zip files holding the .osu difficulties, audio and images).

:func:`read_osz` lists the difficulties and parses each lazily; :func:`write_osz` packs a folder,
or beatmaps plus their files, atomically (see :mod:`.files`). :func:`write_beatmap` writes a
single ``.osu`` the same safe way.

Archives are untrusted: a zip bomb of a few MB can expand to gigabytes. Before anything is
decompressed the entry count and the sizes the archive declares are checked against the caps
below, and every read counts the bytes it actually gets (declared sizes can lie), so memory stays
bounded whatever the archive holds. Real mapsets are far below the caps: a few dozen difficulties
of well under 1 MB each, a song, images and at most a video, in a few hundred files.
"""
from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Mapping, Sequence

from ..errors import BeatmapError
from ..messages import Message
from .decoder import MAX_FILE_SIZE, parse_beatmap
from .encoder import beatmap_bytes
from .files import OutputTransaction, atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from .beatmap import Beatmap

_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_TEXT_SUFFIXES = (".osu", ".osb", ".txt")

MAX_OSZ_ENTRIES = 10_000  # files in one archive (storyboards with sprite sequences have a few thousand)
MAX_OSZ_SIZE = 1 << 30  # 1 GiB: everything in the archive, uncompressed
MAX_OSZ_BEATMAP_BYTES = 128 << 20  # all its .osu files together
MAX_OSZ_MEMBER_SIZE = 4 * MAX_FILE_SIZE  # one file read into memory (a song, an image)
_CHUNK = 1 << 20


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
        """The bytes of one file of the archive (at most :data:`MAX_OSZ_MEMBER_SIZE`)."""
        return read_member(self.path, name)

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
    """Open an ``.osz``; difficulties are read now and parsed when first used.

    Raises :class:`BeatmapError` for an archive over the caps (see the module docstring) before
    decompressing anything, or as soon as its content turns out larger than it declared.
    """
    path = Path(path)
    try:
        _check_entry_count(path)
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            _check_declared_sizes(path, infos)
            entries, budget = [], MAX_OSZ_BEATMAP_BYTES
            for info in infos:
                if info.filename.lower().endswith(".osu"):
                    if info.file_size > MAX_FILE_SIZE:
                        raise BeatmapError(Message("osz.beatmap_too_large", "{name} is too large to be a beatmap "
                                                   "({size}, the limit is {limit})", name=info.filename,
                                                   size=_mib(info.file_size), limit=_mib(MAX_FILE_SIZE)), path)
                    too_large = (Message("osz.unpacks_to_more", "{name} unpacks to more than {limit}",
                                         name=info.filename, limit=_mib(MAX_FILE_SIZE)) if budget > MAX_FILE_SIZE
                                 else Message("osz.beatmaps_unpack_to_more", "its .osu files together unpack to more "
                                              "than {limit}", limit=_mib(MAX_OSZ_BEATMAP_BYTES)))
                    data = _read_capped(z, info, min(MAX_FILE_SIZE, budget), path, too_large)
                    budget -= len(data)
                    entries.append(OszEntry(info.filename, data, path))
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError, ValueError,
            NotImplementedError) as e:
        raise BeatmapError(Message("osz.unreadable", "not a readable .osz archive: {reason}", reason=str(e)), path) from e
    return OszArchive(path, [i.filename for i in infos], entries)


def read_member(archive: str | Path, name: str, limit: int | None = None) -> bytes:
    """One file of an archive, refused (:class:`BeatmapError`) when larger than ``limit`` bytes
    (default :data:`MAX_OSZ_MEMBER_SIZE`), whatever size the archive declares for it."""
    archive, limit = Path(archive), MAX_OSZ_MEMBER_SIZE if limit is None else limit
    try:
        with zipfile.ZipFile(archive) as z:
            info = z.getinfo(name)
            if info.file_size > limit:
                raise BeatmapError(Message("osz.member_too_large", "{name} is too large to read ({size}, the limit is "
                                           "{limit})", name=name, size=_mib(info.file_size), limit=_mib(limit)),
                                   archive)
            return _read_capped(z, info, limit, archive, Message("osz.member_larger", "{name} is larger than {limit}",
                                                                 name=name, limit=_mib(limit)))
    except KeyError:
        raise BeatmapError(Message("osz.no_such_file", "the archive has no file {name}", name=repr(name)),
                           archive) from None
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError, ValueError,
            NotImplementedError) as e:
        raise BeatmapError(Message("osz.cannot_read", "cannot read the archive: {reason}", reason=str(e)),
                           archive) from e


def extract_member(archive: str | Path, name: str, target: BinaryIO, limit: int) -> int:
    """Copy one file of an archive into ``target`` in 1 MiB pieces (memory stays bounded), refusing
    it (:class:`BeatmapError`) once more than ``limit`` bytes come out; returns the size."""
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as z:
            info = z.getinfo(name)
            if info.file_size > limit:
                raise BeatmapError(Message("osz.file_too_large", "{name} is too large ({size}, the limit is {limit})",
                                           name=name, size=_mib(info.file_size), limit=_mib(limit)), archive)
            size = 0
            with z.open(info) as source:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise BeatmapError(Message("osz.larger_than_declared", "{name} is larger than {limit} "
                                                   "(the archive said {size})", name=name, limit=_mib(limit),
                                                   size=_mib(info.file_size)), archive)
                    target.write(chunk)
            return size
    except KeyError:
        raise BeatmapError(Message("osz.no_such_file", "the archive has no file {name}", name=repr(name)),
                           archive) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, EOFError, ValueError, NotImplementedError) as e:
        raise BeatmapError(Message("osz.cannot_read", "cannot read the archive: {reason}", reason=str(e)),
                           archive) from e


def _check_entry_count(path: Path) -> None:
    """Refuse an archive whose end record announces too many files, before zipfile builds an
    object for each of them (a million tiny entries would take hundreds of MB)."""
    with open(path, "rb") as f:
        f.seek(max(f.seek(0, 2) - (1 << 16) - 22, 0))
        tail = f.read()
        end = tail.rfind(b"PK\x05\x06")
        if end < 0 or len(tail) < end + 22:
            return  # not a zip: zipfile says so
        count = struct.unpack_from("<H", tail, end + 10)[0]
        if count == 0xFFFF:  # ZIP64: the real count is in the ZIP64 end record, if it can be found
            count, locator = 0, end - 20
            if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
                f.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
                record = f.read(56)
                if record[:4] == b"PK\x06\x06" and len(record) == 56:
                    count = struct.unpack_from("<Q", record, 32)[0]
    if count > MAX_OSZ_ENTRIES:
        raise BeatmapError(Message("osz.too_many_files", "the archive has {count} files, more than the {limit} a "
                                   "mapset can have", count=count, limit=MAX_OSZ_ENTRIES), path)


def _check_declared_sizes(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_OSZ_ENTRIES:
        raise BeatmapError(Message("osz.too_many_files", "the archive has {count} files, more than the {limit} a "
                                   "mapset can have", count=len(infos), limit=MAX_OSZ_ENTRIES), path)
    total = sum(i.file_size for i in infos)
    if total > MAX_OSZ_SIZE:
        raise BeatmapError(Message("osz.unpacks_too_large", "the archive would unpack to {size}, more than the "
                                   "{limit} a mapset can have (a zip bomb?)", size=_mib(total),
                                   limit=_mib(MAX_OSZ_SIZE)), path)
    beatmaps = sum(i.file_size for i in infos if i.filename.lower().endswith(".osu"))
    if beatmaps > MAX_OSZ_BEATMAP_BYTES:
        raise BeatmapError(Message("osz.beatmaps_too_large", "its .osu files would unpack to {size}, more than the "
                                   "{limit} a mapset can have (a zip bomb?)", size=_mib(beatmaps),
                                   limit=_mib(MAX_OSZ_BEATMAP_BYTES)), path)


def _read_capped(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: Path, too_large: Message) -> bytes:
    """An entry's bytes, stopping with :class:`BeatmapError` as soon as more than ``limit`` come out."""
    parts, size = [], 0
    with z.open(info) as source:
        while chunk := source.read(min(_CHUNK, limit - size + 1)):
            size += len(chunk)
            if size > limit:
                raise BeatmapError(Message("osz.zip_bomb", "{what} (a zip bomb?)", what=too_large), path)
            parts.append(chunk)
    return b"".join(parts)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB" if size >= 1 << 20 else f"{size} bytes"


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
        raise BeatmapError(Message("osz.unsafe_name", "unsafe file name for an archive: {name}", name=repr(name)))
    return "/".join(parts)


def write_osz(path: str | Path, folder: str | Path | None = None, *, beatmaps: Sequence[Beatmap] = (),
              files: Mapping[str, bytes | str | Path] | None = None,
              transaction: OutputTransaction | None = None) -> Path | None:
    """Write an ``.osz`` from a beatmap folder and/or beatmaps plus their files.

    ``folder``: every file under it is added with its relative path. ``beatmaps`` are added as
    ``Artist - Title (Creator) [Version].osu``; ``files`` maps archive names to bytes or to files
    on disk (audio, background, ...). The archive is written atomically; a previous file at
    ``path`` is kept as a backup, whose path is returned. With ``transaction`` it is only staged
    there (and a backup shows in its ``backups`` once committed). It is no more readable than the
    files packed into it.
    """
    entries: dict[str, bytes | Path] = {}
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise BeatmapError(Message("osz.not_a_folder", "not a folder"), folder)
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
        raise BeatmapError(Message("osz.nothing_to_pack", "nothing to put into the archive"), Path(path))
    for name, content in entries.items():
        if isinstance(content, Path) and not content.is_file():
            raise BeatmapError(Message("osz.file_missing", "file for {name} not found", name=repr(name)), content)

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
        transaction.write(path, write, replace=True, private_as=sources)
        return None
    return atomic_write(path, write, private_as=sources)


def write_beatmap(beatmap: Beatmap, path: str | Path) -> Path | None:
    """Write ``beatmap`` as a v14 ``.osu`` atomically; returns the backup of a previous file."""
    return atomic_write(path, beatmap_bytes(beatmap))
