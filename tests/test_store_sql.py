"""SQLStore on real SQLite files, PostgreSQL and MariaDB: conformance, schema, bad inputs."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sql_tables import drop_table

from webex_tokens.backends.sql import SQLStore
from webex_tokens.errors import (
    BackendUnavailable,
    InvalidStoreURL,
    LockTimeout,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
)
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore
from webex_tokens.testing import StoreConformance, make_token
from webex_tokens.token import Token

ENGINES = ["sqlite", "sqlite-memory", "postgresql", "mysql"]
SERVERS = {"postgresql": "postgres_server", "mysql": "mysql_server"}


@contextlib.contextmanager
def opened(url: str) -> Iterator[SQLStore]:
    """Open the store at ``url`` and close it afterwards."""
    store = SQLStore.from_url(url)
    try:
        yield store
    finally:
        store.close()


def server_url(request: pytest.FixtureRequest, engine: str) -> str:
    return str(request.getfixturevalue(SERVERS[engine]))


@pytest.fixture(params=ENGINES)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path, unique_table: str) -> Iterator[str]:
    """A store URL with a table of its own on each engine; the table is dropped afterwards."""
    engine = request.param
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path}/tokens.db?table={unique_table}"
    elif engine == "sqlite-memory":
        yield "sqlite://"
    else:
        server = server_url(request, engine)
        yield f"{server}?table={unique_table}"
        drop_table(server, unique_table)


@pytest.fixture(params=["postgresql", "mysql"])
def server_table(request: pytest.FixtureRequest, unique_table: str) -> Iterator[tuple[str, str]]:
    """(server URL, unused table name) on each database server; the table is dropped after."""
    server = server_url(request, request.param)
    yield server, unique_table
    drop_table(server, unique_table)


class TestSQLStore(StoreConformance):
    @pytest.fixture
    def store(self, sql_url: str) -> Iterator[SQLStore]:
        with opened(sql_url) as store:
            yield store

    def update_locks_one_account(self, store: TokenStore) -> bool:
        # An in-memory database has one connection, which an update holds throughout.
        return store.url != "sqlite://"


# -- what a user of each engine notices --------------------------------------------------


def rows(store: SQLStore) -> dict[str, sa.Row[tuple[object, ...]]]:
    table = store._table
    with store.engine.connect() as connection:
        return {row.name: row for row in connection.execute(sa.select(table))}


def test_names_differing_in_case_or_trailing_spaces_are_distinct(sql_url: str) -> None:
    names = ["alice", "Alice", "alice ", "alice  ", "ALICE", "ålice", "alice\u00a0"]
    with opened(sql_url) as store:
        for i, name in enumerate(names):
            store.put(name, make_token(f"t{i}"))
        assert store.names() == sorted(names)
        for i, name in enumerate(names):
            token = store.get(name)
            assert token is not None and token.access_token == f"t{i}", name


def test_items_come_in_python_order_on_every_engine(sql_url: str) -> None:
    names = ["b", "B", "a", "é", "z", "Z", "日本", "🎉", "a b", "ab", "é" * 255]
    with opened(sql_url) as store:
        for name in names:
            store.put(name, make_token("t"))
        assert [name for name, _ in store.items()] == sorted(names)


def test_failed_update_of_a_new_account_leaves_no_row(sql_url: str) -> None:
    def fail(current: object) -> Token:
        raise RuntimeError("refresh failed")

    with opened(sql_url) as store:
        with pytest.raises(RuntimeError):
            store.update("new", fail)
        assert store.update("ghost", lambda current: current) is None
        assert rows(store) == {}
        assert store.names() == []


def test_items_stream_past_one_batch_in_order(sql_url: str) -> None:
    with opened(sql_url) as store:
        store.put("template", make_token("t"))
        data = rows(store)["template"].data
        now = datetime.now(timezone.utc)
        names = [f"acct-{i:05d}" for i in range(1201)]
        with store.engine.begin() as connection:
            connection.execute(
                sa.insert(store._table),
                [
                    {"name": n, "data": data, "version": 1, "updated_at": now, "expires_at": None}
                    for n in reversed(names)
                ],
            )
        listed = [name for name, token in store.items() if token.access_token == "t"]
        assert listed == [*names, "template"]


def test_row_metadata_tracks_writes(sql_url: str) -> None:
    with opened(sql_url) as store:
        before = datetime.now(timezone.utc).replace(microsecond=0)
        token = make_token("first")
        store.put("alice", token)
        row = rows(store)["alice"]
        assert row.version == 1
        assert row.expires_at == token.expires_at
        assert row.updated_at.tzinfo is not None and row.updated_at >= before
        store.update("alice", lambda current: make_token("second"))
        store.put("alice", make_token("third", full=False))
        row = rows(store)["alice"]
        assert row.version == 3
        assert row.expires_at is None


def test_unreadable_row_raises_and_is_left_untouched(sql_url: str) -> None:
    with opened(sql_url) as store:
        store.put("ok", make_token())
        with store.engine.begin() as connection:
            connection.execute(
                sa.update(store._table).where(store._table.c.name == "ok").values(data="{not json")
            )
        with pytest.raises(StoreCorrupted, match=r"unreadable.*left untouched"):
            store.get("ok")
        called = []
        with pytest.raises(StoreCorrupted):
            store.update("ok", lambda current: called.append(current) or make_token())  # type: ignore[func-returns-value]
        assert called == []
        assert rows(store)["ok"].data == "{not json"
        assert rows(store)["ok"].version == 1


def test_table_is_created_on_open_and_reused(sql_url: str) -> None:
    with opened(sql_url) as store:
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns(store.table_name)}
        assert columns == {"name", "data", "version", "updated_at", "expires_at"}
        store.put("alice", make_token("kept"))
    if sql_url == "sqlite://":
        return  # an in-memory database lives only as long as its store
    with opened(sql_url) as again:
        token = again.get("alice")
        assert token is not None and token.access_token == "kept"


def test_open_url_serves_sql_urls_and_fills_in_the_default_driver(
    postgres_server: str, mysql_server: str, unique_table: str
) -> None:
    for server, driver in (
        (postgres_server, "postgresql+psycopg"),
        (mysql_server, "mysql+pymysql"),
    ):
        bare = server.replace(driver, driver.split("+")[0])
        try:
            with open_url(f"{bare}?table={unique_table}") as store:
                assert isinstance(store, SQLStore)
                assert store.url.startswith(f"{driver}://")
                assert store.url.endswith(f"?table={unique_table}")
        finally:
            drop_table(server, unique_table)


def test_store_url_hides_the_password(postgres_server: str, unique_table: str) -> None:
    url = postgres_server.replace("postgres@", "postgres:pa55word@") + f"?table={unique_table}"
    # trust authentication ignores the password, so the store opens and shows its URL
    try:
        with opened(url) as store:
            assert "pa55word" not in store.url and "pa55word" not in repr(store)
            assert "postgres:***@" in store.url
    finally:
        drop_table(postgres_server, unique_table)


def test_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLStore.from_url(f"sqlite:///{tmp_path}/tokens.db")
    store.close()
    with pytest.raises(StoreError, match=r"closed"):
        store.get("alice")


# -- SQLite files ----------------------------------------------------------------------


def test_sqlite_file_is_private_even_under_umask_000(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "tokens.db"
    old = os.umask(0)
    try:
        with opened(f"sqlite:///{path}") as store:
            store.put("alice", make_token())
            # the rollback journal exists while a write transaction is open
            with store.engine.connect() as connection:
                connection.execution_options(webex_tokens_write=True)
                with connection.begin():
                    connection.execute(sa.delete(store._table))
                    journal = path.with_name("tokens.db-journal")
                    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_sqlite_writers_of_one_process_take_turns_with_a_timeout(tmp_path: Path) -> None:
    # Threads of one process queue for their turn before BEGIN IMMEDIATE; the wait has
    # the store's lock timeout like any other.
    with opened(f"sqlite:///{tmp_path}/tokens.db?lock_timeout=0.3") as store:
        assert store._sqlite_writers is not None
        with store._sqlite_writers:
            started = time.monotonic()
            with pytest.raises(LockTimeout, match=r"'alice'.*0\.3 seconds.*lock_timeout"):
                store.put("alice", make_token())
            assert 0.3 <= time.monotonic() - started < 2
            assert store.get("alice") is None  # readers do not wait
        store.put("alice", make_token())
        assert store.get("alice") == make_token()


def test_sqlite_path_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with opened("sqlite:///~/tokens.db") as store:
        store.put("alice", make_token())
        assert store.url == f"sqlite:///{tmp_path}/tokens.db"
    assert (tmp_path / "tokens.db").is_file()


def test_sqlite_file_that_is_not_a_database_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    path.write_bytes(b"this is not a database, it is a shopping list" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreCorrupted, match=r"not a SQLite database.*another file"):
        SQLStore.from_url(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_sqlite_path_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(
        StoreUnavailable, match=r"cannot open the SQLite database .*a part of the path is a file"
    ):
        SQLStore.from_url(f"sqlite:///{blocker}/tokens.db")


def test_in_memory_sqlite_stores_are_separate() -> None:
    with opened("sqlite://") as one, opened("sqlite:///:memory:?table=two") as two:
        one.put("alice", make_token())
        assert two.get("alice") is None
        assert (one.url, two.url) == ("sqlite://", "sqlite://?table=two")


# -- bad inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/test",
        "mysql+pymysql://root:s3cret-pw@127.0.0.1:1/test",
    ],
)
def test_unreachable_server_is_unavailable_quickly_without_the_password(url: str) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        SQLStore.from_url(url)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert ":***@127.0.0.1:1/test" in message
    assert "running and reachable at 127.0.0.1:1" in message


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://root:wr0ng-pw@127.0.0.1:3306/test",
        "postgresql+psycopg://no_such_role:wr0ng-pw@127.0.0.1:5432/test",
    ],
)
def test_rejected_login_is_unavailable_without_the_password(
    url: str, postgres_server: str, mysql_server: str
) -> None:
    with pytest.raises(StoreUnavailable, match=r"check the host, port, user, password") as info:
        SQLStore.from_url(url)
    assert "wr0ng-pw" not in str(info.value)


def kill_pooled_connection(store: SQLStore, server: str) -> bool:
    """Terminate the PostgreSQL session behind ``store``'s pooled connection."""
    with store.engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = sa.create_engine(server)
    try:
        with admin.begin() as connection:
            return bool(
                connection.execute(
                    sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
                ).scalar()
            )
    finally:
        admin.dispose()


