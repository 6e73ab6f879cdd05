"""Files on disk: the files a beatmap names, and safe writes.

:func:`referenced_file` finds a file a beatmap names (audio, background, video, storyboard image) the way osu!
does, relative to the beatmap's folder, and refuses names that lead outside it.

:class:`OutputTransaction` writes a job's outputs all or nothing: each file is staged under a temporary
``.part`` name in its target folder and renamed into place on commit; on any failure (an error, Ctrl-C) the
staged files, the files already put into place and the folders the job created are removed again.
Outputs get the user's default permissions (``0666 & ~umask``), never wider than a file they copy.
:func:`atomic_write` is a one-file transaction that keeps a backup of a file it replaces.
:func:`check_output_writable` asks before a job whether its output folder will take the files.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from ..errors import BeatmapError, OptionError
from ..messages import Message

Content = bytes | Callable[[BinaryIO], None]
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeFileName(BeatmapError):
    """A beatmap names a file outside its own folder (an absolute path, a drive, ``..`` or a link out)."""


def referenced_file(folder: str | Path, name: str) -> Path:
    """``folder/name`` for a file a beatmap in ``folder`` names; the file may not exist.

    Names are matched as osu! on Windows matches them: ``\\`` or ``/`` separators, case-insensitive. Raises
    :class:`UnsafeFileName` when the name is absolute (``/x``, ``C:\\x``, ``C:x``, ``\\\\server\\share``) or
    leads outside ``folder``, after ``..`` and symbolic links are resolved.
    """
    folder = Path(folder)
    path = folder
    for part in relative_name(name, folder).split("/"):
        path = _entry(path, part)
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a link loop
        inside = False
    if not inside:
        raise UnsafeFileName(f"{name!r} leads outside the beatmap's folder", folder)
    return path


def relative_name(name: str, folder: str | Path | None = None) -> str:
    """``name`` as a ``/``-separated path inside the beatmap's folder, ``..`` applied (``sb\\..\\bg.png`` is
    ``bg.png``); raises :class:`UnsafeFileName` for names that are absolute or climb out of the folder."""
    parts: list[str] = []
    text = name.strip().replace("\\", "/")
    if not text or text.startswith("/") or _DRIVE.match(text) or "\x00" in text:
        raise UnsafeFileName(f"{name!r} is not a name inside the beatmap's folder", folder)
    for part in text.split("/"):
        if ":" in part:
            raise UnsafeFileName(f"{name!r} is not a name inside the beatmap's folder", folder)
        if part == "..":
            if not parts:
                raise UnsafeFileName(f"{name!r} leads outside the beatmap's folder", folder)
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    if not parts:
        raise UnsafeFileName(f"{name!r} is not a file name", folder)
    return "/".join(parts)


def _entry(folder: Path, part: str) -> Path:
    """``folder/part``, or the entry whose name differs only in case when there is no exact one."""
    exact = folder / part
    if exact.exists() or exact.is_symlink() or not folder.is_dir():
        return exact
    try:
        return next((c for c in folder.iterdir() if c.name.lower() == part.lower()), exact)
    except OSError:
        return exact


def backup_path(path: Path) -> Path:
    """The first free backup name next to ``path``."""
    candidate = path.with_name(path.name + ".bak")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{n}.bak")
        n += 1
    return candidate


class OutputTransaction:
    """Outputs written all or nothing. Use as a context manager: leaving it normally commits, leaving it by any
    exception (``KeyboardInterrupt`` included) rolls back.

        with OutputTransaction() as out:
            out.make_folder(folder)
            out.copy(song, folder / song.name)
            out.write(folder / "map.osu", data)
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path, bool]] = []  # (temporary file, target, may replace)
        self._placed: list[tuple[Path, Path | None]] = []  # (target, backup of the file it replaced)
        self._folders: list[Path] = []  # created by this transaction, outermost first
        self.backups: dict[Path, Path] = {}  # target -> backup of the file it replaced

    def __enter__(self) -> "OutputTransaction":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()

    def make_folder(self, folder: Path) -> Path:
        """Create ``folder`` and its missing parents; the ones created are removed on rollback."""
        missing = []
        current = Path(folder)
        while not current.exists() and current != current.parent:
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            self._folders.append(path)  # first: Ctrl-C right after mkdir must not leave the folder behind
            try:
                path.mkdir()
            except OSError as e:
                self._folders.pop()
                raise BeatmapError(Message("output.cannot_create_folder", "cannot create the folder: {reason}",
                                           reason=os_reason(e)), path) from e
        return Path(folder)

    def write(self, target: str | Path, content: Content, *, replace: bool = False,
              private_as: Iterable[str | Path] = ()) -> Path:
        """Stage ``content`` (bytes, or a function writing to a binary file) for ``target``.

        The file gets the default permissions (a replaced file keeps its own), limited to those of each
        ``private_as`` file (sources whose content it holds). Without ``replace``, an existing ``target`` is an
        error at commit.
        """
        target = Path(target)
        if target.is_dir():
            raise BeatmapError(Message("output.folder_in_the_way", "a folder exists at this path; choose a file name"),
                               target)
        tmp, fd = self._temporary(target)
        staged = (tmp, target, replace)
        self._staged.append(staged)  # from now on a rollback removes it
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(content, (bytes, bytearray)):
                    f.write(content)
                else:
                    content(f)
                f.flush()
                os.fsync(f.fileno())
            mode = stat.S_IMODE((target if replace and target.exists() else tmp).stat().st_mode)
            for source in private_as:
                mode &= stat.S_IMODE(os.stat(source).st_mode)
            if mode != stat.S_IMODE(tmp.stat().st_mode):
                os.chmod(tmp, mode)
        except BaseException as e:
            self._staged.remove(staged)
            _remove(tmp)
            if isinstance(e, OSError):
                raise BeatmapError(Message("output.cannot_write", "cannot write the file: {reason}",
                                           reason=os_reason(e)), target) from e
            raise
        return target

    def copy(self, source: str | Path, target: str | Path) -> Path:
        """Stage a copy of ``source`` for ``target`` (at most as readable as ``source``)."""
        source = Path(source)

        def copy_into(f: BinaryIO) -> None:
            with source.open("rb") as s:
                shutil.copyfileobj(s, f, 1 << 20)

        return self.write(target, copy_into, private_as=[source])

    def commit(self) -> None:
        """Put every staged file into place; on failure everything is undone."""
        try:
            while self._staged:
                tmp, target, replace = self._staged[0]
                backup = None
                if target.exists():
                    if not replace:
                        raise BeatmapError(Message("output.appeared", "the file appeared while it was being written; not "
                                                   "replacing it"), target)
                    if _same_content(target, tmp):
                        tmp.unlink()
                        self._staged.pop(0)
                        continue
                    backup = backup_path(target)
                    self._placed.append((backup, None))
                    shutil.copy2(target, backup)
                self._placed.append((target, backup))
                os.replace(tmp, target)
                self._staged.pop(0)
                if backup is not None:
                    self.backups[target] = backup
        except OSError as e:
            self.rollback()
            raise BeatmapError(Message("output.cannot_write", "cannot write the file: {reason}", reason=os_reason(e)),
                               target) from e
        except BaseException:
            self.rollback()
            raise
        self._folders.clear()
        self._placed.clear()

    def rollback(self) -> None:
        """Remove staged and placed files (restoring replaced ones) and the folders this transaction created."""
        for tmp, _, _ in self._staged:
            _remove(tmp)
        self._staged.clear()
        for target, backup in reversed(self._placed):
            if backup is not None and backup.exists():
                try:
                    os.replace(backup, target)
                    continue
                except OSError:
                    pass
            if backup is None:
                _remove(target)
        self._placed.clear()
        for folder in reversed(self._folders):
            try:
                folder.rmdir()
            except OSError:
                pass
        self._folders.clear()

    def _temporary(self, target: Path) -> tuple[Path, int]:
        """A new ``.name.XXXX.part`` file beside ``target``, created with the default permissions."""
        while True:
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
            try:
                return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except FileExistsError:
                continue
            except OSError as e:
                raise BeatmapError(Message("output.cannot_write_folder", "cannot write into the folder: {reason}",
                                           reason=os_reason(e)), target) from e


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write(path: str | Path, content: Content, private_as: Iterable[str | Path] = ()) -> Path | None:
    """Write ``content`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    Returns the backup made of the previous file, or ``None`` when there was none (or it was
    identical). Raises :class:`BeatmapError` when the folder cannot be written. ``private_as``: see
    :meth:`OutputTransaction.write`.
    """
    path = Path(path)
    with OutputTransaction() as out:
        out.write(path, content, replace=True, private_as=private_as)
    return out.backups.get(path)


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk = fa.read(1 << 20)
            if chunk != fb.read(1 << 20):
                return False
            if not chunk:
                return True


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def check_output_writable(folder: Path) -> None:
    """Raises OptionError unless ``folder`` takes files or can be made (it is only made when the outputs are
    written, so a job that fails leaves no empty folder behind). Generation, the app and the wizard ask this."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, Message("error.generation.output_is_file",
                                                            "{path} is a file, not a folder", path=str(existing)))
        if existing != folder:
            if not os.access(existing, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, Message("error.generation.cannot_create_folders", "cannot create "
                                                            "folders in {path}", path=str(existing)))
            return
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mapperator-write-test-"):
            pass
    except OSError as e:
        raise OptionError(Message("error.generation.output_not_writable", "cannot write to the output folder {folder}: "
                                  "{reason}", folder=str(folder), reason=os_reason(e))) from None


def os_reason(error: OSError) -> str:
    """The system's words for a failed write (``str(error)`` reads as before); a full disk or a refused
    permission also carries a message id, so the app can explain it in the user's language."""
    reason = error.strerror or str(error)
    if error.errno in _FULL:
        return Message("output.disk_full", "{reason}", reason=reason)
    if error.errno in _DENIED:
        return Message("output.permission_denied", "{reason}", reason=reason)
    return reason
