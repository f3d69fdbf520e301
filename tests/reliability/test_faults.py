"""Faults in the middle of a run: the database vanishes or stops answering, the token
endpoint times out, answers 500, 429 or garbage.

The database faults go through a TCP proxy the test controls (``tcp_proxy.TcpProxy``), so
the shared servers keep running for everyone else; the full profile also stops and starts
the real local PostgreSQL. The token-endpoint faults hit real processes refreshing one
expired token through FakeWebex.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sql_tables import drop_table
from stress_profile import FULL, record
from tcp_proxy import TcpProxy

from webex_tokens.errors import StoreUnavailable, TokenEndpointError
from webex_tokens.oauth import WebexOAuth
from webex_tokens.refresh import ensure_fresh
from webex_tokens.registry import open_url
from webex_tokens.testing import make_token
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.processes import refresh_outcome_worker, start_workers, worker_context
from webex_tokens.token import Token

#: Seconds the stores wait for a connection and for a lock in these tests.
CONNECT_TIMEOUT = 2
LOCK_TIMEOUT = 2
#: The longest an operation may take to fail when the database is gone or silent: the
#: lock wait plus the connect timeout, plus a margin for a busy machine.
FAIL_WITHIN = LOCK_TIMEOUT + CONNECT_TIMEOUT + 4


# -- the database vanishes or stops answering -------------------------------------------


class Proxied:
    """A store reached through a proxy, and a direct connection to check what is stored."""

    def __init__(self, proxy: TcpProxy, url: str, server: str, table: str) -> None:
        self.proxy = proxy
        self.url = url
        self.server = server
        self.table = table

    def stored(self) -> dict[str, tuple[str, int]]:
        """Every row of the table, read directly: name -> (access token, version)."""
        with open_url(f"{self.server}?table={self.table}") as store:
            tokens = {name: token.access_token for name, token in store.items()}  # type: ignore[attr-defined]
        engine = sa.create_engine(self.server)
        try:
            with engine.connect() as connection:
                rows = connection.execute(sa.text(f"SELECT name, version FROM {self.table}"))  # noqa: S608 - our table name
                versions = {
                    (bytes(n).decode() if isinstance(n, (bytes, memoryview)) else n): v
                    for n, v in rows
                }
        finally:
            engine.dispose()
        assert set(versions) == set(tokens), f"rows without a token: {versions}"
        return {name: (tokens[name], versions[name]) for name in tokens}


@pytest.fixture(params=["postgresql", "mariadb"])
def proxied(request: pytest.FixtureRequest, unique_table: str) -> Iterator[Proxied]:
    """A store on a real database server, reached through a TCP proxy the test controls."""
    fixture = "postgres_server" if request.param == "postgresql" else "mysql_server"
    server = str(request.getfixturevalue(fixture))
    parsed = sa.make_url(server)
    with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 0) as proxy:
        url = parsed.set(port=proxy.port).render_as_string(hide_password=False)
        url += f"?table={unique_table}&connect_timeout={CONNECT_TIMEOUT}"
        url += f"&lock_timeout={LOCK_TIMEOUT}"
        try:
            yield Proxied(proxy, url, server, unique_table)
        finally:
            drop_table(server, unique_table)


def fails_quickly(action: Callable[[], object], port: int) -> StoreUnavailable:
    """Run ``action`` in a thread; it must raise StoreUnavailable within FAIL_WITHIN
    seconds (a hang fails the test instead of hanging it)."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(action())
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(FAIL_WITHIN)
    elapsed = time.monotonic() - started
    assert outcome, f"the operation still hung after {elapsed:.0f} s instead of failing"
    (error,) = outcome
    assert isinstance(error, StoreUnavailable), f"expected StoreUnavailable, got {error!r}"
    message = str(error)
    assert (
        f"127.0.0.1:{port}" in message
        or f"127.0.0.1, port {port}" in message
        or (f"@127.0.0.1:{port}/" in message)
    ), message
    assert "running" in message and "reachable" in message, message
    return error


