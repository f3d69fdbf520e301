"""Files only their owner may touch: creating them, trusting them, and saying what failed.

Token files, SQLite databases and lock files are trusted the way ssh's ``StrictModes``
trusts ``authorized_keys``:

- the file belongs to the user running the program (a file someone else planted, even
  one only the user can read, is refused), and is not a symbolic link;
- every directory above it belongs to the user or to root, and no one else can write to
  it, unless it is sticky (as ``/tmp`` is), where others cannot rename or remove what
  is not theirs. Anyone who can write a directory can replace what is in it.

A check that fails raises :class:`~webex_tokens.errors.StoreError` naming the file and
the command that fixes it. A directory that passed is remembered for the life of the
process, since only its owner (or root) could change that. Nothing is checked where
the operating system has no owners and modes of this kind (Windows).

:func:`file_error` turns an :class:`OSError` (permission denied, a read-only file
system, a full disk, ...) into a ``StoreError`` that says what happened and how to fix
it, so no operating-system error reaches the user without a hint.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Final

from .errors import StoreError, StoreNotFound

__all__ = [
    "check_directories",
    "check_owned",
    "ensure_private_dir",
    "file_error",
    "owner_name",
    "prepare_private_file",
    "store_not_found",
]

log = logging.getLogger(__name__)

_POSIX: Final = os.name == "posix"
_trusted: set[Path] = set()
_trusted_lock = threading.Lock()


def owner_name(uid: int) -> str:
    """The user name of ``uid``, or ``uid N`` when it has none."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def _you() -> int:
    return os.geteuid()


def check_owned(path: Path, info: os.stat_result, what: str) -> None:
    """Refuse ``path`` (whose ``stat`` is ``info``) unless the running user owns it.

    Raises:
        StoreError: another user owns it.
    """
    if not _POSIX or info.st_uid == _you():
        return
    owner, you = owner_name(info.st_uid), owner_name(_you())
    raise StoreError(
        f"refusing to use the {what} {path}: it belongs to {owner}, not to {you}, so "
        f"someone else may have put it there; run as {owner}, or if the file is yours: "
        f"chown {you} {path}"
    )


def check_directories(path: Path, what: str) -> None:
    """Refuse ``path`` unless every existing directory above it is one only the user
    (or root) can change: owned by the user or root, and not writable by others unless
    sticky.

    Raises:
        StoreError: a directory belongs to another user, or others can write to it.
    """
    if not _POSIX or path.parent in _trusted:
        return  # a trusted directory was trusted with every directory above it
    directory = path.parent
    while True:
        if directory not in _trusted:
            try:
                info = os.stat(directory)
            except FileNotFoundError:
                info = None  # created 0700 on the first write
            except OSError as exc:
                raise file_error(exc, directory, f"check the directory of the {what}") from None
            if info is not None:
                _check_directory(directory, info, path, what)
                with _trusted_lock:
                    _trusted.add(directory)
        if directory.parent == directory:
            return
        directory = directory.parent


def _check_directory(directory: Path, info: os.stat_result, path: Path, what: str) -> None:
    if info.st_uid not in (_you(), 0):
        raise StoreError(
            f"refusing to use the {what} {path}: the directory {directory} belongs to "
            f"{owner_name(info.st_uid)}, who could replace what is in it; keep the store in "
            "a directory of your own"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022 and not mode & stat.S_ISVTX:
        raise StoreError(
            f"refusing to use the {what} {path}: other users can write to the directory "
            f"{directory} (mode {mode:o}) and so replace what is in it; run: chmod go-w "
            f"{directory}"
        )


def prepare_private_file(
    path: Path, what: str, *, create: bool = True, error: type[StoreError] = StoreError
) -> bool:
    """Make sure ``path`` is a private regular file of the user before a library opens it
    (SQLite): created 0600 in a 0700 directory when missing, made 0600 when others could
    read it, refused when it is a symlink, not a file, another user's, or in a directory
    others can write.

    Args:
        path: the file.
        what: how messages name it (``"SQLite database"``).
        create: create the file when missing; False raises :class:`StoreNotFound`.
        error: the class of the error for a file that cannot be created.

    Returns:
        True if the file was created.

    Raises:
        StoreNotFound: the file does not exist and ``create`` is False.
        StoreError: a check failed, or the file cannot be created (as ``error``).
    """
    check_directories(path, what)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise store_not_found(what, path) from None
        try:
            ensure_private_dir(path.parent)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        except OSError as exc:
            raise file_error(exc, path, f"create the {what}", error=error) from None
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        return True
    except OSError as exc:
        raise file_error(exc, path, f"open the {what}", error=error) from None
    if stat.S_ISLNK(info.st_mode):
        raise StoreError(
            f"refusing to use the {what} {path}: it is a symlink; point the store at the "
            "real file instead"
        )
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path} is not a regular file; point the store at the {what} itself")
    check_owned(path, info, what)
    mode = stat.S_IMODE(info.st_mode)
    if _POSIX and mode & 0o077:
        try:
            os.chmod(path, 0o600)
        except OSError as exc:
            raise file_error(exc, path, f"make the {what} private (chmod 600)") from None
        log.warning(
            "the %s %s was readable by other users (mode %o); it is 0600 now", what, path, mode
        )
    return False


def store_not_found(what: str, path: Path) -> StoreNotFound:
    """The error of a store opened only to read whose file does not exist."""
    return StoreNotFound(
        f"there is no {what} at {path} yet, and nothing was created; check the path, or "
        "create the store by saving a token into it (webex-tokens login)"
    )


_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) with mode 0700, whatever the umask.

    Raises:
        StoreError: a directory cannot be created (permission denied, read-only, ...).
    """
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise file_error(exc, path, "create the directory") from None
        os.chmod(path, 0o700)


_FIXES: Final = {
    errno.EACCES: "permission denied; check who owns it and its directory "
    "(ls -ld {path} {parent}) and run as that user, or give this user access",
    errno.EPERM: "the operation is not permitted; check who owns it and its directory "
    "(ls -ld {path} {parent}) and run as that user",
    errno.EROFS: "the file system is read-only; choose a path on a writable file system",
    errno.ENOSPC: "the disk is full; free some space and try again",
    errno.EDQUOT: "the disk quota is exhausted; free some space and try again",
    errno.ENOTDIR: "a part of the path is a file, not a directory; fix the path",
    errno.EISDIR: "it is a directory; give the path of a file",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter one",
    errno.ELOOP: "it is a symbolic link, which is refused; replace it with the real file",
    errno.ENOENT: "a directory on the way does not exist; create it or fix the path",
    errno.ENOLCK: "the file system cannot lock files (a network file system?); keep the "
    "store on a local disk",
}


def file_error(
    exc: OSError, path: Path | str, doing: str, *, error: type[StoreError] = StoreError
) -> StoreError:
    """The ``StoreError`` for ``exc``, raised while trying to ``doing`` ``path``.

    The message says what failed and the fix for the usual causes, in one sentence:
    ``cannot create the directory /x/t.json.locks: permission denied; check who owns
    it ...``.

    Args:
        exc: the error the operating system raised.
        path: the file or directory it concerns.
        doing: what was being done, as "cannot ..." continues: ``"open the lock file"``.
        error: the class to return (a subclass of ``StoreError``).
    """
    target = Path(exc.filename) if isinstance(exc.filename, str) and exc.filename else Path(path)
    fix = _FIXES.get(exc.errno or 0)
    if fix is None:
        reason = (exc.strerror or str(exc)).lower()
        fix = f"{reason}; check the path and its permissions"
    return error(f"cannot {doing} {target}: {fix.format(path=target, parent=target.parent)}")
