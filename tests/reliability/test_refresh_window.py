"""Faults in the window between the token endpoint's answer and the store's commit.

Webex has answered a refresh, so the refresh token presented is spent: the emulator
rotates refresh tokens and, when a spent one comes back, revokes the whole login. Each
test breaks the store's write in that window, on every backend, in the ways a real
deployment breaks it:

- the database session is killed (PostgreSQL ``pg_terminate_backend``, MariaDB
  ``KILL``), found through the proxy's own connections so nobody else's is touched;
- another writer holds the database's or the file's write lock past the lock timeout
  (SQLite, file);
- the write fails, on every backend (``write_faults.WriteFails`` around the real store);
- the process is SIGKILLed after the rescue journal has the answer and before the write.

Then the next operation on the account runs in another process, and a last refresh
probes the login. Figures per backend and fault: refreshes answered, tokens lost,
second presentations of a refresh token, families revoked; the last three must be 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from shared_stores import BACKENDS
from stress_profile import record, scale
from tcp_proxy import TcpProxy
from window_workers import next_operation, refresh_killed_in_the_window
from write_faults import WriteFails

from webex_tokens.backends.fernet import FernetStore
from webex_tokens.backends.file import FileStore
from webex_tokens.errors import ReauthorizationRequired, StoreError
from webex_tokens.locks import interprocess_lock
from webex_tokens.oauth import WebexOAuth
from webex_tokens.refresh import ensure_fresh
from webex_tokens.registry import open_url
from webex_tokens.store import BaseStore
from webex_tokens.testing.fake_webex import FakeWebex, RequestRecord
from webex_tokens.testing.processes import start_workers, worker_context
from webex_tokens.token import Token

pytestmark = pytest.mark.skipif(os.name != "posix", reason="uses SIGKILL and a fork server")

NAME = "alice@example.com"
#: Faults per backend and kind: 1 in CI, 10 in the full profile.
ROUNDS = scale(1, 10)
LOCK_TIMEOUT = 1


class Window:
    """FakeWebex with rotation and reuse detection, counting every refresh and running
    a fault once, in the window: after Webex has answered, before the answer is sent."""

    def __init__(self, fake: FakeWebex) -> None:
        self.fake = fake
        fake.rotate_refresh_tokens = True
        self.records: list[RequestRecord] = []
        self.fault: Callable[[], None] | None = None
        self.injected = 0
        self.errors: list[BaseException] = []
        self.lost = 0
        fake.on_request = self._seen

    def _seen(self, request: RequestRecord) -> None:
        if request.grant_type != "refresh_token":
            return
        self.records.append(request)
        fault, self.fault = self.fault, None
        if request.status == 200 and fault is not None:
            try:
                fault()
                self.injected += 1
            except BaseException as exc:  # reported by the test, not lost in the server
                self.errors.append(exc)

    def arm(self, fault: Callable[[], None]) -> None:
        self.fault = fault

    @property
    def answered(self) -> int:
        return sum(request.status == 200 for request in self.records)

    @property
    def second_presentations(self) -> int:
        credentials = [request.credential for request in self.records]
        return len(credentials) - len(set(credentials))

    def oauth(self) -> WebexOAuth:
        fake = self.fake
        return WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url, backoff=0)

    def expired_login(self) -> Token:
        """A new login (a family of its own) whose access token has expired."""
        month_ago = datetime.now(timezone.utc) - timedelta(days=30)
        fake = self.fake
        return Token.from_response(
            fake.issue_token(NAME), now=month_ago, client_id=fake.client_id, account=NAME
        )

    def next_operation_elsewhere(self, url: str) -> tuple[Any, ...]:
        """The next operation on the account, in another process."""
        fake = self.fake
        results: Any = worker_context("forkserver").Queue()
        args = (url, NAME, fake.base_url, fake.client_id, fake.client_secret, results)
        group = start_workers([(next_operation, args)], method="forkserver")
        outcome: tuple[Any, ...] = results.get(timeout=60)
        group.finish(timeout=60)
        return outcome

    def probe(self, url: str) -> None:
        """Refresh once more: a login whose refresh token was lost is revoked here."""
        with open_url(url) as store:
            try:
                ensure_fresh(store, NAME, self.oauth(), force=True)
            except ReauthorizationRequired:
                self.lost += 1

    def check(self, backend: str, fault: str, rounds: int) -> None:
        assert not self.errors, f"the fault itself failed: {self.errors!r}"
        assert self.injected == rounds, f"the fault ran {self.injected} of {rounds} times"
        figures = {
            "refreshes_answered": self.answered,
            "tokens_lost": self.lost,
            "second_refreshes": self.second_presentations,
            "families_revoked": self.fake.revoked_families,
        }
        record("refresh window", backend=backend, fault=fault, rounds=rounds, **figures)
        assert (self.lost, self.second_presentations, self.fake.revoked_families) == (0, 0, 0)
        assert self.answered == 2 * rounds  # the refresh in the window, and the probe


@pytest.fixture
def window(fake_webex: FakeWebex) -> Iterator[Window]:
    yield Window(fake_webex)
    fake_webex.on_request = None


def backend_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["backend_url"])


def stored_again(window: Window, url: str) -> None:
    """The next operation, elsewhere, finds the refreshed token without refreshing."""
    answered = window.answered
    outcome = window.next_operation_elsewhere(url)
    assert outcome[0] == "ok", outcome
    with open_url(url) as store:
        token = store.get(NAME)
    assert token is not None and token.access_token == outcome[1]
    assert not token.is_expired() and window.answered == answered


# -- every backend: the write fails ---------------------------------------------------


def _failing(store: BaseStore) -> tuple[BaseStore, WriteFails]:
    """``store`` with its next two writes refused (the write and the immediate retry)."""
    if isinstance(store, FernetStore):
        inner = WriteFails(store.inner, failures=2)
        return FernetStore(inner), inner
    failing = WriteFails(store, failures=2)
    return failing, failing


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_a_failed_write_after_the_answer_loses_nothing(
    backend_url: str, window: Window, request: pytest.FixtureRequest
) -> None:
    for _ in range(ROUNDS):
        with open_url(backend_url) as store:
            store.put(NAME, window.expired_login())
            broken, inner = _failing(store)
            window.arm(lambda: None)  # the fault is the write itself
            with pytest.raises(StoreError, match="not lost"):
                ensure_fresh(broken, NAME, window.oauth())
            assert inner.refused == 2
        stored_again(window, backend_url)
        window.probe(backend_url)
    window.check(backend_of(request), "the write fails", ROUNDS)


# -- every backend: SIGKILL between the journal and the write ---------------------------


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_a_process_killed_between_the_answer_and_the_commit_loses_nothing(
    backend_url: str, window: Window, request: pytest.FixtureRequest
) -> None:
    fake = window.fake
    context: Any = worker_context("forkserver")
    for _ in range(ROUNDS):
        with open_url(backend_url) as store:
            store.put(NAME, window.expired_login())
        journaled = context.Event()
        window.arm(lambda: None)  # the fault is the kill below
        args = (backend_url, NAME, fake.base_url, fake.client_id, fake.client_secret, journaled)
        group = start_workers([(refresh_killed_in_the_window, args)], method="forkserver")
        (process,) = group.processes
        assert journaled.wait(60), "the refresh never reached the journal"
        os.kill(process.pid, signal.SIGKILL)
        process.join(30)
        assert process.exitcode == -signal.SIGKILL
        stored_again(window, backend_url)
        window.probe(backend_url)
    window.check(backend_of(request), "SIGKILL after the answer", ROUNDS)


# -- PostgreSQL and MariaDB: the session is killed ----------------------------------------


def _kill_sessions(server: str, ports: list[int]) -> None:
    """Kill the database sessions whose client port is one of ``ports``."""
    assert ports, "the proxy has no connection to the server"
    engine = sa.create_engine(server)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                killed = connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE client_port = ANY(:ports) AND pid <> pg_backend_pid()"
                    ),
                    {"ports": ports},
                ).all()
                assert killed and all(ok for (ok,) in killed), killed
            else:
                ids = [
                    session_id
                    for (session_id, host) in connection.execute(
                        sa.text("SELECT ID, HOST FROM information_schema.PROCESSLIST")
                    )
                    if host and host.rpartition(":")[2] in {str(port) for port in ports}
                ]
                assert ids, "no MariaDB session of the proxy"
                for session_id in ids:
                    connection.execute(sa.text(f"KILL {int(session_id)}"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend_url", ["postgresql", "mariadb"], indirect=True)
def test_a_killed_database_session_loses_nothing(
    backend_url: str, window: Window, request: pytest.FixtureRequest
) -> None:
    parsed = sa.make_url(backend_url)
    server = parsed.set(query={}).render_as_string(hide_password=False)
    with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 0) as proxy:
        url = parsed.set(
            host="127.0.0.1",
            port=proxy.port,
            query={
                **parsed.query,
                "lock_timeout": str(LOCK_TIMEOUT),
                "connect_timeout": "2",
            },
        ).render_as_string(hide_password=False)
        for _ in range(ROUNDS):
            with open_url(url) as store:
                store.put(NAME, window.expired_login())
                window.arm(lambda: _kill_sessions(server, proxy.upstream_ports()))
                # The write fails on its dead connection; the journal's immediate retry
                # usually stores it on a new one, else the next operation does.
                with contextlib.suppress(StoreError):
                    ensure_fresh(store, NAME, window.oauth())
            stored_again(window, url)
            window.probe(url)
    window.check(backend_of(request), "session killed", ROUNDS)


# -- SQLite and file: another writer holds the write lock past the timeout ---------------


@contextlib.contextmanager
def _held_for_a_while(take: Callable[[], Callable[[], None]]) -> Iterator[Callable[[], None]]:
    """A fault that takes a lock in the window; yields what releases it."""
    releases: list[Callable[[], None]] = []

    def release() -> None:
        while releases:
            releases.pop()()

    try:
        yield lambda: releases.append(take())
    finally:
        release()


def _sqlite_write_lock(path: Path) -> Callable[[], None]:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("BEGIN IMMEDIATE")

    def release() -> None:
        connection.rollback()
        connection.close()

    return release


def _file_write_lock(path: Path) -> Callable[[], None]:
    stack = contextlib.ExitStack()
    # The store's own lock file, as the store names it.
    stack.enter_context(interprocess_lock(FileStore(path).lock_path, LOCK_TIMEOUT))
    return stack.close


@pytest.mark.parametrize("backend_url", ["sqlite", "file"], indirect=True)
def test_a_write_lock_held_past_the_timeout_loses_nothing(
    backend_url: str, window: Window, request: pytest.FixtureRequest
) -> None:
    backend = backend_of(request)
    url = f"{backend_url}?lock_timeout={LOCK_TIMEOUT}"
    path = Path(backend_url.partition(":///" if backend == "sqlite" else "://")[2])
    lock = _sqlite_write_lock if backend == "sqlite" else _file_write_lock
    for _ in range(ROUNDS):
        with open_url(url) as store:
            store.put(NAME, window.expired_login())
        with _held_for_a_while(lambda: lock(path)) as take, open_url(url) as store:
            window.arm(take)
            started = time.monotonic()
            with pytest.raises(StoreError, match="not lost"):
                ensure_fresh(store, NAME, window.oauth())
            assert time.monotonic() - started >= LOCK_TIMEOUT
        stored_again(window, url)
        window.probe(url)
    window.check(backend, "write lock held", ROUNDS)


# -- Redis and Vault: the lease is lost -------------------------------------------------

#: How long the other owner keeps the lease it took over (seconds).
TAKEOVER = 1.5


def _take_over_redis(url: str) -> Callable[[], None]:
    import redis

    from webex_tokens.backends.redis import RedisStore

    def take_over() -> None:
        with RedisStore.from_url(url) as store:
            client = redis.Redis.from_url(url.partition("?")[0])
            try:
                client.set(
                    f"{store.prefix}:lease:{NAME}", "other-host/1/abc", px=int(TAKEOVER * 1000)
                )
            finally:
                client.close()

    return take_over


def _take_over_vault(url: str, request: pytest.FixtureRequest) -> Callable[[], None]:
    server = request.getfixturevalue("openbao")
    folder = url.partition("/secret/")[2].partition("?")[0]

    def take_over() -> None:
        # A new lock version naming another owner, and the record rewritten past the
        # version this update read: what a takeover after a lapse does.
        server.client().secrets.kv.v2.create_or_update_secret(
            path=f"{folder}/.locks/{NAME}",
            secret={"owner": "other-host/1/abc", "ttl": TAKEOVER},
            mount_point="secret",
        )
        with open_url(url) as store:
            stored = store.get(NAME)
            assert stored is not None
            store.put(NAME, stored)

    return take_over


@pytest.mark.parametrize("backend_url", ["redis", "vault"], indirect=True)
def test_a_lease_lost_after_the_answer_loses_nothing(
    backend_url: str, window: Window, request: pytest.FixtureRequest
) -> None:
    backend = backend_of(request)
    url = f"{backend_url}{'&' if '?' in backend_url else '?'}lock_timeout=0.3"
    take_over = _take_over_redis(url) if backend == "redis" else _take_over_vault(url, request)
    for _ in range(ROUNDS):
        with open_url(url) as store:
            store.put(NAME, window.expired_login())
            window.arm(take_over)
            with pytest.raises(StoreError, match="not lost") as caught:
                ensure_fresh(store, NAME, window.oauth())
            assert type(caught.value).__name__ == "LockLost"
        time.sleep(TAKEOVER + 1)  # the other owner's lease lapses (Vault: to the second)
        stored_again(window, url)
        window.probe(url)
    window.check(backend, "lease lost", ROUNDS)


# -- the answer never arrives: never resent (issue 12 #3) ---------------------------------


def test_a_refresh_whose_answer_is_cut_off_is_not_sent_again(
    window: Window, tmp_path: Path
) -> None:
    from webex_tokens.errors import TokenEndpointError
    from webex_tokens.journal import journal_directory
    from webex_tokens.keeper import Keeper

    fake = window.fake
    url = f"sqlite:///{tmp_path}/tokens.db"
    login = window.expired_login()
    with open_url(url) as store:
        store.put(NAME, login)
    with TcpProxy("127.0.0.1", fake.port) as proxy:
        oauth = WebexOAuth(
            fake.client_id,
            fake.client_secret,
            base_url=f"http://127.0.0.1:{proxy.port}/v1",
            max_retries=3,
            backoff=0,
        )
        window.arm(proxy.cut)  # Webex has used the refresh token; its answer is lost
        with Keeper(url, oauth=oauth) as keeper, pytest.raises(TokenEndpointError) as caught:
            keeper.current(NAME)
    error = caught.value
    assert error.delivered is None and "may have used its refresh token" in str(error)
    assert "so it was not sent again" in str(error)
    assert len(window.records) == 1 and window.second_presentations == 0
    assert fake.revoked_families == 0
    with open_url(url) as store:
        assert store.get(NAME) == login  # nothing to keep: no answer came
    assert not list(journal_directory().glob("*.json"))
    record(
        "refresh window",
        backend="sqlite",
        fault="answer cut off",
        refreshes_sent=len(window.records),
        second_refreshes=window.second_presentations,
        families_revoked=fake.revoked_families,
    )


def test_a_timed_out_refresh_reads_the_store_again_and_uses_a_token_stored_meanwhile(
    window: Window, tmp_path: Path
) -> None:
    from webex_tokens.keeper import Keeper

    fake = window.fake
    url = f"sqlite:///{tmp_path}/tokens.db"
    with open_url(url) as store:
        store.put(NAME, window.expired_login())
    elsewhere = Token.from_response(fake.issue_token(NAME), client_id=fake.client_id, account=NAME)

    def another_host_stores_a_token() -> None:
        with open_url(url) as store:
            store.put(NAME, elsewhere)

    fake.delay = 0.6
    oauth = WebexOAuth(
        fake.client_id,
        fake.client_secret,
        base_url=fake.base_url,
        timeout=0.3,
        max_retries=3,
        backoff=0,
    )
    # While the refresh waits for its answer, a process that does not share the lock
    # (another host on another store URL, a login) stores a token.
    meanwhile = threading.Timer(0.1, another_host_stores_a_token)
    meanwhile.start()
    with Keeper(url, oauth=oauth) as keeper:
        started = time.monotonic()
        assert keeper.current(NAME) == elsewhere
        assert time.monotonic() - started < 0.6  # one attempt of 0.3 s, never a second
    meanwhile.join()
    time.sleep(fake.delay)
    assert len(window.records) == 1 and window.second_presentations == 0
    assert fake.revoked_families == 0