def test_database_gone_mid_run_raises_store_unavailable_then_work_resumes(
    proxied: Proxied,
) -> None:
    called: list[Token | None] = []

    def bump(token: Token | None) -> Token:
        called.append(token)
        return make_token("v2")

    with open_url(proxied.url) as store:
        store.put("alice", make_token("v1"))
        proxied.proxy.cut()
        port = proxied.proxy.port
        for action in (
            lambda: store.get("alice"),
            lambda: store.put("bob", make_token("b1")),
            lambda: store.update("alice", bump),
            lambda: store.delete("alice"),
            store.names,
        ):
            fails_quickly(action, port)
        assert called == [], "update() called its function without holding the row lock"
        assert {n: t for n, (t, _) in proxied.stored().items()} == {"alice": "v1"}

        proxied.proxy.resume()
        assert store.get("alice") == make_token("v1")  # the same store object recovers
        store.put("bob", make_token("b1"))
        store.update("alice", bump)
    assert {n: t for n, (t, _) in proxied.stored().items()} == {"alice": "v2", "bob": "b1"}


def test_connection_lost_inside_update_writes_nothing(proxied: Proxied) -> None:
    with open_url(proxied.url) as store:
        store.put("alice", make_token("v1"))
        before = proxied.stored()

        def cut_then_change(token: Token | None) -> Token:
            proxied.proxy.cut()  # the row lock is held and fn has run: now the link dies
            return make_token("half-written")

        for name in ("alice", "carol"):  # an existing row, and a row being created

            def update(name: str = name) -> object:
                return store.update(name, cut_then_change)

            fails_quickly(update, proxied.proxy.port)
            proxied.proxy.resume()
        # No new token, no version bump, no placeholder row for carol.
        assert proxied.stored() == before
        store.update("alice", lambda token: make_token("v3"))
        store.update("carol", lambda token: make_token("c1"))
    after = proxied.stored()
    assert after["alice"] == ("v3", before["alice"][1] + 1)
    assert after["carol"] == ("c1", 1)


def test_database_that_stops_answering_fails_within_the_timeouts(proxied: Proxied) -> None:
    with open_url(proxied.url) as store:
        store.put("alice", make_token("v1"))
        proxied.proxy.hang()
        port = proxied.proxy.port
        fails_quickly(lambda: open_url(proxied.url), port)  # a new connection
        fails_quickly(lambda: store.get("alice"), port)  # a connection already open
        proxied.proxy.cut()  # drop the silent connections, as the server's death would
        proxied.proxy.resume()
        assert store.get("alice") == make_token("v1")
        store.put("alice", make_token("v2"))
    assert proxied.stored()["alice"][0] == "v2"


# -- the real PostgreSQL restarted (full profile: it stops the shared server) -------------


def _pg_cluster() -> tuple[str, str] | None:
    if not FULL or shutil.which("pg_ctlcluster") is None or not hasattr(os, "geteuid"):
        return None
    versions = sorted(Path("/etc/postgresql").glob("*/main"))
    if os.geteuid() != 0 or not versions:
        return None
    return versions[-1].parent.name, "main"


def _pg_ctl(action: str, cluster: tuple[str, str]) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action, "-m", "fast"]
        if action == "stop"
        else ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    _pg_cluster() is None,
    reason="restarts the local PostgreSQL: full profile (scripts/stress) as root only",
)
def test_postgresql_restarted_mid_run(postgres_server: str, unique_table: str) -> None:
    cluster = _pg_cluster()
    assert cluster is not None
    url = f"{postgres_server}?table={unique_table}&connect_timeout={CONNECT_TIMEOUT}"
    started = time.monotonic()
    try:
        with open_url(url) as store:
            store.put("alice", make_token("v1"))
            _pg_ctl("stop", cluster)
            try:
                with pytest.raises(StoreUnavailable, match="running"):
                    store.get("alice")
                with pytest.raises(StoreUnavailable, match="running"):
                    store.put("bob", make_token())
            finally:
                _pg_ctl("start", cluster)
            deadline = time.monotonic() + 60
            while True:  # the server takes a moment to accept connections again
                try:
                    token = store.get("alice")
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline, "PostgreSQL did not come back"
                    time.sleep(0.5)
            assert token == make_token("v1")
            store.update("alice", lambda current: make_token("v2"))
            assert store.get("alice") == make_token("v2")
            assert store.names() == ["alice"]
    finally:
        if _pg_cluster() is not None:
            subprocess.run(  # whatever happened, leave the server running
                ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "start"],
                capture_output=True,
                timeout=120,
                check=False,
            )
        drop_table(postgres_server, unique_table)
    elapsed = round(time.monotonic() - started, 1)
    record("faults", case="postgresql stopped and started mid-run", seconds=elapsed)