def test_dropped_connection_is_replaced_without_an_error(
    postgres_server: str, unique_table: str
) -> None:
    try:
        with opened(f"{postgres_server}?table={unique_table}") as store:
            store.put("alice", make_token("kept"))
            assert kill_pooled_connection(store, postgres_server)
            token = store.get("alice")  # the pool notices the dead connection first
            assert token is not None and token.access_token == "kept"
    finally:
        drop_table(postgres_server, unique_table)


@pytest.mark.parametrize("writes", [False, True], ids=["read", "write"])
def test_an_idle_dropped_connection_is_pinged_and_replaced(
    postgres_server: str, unique_table: str, monkeypatch: pytest.MonkeyPatch, writes: bool
) -> None:
    from webex_tokens.backends.sql import _engine

    monkeypatch.setattr(_engine, "_PING_AFTER_IDLE", 0.0)  # every pooled connection counts as idle
    try:
        with opened(f"{postgres_server}?table={unique_table}") as store:
            store.put("alice", make_token("kept"))
            assert kill_pooled_connection(store, postgres_server)
            if writes:  # a write is not repeated on error: only the ping can save it
                store.put("alice", make_token("new"))
            token = store.get("alice")
            assert token is not None
            assert token.access_token == ("new" if writes else "kept")
    finally:
        drop_table(postgres_server, unique_table)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("scheme", ["postgresql+psycopg://postgres", "mysql+pymysql://root"])
