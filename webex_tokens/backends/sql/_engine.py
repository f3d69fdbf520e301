"""The SQLAlchemy engine of a SQL store: connection options and hooks per database."""

from __future__ import annotations

import math
import time
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from ...errors import BackendUnavailable, InvalidStoreURL
from ...registry import install_hint
from ._errors import ErrorTranslator
from ._table import MYSQL
from ._url import DEFAULT_DRIVERS

__all__ = ["create_engine"]

#: Import names of other drivers -> the package that provides them.
_DRIVER_PACKAGES: Final = {
    "MySQLdb": "mysqlclient",
    "psycopg2": "psycopg2-binary",
    "mariadb": "mariadb",
    "asyncpg": "asyncpg",
}
#: A pooled connection idle for longer than this is pinged before use (seconds).
_PING_AFTER_IDLE: Final = 1.0
#: Connections kept open in the pool, and the most open at once (one per thread).
_POOL_SIZE: Final = 5
_MAX_CONNECTIONS: Final = 64


def create_engine(
    sa_url: URL,
    *,
    memory: bool,
    lock_timeout: float,
    connect_timeout: float,
    errors: ErrorTranslator,
) -> Engine:
    """The engine for ``sa_url``, with timeouts bounding every wait on the database.

    Raises:
        BackendUnavailable: the driver is not installed (says what to install).
        InvalidStoreURL: SQLAlchemy cannot use the URL, or it names an asyncio driver.
    """
    backend = errors.backend
    url = errors.url
    connect_args: dict[str, Any] = {}
    engine_args: dict[str, Any] = {}
    driver = sa_url.get_driver_name()
    whole_seconds = math.ceil(connect_timeout)
    if memory:
        connect_args["check_same_thread"] = False
        engine_args["poolclass"] = StaticPool
    else:
        # Each thread in an update holds a connection (its row lock lives in that
        # transaction) for as long as its function runs, e.g. a refresh over the
        # network: let the pool grow to as many threads as `refresh --all` may run
        # (beyond pool_size, connections are closed when given back).
        engine_args["pool_size"] = _POOL_SIZE
        engine_args["max_overflow"] = _MAX_CONNECTIONS - _POOL_SIZE
    if backend == "sqlite":
        connect_args["timeout"] = lock_timeout  # SQLite's busy timeout
    elif driver == "pymysql":
        # PyMySQL's connect_timeout covers only the TCP connect; its read timeout
        # bounds the handshake with a server that accepts and then says nothing.
        connect_args["connect_timeout"] = connect_timeout
        connect_args["read_timeout"] = connect_timeout
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
            f"SQLAlchemy has no driver {sa_url.drivername!r} for {url}; install the "
            f"package that provides it, or write {backend}+"
            f"{DEFAULT_DRIVERS.get(backend, 'pysqlite')}:// after running: "
            f"{install_hint(backend)}"
        ) from None
    except ImportError as exc:
        missing = exc.name or str(exc)
        if driver == DEFAULT_DRIVERS.get(backend):
            fix = install_hint(backend) or "pip install webex-tokens"
        else:
            default = DEFAULT_DRIVERS.get(backend, driver)
            package = _DRIVER_PACKAGES.get(missing, missing)
            fix = f"pip install {package}, or use {backend}+{default}://"
        raise BackendUnavailable(
            f"the database driver {missing!r} for {url} is not installed; run: {fix}"
        ) from None
    except (ArgumentError, TypeError, ValueError) as exc:
        raise InvalidStoreURL(
            f"bad database URL {url} ({errors.reason(exc)}); check it against the "
            "forms in the documentation, e.g. postgresql+psycopg://USER@HOST:5432/DATABASE"
        ) from None
    if engine.dialect.is_async:
        engine.dispose()
        raise InvalidStoreURL(
            f"{url} names an asyncio driver; webex-tokens needs a synchronous one, "
            f"e.g. {backend}+{DEFAULT_DRIVERS.get(backend, 'pysqlite')}://"
        )
    if backend != "sqlite":
        _ping_idle_connections(engine)
    if backend in MYSQL:
        lock_wait = max(1, math.ceil(lock_timeout))
        _set_mysql_timeouts(engine, lock_wait, lock_wait + connect_timeout)
    elif driver == "psycopg":
        _bound_psycopg_waits(engine, lock_timeout + connect_timeout)
    return engine


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
