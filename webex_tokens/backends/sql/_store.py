"""The SQL store: transactions, reads and writes, and ``update``'s locking per database."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from ...errors import InvalidStoreURL, LockTimeout, StoreCorrupted, StoreError, StoreNotFound
from ...locks import AccountLocks
from ...store import (
    DEFAULT_LOCK_TIMEOUT,
    BaseStore,
    Keep,
    Record,
    RecordChange,
    log_superseded,
)
from ._engine import create_engine
from ._errors import DeadlockDetected, ErrorTranslator
from ._schema import COLUMNS, DEFAULT_TABLE
from ._sqlite import BUSY, SQLiteReader, create_private_file
from ._table import MYSQL, make_table, now
from ._url import DEFAULT_CONNECT_TIMEOUT, check_table_name, display_url, parse_url, seconds

__all__ = ["SQLStore"]

log = logging.getLogger(__name__.rpartition(".")[0])  # the backend's logger

#: How often ``update`` retries when the database broke a deadlock before ``fn`` ran.
_DEADLOCK_ATTEMPTS: Final = 5

_T = TypeVar("_T")


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
        create: False to open only a store that exists (for reading): a missing SQLite
            file or table raises :class:`StoreNotFound` and nothing is created.

    Raises:
        InvalidStoreURL: the URL, an option or the table name is malformed.
        BackendUnavailable: the database driver is not installed (says what to install).
        StoreUnavailable: the database cannot be reached or opened.
        StoreCorrupted: the table exists but is not a webex-tokens table (it is untouched).
        StoreNotFound: ``create`` is False and the database file or the table is missing.
        StoreError: the SQLite file is a symlink, another user's, or in a directory
            others can write.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        lock_timeout: float | None = None,
        connect_timeout: float | None = None,
        create: bool = True,
    ) -> None:
        self._engine: Engine | None = None
        self._create = create
        sa_url, options = parse_url(url)
        self.table_name: str = table if table is not None else options.get("table", DEFAULT_TABLE)
        check_table_name(self.table_name, url)
        self.lock_timeout: float = seconds(
            url, "lock_timeout", lock_timeout, options, DEFAULT_LOCK_TIMEOUT
        )
        self.connect_timeout: float = seconds(
            url, "connect_timeout", connect_timeout, options, DEFAULT_CONNECT_TIMEOUT
        )
        self._backend = sa_url.get_backend_name()
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
        self.url = display_url(sa_url, self.table_name, self.lock_timeout, self.connect_timeout)
        self._table = make_table(self.table_name)
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
        # Reads of a SQLite file go through one sqlite3 connection kept open, without
        # SQLAlchemy's pool and statement machinery, which cost more than the read.
        self._reader = (
            SQLiteReader(self.path, self.table_name, self.lock_timeout)
            if self.path is not None
            else None
        )
        if self.path is not None:
            create_private_file(self.path, create=create)
        self._errors_of = ErrorTranslator(
            url=self.url,
            backend=self._backend,
            path=self.path,
            password=sa_url.password,
            # Kept from the parsed URL: the shown one may not parse back (odd user names).
            address=(sa_url.host, sa_url.port),
            lock_timeout=self.lock_timeout,
            table=self.table_name,
        )
        self._engine = create_engine(
            sa_url,
            memory=self._memory,
            lock_timeout=self.lock_timeout,
            connect_timeout=self.connect_timeout,
            errors=self._errors_of,
        )
        try:
            self._prepare_table()
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> SQLStore:
        """Open the store at a SQLAlchemy ``url`` (see the class for the options).

        Raises:
            StoreError: as the constructor (InvalidStoreURL, BackendUnavailable,
                StoreUnavailable, StoreCorrupted, StoreNotFound).
        """
        return cls(url, create=create)

    # -- opening --------------------------------------------------------------------

    def _prepare_table(self) -> None:
        if not self._create and not self._has_table():
            raise StoreNotFound(
                f"there is no table {self.table_name!r} in {self.url} yet, and nothing was "
                "created; check the URL and ?table=, or create the store by saving a token "
                "into it (webex-tokens login)"
            )
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
        missing = [column for column in COLUMNS if column not in columns]
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
                raise self._errors_of.connect_error(exc) from None
            except (TypeError, AttributeError) as exc:
                # A driver option it cannot use: PyMySQL fails on ?charset=unknown this way.
                raise self._errors_of.option_error(str(exc)) from None
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
            raise self._errors_of.translate(exc, name) from None

    # -- records ------------------------------------------------------------------------

    def _query(self, name: str | None, run: Callable[[Connection], _T]) -> _T:
        """Run a read, once more on a new connection if the pooled one had been dropped.

        Only connections idle for a while are pinged before use (see
        :func:`._engine._ping_idle_connections`); a server restart or a killed session shows up
        here instead, and a read is always safe to repeat.
        """
        for attempt in (1, 2):
            try:
                with self._transaction(name) as connection:
                    return run(connection)
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise self._errors_of.translate(exc, name) from None
                log.debug("the connection to %s was dropped; reading again", self.url)
        raise AssertionError("unreachable")

    def _read(self, name: str) -> str | None:
        reader = self._reader
        if reader is not None:
            try:
                found = reader.read(name)
            except sqlite3.Error as exc:
                raise self._errors_of.translate(exc, name) from None
            if found is not BUSY:
                return found
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
            "updated_at": now(),
            "expires_at": record.expires_at,
        }

    def _changed_values(self, name: str, record: Record) -> dict[str, Any]:
        """The parameters of ``_update_row`` that store ``record`` in the row of ``name``."""
        return {
            "key": name,
            "data": record.data,
            "updated_at": now(),
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
        elif self._backend in MYSQL:
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
            "updated_at": now(),
            "expires_at": None,
        }
        row: Any
        if self._backend == "sqlite":
            # BEGIN IMMEDIATE already holds the database's write lock.
            row = connection.execute(self._select_row, key).first()
            if row is None:
                return None, False
        elif self._backend in MYSQL:
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
            except DeadlockDetected:
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
        reader, self._reader = self._reader, None  # reads go to the closed engine now
        if reader is not None:
            reader.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _row_state(row: Any) -> tuple[str, int] | None:
    """A row's data and version, to tell whether it changed between two reads."""
    return None if row is None else (str(row.data), int(row.version))
