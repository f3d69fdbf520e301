"""Cross-process locks on lock files: one for a whole store, and one per account.

:func:`interprocess_lock` is the lock every local backend takes around a write: an
exclusive (or shared) ``flock`` on a file that never holds data. :class:`AccountLocks`
adds a lock per account beside it, so that ``update`` of one account can wait on the
network (a refresh) without holding up the accounts next to it: ``update`` holds its
account's lock while its function runs and the store lock only while it writes.

Lock files are created 0600 and kept: removing one would race with the next locker.
The operating system releases a lock when its holder dies, however it dies. A lock file
another user owns, or one in a directory others can write, is refused (see
:mod:`webex_tokens.private_files`), and an operating-system error (permission denied, a
read-only file system) is a :class:`~webex_tokens.errors.StoreError` naming the file
and the fix. A store backed by a file keeps all its lock files in one directory beside
it, ``<file>.locks/`` (:func:`lock_directory`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .errors import LockTimeout
from .private_files import check_directories, check_owned, ensure_private_dir, file_error

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: filelock's exclusive lock instead
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "AccountLocks",
    "ensure_private_dir",
    "interprocess_lock",
    "lock_directory",
]

#: Seconds a writer waits for another before raising :class:`LockTimeout`.
DEFAULT_LOCK_TIMEOUT: Final = 60.0
#: Waits between attempts grow from the first to the last (seconds).
_FIRST_POLL: Final = 0.0005
_LAST_POLL: Final = 0.005
_OPEN_FLAGS: Final = (
    os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
)


def lock_directory(data_file: Path) -> Path:
    """The one directory that holds every lock file of the store kept in ``data_file``:
    ``<file>.locks`` beside it, so that every process using the file finds the same locks."""
    return data_file.with_name(data_file.name + ".locks")


def _timeout_error(path: Path, timeout: float) -> LockTimeout:
    return LockTimeout(
        f"another process held the lock {path} for more than {timeout:g} seconds; "
        "wait for it to finish, or raise the timeout with ?lock_timeout=SECONDS"
    )


def _open_lock_file(path: Path) -> int:
    check_directories(path, "lock file")
    try:
        try:
            fd = os.open(path, _OPEN_FLAGS, 0o600)
        except FileNotFoundError:
            ensure_private_dir(path.parent)
            check_directories(path, "lock file")
            fd = os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as exc:
        raise file_error(exc, path, "open the lock file") from None
    try:
        check_owned(path, os.fstat(fd), "lock file")
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def interprocess_lock(
    path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT, *, shared: bool = False
) -> Iterator[None]:
    """Hold a lock on the file ``path`` across threads and processes.

    Exclusive by default; ``shared`` locks exclude only exclusive ones. Each call opens
    the file anew, so two threads of one process exclude each other as two processes
    do. The lock file (and its directory, 0700) is created when missing. Where
    ``fcntl`` does not exist (Windows), every lock is exclusive, taken with filelock.

    Raises:
        LockTimeout: the lock could not be taken within ``timeout`` seconds.
        StoreError: the lock file cannot be opened or locked (another user's file, a
            directory others can write, permission denied, a read-only file system).
    """
    if fcntl is None:  # pragma: no cover - Windows
        with _exclusive_filelock(path, timeout):
            yield
        return
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    poll = _FIRST_POLL
    while True:
        fd = _open_lock_file(path)
        try:
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise _timeout_error(path, timeout) from None
                    time.sleep(poll)
                    poll = min(poll * 2, _LAST_POLL)
                except OSError as exc:
                    raise file_error(exc, path, "lock the lock file") from None
            if os.fstat(fd).st_nlink == 0:
                continue  # the file was removed while we waited: lock the new one
            yield
            return
        finally:
            os.close(fd)  # closing the only descriptor releases the lock


@contextlib.contextmanager
def _exclusive_filelock(path: Path, timeout: float) -> Iterator[None]:  # pragma: no cover
    import filelock  # type: ignore[import-not-found, unused-ignore] # Windows only

    ensure_private_dir(path.parent)
    lock = filelock.FileLock(
        str(path), timeout=timeout, mode=0o600, thread_local=False, preserve_lock_file=True
    )
    try:
        lock.acquire()
    except filelock.Timeout:
        raise _timeout_error(path, timeout) from None
    try:
        yield
    finally:
        lock.release()


class AccountLocks:
    """A lock per account of one store, and a lock over every account at once.

    The files live in ``directory`` (created 0700 on first use): ``all``, which each
    account lock holds shared and :meth:`every_account` exclusively, and one file per
    slot, chosen by a hash of the account name from a fixed number of slots so the
    directory stays small however many accounts come and go. Two accounts that share a
    slot simply take turns.

    The order is always: account locks (or :meth:`every_account`), then the store lock.

    Args:
        directory: where the lock files live.
        timeout: seconds to wait for a lock before :class:`LockTimeout`.
    """

    SLOTS: Final = 1024

    def __init__(self, directory: Path, timeout: float = DEFAULT_LOCK_TIMEOUT):
        self.directory = directory
        self.timeout = timeout
        self._all = directory / "all"

    def slot_path(self, name: str) -> Path:
        """The lock file of ``name``'s slot."""
        import hashlib  # here: loading OpenSSL costs every command, and only updates lock

        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
        return self.directory / f"{int.from_bytes(digest[:4], 'big') % self.SLOTS:04d}"

    @contextlib.contextmanager
    def account(self, name: str) -> Iterator[None]:
        """Hold ``name``'s lock: no other :meth:`account` holder of the same name and no
        :meth:`every_account` holder runs meanwhile.

        Raises:
            LockTimeout: the lock could not be taken within the timeout.
        """
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(interprocess_lock(self._all, self.timeout, shared=True))
            except LockTimeout:
                raise self._timeout("a change to every account") from None
            try:
                held.enter_context(interprocess_lock(self.slot_path(name), self.timeout))
            except LockTimeout:
                raise self._timeout(f"an update of the account {name!r}") from None
            yield

    @contextlib.contextmanager
    def every_account(self) -> Iterator[None]:
        """Hold every account's lock at once (for a change to many accounts).

        Raises:
            LockTimeout: the lock could not be taken within the timeout.
        """
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(interprocess_lock(self._all, self.timeout))
            except LockTimeout:
                raise self._timeout("updates of some accounts") from None
            yield

    def _timeout(self, what: str) -> LockTimeout:
        return LockTimeout(
            f"{what} in another process or thread held the locks in {self.directory} for "
            f"more than {self.timeout:g} seconds; wait for it to finish, or raise the "
            "timeout with ?lock_timeout=SECONDS"
        )