# -- the token endpoint misbehaves while processes refresh -----------------------------

NAME = "alice@example.com"
PROCESSES = 8


def expired_token(fake: FakeWebex) -> Token:
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    return Token.from_response(
        fake.issue_token(), now=month_ago, client_id=fake.client_id, account=NAME
    )


def storm(
    fake: FakeWebex, url: str, timeout: float, during: Callable[[list[Any]], None] | None = None
) -> list[Any]:
    """Let PROCESSES processes ensure a fresh token at once; return their outcomes."""
    results = worker_context("forkserver").Queue()
    args = (url, NAME, fake.base_url, fake.client_id, fake.client_secret, timeout, results)
    group = start_workers([(refresh_outcome_worker, args)] * PROCESSES, method="forkserver")
    outcomes: list[Any] = []
    for _ in range(PROCESSES):
        outcomes.append(results.get(timeout=120))
        if during is not None:
            during(outcomes)
    group.finish(timeout=60)
    return outcomes


@pytest.fixture
def fault_store(tmp_path: Path, fake_webex: FakeWebex) -> tuple[str, Token]:
    """An SQLite store holding an expired token whose refresh token Webex rotates."""
    fake_webex.rotate_refresh_tokens = True
    url = f"sqlite:///{tmp_path}/tokens.db"
    expired = expired_token(fake_webex)
    with open_url(url) as store:
        store.put(NAME, expired)
    return url, expired


def stored(url: str) -> Token | None:
    with open_url(url) as store:
        return store.get(NAME)


def fresh_for_everyone(outcomes: list[Any], url: str, expired: Token) -> Token:
    """Every outcome is ok with the stored token, which is a fresh one."""
    token = stored(url)
    assert token is not None and token.access_token != expired.access_token
    assert not token.is_expired(leeway=3600)
    assert outcomes == [("ok", token.access_token)] * len(outcomes)
    return token


@pytest.mark.parametrize(("status", "times", "retry_after"), [(503, 2, 0.2), (429, 1, 1.0)])
def test_endpoint_errors_are_retried_within_the_single_flight(
    fake_webex: FakeWebex,
    fault_store: tuple[str, Token],
    status: int,
    times: int,
    retry_after: float | None,
) -> None:
    url, expired = fault_store
    fake_webex.fail_next(status, times=times, retry_after=retry_after)
    started = time.monotonic()
    outcomes = storm(fake_webex, url, timeout=10)
    fresh_for_everyone(outcomes, url, expired)
    assert fake_webex.calls["refresh_token"] == times + 1  # retries of the one refresh
    assert fake_webex.revoked_families == 0
    if retry_after is not None:
        assert time.monotonic() - started >= retry_after


def test_server_error_fails_one_process_and_the_next_one_refreshes(
    fake_webex: FakeWebex, fault_store: tuple[str, Token]
) -> None:
    # A 500 without Retry-After does not say whether Webex used the refresh token: the
    # holder does not send it again; the next process (the emulator did not use it)
    # refreshes with the stored one.
    url, expired = fault_store
    fake_webex.fail_next(500)
    outcomes = storm(fake_webex, url, timeout=10)
    errors = [o for o in outcomes if o[0] == "error"]
    assert len(errors) == 1 and errors[0][1] == "TokenEndpointError"
    assert "failed with HTTP 500" in errors[0][2]
    assert "may have used its refresh token" in errors[0][2]
    fresh_for_everyone([o for o in outcomes if o[0] == "ok"], url, expired)
    assert fake_webex.calls["refresh_token"] == 2
    assert fake_webex.revoked_families == 0


