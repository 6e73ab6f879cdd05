"""Safe file writes: a temporary file in the target folder, fsync, then ``os.replace``.

A failed write leaves no partial file behind, and an existing file is first copied to a free
backup name (``name.bak``, ``name.1.bak``, ...) unless its content is identical.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from ..errors import BeatmapError


def backup_path(path: Path) -> Path:
    """The first free backup name next to ``path``."""
    candidate = path.with_name(path.name + ".bak")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{n}.bak")
        n += 1
    return candidate


def atomic_write(path: str | Path, content: bytes | Callable[[BinaryIO], None]) -> Path | None:
    """Write ``content`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    Returns the backup made of the previous file, or ``None`` when there was none (or it was
    identical). Raises :class:`BeatmapError` when the folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise BeatmapError("a folder exists at this path; choose a file name", path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise BeatmapError(f"cannot write into the folder: {e.strerror or e}", path) from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, (bytes, bytearray)):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes 0600
        backup = None
        if path.exists():
            if _same_content(path, tmp):
                tmp.unlink()
                return None
            backup = backup_path(path)
            shutil.copy2(path, backup)
        os.replace(tmp, path)
        return backup
    except OSError as e:
        raise BeatmapError(f"cannot write the file: {e.strerror or e}", path) from e
    finally:
        if tmp.exists():
            tmp.unlink()


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
