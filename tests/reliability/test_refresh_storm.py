"""Refresh storms: 32 real processes find the same expired token, round after round.

The processes start once per backend and meet at a barrier for each round. Before a
round the parent stores an expired copy of the current token and makes the emulator
forget every access token, so every process must get a fresh one. FakeWebex rotates
refresh tokens and revokes the whole login when a rotated-away refresh token comes back,
so a second refresh in any round would show as an extra refresh call, as a revoked
family, and as processes ending the round with different access tokens.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from stress_profile import record, scale

from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.processes import refresh_storm_worker, start_workers, worker_context
from webex_tokens.token import Token

NAME = "alice@example.com"
ROUNDS = 5
STORM_BACKENDS = (
    "file",
    "sqlite",
    "postgresql",
    "mariadb",
    "keyring",
    "redis",
    "fernet+redis",
    "vault",
    "fernet+vault",
)


def processes_for(backend: str) -> int:
    """32 (the processes fork from a preloaded server in milliseconds, so a 32 x 5 storm
    takes seconds); in CI 16 on the keyring, to spare the shared Secret Service daemon."""
    return scale(16, 32) if backend == "keyring" else 32


@pytest.mark.slow
@pytest.mark.parametrize("backend_url", STORM_BACKENDS, indirect=True)
def test_one_refresh_per_round_for_every_process(
    backend_url: str, fake_webex: FakeWebex, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["backend_url"]
    processes = processes_for(backend)
    fake_webex.rotate_refresh_tokens = True
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    first = Token.from_response(
        fake_webex.issue_token(), now=month_ago, client_id=fake_webex.client_id, account=NAME
    )
    with open_url(backend_url) as store:
        store.put(NAME, first)

    context = worker_context("forkserver")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    args = (
        backend_url,
        NAME,
        fake_webex.base_url,
        fake_webex.client_id,
        fake_webex.client_secret,
        ROUNDS,
        barrier,
        results,
    )
    workers = start_workers([(refresh_storm_worker, args)] * processes, method="forkserver")
    rounds: list[dict[str, float]] = []
    try:
        for round_number in range(ROUNDS):
            with open_url(backend_url) as store:
                current = store.get(NAME)
                assert current is not None
                expired = current.replace(expires_at=datetime.now(timezone.utc) - timedelta(1))
                store.put(NAME, expired)
            fake_webex.expire_access_tokens()
            started = time.monotonic()
            barrier.wait(120)  # the expired token is in place: read it
            barrier.wait(120)  # everyone holds the expired token: refresh
            answers = [results.get(timeout=120) for _ in range(processes)]
            elapsed = time.monotonic() - started
            with open_url(backend_url) as store:
                stored = store.get(NAME)
            assert stored is not None and not stored.is_expired(leeway=3600)
            assert {number for number, _ in answers} == {round_number}
            assert {token for _, token in answers} == {stored.access_token}
            assert stored.access_token != expired.access_token
            assert stored.refresh_token != expired.refresh_token  # rotated, and saved
            assert fake_webex.calls["refresh_token"] == round_number + 1
            assert fake_webex.revoked_families == 0
            distinct = len({token for _, token in answers})
            rounds.append({"seconds": round(elapsed, 2), "distinct": distinct})
    except BaseException:
        barrier.abort()
        workers.finish(timeout=60)  # raises with the workers' tracebacks if they failed
        raise
    workers.finish(timeout=60)

    oauth = WebexOAuth(fake_webex.client_id, fake_webex.client_secret, base_url=fake_webex.base_url)
    assert stored is not None
    assert oauth.whoami(stored) == fake_webex.user  # the last token works at Webex
    record(
        "refresh-storm",
        backend=backend,
        processes=processes,
        rounds=ROUNDS,
        refresh_calls=fake_webex.calls["refresh_token"],
        revoked_families=fake_webex.revoked_families,
        most_access_tokens_in_a_round=max(r["distinct"] for r in rounds),
        seconds_per_round=[r["seconds"] for r in rounds],
    )