def test_garbage_answer_fails_one_process_and_the_next_one_refreshes(
    fake_webex: FakeWebex, fault_store: tuple[str, Token]
) -> None:
    url, expired = fault_store
    fake_webex.fail_next(200, body=b"<html>proxy error page</html>")
    outcomes = storm(fake_webex, url, timeout=10)
    errors = [o for o in outcomes if o[0] == "error"]
    assert len(errors) == 1
    assert errors[0][1] == "TokenEndpointError" and "not a JSON object" in errors[0][2]
    assert "proxy error page" not in errors[0][2]  # the body is never echoed
    fresh_for_everyone([o for o in outcomes if o[0] == "ok"], url, expired)
    assert fake_webex.calls["refresh_token"] == 2
    assert fake_webex.revoked_families == 0


def test_endpoint_down_for_everyone_leaves_the_token_untouched(
    fake_webex: FakeWebex, fault_store: tuple[str, Token]
) -> None:
    url, expired = fault_store
    attempts = PROCESSES  # each process: one try, a 500 is not sent again
    fake_webex.fail_next(500, times=attempts)
    outcomes = storm(fake_webex, url, timeout=10)
    assert {o[:2] for o in outcomes} == {("error", "TokenEndpointError")}
    assert all("failed with HTTP 500" in o[2] for o in outcomes)
    assert fake_webex.calls["refresh_token"] == attempts
    assert stored(url) == expired  # nothing half-written
    # Webex is back: the next refresh works, with the refresh token that was kept.
    outcomes = storm(fake_webex, url, timeout=10)
    fresh_for_everyone(outcomes, url, expired)
    assert fake_webex.revoked_families == 0


def test_endpoint_timing_out_fails_the_holder_then_the_next_one_refreshes(
    fake_webex: FakeWebex, fault_store: tuple[str, Token]
) -> None:
    # Webex keeps the refresh token on refresh; the emulator does the same here, so a
    # refresh the client gave up on does not use the refresh token up.
    fake_webex.rotate_refresh_tokens = False
    url, expired = fault_store
    fake_webex.delay = 1.0

    def heal(outcomes: list[Any]) -> None:
        fake_webex.delay = 0.0  # the first process has given up: Webex recovers

    outcomes = storm(fake_webex, url, timeout=0.3, during=heal)
    errors = [o for o in outcomes if o[0] == "error"]
    assert errors and all(o[1] == "TokenEndpointError" for o in errors)
    assert all("did not answer within 0.3 seconds" in o[2] for o in errors)
    fresh_for_everyone([o for o in outcomes if o[0] == "ok"], url, expired)
    assert len(errors) < PROCESSES
    assert fake_webex.revoked_families == 0


def test_timed_out_refresh_of_a_rotating_token_is_not_presented_again(
    fake_webex: FakeWebex, fault_store: tuple[str, Token]
) -> None:
    # With rotating refresh tokens, a refresh the server completes after the client
    # gave up has used the stored refresh token: presenting it again would make the
    # server revoke the whole login. So a timed-out refresh is never resent: the error
    # says Webex may have used the refresh token, and the family stays alive.
    url, expired = fault_store
    fake_webex.delay = 0.6  # the answer comes after the client gave up
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        base_url=fake_webex.base_url,
        timeout=0.3,
        max_retries=3,
        backoff=0.05,
    )
    with open_url(url) as store:
        with pytest.raises(TokenEndpointError) as caught:
            ensure_fresh(store, NAME, oauth)
        assert store.get(NAME) == expired
    assert caught.value.delivered is None
    assert "may have used its refresh token" in str(caught.value)
    time.sleep(0.6)  # the emulator finishes the refresh the client gave up on
    assert fake_webex.calls["refresh_token"] == 1
    assert fake_webex.revoked_families == 0
