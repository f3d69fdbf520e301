"""``get`` / ``put`` / ``update`` per backend, each against the bare work it wraps.

Every store holds the same accounts (100; 10 with ``--quick``) and the operations touch
one of them. The raw baselines do the same work without the library:

- file: read and parse the JSON file (``get``); read, parse, change, serialise and
  atomically replace it with fsyncs, as the store does, but with no lock (``put``,
  ``update``);
- fernet+file: the same plus a bare Fernet decrypt or encrypt of the record;
- SQL: ``get`` is what a careful hand-written reader does: on SQLite one ``sqlite3``
  connection kept open and one (prepared, cached) select of the row, then
  ``json.loads`` of its data; on PostgreSQL and MariaDB a bare SQLAlchemy Core select
  on a plain engine's pooled connection, then ``json.loads``. ``put`` is a bare upsert,
  ``update`` a select ``FOR UPDATE`` + update in one transaction, on a plain engine;
- keyring: a bare ``keyring.get_password`` / ``set_password`` (``update``: both).

``memory`` has no baseline: it shows the fixed cost of the library (name checks and
turning JSON into a :class:`Token`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet
from harness import (
    MARIADB_URL,
    POSTGRES_URL,
    Config,
    Goal,
    Section,
    account,
    available,
    compare,
    drop_table,
    latency,
    make_token,
    ops,
    ratio,
    scratch_dir,
    with_table,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from webex_tokens import Token
from webex_tokens.backends.fernet import FernetStore
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.backends.sql import SQLStore
from webex_tokens.store import BaseStore

BACKENDS = ("memory", "file", "fernet+file", "sqlite", "postgresql", "mariadb", "keyring")
TABLE = "bench_stores"
GET_GOAL = 1.5


@dataclass
class Case:
    """A store filled with the accounts, and the bare code doing the same work."""

    store: BaseStore
    baselines: dict[str, Callable[[], object]] = field(default_factory=dict)
    note: str | None = None


def _fill(store: BaseStore, count: int) -> None:
    if isinstance(store, FileStore):
        values = {account(i): json.loads(store._encode(make_token(i)).data) for i in range(count)}
        store._save(values)
        return
    for i in range(count):
        store.put(account(i), make_token(i))


# -- bare file work --------------------------------------------------------------------


def _raw_replace(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _file_baselines(
    path: Path, name: str, value: object, fernet: Fernet | None, record: str
) -> dict[str, Callable[[], object]]:
    envelope = json.dumps({"n": name, "d": record}, separators=(",", ":")).encode()

    def get() -> object:
        found = json.loads(path.read_bytes())["tokens"][name]
        return fernet.decrypt(found.encode()) if fernet is not None else found

    def put() -> None:
        document = json.loads(path.read_bytes())
        # The store encrypts an envelope binding the record to its name: so does this.
        new = fernet.encrypt(envelope).decode() if fernet is not None else value
        document["tokens"][name] = new
        data = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False)
        _raw_replace(path, data.encode())

    return {"get": get, "put": put, "update": put}


# -- bare SQL work ---------------------------------------------------------------------


def _sql_baselines(
    url: str, table: str, name: str, record: str
) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    engine = sa.create_engine(url)
    backend = engine.dialect.name
    rows = sa.Table(
        table,
        sa.MetaData(),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("data", sa.Text()),
        sa.Column("version", sa.Integer()),
        sa.Column("updated_at", sa.DateTime(timezone=backend == "postgresql")),
        sa.Column("expires_at", sa.DateTime(timezone=backend == "postgresql")),
    )
    select = sa.select(rows.c.data).where(rows.c.name == sa.bindparam("key"))
    insert: Callable[..., sa.Insert] = {
        "postgresql": postgresql.insert,
        "mysql": mysql.insert,
        "mariadb": mysql.insert,
        "sqlite": sqlite.insert,
    }[backend]

    def now() -> datetime:
        moment = datetime.now(timezone.utc)
        return moment if backend == "postgresql" else moment.replace(tzinfo=None)

    def values() -> dict[str, object]:
        return {"name": name, "data": record, "version": 1, "updated_at": now()}

    def get() -> object:
        with engine.connect() as connection:
            row = connection.execute(select, {"key": name}).first()
        return None if row is None else json.loads(row.data)

    if backend == "sqlite":
        reader = sqlite3.connect(engine.url.database or "", isolation_level=None)
        query = f"SELECT data FROM {table} WHERE name = ?"  # noqa: S608 - our own table

        def get() -> object:  # the connection stays open; sqlite3 caches the statement
            rows = reader.execute(query, (name,)).fetchall()
            return json.loads(rows[0][0]) if rows else None

    def put() -> None:
        changes = {"data": record, "version": rows.c.version + 1, "updated_at": now()}
        statement = insert(rows).values(values())
        if backend in ("mysql", "mariadb"):
            statement = statement.on_duplicate_key_update(changes)  # type: ignore[attr-defined]
        else:
            statement = statement.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=[rows.c.name], set_=changes
            )
        with engine.begin() as connection:
            connection.execute(statement)

    def update() -> None:
        with engine.begin() as connection:
            connection.execute(select.with_for_update(), {"key": name}).first()
            connection.execute(
                sa.update(rows)
                .where(rows.c.name == name)
                .values(data=record, version=rows.c.version + 1, updated_at=now())
            )

    def close() -> None:
        if backend == "sqlite":
            reader.close()
        engine.dispose()

    return {"get": get, "put": put, "update": update}, close


# -- the cases -------------------------------------------------------------------------


@contextlib.contextmanager
def open_case(backend: str, count: int, directory: Path, key: str) -> Iterator[Case | str]:
    """Yield the case for ``backend``, or why it cannot run here; clean up afterwards."""
    name = account(count // 2)
    token = make_token(count // 2, version=1)
    if backend == "memory":
        store: BaseStore = MemoryStore()
        _fill(store, count)
        yield Case(store)
        return
    if backend in ("file", "fernet+file"):
        path = directory / f"{backend}.json"
        inner = FileStore(path)
        fernet = Fernet(key) if backend == "fernet+file" else None
        store = FernetStore(inner, keys=key) if fernet is not None else inner
        _fill(inner, 0)
        for i in range(count):  # one locked write each: fine for a hundred accounts
            store.put(account(i), make_token(i))
        record = store._encode(token).data
        yield Case(store, _file_baselines(path, name, json.loads(record), fernet, record))
        return
    if backend == "keyring":
        yield from _keyring_case(count, name, token)
        return
    url = {
        "sqlite": f"sqlite:///{directory}/bench.db",
        "postgresql": POSTGRES_URL,
        "mariadb": MARIADB_URL,
    }[backend]
    problem = available(url) if backend != "sqlite" else None  # SQLStore makes the file
    if problem is not None:
        yield f"{backend} skipped: the server is not reachable ({problem})"
        return
    store = SQLStore(with_table(url, TABLE))
    try:
        _fill(store, count)
        baselines, close = _sql_baselines(url, TABLE, name, store._encode(token).data)
        try:
            yield Case(store, baselines)
        finally:
            close()
    finally:
        store.close()
        drop_table(url, TABLE)


def _keyring_case(count: int, name: str, token: Token) -> Iterator[Case | str]:
    import keyring

    from webex_tokens.backends.keyring import KeyringStore
    from webex_tokens.errors import BackendUnavailable, StoreUnavailable

    service = f"webex-tokens-bench-{os.getpid()}"
    try:
        store = KeyringStore(service)
    except (BackendUnavailable, StoreUnavailable) as exc:
        yield (
            "keyring skipped: no usable Secret Service here; run the benchmarks with "
            f"scripts/bench, which starts one ({' '.join(str(exc).split())[:100]})"
        )
        return
    try:
        _fill(store, count)
        entry = f"token:{name}"
        record = store._encode(token).data

        def get() -> object:
            return keyring.get_password(service, entry)

        def put() -> None:
            keyring.set_password(service, entry, record)

        def update() -> None:
            keyring.get_password(service, entry)
            keyring.set_password(service, entry, record)

        yield Case(store, {"get": get, "put": put, "update": update})
    finally:
        for stored in store.names():
            store.delete(stored)
        store.close()


# -- the group -------------------------------------------------------------------------


def _measure(
    backend: str,
    case: Case,
    *,
    count: int,
    config: Config,
    section: Section,
    worst: list[tuple[float, str]],
) -> None:
    store = case.store
    name = account(count // 2)
    tokens = [make_token(count // 2, version=1), make_token(count // 2, version=2)]

    def get() -> object:
        return store.get(name)

    def put() -> None:
        tokens.reverse()
        store.put(name, tokens[0])

    def update() -> None:
        tokens.reverse()
        store.update(name, lambda current: tokens[0])

    for operation, subject in (("get", get), ("put", put), ("update", update)):
        measured, base = compare(subject, case.baselines.get(operation), config)
        row = [backend, operation, ops(measured.median), latency(measured.median)]
        if base is None:
            row += ["-", "-", "-"]
        else:
            row += [ops(base.median), latency(base.median), ratio(measured.median, base.median)]
            if operation == "get":
                worst.append((measured.median / base.median, backend))
        section.rows.append(row)


def run(config: Config) -> list[Section]:
    count = 10 if config.quick else 100
    section = Section(
        f"Store operations ({count} accounts per store, one account read or written)",
        (
            "backend",
            "operation",
            "ops/s",
            "latency",
            "raw baseline ops/s",
            "raw baseline latency",
            "ratio",
        ),
    )
    key = Fernet.generate_key().decode()
    worst: list[tuple[float, str]] = []
    with scratch_dir() as directory:
        for backend in BACKENDS:
            if not config.wants(backend):
                continue
            with open_case(backend, count, directory, key) as case:
                if isinstance(case, str):
                    section.notes.append(case)
                    continue
                _measure(backend, case, count=count, config=config, section=section, worst=worst)
    if worst:
        misses = [f"{backend} {value:.2f}x" for value, backend in worst if value > GET_GOAL]
        highest = max(worst)
        section.goals.append(
            Goal(
                f"`get` within {GET_GOAL}x of its raw baseline on every backend",
                not misses,
                f"missed on {', '.join(misses)}"
                if misses
                else f"highest ratio {highest[0]:.2f}x ({highest[1]})",
            )
        )
    return [section]
