"""SQLStore under real concurrent processes: SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sql_tables import drop_table
from test_store_sql import SERVERS, opened

from webex_tokens.backends.sql import SQLStore
from webex_tokens.errors import LockTimeout
from webex_tokens.registry import open_url
from webex_tokens.testing import make_token
from webex_tokens.testing.processes import count_of, increment_worker, put_worker, run_workers

ENGINES = {"sqlite": None, "postgresql": "postgresql", "mariadb": "mysql"}


@pytest.fixture(params=list(ENGINES))
def shared_url(request: pytest.FixtureRequest, tmp_path: Path, unique_table: str) -> Iterator[str]:
    """A URL every process can open, with a table of its own (dropped afterwards)."""
    server_kind = ENGINES[request.param]
    if server_kind is None:
        yield f"sqlite:///{tmp_path}/tokens.db?table={unique_table}"
        return
    server = str(request.getfixturevalue(SERVERS[server_kind]))
    yield f"{server}?table={unique_table}"
    drop_table(server, unique_table)


def test_updates_from_eight_processes_are_never_lost(shared_url: str) -> None:
    # The table does not exist yet: the workers also race to create it.
    run_workers(increment_worker, [(shared_url, "counter", 50)] * 8)
    with opened(shared_url) as store:
        assert count_of(store.get("counter")) == 400


def test_puts_from_four_processes_all_land(shared_url: str) -> None:
    run_workers(put_worker, [(shared_url, f"worker{i}", 50) for i in range(4)])
    with opened(shared_url) as store:
        expected = sorted(f"worker{i}-{j}" for i in range(4) for j in range(50))
        assert store.names() == expected
        token = store.get("worker3-49")
        assert token is not None and token.access_token == "worker3-49"


def create_worker(url: str, names: list[str], barrier: Any, start: Any) -> None:
    """For each name, wait for the other worker, then create-or-increment it with update."""
    start.wait()
    with open_url(url) as store:
        for name in names:
            barrier.wait(timeout=60)
            store.update(name, lambda token: make_token(f"count-{count_of(token) + 1}"))


def test_two_processes_creating_the_same_account_serialise(shared_url: str) -> None:
    SQLStore.from_url(shared_url).close()  # the table exists; the race is on the rows
    names = [f"new-{i}" for i in range(4)]
    barrier = multiprocessing.get_context("spawn").Barrier(2)
    run_workers(create_worker, [(shared_url, names, barrier)] * 2)
    with opened(shared_url) as store:
        # one created the token (1), the other saw it and built on it (2)
        assert [count_of(store.get(name)) for name in names] == [2] * len(names)


def hold_lock_worker(url: str, name: str, locked: Any, release: Any) -> None:
    """Hold ``name``'s lock inside ``update`` until ``release`` is set, then write a token."""
    with open_url(url) as store:

        def slow_refresh(token: Any) -> Any:
            locked.set()
            release.wait(60)
            return make_token("held")

        store.update(name, slow_refresh)


def test_lock_held_too_long_raises_lock_timeout(shared_url: str) -> None:
    # "alice" exists (a row lock), "bob" is being created (an uncommitted new row); on
    # SQLite each is held by its account's lock file instead.
    names = ["alice", "bob"]
    sqlite = shared_url.startswith("sqlite")
    with opened(shared_url) as store:
        store.put("alice", make_token("before"))
    context = multiprocessing.get_context("spawn")
    release = context.Event()
    holders = []
    for name in names:
        locked = context.Event()
        holder = context.Process(target=hold_lock_worker, args=(shared_url, name, locked, release))
        holder.start()
        holders.append((holder, locked))
    try:
        for _, locked in holders:
            assert locked.wait(60), "a holder never took its lock"
        with opened(f"{shared_url}&lock_timeout=0.5") as impatient:
            for name in names:
                started = time.monotonic()
                with pytest.raises(LockTimeout, match=rf"'{name}'.*\?lock_timeout=SECONDS"):
                    impatient.update(name, lambda token: make_token("impatient"))
                # MySQL/MariaDB count lock waits in whole seconds
                assert 0.4 < time.monotonic() - started < 1.5
            # Other accounts are not held up.
            started = time.monotonic()
            impatient.update("carol", lambda token: make_token("carol"))
            assert time.monotonic() - started < 0.4
            if sqlite:
                # put does not wait for an account lock: it lands, and the holder's
                # update, finding another token than the one it read, writes nothing.
                impatient.put("alice", make_token("impatient"))
            else:
                with pytest.raises(LockTimeout):
                    impatient.put("alice", make_token("impatient"))
    finally:
        release.set()
        for holder, _ in holders:
            holder.join(60)
    assert [holder.exitcode for holder, _ in holders] == [0] * len(names)
    with opened(shared_url) as store:
        expected = {"alice": "impatient" if sqlite else "held", "bob": "held", "carol": "carol"}
        tokens = {name: store.get(name) for name in expected}
        assert {name: token and token.access_token for name, token in tokens.items()} == expected
