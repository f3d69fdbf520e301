"""A SQLite store's file with the standard library alone: created private, and read.

A read is one statement on a ``sqlite3`` connection kept open, in autocommit mode, and
its cursor is drained before the read returns: no read transaction outlives the read,
so every read sees the last write committed by any connection of any process, and a
reader never keeps a writer waiting. SQLite checks the database's change counter at
the start of each read and drops its page cache when another connection wrote, and
re-prepares the statement by itself when the schema changed.

:class:`SQLiteReader` serves :class:`~webex_tokens.backends.sql.SQLStore`'s reads of a
SQLite file; ``webex-tokens token`` reads a valid token through :func:`read_record`
without importing SQLAlchemy. Both select the columns of :mod:`._schema`.
"""

from __future__ import annotations

import enum
import logging
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Final, Literal

from ...errors import StoreError, StoreUnavailable
from ...locks import DEFAULT_LOCK_TIMEOUT
from ...private_files import check_directories, check_owned, prepare_private_file
from ._schema import DEFAULT_TABLE, select_record_sql

__all__ = [
    "BUSY",
    "SQLiteReader",
    "connect",
    "create_private_file",
    "quick_read",
    "read_record",
]

log = logging.getLogger(__name__.rpartition(".")[0])  # the backend's logger


def create_private_file(path: Path, *, create: bool = True) -> None:
    """Create the SQLite file 0600 (its directory 0700) before SQLite opens it, and
    refuse one that is a symlink, another user's, or in a directory others can write.

    SQLite gives its journal files the mode of the database file, so they are
    private too.

    Raises:
        StoreNotFound: ``create`` is False and the file does not exist.
        StoreError: a check failed; StoreUnavailable: the file cannot be created.
    """
    prepare_private_file(path, "SQLite database", create=create, error=StoreUnavailable)


class _Busy(enum.Enum):
    BUSY = "busy"


#: What :meth:`SQLiteReader.read` returns while another thread is reading.
BUSY: Final = _Busy.BUSY


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """An autocommit connection to the existing database ``path``, usable by any thread.

    ``timeout`` is SQLite's busy timeout: how long a read waits for a writer's commit.

    Raises:
        sqlite3.Error: the file cannot be opened (it is never created here).
    """
    return sqlite3.connect(
        f"{path.as_uri()}?mode=rw",
        uri=True,
        timeout=timeout,
        isolation_level=None,
        check_same_thread=False,
    )


def read_record(connection: sqlite3.Connection, sql: str, name: str) -> str | None:
    """The record text of ``name`` (from :func:`._schema.select_record_sql`), or None.

    Raises:
        sqlite3.Error: the read failed.
        TypeError: the row does not hold text.
    """
    rows = connection.execute(sql, (name,)).fetchall()  # drained: the statement is reset
    if not rows:
        return None
    data = rows[0][0]
    if not isinstance(data, str):
        raise TypeError(f"the record of {name!r} is {type(data).__name__}, not text")
    return data


def quick_read(url: str, name: str) -> str | None:
    """The record text of ``name`` in the SQLite store at ``url``, read with sqlite3 alone.

    Only for a plain store, read as :class:`~webex_tokens.backends.sql.SQLStore` would
    read it: ``sqlite:///PATH`` with no driver, no option and nothing percent-encoded,
    naming an existing regular file (not a symbolic link) of the user, that other users
    cannot read, in directories only the user (or root) can write,
    holding the default table, with a row for ``name``. None for anything else and on
    any failure: the caller then opens the store, which gives the full answer (the
    error, the warning, the missing account).
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or any(char in url for char in "?#%\x00"):
        return None
    database = url[len(prefix) :]
    if database in ("", ":memory:"):
        return None
    path = Path(os.path.abspath(os.path.expanduser(database)))
    try:
        facts = os.lstat(path)
        if not stat.S_ISREG(facts.st_mode) or facts.st_mode & 0o077:
            return None
        # Trusted as the store would trust it; if not, the store says why.
        check_owned(path, facts, "SQLite database")
        check_directories(path, "SQLite database")
        connection = connect(path, DEFAULT_LOCK_TIMEOUT)
        try:
            return read_record(connection, select_record_sql(DEFAULT_TABLE), name)
        finally:
            connection.close()
    except (OSError, sqlite3.Error, TypeError, StoreError):
        return None


class SQLiteReader:
    """One ``sqlite3`` connection kept open for the reads of one table of one file.

    One thread reads at a time; a thread that finds the connection in use is told so
    (:data:`BUSY`) at once and reads some other way, so threads never queue here. A
    process forked from the one that opened the connection opens its own.

    Args:
        path: the database file (it must exist).
        table: the store's table.
        timeout: seconds a read waits for a writer's commit (the store's lock timeout).
    """

    def __init__(self, path: Path, table: str, timeout: float) -> None:
        self._path = path
        self._sql = select_record_sql(table)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def read(self, name: str) -> str | Literal[_Busy.BUSY] | None:
        """The record text of ``name``, None if there is none, or :data:`BUSY`.

        Raises:
            sqlite3.Error: the database could not be opened or read (the connection is
                closed; the next read opens a new one).
            TypeError: the row does not hold text.
        """
        if not self._lock.acquire(blocking=False):
            return BUSY
        try:
            connection = self._connection
            if connection is None or self._pid != os.getpid():
                # After a fork the parent's connection is not ours to use (nor to close).
                connection = self._connection = connect(self._path, self._timeout)
                self._pid = os.getpid()
            try:
                return read_record(connection, self._sql, name)
            except sqlite3.Error:
                self._connection = None
                connection.close()
                raise
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the connection (a later read opens another)."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None and self._pid == os.getpid():
                connection.close()
