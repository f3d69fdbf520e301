"""What a database error means for a SQL store, as the library's own errors."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ...errors import InvalidStoreURL, LockTimeout, StoreCorrupted, StoreError, StoreUnavailable
from ._table import MYSQL
from ._url import OPTIONS

__all__ = ["DeadlockDetected", "ErrorTranslator"]

#: (database family, error code) pairs meaning "gave up waiting for a lock".
_LOCK_TIMEOUT_CODES: Final = frozenset(
    {("postgresql", "55P03"), ("mysql", 1205), ("sqlite", 5), ("sqlite", 6)}
)
#: ... and "chosen as the victim of a deadlock" (or a serialization failure).
_DEADLOCK_CODES: Final = frozenset(
    {("postgresql", "40P01"), ("postgresql", "40001"), ("mysql", 1213)}
)
_DEFAULT_PORTS: Final = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


class DeadlockDetected(LockTimeout):
    """The database chose this transaction as a deadlock victim (before ``fn`` ran)."""


def _error_code(original: BaseException | None) -> str | int | None:
    """The database's error code: a number on MySQL and SQLite, a SQLSTATE on PostgreSQL."""
    if original is None:
        return None
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int):  # MySQL drivers: (errno, message)
        return args[0]
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF  # extended codes keep the primary code in the low byte
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return str(sqlstate) if sqlstate else None


@dataclass(frozen=True)
class ErrorTranslator:
    """Turns the errors of one store's database into messages that say what to fix.

    Attributes:
        url: the store's URL as shown (no password).
        backend: the database family (``sqlite``, ``postgresql``, ``mysql``, ``mariadb``).
        path: the SQLite file, or None.
        password: the URL's password, masked wherever a driver repeats it.
        address: the server's host and port as the URL gives them.
        lock_timeout: the store's lock timeout, in seconds.
        table: the store's table.
    """

    url: str
    backend: str
    path: Path | None
    password: str | None
    address: tuple[str | None, int | None]
    lock_timeout: float
    table: str

    def reason(self, exc: BaseException) -> str:
        """The driver's own words for ``exc``, on one line, without the password."""
        original = getattr(exc, "orig", None) or exc
        text = " ".join(str(original).split()) or type(original).__name__
        if self.password:
            text = text.replace(self.password, "***")
        return text[:300]

    def connect_error(self, exc: DBAPIError) -> StoreError:
        """The error for a connection that could not be opened."""
        reason = self.reason(exc)
        if "invalid connection option" in reason or "invalid dsn" in reason.lower():
            return self.option_error(reason)
        if self.backend == "sqlite":
            return StoreUnavailable(
                f"cannot open the SQLite database {self.path or ':memory:'} ({reason}); check "
                "that the file and its directory are readable and writable by this user"
            )
        return StoreUnavailable(
            f"cannot connect to the token database {self.url} ({reason}); is the database "
            f"server running and reachable at {self._host_port()}? check the host, port, "
            "user, password and database name in the URL"
        )

    def option_error(self, reason: str) -> InvalidStoreURL:
        """The error for a URL option the driver refused."""
        return InvalidStoreURL(
            f"the database driver refused an option in {self.url} ({reason}); the store's own "
            f"options are {', '.join(OPTIONS)}, anything else goes to the driver: "
            "check the spelling"
        )

    def _host_port(self) -> str:
        host, port = self.address
        return f"{host or 'localhost'}:{port or _DEFAULT_PORTS.get(self.backend, '')}"

    def translate(self, exc: DBAPIError | sqlite3.Error, name: str | None) -> StoreError:
        """The error for a statement on the token of ``name`` (None: the whole store).

        ``exc`` is SQLAlchemy's error, or ``sqlite3``'s own from a read that did not go
        through SQLAlchemy.
        """
        original = exc.orig if isinstance(exc, DBAPIError) else exc
        family = "mysql" if self.backend in MYSQL else self.backend
        code = (family, _error_code(original))
        reason = self.reason(exc)
        what = f"the token {name!r} in {self.url}" if name is not None else self.url
        if code in _LOCK_TIMEOUT_CODES:
            return LockTimeout(
                f"another process held the lock on {what} for more than "
                f"{self.lock_timeout:g} seconds; wait for it to finish, or raise the timeout "
                "with ?lock_timeout=SECONDS"
            )
        if code in _DEADLOCK_CODES:
            return DeadlockDetected(
                f"the database broke a deadlock while writing {what}; retry the operation"
            )
        if code == ("sqlite", 26):  # SQLITE_NOTADB
            return StoreCorrupted(
                f"{self.path} is not a SQLite database ({reason}); it was left untouched: "
                "point the URL at another file"
            )
        if isinstance(exc, sqlite3.Error):
            failed = isinstance(exc, (sqlite3.OperationalError, sqlite3.InterfaceError))
        else:
            failed = exc.connection_invalidated or isinstance(
                exc, (OperationalError, InterfaceError)
            )
        if failed:
            return StoreUnavailable(
                f"the token database {self.url} failed ({reason}); check that the server is "
                "running and reachable and the disk is not full, then retry"
            )
        return StoreError(
            f"the token database {self.url} refused the operation ({reason}); check that the "
            f"URL's user may read and write the table {self.table!r}"
        )
