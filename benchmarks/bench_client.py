"""A cached ``WebexClient.access_token`` read: no store, no network, under a microsecond.

The client runs against FakeWebex with its store wrapped in a counter, so the run proves
that the reads touched neither. The baseline is a plain Python property returning a
string: the floor for any computed attribute.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from typing import Any

from harness import Config, Goal, Section, latency, make_token, ops, ratio

from webex_tokens import Token, WebexClient
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.oauth import WebexOAuth
from webex_tokens.store import TokenStore, TokenUpdate
from webex_tokens.testing.fake_webex import FakeWebex

GOAL_SECONDS = 1e-6


class CountingStore(MemoryStore):
    """A memory store that counts every call made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def get(self, name: str) -> Token | None:
        self.calls += 1
        return super().get(name)

    def put(self, name: str, token: Token) -> None:
        self.calls += 1
        super().put(name, token)

    def update(self, name: str, fn: TokenUpdate) -> Token | None:
        self.calls += 1
        return super().update(name, fn)

    def names(self) -> list[str]:
        self.calls += 1
        return super().names()


class _Plain:
    def __init__(self, value: str) -> None:
        self._value = value

    @property
    def access_token(self) -> str:
        return self._value


def _per_read(statement: Callable[[], Any], number: int, repeat: int) -> list[float]:
    timer = timeit.Timer(statement)
    return [total / number for total in timer.repeat(repeat=repeat, number=number)]


def run(config: Config) -> list[Section]:
    number = 100_000 if config.quick else 1_000_000
    section = Section(
        f"Cached `WebexClient.access_token` read ({number:,} reads per run)",
        ("read", "ops/s", "latency", "store calls", "network calls", "ratio to baseline"),
    )
    with FakeWebex() as fake:
        store: TokenStore = CountingStore()
        store.put("alice@example.com", make_token(1))
        oauth = WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url)
        client = WebexClient(auto_auth=False, store=store, name="alice@example.com", oauth=oauth)
        client.access_token  # noqa: B018 - the first read fills the cache
        assert isinstance(store, CountingStore)
        store_before, network_before = store.calls, sum(fake.calls.values())
        plain = _Plain(client.access_token)
        subject_runs: list[float] = []
        baseline_runs: list[float] = []
        for _ in range(config.repeat):
            subject_runs += _per_read(lambda: client.access_token, number, 1)
            baseline_runs += _per_read(lambda: plain.access_token, number, 1)
        store_calls = store.calls - store_before
        network_calls = sum(fake.calls.values()) - network_before
        client.close()
    subject = statistics.median(subject_runs)
    baseline = statistics.median(baseline_runs)
    section.rows.append(
        [
            "`client.access_token` (cached)",
            ops(subject),
            latency(subject),
            str(store_calls),
            str(network_calls),
            ratio(subject, baseline),
        ]
    )
    section.rows.append(
        ["baseline: a plain property", ops(baseline), latency(baseline), "-", "-", "1.00x"]
    )
    section.notes.append(
        "Both figures include the cost of the timing loop's call of a lambda (about 30 ns)."
    )
    section.goals.append(
        Goal(
            "a cached read costs under 1 µs and touches neither store nor network",
            subject < GOAL_SECONDS and store_calls == 0 and network_calls == 0,
            f"{latency(subject)} per read, {store_calls} store calls, "
            f"{network_calls} network calls over {number * config.repeat:,} reads",
        )
    )
    return [section]