def test_server_that_never_answers_times_out(scheme: str, silent_server: int) -> None:
    url = f"{scheme}:pw@127.0.0.1:{silent_server}/test?connect_timeout=2"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"is the database server running") as info:
        SQLStore.from_url(url)
    assert time.monotonic() - started < 6
    assert ":pw@" not in str(info.value)


def test_foreign_table_is_refused_and_left_untouched(server_table: tuple[str, str]) -> None:
    server, table = server_table
    engine = sa.create_engine(server)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, payload TEXT)")
        connection.exec_driver_sql(f"INSERT INTO {table} VALUES (1, 'theirs')")  # noqa: S608
    try:
        with pytest.raises(StoreCorrupted, match=rf"'{table}'.*not a webex-tokens table.*\?table="):
            SQLStore.from_url(f"{server}?table={table}")
        with engine.connect() as connection:
            query = f"SELECT * FROM {table}"  # noqa: S608 - a generated test table name
            assert connection.exec_driver_sql(query).fetchall() == [(1, "theirs")]
            columns = {c["name"] for c in sa.inspect(connection).get_columns(table)}
        assert columns == {"id", "payload"}
    finally:
        engine.dispose()


def test_foreign_sqlite_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE webex_tokens (name TEXT, value TEXT)")
    engine.dispose()
    with pytest.raises(StoreCorrupted, match=r"lacks data, version, updated_at, expires_at"):
        SQLStore.from_url(f"sqlite:///{path}")


