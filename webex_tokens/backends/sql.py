"""SQL databases through SQLAlchemy 2 Core: SQLite, PostgreSQL, MySQL and MariaDB.

All accounts live in one table (``webex_tokens`` unless ``?table=`` names another)::

    name        primary key, up to 255 characters, compared byte for byte
    data        the token record (JSON text, or ciphertext under Fernet)
    version     1 on insert, bumped by every write
    updated_at  when the row was last written (UTC)
    expires_at  when the access token expires (UTC), or NULL

The table is created on first use. On PostgreSQL and MySQL/MariaDB ``update`` runs in
one transaction that holds the row's lock while ``fn`` runs (``SELECT ... FOR UPDATE``,
after an insert-if-absent, so that two hosts creating the same account also queue up).
SQLite can only lock the whole database, so there ``update`` holds a lock file of the
account's (in ``<database>.locks/<table>/``) while ``fn`` runs and writes in a short
``BEGIN IMMEDIATE`` transaction that first checks the row is still the one ``fn`` saw.
Nothing is pickled: rows hold text only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.pool import StaticPool

from ..errors import (
    BackendUnavailable,
    InvalidStoreURL,
    LockTimeout,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
)
from ..locks import AccountLocks
from ..registry import install_hint
from ..store import (
    DEFAULT_LOCK_TIMEOUT,
    MAX_NAME_LENGTH,
    BaseStore,
    Keep,
    Record,
    RecordChange,
    ensure_private_dir,
    log_superseded,
    redact_url,
)
from ..urls import shown_url

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_TABLE", "SQLStore"]

log = logging.getLogger(__name__)

DEFAULT_TABLE: Final = "webex_tokens"
#: Seconds to wait for a database server to answer a new connection.
DEFAULT_CONNECT_TIMEOUT: Final = 5.0

_OPTIONS: Final = ("table", "lock_timeout", "connect_timeout")
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_COLUMNS: Final = ("name", "data", "version", "updated_at", "expires_at")
_MYSQL: Final = frozenset({"mysql", "mariadb"})
#: A bare ``postgresql://`` or ``mysql://`` means the driver the extras install.
_DEFAULT_DRIVERS: Final = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
#: Import names of other drivers -> the package that provides them.
_DRIVER_PACKAGES: Final = {
    "MySQLdb": "mysqlclient",
    "psycopg2": "psycopg2-binary",
    "mariadb": "mariadb",
    "asyncpg": "asyncpg",
}
_DEFAULT_PORTS: Final = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
#: A pooled connection idle for longer than this is pinged before use (seconds).
_PING_AFTER_IDLE: Final = 1.0
#: Connections kept open in the pool, and the most open at once (one per thread).
_POOL_SIZE: Final = 5
_MAX_CONNECTIONS: Final = 64
#: (database family, error code) pairs meaning "gave up waiting for a lock".
_LOCK_TIMEOUT_CODES: Final = frozenset(
    {("postgresql", "55P03"), ("mysql", 1205), ("sqlite", 5), ("sqlite", 6)}
)
#: ... and "chosen as the victim of a deadlock" (or a serialization failure).
_DEADLOCK_CODES: Final = frozenset(
    {("postgresql", "40P01"), ("postgresql", "40001"), ("mysql", 1213)}
)
#: How often ``update`` retries when the database broke a deadlock before ``fn`` ran.
_DEADLOCK_ATTEMPTS: Final = 5

_T = TypeVar("_T")


# -- column types ----------------------------------------------------------------------


class _Name(sa.types.TypeDecorator[str]):
    """An account name, compared byte for byte so that case and trailing spaces count.

    MySQL/MariaDB compare even ``utf8mb4_bin`` text with trailing spaces stripped, so
    names are kept there as UTF-8 in ``VARBINARY``; PostgreSQL uses the ``C`` collation.
    Either way the database orders names as Python sorts them.
    """

    impl = sa.String(MAX_NAME_LENGTH)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.VARBINARY(4 * MAX_NAME_LENGTH))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.VARCHAR(MAX_NAME_LENGTH, collation="C"))
        return dialect.type_descriptor(sa.String(MAX_NAME_LENGTH))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name in _MYSQL:
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8")
        return value  # type: ignore[no-any-return]


class _UTCDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC timestamp on every database (stored naive in UTC where zones are unknown)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)  # type: ignore[no-any-return]
        return value.astimezone(timezone.utc)  # type: ignore[no-any-return]


def _make_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("name", _Name(), primary_key=True),
        sa.Column("data", sa.Text().with_variant(mysql.MEDIUMTEXT(), *_MYSQL), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _UTCDateTime(), nullable=False),
        sa.Column("expires_at", _UTCDateTime(), nullable=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mariadb_engine="InnoDB",
        mariadb_charset="utf8mb4",
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- the store ---------------------------------------------------------------------------


class SQLStore(BaseStore):
    """Tokens in a table of a SQL database reached through SQLAlchemy 2.

    Opening the store connects, creates the table when it is missing and checks an
    existing one, so a wrong URL fails here rather than at the first token.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://u@h/db``,
            ``mysql+pymysql://u@h/db``, ``mariadb+pymysql://...``), optionally with the
            options ``table``, ``lock_timeout`` and ``connect_timeout`` in its query.
            A bare ``postgresql://`` means psycopg 3 and ``mysql://`` PyMySQL.
        table: the table name (overrides ``?table=``); lower-case letters, digits and
            underscores.
        lock_timeout: seconds a write waits for another writer's row lock before
            :class:`LockTimeout` (overrides ``?lock_timeout=``).
        connect_timeout: seconds to wait for the server when connecting (overrides
            ``?connect_timeout=``).

    Raises:
        InvalidStoreURL: the URL, an option or the table name is malformed.
        BackendUnavailable: the database driver is not installed (says what to install).
        StoreUnavailable: the database cannot be reached or opened.
        StoreCorrupted: the table exists but is not a webex-tokens table (it is untouched).
    """

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        lock_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self._engine: Engine | None = None
        sa_url, options = _parse_url(url)
        self.table_name: str = table if table is not None else options.get("table", DEFAULT_TABLE)
        _check_table_name(self.table_name, url)
        self.lock_timeout: float = _seconds(
            url, "lock_timeout", lock_timeout, options, DEFAULT_LOCK_TIMEOUT
        )
        self.connect_timeout: float = _seconds(
            url, "connect_timeout", connect_timeout, options, DEFAULT_CONNECT_TIMEOUT
        )
        self._backend = sa_url.get_backend_name()
        self._password = sa_url.password
        # Kept from the parsed URL: the shown one may not parse back (odd user names).
        self._address = (sa_url.host, sa_url.port)
        self._memory = self._backend == "sqlite" and sa_url.database in (None, "", ":memory:")
        if self._backend == "sqlite" and not self._memory:
            path = Path(os.path.abspath(os.path.expanduser(str(sa_url.database))))
            sa_url = sa_url.set(database=str(path))
            self.path: Path | None = path
        else:
            if self._memory:
                # shown as sqlite://, not sqlite:///%3Amemory%3A
                sa_url = URL.create(sa_url.drivername, query=sa_url.query)
            self.path = None
        self.url = _display_url(sa_url, self.table_name, self.lock_timeout, self.connect_timeout)
        self._table = _make_table(self.table_name)
        # Built once: building and cache-keying a statement costs more than a SQLite read.
        self._select_data = sa.select(self._table.c.data).where(
            self._table.c.name == sa.bindparam("name"), self._table.c.version > 0
        )
        self._select_row = sa.select(self._table.c.data, self._table.c.version).where(
            self._table.c.name == sa.bindparam("name")
        )
        self._select_row_for_update = self._select_row.with_for_update()
        # Executed with the new data, updated_at and expires_at (see _changed_values).
        self._update_row = (
            sa.update(self._table)
            .where(self._table.c.name == sa.bindparam("key"))
            .values(version=self._table.c.version + 1)
        )
        milliseconds = max(1, round(self.lock_timeout * 1000))
        set_timeout = sa.func.set_config("lock_timeout", f"{milliseconds}ms", True)
        self._set_lock_timeout = sa.select(set_timeout)
        # PostgreSQL: set the lock timeout and lock the row in one round trip. The CTE is
        # read before the row is locked (the lock is taken on the join's output); when
        # there is no row it is not read at all, and the caller sets the timeout itself.
        timeout_cte = sa.select(set_timeout.label("lock_timeout")).cte("lock_timeout")
        self._set_lock_timeout_and_lock_row = (
            sa.select(self._table.c.data, self._table.c.version)
            .select_from(self._table.join(timeout_cte, sa.true()))
            .where(self._table.c.name == sa.bindparam("name"))
            .with_for_update(of=self._table)
        )
        # One SQLite connection serves an in-memory store: serialise its users.
        self._guard: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._memory else contextlib.nullcontext()
        )
        # A SQLite file's writers in this process take turns here first (see _write_turn).
        self._sqlite_writers = threading.Lock() if self.path is not None else None
        # SQLite locks the whole database for a write, so ``update`` holds an account lock
        # (beside the database file) while its function runs, and the database only to
        # write; PostgreSQL and MySQL lock just the row for the whole step.
        self._account_locks = (
            AccountLocks(
                self.path.with_name(self.path.name + ".locks") / self.table_name, self.lock_timeout
            )
            if self.path is not None
            else None
        )
        if self.path is not None:
            self._create_private_file(self.path)
        self._engine = self._create_engine(sa_url)
        try:
            self._prepare_table()
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def from_url(cls, url: str) -> SQLStore:
        """Open the store at a SQLAlchemy ``url`` (see the class for the options).

        Raises:
            InvalidStoreURL, BackendUnavailable, StoreUnavailable, StoreCorrupted: as the
                constructor.
        """
        return cls(url)

    # -- opening --------------------------------------------------------------------

    def _create_private_file(self, path: Path) -> None:
        """Create the SQLite file 0600 (its directory 0700) before SQLite opens it.

        SQLite gives its journal files the mode of the database file, so they are
        private too.
        """
        try:
            ensure_private_dir(path.parent)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                mode = stat.S_IMODE(os.stat(path).st_mode)
                if mode & 0o077 and os.name == "posix":
                    log.warning(
                        "token database %s is readable by other users (mode %o); run: chmod 600 %s",
                        path,
                        mode,
                        path,
                    )
                return
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the SQLite database {path} ({exc.strerror}); check that its "
                "directory exists and is writable, or choose another path in the URL"
            ) from None

    def _create_engine(self, sa_url: URL) -> Engine:
        connect_args: dict[str, Any] = {}
        engine_args: dict[str, Any] = {}
        driver = sa_url.get_driver_name()
        whole_seconds = math.ceil(self.connect_timeout)
        if self._memory:
            connect_args["check_same_thread"] = False
            engine_args["poolclass"] = StaticPool
        else:
            # Each thread in an update holds a connection (its row lock lives in that
            # transaction) for as long as its function runs, e.g. a refresh over the
            # network: let the pool grow to as many threads as `refresh --all` may run
            # (beyond pool_size, connections are closed when given back).
            engine_args["pool_size"] = _POOL_SIZE
            engine_args["max_overflow"] = _MAX_CONNECTIONS - _POOL_SIZE
        if self._backend == "sqlite":
            connect_args["timeout"] = self.lock_timeout  # SQLite's busy timeout
        elif driver == "pymysql":
            # PyMySQL's connect_timeout covers only the TCP connect; its read timeout
            # bounds the handshake with a server that accepts and then says nothing.
            connect_args["connect_timeout"] = self.connect_timeout
            connect_args["read_timeout"] = self.connect_timeout
        elif driver in ("psycopg", "psycopg2", "mysqldb", "mariadbconnector"):
            connect_args["connect_timeout"] = whole_seconds
        elif driver == "pg8000":
            connect_args["timeout"] = whole_seconds
        if driver in ("pymysql", "mysqldb") and "charset" not in sa_url.query:
            connect_args["charset"] = "utf8mb4"  # the full Unicode range, emoji included
        try:
            # hide_parameters: SQLAlchemy's logs and errors never show the token records.
            engine = sa.create_engine(
                sa_url, connect_args=connect_args, hide_parameters=True, **engine_args
            )
        except NoSuchModuleError:
            raise BackendUnavailable(
                f"SQLAlchemy has no driver {sa_url.drivername!r} for {self.url}; install the "
                f"package that provides it, or write {self._backend}+"
                f"{_DEFAULT_DRIVERS.get(self._backend, 'pysqlite')}:// after running: "
                f"{install_hint(self._backend)}"
            ) from None
        except ImportError as exc:
            missing = exc.name or str(exc)
            if driver == _DEFAULT_DRIVERS.get(self._backend):
                fix = install_hint(self._backend) or "pip install webex-tokens"
            else:
                default = _DEFAULT_DRIVERS.get(self._backend, driver)
                package = _DRIVER_PACKAGES.get(missing, missing)
                fix = f"pip install {package}, or use {self._backend}+{default}://"
            raise BackendUnavailable(
                f"the database driver {missing!r} for {self.url} is not installed; run: {fix}"
            ) from None
        except (ArgumentError, TypeError, ValueError) as exc:
            raise InvalidStoreURL(
                f"bad database URL {self.url} ({self._reason(exc)}); check it against the "
                "forms in the documentation, e.g. postgresql+psycopg://USER@HOST:5432/DATABASE"
            ) from None
        if engine.dialect.is_async:
            engine.dispose()
            raise InvalidStoreURL(
                f"{self.url} names an asyncio driver; webex-tokens needs a synchronous one, "
                f"e.g. {self._backend}+{_DEFAULT_DRIVERS.get(self._backend, 'pysqlite')}://"
            )
        if self._backend != "sqlite":
            _ping_idle_connections(engine)
        if self._backend in _MYSQL:
            lock_wait = max(1, math.ceil(self.lock_timeout))
            _set_mysql_timeouts(engine, lock_wait, lock_wait + self.connect_timeout)
        elif driver == "psycopg":
            _bound_psycopg_waits(engine, self.lock_timeout + self.connect_timeout)
        return engine

    def _prepare_table(self) -> None:
        if not self._has_table():
            try:
                with self._transaction(write=True) as connection, self._errors():
                    self._table.create(connection, checkfirst=True)
            except StoreError:
                # Another process may have created the table at the same moment (PostgreSQL
                # and MySQL then report a duplicate); if the table is there now, all is well.
                if not self._has_table():
                    raise
        with self._transaction() as connection, self._errors():
            inspector = sa.inspect(connection)
            columns = {column["name"].lower() for column in inspector.get_columns(self.table_name)}
            primary_key = inspector.get_pk_constraint(self.table_name)["constrained_columns"]
        missing = [column for column in _COLUMNS if column not in columns]
        if missing or [column.lower() for column in primary_key] != ["name"]:
            raise StoreCorrupted(
                f"the table {self.table_name!r} in {self.url} already exists but is not a "
                f"webex-tokens table (it lacks {', '.join(missing) or 'the primary key name'}); "
                "it was left untouched: choose another table with ?table=NAME"
            )

    def _has_table(self) -> bool:
        with self._transaction() as connection, self._errors():
            return sa.inspect(connection).has_table(self.table_name)

    # -- connections and errors --------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine behind the store.

        Raises:
            StoreError: the store was closed.
        """
        if self._engine is None:
            raise StoreError(f"the store {self.url} is closed; open it again")
        return self._engine

    @contextlib.contextmanager
    def _transaction(
        self, name: str | None = None, *, write: bool = False, sets_lock_timeout: bool = False
    ) -> Iterator[Connection]:
        """A connection for one unit of work. A write runs in a transaction committed when
        the body returns and rolled back when it raises (BEGIN IMMEDIATE on SQLite); a read
        runs in the implicit transaction that closing the connection ends.
        ``sets_lock_timeout``: the body sets PostgreSQL's lock timeout itself, before it
        takes any lock (see :meth:`_lock_row`).

        Database errors raised by the connection, the commit or statements run through
        :meth:`_errors` become the library's own; anything else passes through as is.
        """
        with self._guard, self._write_turn(name, write):
            try:
                connection = self.engine.connect()
            except DBAPIError as exc:
                raise self._connect_error(exc) from None
            except (TypeError, AttributeError) as exc:
                # A driver option it cannot use: PyMySQL fails on ?charset=unknown this way.
                raise self._option_error(str(exc)) from None
            except UnicodeError:
                # PyMySQL sends the user name and password in Latin-1 and fails on the rest.
                raise InvalidStoreURL(
                    f"the database driver cannot send the user name or password of {self.url}: "
                    "it holds characters the driver cannot encode; use ASCII credentials, "
                    "percent-encoded in the URL"
                ) from None
            try:
                if not write:
                    # Reads are single statements: the transaction SQLAlchemy begins for
                    # one ends when the connection closes, so BEGIN/COMMIT add only cost.
                    yield connection
                    return
                with self._errors(name):
                    transaction = connection.begin()
                    if self._backend == "sqlite":
                        # Take the write lock now: the sqlite3 module would begin only at
                        # the first write, so a read-then-write (``update``) could interleave
                        # with another writer. A connection event could do this too, but
                        # any such event slows every statement on the engine.
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                    if self._backend == "postgresql" and not sets_lock_timeout:
                        connection.execute(self._set_lock_timeout)
                try:
                    yield connection
                except BaseException:
                    with contextlib.suppress(DBAPIError):
                        transaction.rollback()
                    raise
                with self._errors(name):
                    transaction.commit()
            finally:
                with contextlib.suppress(DBAPIError):
                    connection.close()

    @contextlib.contextmanager
    def _write_turn(self, name: str | None, write: bool) -> Iterator[None]:
        """For a write to a SQLite file, wait for this process's other writers first.

        They hand over to each other at once here, where SQLite's busy handler would
        have them sleep for growing intervals (up to 100 ms) between attempts.
        """
        if not write or self._sqlite_writers is None:
            yield
            return
        if not self._sqlite_writers.acquire(timeout=self.lock_timeout):
            what = f"the token {name!r} in {self.url}" if name is not None else self.url
            raise LockTimeout(
                f"another thread held the lock on {what} for more than {self.lock_timeout:g} "
                "seconds; wait for it to finish, or raise the timeout with ?lock_timeout=SECONDS"
            )
        try:
            yield
        finally:
            self._sqlite_writers.release()

    @contextlib.contextmanager
    def _errors(self, name: str | None = None) -> Iterator[None]:
        """Turn SQLAlchemy errors raised inside into the library's errors."""
        try:
            yield
        except DBAPIError as exc:
            raise self._translate(exc, name) from None

    def _reason(self, exc: BaseException) -> str:
        original = getattr(exc, "orig", None) or exc
        text = " ".join(str(original).split()) or type(original).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text[:300]

    def _connect_error(self, exc: DBAPIError) -> StoreError:
        reason = self._reason(exc)
        if "invalid connection option" in reason or "invalid dsn" in reason.lower():
            return self._option_error(reason)
        if self._backend == "sqlite":
            return StoreUnavailable(
                f"cannot open the SQLite database {self.path or ':memory:'} ({reason}); check "
                "that the file and its directory are readable and writable by this user"
            )
        return StoreUnavailable(
            f"cannot connect to the token database {self.url} ({reason}); is the database "
            f"server running and reachable at {self._host_port()}? check the host, port, "
            "user, password and database name in the URL"
        )

    def _option_error(self, reason: str) -> InvalidStoreURL:
        return InvalidStoreURL(
            f"the database driver refused an option in {self.url} ({reason}); the store's own "
            f"options are {', '.join(_OPTIONS)}, anything else goes to the driver: "
            "check the spelling"
        )

    def _host_port(self) -> str:
        host, port = self._address
        return f"{host or 'localhost'}:{port or _DEFAULT_PORTS.get(self._backend, '')}"

    def _translate(self, exc: DBAPIError, name: str | None) -> StoreError:
        original = exc.orig
        family = "mysql" if self._backend in _MYSQL else self._backend
        code = (family, _error_code(original))
        reason = self._reason(exc)
        what = f"the token {name!r} in {self.url}" if name is not None else self.url
        if code in _LOCK_TIMEOUT_CODES:
            return LockTimeout(
                f"another process held the lock on {what} for more than "
                f"{self.lock_timeout:g} seconds; wait for it to finish, or raise the timeout "
                "with ?lock_timeout=SECONDS"
            )
        if code in _DEADLOCK_CODES:
            return _DeadlockDetected(
                f"the database broke a deadlock while writing {what}; retry the operation"
            )
        if code == ("sqlite", 26):  # SQLITE_NOTADB
            return StoreCorrupted(
                f"{self.path} is not a SQLite database ({reason}); it was left untouched: "
                "point the URL at another file"
            )
        if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
            return StoreUnavailable(
                f"the token database {self.url} failed ({reason}); check that the server is "
                "running and reachable and the disk is not full, then retry"
            )
        return StoreError(
            f"the token database {self.url} refused the operation ({reason}); check that the "
            f"URL's user may read and write the table {self.table_name!r}"
        )

    # -- records ------------------------------------------------------------------------

    def _query(self, name: str | None, run: Callable[[Connection], _T]) -> _T:
        """Run a read, once more on a new connection if the pooled one had been dropped.

        Only connections idle for a while are pinged before use (see
        :func:`_ping_idle_connections`); a server restart or a killed session shows up
        here instead, and a read is always safe to repeat.
        """
        for attempt in (1, 2):
            try:
                with self._transaction(name) as connection:
                    return run(connection)
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise self._translate(exc, name) from None
                log.debug("the connection to %s was dropped; reading again", self.url)
        raise AssertionError("unreachable")

    def _read(self, name: str) -> str | None:
        row = self._query(
            name, lambda connection: connection.execute(self._select_data, {"name": name}).first()
        )
        return None if row is None else str(row.data)

    def _values(self, name: str, record: Record) -> dict[str, Any]:
        """The columns of a newly inserted row holding ``record``."""
        return {
            "name": name,
            "data": record.data,
            "version": 1,
            "updated_at": _now(),
            "expires_at": record.expires_at,
        }

    def _changed_values(self, name: str, record: Record) -> dict[str, Any]:
        """The parameters of ``_update_row`` that store ``record`` in the row of ``name``."""
        return {
            "key": name,
            "data": record.data,
            "updated_at": _now(),
            "expires_at": record.expires_at,
        }

    def _write(self, name: str, record: Record) -> None:
        table = self._table
        values = self._values(name, record)
        changes = {
            "data": values["data"],
            "version": table.c.version + 1,
            "updated_at": values["updated_at"],
            "expires_at": values["expires_at"],
        }
        statement: Any
        if self._backend == "postgresql":
            statement = (
                postgresql.insert(table)
                .values(values)
                .on_conflict_do_update(index_elements=[table.c.name], set_=changes)
            )
        elif self._backend in _MYSQL:
            statement = mysql.insert(table).values(values).on_duplicate_key_update(changes)
        else:
            statement = (
                sqlite.insert(table)
                .values(values)
                .on_conflict_do_update(index_elements=[table.c.name], set_=changes)
            )
        with self._transaction(name, write=True) as connection, self._errors(name):
            connection.execute(statement)

    def _remove(self, name: str) -> bool:
        table = self._table
        with self._transaction(name, write=True) as connection, self._errors(name):
            result = connection.execute(sa.delete(table).where(table.c.name == name))
        return bool(result.rowcount)

    def _iter_names(self) -> Iterable[str]:
        table = self._table
        query = sa.select(table.c.name).where(table.c.version > 0)
        return self._query(None, lambda connection: list(connection.execute(query).scalars()))

    def _iter_records(self) -> Iterator[tuple[str, str]]:
        """Stream ``(name, data)`` in name order without loading every row at once."""
        table = self._table
        query = (
            sa.select(table.c.name, table.c.data).where(table.c.version > 0).order_by(table.c.name)
        )
        if self._memory:
            with self._transaction() as connection, self._errors():
                rows = [(row.name, row.data) for row in connection.execute(query)]
            yield from rows
            return
        with self._transaction() as connection, self._errors():
            result = connection.execution_options(yield_per=500).execute(query)
            for row in result:
                yield row.name, row.data

    def _lock_row(self, connection: Connection, name: str) -> tuple[str | None, bool]:
        """Lock the row of ``name`` for this transaction; return its data and whether the
        row is a placeholder this transaction inserted (so nothing was stored)."""
        table = self._table
        key = {"name": name}
        placeholder = {
            "name": name,
            "data": "",
            "version": 0,
            "updated_at": _now(),
            "expires_at": None,
        }
        row: Any
        if self._backend == "sqlite":
            # BEGIN IMMEDIATE already holds the database's write lock.
            row = connection.execute(self._select_row, key).first()
            if row is None:
                return None, False
        elif self._backend in _MYSQL:
            # The no-op "update" takes an exclusive lock on an existing row; a shared one
            # (INSERT IGNORE) would let two waiters deadlock when upgrading.
            connection.execute(
                mysql.insert(table)
                .values(placeholder)
                .on_duplicate_key_update(version=table.c.version)
            )
            row = connection.execute(self._select_row_for_update, key).one()
        else:
            row = connection.execute(self._set_lock_timeout_and_lock_row, key).first()
            if row is None:
                connection.execute(self._set_lock_timeout)  # not set: there was no row
                # A concurrent creator's uncommitted row makes this wait for its outcome.
                connection.execute(
                    postgresql.insert(table)
                    .values(placeholder)
                    .on_conflict_do_nothing(index_elements=[table.c.name])
                )
                row = connection.execute(self._select_row_for_update, key).one()
        if row.version == 0:
            return None, True
        return str(row.data), False

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        if self._account_locks is not None:
            self._update_record_outside_transaction(name, change, self._account_locks)
            return
        table = self._table
        called = False
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                with self._transaction(
                    name, write=True, sets_lock_timeout=self._backend == "postgresql"
                ) as connection:
                    with self._errors(name):
                        data, placeholder = self._lock_row(connection, name)
                    exists = data is not None or placeholder
                    called = True
                    result = change(data)
                    with self._errors(name):
                        if isinstance(result, Keep) or result is None:
                            if placeholder or (result is None and exists):
                                connection.execute(sa.delete(table).where(table.c.name == name))
                        elif exists:
                            connection.execute(self._update_row, self._changed_values(name, result))
                        else:
                            connection.execute(sa.insert(table).values(self._values(name, result)))
                return
            except _DeadlockDetected:
                # Retry only while ``change`` has not run: it may have refreshed a token,
                # and must not do so twice.
                if called or attempt == _DEADLOCK_ATTEMPTS:
                    raise

    def _update_record_outside_transaction(
        self,
        name: str,
        change: Callable[[str | None], RecordChange],
        account_locks: AccountLocks,
    ) -> None:
        """SQLite's ``update``: ``change`` runs under the account's lock, outside any
        transaction, so updates of other accounts go on meanwhile; the write checks that
        the row is the one ``change`` saw."""
        table = self._table
        with account_locks.account(name):
            select = self._select_row
            before = self._query(
                name, lambda connection: connection.execute(select, {"name": name}).first()
            )
            result = change(None if before is None else str(before.data))
            if isinstance(result, Keep):
                return
            with self._transaction(name, write=True) as connection, self._errors(name):
                now = connection.execute(self._select_row, {"name": name}).first()
                if _row_state(now) != _row_state(before):
                    log_superseded(self.url, name)
                    return
                if result is None:
                    if before is not None:
                        connection.execute(sa.delete(table).where(table.c.name == name))
                elif before is not None:
                    connection.execute(self._update_row, self._changed_values(name, result))
                else:
                    connection.execute(sa.insert(table).values(self._values(name, result)))

    def _update_records(
        self, changes: Sequence[tuple[str, Callable[[str | None], RecordChange]]]
    ) -> bool:
        """Apply every change in one transaction: rows locked in name order, written with
        one statement per kind of write."""
        if not changes:
            return True
        table = self._table
        names = sorted(name for name, _ in changes)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        deletes: list[str] = []
        current: dict[str, tuple[str | None, bool]] = {}
        every_account = (
            self._account_locks.every_account()
            if self._account_locks is not None
            else contextlib.nullcontext()
        )
        with every_account, self._transaction(names[0], write=True) as connection:
            with self._errors():
                if self._backend == "sqlite":
                    # BEGIN IMMEDIATE already holds the database's write lock.
                    query = sa.select(table.c.name, table.c.data, table.c.version).where(
                        table.c.name.in_(names)
                    )
                    rows = {row.name: row for row in connection.execute(query)}
                    for name in names:
                        row = rows.get(name)
                        if row is None or row.version == 0:
                            current[name] = (None, row is not None)
                        else:
                            current[name] = (str(row.data), False)
                else:
                    for name in names:
                        current[name] = self._lock_row(connection, name)
            for name, change in changes:
                data, placeholder = current[name]
                result = change(data)
                if isinstance(result, Keep) or result is None:
                    if placeholder or (result is None and data is not None):
                        deletes.append(name)
                elif data is not None or placeholder:
                    updates.append(self._changed_values(name, result))
                else:
                    inserts.append(self._values(name, result))
            with self._errors():
                if deletes:
                    connection.execute(sa.delete(table).where(table.c.name.in_(deletes)))
                if updates:
                    connection.execute(self._update_row, updates)
                if inserts:
                    connection.execute(sa.insert(table), inserts)
        return True

    def _close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _row_state(row: Any) -> tuple[str, int] | None:
    """A row's data and version, to tell whether it changed between two reads."""
    return None if row is None else (str(row.data), int(row.version))


