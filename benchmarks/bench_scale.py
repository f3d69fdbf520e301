"""How the stores behave as accounts pile up.

- ``get`` on SQL with 1,000 and with 100,000 accounts (a primary-key lookup: it should
  not grow), both tables measured in the same runs, interleaved.
- ``put`` on the file store with 10 / 1,000 / 10,000 accounts: every write rewrites the
  whole file, so it grows with the file; SQLite's ``put`` at the same sizes shows where
  SQL becomes the better choice.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import sqlalchemy as sa
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

from webex_tokens.backends.file import FileStore
from webex_tokens.backends.sql import SQLStore

SCALE_GOAL = 1.5


def bulk_fill(store: SQLStore, count: int) -> None:
    """Insert ``count`` accounts in batches (the store's own ``put`` would take minutes)."""
    rows = []
    with store.engine.begin() as connection:
        for i in range(count):
            rows.append(store._values(account(i), store._encode(make_token(i))))
            if len(rows) == 5000:
                connection.execute(sa.insert(store._table), rows)
                rows = []
        if rows:
            connection.execute(sa.insert(store._table), rows)


def fill_file(store: FileStore, count: int) -> None:
    """Write ``count`` accounts to the file in one go."""
    store._save({account(i): json.loads(store._encode(make_token(i)).data) for i in range(count)})


def _sql_get(config: Config, section: Section) -> None:
    small, large = (100, 10_000) if config.quick else (1_000, 100_000)
    ratios: list[tuple[float, str]] = []
    with scratch_dir() as directory:
        for backend, url in (
            ("sqlite", ""),
            ("postgresql", POSTGRES_URL),
            ("mariadb", MARIADB_URL),
        ):
            if not config.wants(backend):
                continue
            problem = available(url) if url else None
            if problem is not None:
                section.notes.append(f"{backend} skipped: not reachable ({problem})")
                continue
            tables = {count: f"bench_scale_{count}" for count in (small, large)}
            stores: dict[int, SQLStore] = {}
            try:
                for count, table in tables.items():
                    if url:
                        drop_table(url, table)
                        stores[count] = SQLStore(with_table(url, table))
                    else:
                        stores[count] = SQLStore(f"sqlite:///{directory}/{table}.db")
                    bulk_fill(stores[count], count)
                # The same name in both tables, in the middle of the smaller one.
                name = account(small // 2)
                get_small, get_large = (
                    functools.partial(stores[count].get, name) for count in (small, large)
                )
                big, base = compare(get_large, get_small, config)
                assert base is not None
                ratios.append((big.median / base.median, backend))
                section.rows.append(
                    [
                        f"{backend} `get`",
                        f"{ops(base.median)} ops/s, {latency(base.median)}",
                        f"{ops(big.median)} ops/s, {latency(big.median)}",
                        ratio(big.median, base.median),
                    ]
                )
            finally:
                for store in stores.values():
                    store.close()
                for table in tables.values():
                    if url:
                        drop_table(url, table)
    section.headers = ("operation", f"{small:,} accounts", f"{large:,} accounts", "ratio")
    if ratios:
        worst = max(ratios)
        section.goals.append(
            Goal(
                f"SQL `get` with {large:,} accounts within {SCALE_GOAL}x of {small:,}",
                worst[0] <= SCALE_GOAL,
                f"highest ratio {worst[0]:.2f}x ({worst[1]})",
            )
        )


def _putter(store: FileStore | SQLStore, name: str) -> Callable[[], None]:
    """A ``put`` of ``name`` that alternates between two tokens (each one a real write)."""
    index = int(name[4:10])
    tokens = [make_token(index, version=1), make_token(index, version=2)]

    def put() -> None:
        tokens.reverse()
        store.put(name, tokens[0])

    return put


def _file_put(config: Config, section: Section) -> None:
    sizes = (10, 100, 1_000) if config.quick else (10, 1_000, 10_000)
    section.headers = ("accounts", "file `put`", "file size", "SQLite `put`", "file / SQLite")
    crossover: int | None = None
    with scratch_dir() as directory:
        for count in sizes:
            file_store = FileStore(directory / f"scale-{count}.json")
            fill_file(file_store, count)
            sql_store = SQLStore(f"sqlite:///{directory}/scale-{count}.db")
            bulk_fill(sql_store, count)
            name = account(count // 2)
            put_file, put_sql = (_putter(store, name) for store in (file_store, sql_store))
            file_time, sql_time = compare(put_file, put_sql, config)
            assert sql_time is not None
            size = file_store.path.stat().st_size
            if crossover is None and file_time.median > sql_time.median:
                crossover = count
            section.rows.append(
                [
                    f"{count:,}",
                    f"{latency(file_time.median)} ({ops(file_time.median)} ops/s)",
                    f"{size / 1024:,.0f} KiB",
                    f"{latency(sql_time.median)} ({ops(sql_time.median)} ops/s)",
                    ratio(file_time.median, sql_time.median),
                ]
            )
            sql_store.close()
    if crossover is not None:
        section.notes.append(
            f"SQLite writes faster than the file store at {crossover:,} accounts, the "
            "smallest size measured where it wins (see the analysis above the results)."
        )
    else:
        section.notes.append("The file store wrote faster than SQLite at every size measured.")


def run(config: Config) -> list[Section]:
    sql = Section("Scale: SQL `get` latency against the number of accounts", ())
    _sql_get(config, sql)
    files = Section("Scale: file store `put` latency against the number of accounts", ())
    _file_put(config, files)
    return [sql, files]