@pytest.mark.parametrize(
    "table",
    ["bad;name", "Tokens", "1abc", "x" * 64, "a-b", "", "webex tokens", "ü", "x%0A", "x%0D%0A"],
)
def test_bad_table_name_is_refused(tmp_path: Path, table: str) -> None:
    with pytest.raises(InvalidStoreURL, match=r"lower-case letters, digits and underscores"):
        SQLStore.from_url(f"sqlite:///{tmp_path}/t.db?table={table}")
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", ""])
@pytest.mark.parametrize("option", ["lock_timeout", "connect_timeout"])
def test_bad_timeouts_are_refused(tmp_path: Path, option: str, value: str) -> None:
    with pytest.raises(InvalidStoreURL, match=f"{option}.*positive number of seconds"):
        SQLStore.from_url(f"sqlite:///{tmp_path}/t.db?{option}={value}")


def test_unknown_sqlite_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidStoreURL, match=r"unknown option tabel.*table, lock_timeout"):
        SQLStore.from_url(f"sqlite:///{tmp_path}/t.db?tabel=x")


def test_unknown_server_option_is_refused(server_table: tuple[str, str]) -> None:
    server, table = server_table
    with pytest.raises(InvalidStoreURL, match=r"refused an option.*tabel.*own options are table"):
        SQLStore.from_url(f"{server}?tabel={table}")


@pytest.mark.parametrize(
    "url",
    [
        "oracle://scott@db/orcl",
        "not a url",
        "sqlite://somehost/tokens.db",
        "postgresql+psycopg://postgres@127.0.0.1:notaport/test",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidStoreURL):
        SQLStore.from_url(url)


@pytest.mark.parametrize(
    ("url", "module", "hint"),
    [
        (
            "postgresql+psycopg://u:pw@127.0.0.1/db",
            "psycopg",
            "pip install 'webex-tokens[postgres]'",
        ),
        ("postgresql://u:pw@127.0.0.1/db", "psycopg", "pip install 'webex-tokens[postgres]'"),
        ("mysql+pymysql://u:pw@127.0.0.1/db", "pymysql", "pip install 'webex-tokens[mysql]'"),
        ("mariadb://u:pw@127.0.0.1/db", "pymysql", "pip install 'webex-tokens[mysql]'"),
    ],
)
def test_missing_driver_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, hint: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendUnavailable) as info:
        open_url(url)
    assert hint in str(info.value)
    assert "pw" not in str(info.value).replace("pip", "")


def test_unknown_driver_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match=r"no driver 'postgresql\+nosuch'.*webex-tokens"):
        SQLStore.from_url("postgresql+nosuch://u@127.0.0.1/db")


def test_asyncio_driver_is_refused() -> None:
    with pytest.raises((InvalidStoreURL, BackendUnavailable), match=r"postgresql\+psycopg"):
        SQLStore.from_url("postgresql+asyncpg://u@127.0.0.1/db")