class _DeadlockDetected(LockTimeout):
    """The database chose this transaction as a deadlock victim (before ``fn`` ran)."""


# -- URLs -------------------------------------------------------------------------------


def _parse_url(url: str) -> tuple[URL, dict[str, str]]:
    """Split ``url`` into the SQLAlchemy URL (our options removed, default drivers filled
    in) and our options."""
    if not isinstance(url, str):
        raise InvalidStoreURL(f"a store URL must be text, not {type(url).__name__}")
    try:
        sa_url = sa.make_url(url)
    except (ArgumentError, ValueError):
        raise InvalidStoreURL(
            f"{shown_url(url)} is not a database URL; write e.g. sqlite:///tokens.db or "
            "postgresql+psycopg://USER@HOST/DATABASE"
        ) from None
    backend = sa_url.get_backend_name()
    if backend not in ("sqlite", *_DEFAULT_DRIVERS):
        raise InvalidStoreURL(
            f"{shown_url(url)} names the database {backend!r}; webex-tokens supports "
            "SQLite, PostgreSQL, MySQL and MariaDB"
        )
    if "+" not in sa_url.drivername and backend in _DEFAULT_DRIVERS:
        sa_url = sa_url.set(drivername=f"{backend}+{_DEFAULT_DRIVERS[backend]}")
    # SQLAlchemy drops blank values; read ours from the text so "?table=" is an error.
    options = {
        key: value
        for key, value in parse_qsl(url.partition("?")[2], keep_blank_values=True)
        if key in _OPTIONS
    }
    sa_url = sa_url.difference_update_query(_OPTIONS)
    if backend == "sqlite":
        if sa_url.query:
            unknown = ", ".join(sorted(sa_url.query))
            raise InvalidStoreURL(
                f"unknown option {unknown} in {shown_url(url)}; the options of a SQLite "
                f"store are {', '.join(_OPTIONS)}"
            )
        if "\x00" in (sa_url.database or ""):
            raise InvalidStoreURL(
                f"{shown_url(url)} names a file with a NUL character (%00) in its path; "
                "write the path of the database file, e.g. sqlite:///tokens.db"
            )
        if sa_url.username or sa_url.password or sa_url.host or sa_url.port:
            raise InvalidStoreURL(
                f"{shown_url(url)} is not a SQLite URL; write sqlite:///relative/path.db, "
                "sqlite:////absolute/path.db or sqlite:///~/tokens.db"
            )
    return sa_url, options


