"""Across hosts: refresh storms from three hosts, and a host cut off in mid-refresh.

Three hosts are network namespaces on a private bridge (:mod:`webex_tokens.testing.hosts`),
each with its own address; PostgreSQL, Redis and an OpenBao server on this machine's
loopback are reached through TCP forwarders on the bridge, and FakeWebex listens on the
bridge itself. Every host runs its own processes (``host_agent.py``), driven by the test
over pipes.

- **Storm**: 8 processes on each of the 3 hosts hold the same expired token and refresh
  together, round after round. FakeWebex rotates refresh tokens and revokes the whole
  login when a used one comes back, so any second refresh would show.
- **Partition**: host 1 takes the account's lock and asks Webex for a new token; while
  Webex answers, host 1's link goes down, for longer than the lease. Host 2 then needs
  the token. On the lease engines (Redis, Vault) host 2 takes over once the lease has
  lapsed, and host 1's late write, when its link is back, is refused by the fence; the
  rescue journal keeps host 1's token, which host 1 then stores under a lease of its
  own. On PostgreSQL host 2 waits for the row lock, which host 1 keeps through the cut.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hosts_driver import Agent, on_gateway
from sql_tables import drop_table
from stress_profile import FULL, record, scale

from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.hosts import HostNetwork
from webex_tokens.testing.servers import OpenBaoServer
from webex_tokens.token import Token

NAME = "alice@example.com"
ENGINES = ("postgresql", "redis", "vault")
PROCESSES_PER_HOST = 8
#: The lease of the partition test: short, so the test waits little for it to lapse.
LEASE_TTL = 1.0


@pytest.fixture
def engine_urls(
    request: pytest.FixtureRequest, host_network: HostNetwork, unique_table: str
) -> Iterator[tuple[str, str]]:
    """``(url for this process, url for the hosts)`` of an empty store of the engine named
    by the (indirect) parameter; options from ``request.param[1:]`` are appended."""
    engine, *options = request.param
    table = None
    if engine == "postgresql":
        server = str(request.getfixturevalue("postgres_server"))
        table = unique_table
        url = f"{server}?table={table}"
    elif engine == "redis":
        url = str(request.getfixturevalue("redis_url"))
    else:
        bao: OpenBaoServer = request.getfixturevalue("openbao")
        url = str(request.getfixturevalue("vault_url"))
        if str(bao.port) not in {str(port) for port in host_network.describe()["forwarded_ports"]}:
            host_network.expose(bao.port)
    if options:
        url += ("&" if "?" in url else "?") + "&".join(options)
    try:
        yield url, on_gateway(url, host_network)
    finally:
        if table is not None:
            drop_table(server, table)


@pytest.fixture
def webex(host_network: HostNetwork) -> Iterator[FakeWebex]:
    """FakeWebex on the bridge, rotating refresh tokens with reuse detection."""
    with FakeWebex(host=host_network.gateway, rotate_refresh_tokens=True) as fake:
        yield fake


def _expired_copy(url: str) -> Token:
    with open_url(url) as store:
        current = store.get(NAME)
        assert current is not None
        expired = current.replace(expires_at=datetime.now(timezone.utc) - timedelta(days=1))
        store.put(NAME, expired)
    return expired


def _first_token(url: str, fake: FakeWebex) -> None:
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    first = Token.from_response(
        fake.issue_token(), now=month_ago, client_id=fake.client_id, account=NAME
    )
    with open_url(url) as store:
        store.put(NAME, first)


def _config(host_url: str, fake: FakeWebex, **more: Any) -> dict[str, Any]:
    return {
        "url": host_url,
        "name": NAME,
        "base_url": fake.base_url,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        **more,
    }


def _stored(url: str) -> Token:
    with open_url(url) as store:
        token = store.get(NAME)
    assert token is not None
    return token


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine_urls", [(engine,) for engine in ENGINES], indirect=True, ids=ENGINES
)
def test_one_refresh_per_round_across_three_hosts(
    engine_urls: tuple[str, str], host_network: HostNetwork, webex: FakeWebex
) -> None:
    url, host_url = engine_urls
    rounds = scale(3, 20)
    _first_token(url, webex)
    config = _config(host_url, webex, mode="storm", processes=PROCESSES_PER_HOST, rounds=rounds)
    hosts = [Agent(host, config) for host in host_network.hosts]
    seconds = []
    try:
        for agent in hosts:
            assert agent.answer()["event"] == "started"
        for number in range(rounds):
            expired = _expired_copy(url)
            webex.expire_access_tokens()
            started = time.monotonic()
            for agent in hosts:
                agent.send(round=number)
            for agent in hosts:
                assert agent.answer()["event"] == "ready"
            for agent in hosts:
                agent.send(go=number)
            outcomes = [outcome for agent in hosts for outcome in agent.answer()["outcomes"]]
            seconds.append(round(time.monotonic() - started, 2))
            stored = _stored(url)
            assert outcomes == [["ok", stored.access_token]] * len(outcomes)
            assert len(outcomes) == PROCESSES_PER_HOST * len(hosts)
            assert stored.refresh_token != expired.refresh_token  # rotated, and kept
            assert webex.calls["refresh_token"] == number + 1
            assert webex.revoked_families == 0
    finally:
        for agent in hosts:
            agent.close()
    oauth = WebexOAuth(webex.client_id, webex.client_secret, base_url=webex.base_url)
    assert oauth.whoami(_stored(url)) == webex.user  # the last token works at Webex
    record(
        "hosts-storm",
        backend=url.split(":", 1)[0].split("+")[0],
        hosts=len(hosts),
        processes=PROCESSES_PER_HOST * len(hosts),
        rounds=rounds,
        refresh_calls=webex.calls["refresh_token"],
        revoked_families=webex.revoked_families,
        tokens_lost=0,
        seconds_per_round=seconds,
    )


# -- partitions ------------------------------------------------------------------------------

#: (engine, rotating refresh tokens): run in every test run; the others with the full counts.
PARTITIONS_CI = {("postgresql", True), ("redis", False), ("vault", False), ("redis", True)}
PARTITIONS = [
    pytest.param(
        (engine, f"lease_ttl={LEASE_TTL:g}", "lock_timeout=60")
        if engine != "postgresql"
        else (engine, "lock_timeout=60"),
        rotating,
        id=f"{engine}-{'rotating' if rotating else 'webex'}",
        marks=[] if FULL or (engine, rotating) in PARTITIONS_CI else [pytest.mark.skip("full")],
    )
    for engine in ENGINES
    for rotating in (False, True)
]


def _wait_for_refresh_call(fake: FakeWebex, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while fake.calls["refresh_token"] < count:
        assert time.monotonic() < deadline, "host 1 never asked for a new token"
        time.sleep(0.005)


def _cut_off_in_mid_refresh(
    network: HostNetwork, fake: FakeWebex, config: dict[str, Any], *, lease_engine: bool
) -> tuple[list[str], list[str], float]:
    """Host 1 refreshes and is cut off while Webex answers; host 2 then refreshes too.

    Returns both outcomes and how long host 1 was cut off.
    """
    first, second = network.hosts[:2]
    one = Agent(first, config)
    try:
        _wait_for_refresh_call(fake, 1)  # host 1 holds the lock and Webex has the request
        network.cut(first)
        cut_at = time.monotonic()
        time.sleep(LEASE_TTL + 0.5)  # host 1 cannot renew: a lease lapses meanwhile
        two = Agent(second, config)
        try:
            if lease_engine:
                outcome_two = two.answer()["outcomes"][0]  # host 2 took the lease over
                network.restore(first)
                outcome_one = one.answer()["outcomes"][0]
            else:
                assert two.poll(2.0) is None  # host 2 waits for host 1's row lock
                network.restore(first)
                outcome_one = one.answer()["outcomes"][0]
                outcome_two = two.answer()["outcomes"][0]
            return outcome_one, outcome_two, time.monotonic() - cut_at
        finally:
            two.close()
    finally:
        network.restore(first)
        one.close()


@pytest.mark.slow
@pytest.mark.parametrize(("engine_urls", "rotating"), PARTITIONS, indirect=["engine_urls"])
def test_a_host_cut_off_in_mid_refresh(
    engine_urls: tuple[str, str], rotating: bool, host_network: HostNetwork, webex: FakeWebex
) -> None:
    url, host_url = engine_urls
    lease_engine = not url.startswith("postgresql")
    webex.rotate_refresh_tokens = rotating
    webex.delay = 1.0  # Webex takes a second: host 1 is cut off while it answers
    _first_token(url, webex)
    _expired_copy(url)
    webex.expire_access_tokens()
    outcome_one, outcome_two, cut_seconds = _cut_off_in_mid_refresh(
        host_network, webex, _config(host_url, webex, mode="once"), lease_engine=lease_engine
    )

    stored = _stored(url)
    refresh_calls = webex.calls["refresh_token"]
    if not lease_engine:
        # The row lock outlived the cut: host 1's write landed, host 2 adopted it.
        assert outcome_one == ["ok", stored.access_token]
        assert outcome_two == ["ok", stored.access_token]
        assert refresh_calls == 1
        assert webex.revoked_families == 0
        lost = 0
    else:
        # The fence refused host 1's late write (LockLost); the rescue journal kept the
        # token Webex had just issued, and host 1 stored it under a lease of its own,
        # since it is newer than host 2's (see docs/reliability.md).
        assert refresh_calls == 2
        assert outcome_one == ["ok", stored.access_token], outcome_one
        if rotating:
            # Webex had rotated the refresh token for host 1 before the cut; host 2 could
            # only present the old one, which revokes the login (see docs/reliability.md).
            assert webex.revoked_families == 1
            assert outcome_two[:2] == ["error", "ReauthorizationRequired"], outcome_two
        else:
            # As Webex does: the refresh token stays valid, so host 2's refresh works.
            assert webex.revoked_families == 0
            assert outcome_two[0] == "ok", outcome_two
            oauth = WebexOAuth(webex.client_id, webex.client_secret, base_url=webex.base_url)
            assert oauth.whoami(stored) == webex.user
        lost = 0
    record(
        "hosts-partition",
        backend=url.split(":", 1)[0].split("+")[0],
        rotating_refresh_tokens=rotating,
        refresh_calls=refresh_calls,
        revoked_families=webex.revoked_families,
        late_write="refused, then stored from the journal" if lease_engine else "written",
        second_host=outcome_two[1] if outcome_two[0] == "error" else "ok",
        tokens_lost=lost,
        seconds_cut_off=round(cut_seconds, 1),
    )
