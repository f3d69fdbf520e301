"""Files that survive a crash and are read safely: the helpers of the file-based stores.

:func:`atomic_write` replaces a file so that a crash leaves the old or the new content,
never a mix; :func:`read_private_file` reads one without following a symlink; and
:func:`json_loads_strict` parses JSON as the standard defines it (no ``NaN``). The file
store and the export bundle use them; so may a third-party backend that keeps files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..private_files import check_owned, file_error

__all__ = [
    "atomic_write",
    "fsync_directory",
    "glob_escape",
    "json_loads_strict",
    "read_private_file",
    "remove_stale_temp_files",
]


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename) to disk, where the platform allows."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content.

    Writes a 0600 temp file in the same directory, fsyncs it, renames it over ``path``
    with :func:`os.replace` and fsyncs the directory. ``mode``: the file's mode instead
    of 0600, set before the rename (for a file others must read, which holds no secret).
    """
    import tempfile  # here: it imports shutil, random and more, which reads never need

    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_directory(directory)


def remove_stale_temp_files(path: Path) -> None:
    """Delete temp files a killed writer of ``path`` left behind (call under the lock)."""
    for leftover in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a literal file name."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def read_private_file(path: Path, what: str = "token file") -> bytes | None:
    """Read ``path`` without following a symlink; None if it does not exist.

    Raises:
        StoreError: ``path`` is a symlink, not a regular file, or another user's.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_symlink():
            raise StoreError(
                f"refusing to read {path}: it is a symlink; point the store at the real file"
            ) from None
        raise file_error(exc, path, f"read the {what}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path} is not a regular file; point the store at a file")
        check_owned(path, info, what)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def json_loads_strict(data: bytes | str) -> Any:
    """Parse JSON, refusing NaN/Infinity, which the JSON standard does not allow."""

    def reject(constant: str) -> Any:
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(data, parse_constant=reject)