def _display_url(sa_url: URL, table: str, lock_timeout: float, connect_timeout: float) -> str:
    """The store's URL without its password, with the options that differ from defaults."""
    options = {
        "table": table if table != DEFAULT_TABLE else None,
        "lock_timeout": f"{lock_timeout:g}" if lock_timeout != DEFAULT_LOCK_TIMEOUT else None,
        "connect_timeout": (
            f"{connect_timeout:g}" if connect_timeout != DEFAULT_CONNECT_TIMEOUT else None
        ),
    }
    shown = sa_url.update_query_dict({key: value for key, value in options.items() if value})
    return redact_url(shown.render_as_string(hide_password=True))


def _check_table_name(table: object, url: str) -> None:
    if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
        raise InvalidStoreURL(
            f"the table name for {shown_url(url)} is not allowed; use lower-case "
            "letters, digits and underscores (at most 63, not starting with a digit), "
            "e.g. ?table=webex_tokens_prod"
        )


def _seconds(
    url: str, key: str, given: float | None, options: dict[str, str], default: float
) -> float:
    raw: object = given if given is not None else options.get(key, default)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidStoreURL(
            f"{key} for {shown_url(url)} is not a positive number of seconds; write "
            f"e.g. ?{key}={default:g}"
        )
    return value


# -- dialect hooks ------------------------------------------------------------------------


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


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection before use if it sat idle, and replace it if it is dead.

    A server restart, a proxy or a firewall drops idle connections; pinging only those
    spares busy callers a round trip per operation (``pool_pre_ping`` pings every time).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        record.info["webex_tokens_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("webex_tokens_idle_since")
        if idle_since is None or time.monotonic() - idle_since < _PING_AFTER_IDLE:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:  # any failure to ping means a dead connection
            alive = False
        if not alive:
            # The pool discards this connection and checks out (or opens) another.
            raise sa.exc.DisconnectionError("the pooled connection is dead")


def _bound_psycopg_waits(engine: Engine, limit: float) -> None:
    """Make every wait for a PostgreSQL answer give up after ``limit`` seconds.

    libpq has no read timeout: a server (or a proxy in front of it) that keeps the
    connection open but stops answering would block a query forever. An answer may take
    as long as the lock wait; past that plus a margin, the connection is closed, which
    SQLAlchemy reports as a disconnect (:class:`StoreUnavailable`) and replaces.
    """
    import psycopg

    found: type[Exception] | None = getattr(psycopg.errors, "_WaitTimeout", None)
    if found is None:  # psycopg before 3.2 cannot bound a wait
        return
    wait_timeout: type[Exception] = found

    class BoundedConnection(psycopg.Connection[Any]):
        def wait(self, gen: Any, interval: Any = None, timeout: float | None = None) -> Any:
            options = {} if interval is None else {"interval": interval}
            try:
                return super().wait(gen, timeout=limit if timeout is None else timeout, **options)
            except wait_timeout:
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"the server sent no answer within {limit:g} seconds"
                ) from None

    @event.listens_for(engine, "do_connect")
    def _on_connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        return BoundedConnection.connect(*cargs, **cparams)


def _set_mysql_timeouts(engine: Engine, lock_wait: int, read_timeout: float) -> None:
    """Make InnoDB give up waiting for a row lock after ``lock_wait`` (whole) seconds, and
    let a query's answer take that long plus a margin once the handshake is done."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        if hasattr(dbapi_connection, "_read_timeout"):  # PyMySQL
            dbapi_connection._read_timeout = read_timeout
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait)}")
        finally:
            cursor.close()
