"""16 real processes find the same expired token: Webex sees exactly one refresh.

The emulator rotates refresh tokens and revokes the whole login when a rotated-away
refresh token comes back, so a second refresh by any process would show as a revoked
family (and as different access tokens).
"""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from webex_tokens.oauth import WebexOAuth
from webex_tokens.refresh import ensure_fresh
from webex_tokens.registry import open_url
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.processes import run_workers
from webex_tokens.token import Token

WORKERS = 16
NAME = "alice@example.com"


def refresh_worker(  # noqa: PLR0917 - run_workers passes arguments by position
    url: str, base_url: str, client_id: str, client_secret: str, results: Any, start: Any
) -> None:
    """Open the store, wait for the others, then ensure a fresh token; report it."""
    oauth = WebexOAuth(client_id, client_secret, base_url=base_url, timeout=30)
    with open_url(url) as store:
        seen = store.get(NAME)
        start.wait()
        token = ensure_fresh(store, NAME, oauth, seen=seen)
    results.put(token.access_token)


@pytest.fixture(params=["file", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "file":
        yield f"file://{tmp_path}/tokens.json"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/tokens.db"
    else:
        server = request.getfixturevalue("postgres_server")
        table = request.getfixturevalue("unique_table")
        yield f"{server}?table={table}"
        engine = sa.create_engine(server)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()


@pytest.mark.slow
def test_one_refresh_for_sixteen_processes(fake_webex: FakeWebex, store_url: str) -> None:
    fake_webex.rotate_refresh_tokens = True
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    expired = Token.from_response(
        fake_webex.issue_token(), now=month_ago, client_id=fake_webex.client_id, account=NAME
    )
    with open_url(store_url) as store:
        store.put(NAME, expired)

    results = multiprocessing.get_context("spawn").Queue()
    args = (store_url, fake_webex.base_url, fake_webex.client_id, fake_webex.client_secret)
    run_workers(refresh_worker, [(*args, results)] * WORKERS, timeout=180)

    tokens = [results.get(timeout=10) for _ in range(WORKERS)]
    assert fake_webex.calls["refresh_token"] == 1
    assert fake_webex.revoked_families == 0
    with open_url(store_url) as store:
        stored = store.get(NAME)
    assert stored is not None and not stored.is_expired(leeway=3600)
    assert set(tokens) == {stored.access_token}
    assert stored.access_token != expired.access_token
    assert stored.refresh_token != expired.refresh_token  # rotated, and saved
    oauth = WebexOAuth(fake_webex.client_id, fake_webex.client_secret, base_url=fake_webex.base_url)
    assert oauth.whoami(stored) == fake_webex.user
