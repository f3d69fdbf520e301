"""No lost updates: 8 processes increment one token while 8 others put distinct names.

All sixteen run at once on the same store, on every backend. The counter must end at
exactly 8 x N (every ``update`` was a whole read-modify-write under the store's lock) and
every one of the 8 x N names must be there holding its own token (no ``put`` wrote over
another writer's change to a different name).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from shared_stores import BACKENDS
from stress_profile import record, scale

from webex_tokens.registry import open_url
from webex_tokens.testing.processes import (
    count_of,
    increment_worker,
    put_worker,
    start_workers,
)

PROCESSES = 8
#: The server stores with fenced leases, plain and encrypted.
LEASED = ("redis", "fernet+redis", "vault", "fernet+vault")


def writes_per_process(backend: str) -> int:
    """N: 200 in the full profile; fewer in CI, fewest where each write is a D-Bus call."""
    return scale(10 if backend == "keyring" else 25, 200)


@pytest.mark.slow
@pytest.mark.parametrize("backend_url", [*BACKENDS, *LEASED], indirect=True)
def test_no_update_or_put_is_lost(backend_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.params["backend_url"]
    times = writes_per_process(backend)
    jobs: list[tuple[Callable[..., None], tuple[Any, ...]]]
    jobs = [(increment_worker, (backend_url, "counter", times))] * PROCESSES
    jobs += [(put_worker, (backend_url, f"w{i}", times)) for i in range(PROCESSES)]
    started = time.monotonic()
    start_workers(jobs, method="forkserver").finish(timeout=scale(240, 3000))
    elapsed = time.monotonic() - started

    expected = {f"w{i}-{j}" for i in range(PROCESSES) for j in range(times)}
    with open_url(backend_url) as store:
        counter = count_of(store.get("counter"))
        names = store.names()
        wrong = [
            name
            for name in names
            if name != "counter" and getattr(store.get(name), "access_token", None) != name
        ]
    record(
        "lost-updates",
        backend=backend,
        processes=f"{PROCESSES} incrementing + {PROCESSES} putting",
        writes_per_process=times,
        counter=counter,
        expected_counter=PROCESSES * times,
        names=len(names) - 1,
        expected_names=len(expected),
        seconds=round(elapsed, 1),
    )
    assert counter == PROCESSES * times
    assert names == sorted(expected | {"counter"})
    assert wrong == []
