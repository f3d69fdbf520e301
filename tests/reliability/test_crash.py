"""Writers killed with SIGKILL at random moments never corrupt a store or lose a write.

A writer process puts tokens ``v-n`` under eight names in turn and acknowledges each
``put`` once it has returned. The parent kills it at a random moment, then opens the
store as a new user would: it must open and parse, and every name must hold the last
acknowledged token written to it; the one write in flight at the kill may have landed
or not. Then the next writer starts where the last one stopped.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from stress_profile import record, scale

from webex_tokens.registry import open_url
from webex_tokens.testing.processes import ack_writer, start_workers, worker_context

pytestmark = pytest.mark.skipif(os.name != "posix", reason="uses SIGKILL and a fork server")

SLOTS = 8
CRASH_BACKENDS = ("file", "fernet+file", "sqlite")
#: Kills per backend: 3 x 170 = 510 in CI and 3 x 400 = 1200 in the full profile.
KILLS = scale(170, 400)


def read_acks(fd: int, wait: float = 0.0) -> list[str]:
    """The lines written to the pipe ``fd`` so far (waiting up to ``wait`` for the first)."""
    data = b""
    ready, _, _ = select.select([fd], [], [], wait)
    while ready:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
        ready, _, _ = select.select([fd], [], [], 0)
    return data.decode().split()


def wait_until_ready(fd: int, timeout: float = 60) -> list[str]:
    """Read lines until the writer says ``ready``; return the lines after it."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while "ready" not in lines:
        left = deadline - time.monotonic()
        assert left > 0, "the writer never opened the store"
        lines += read_acks(fd, wait=left)
    return lines[lines.index("ready") + 1 :]


def interrupted(path: Path, backend: str) -> bool:
    """True if the kill left a write half done (a temp file or a hot SQLite journal)."""
    if backend == "sqlite":
        return Path(f"{path}-journal").exists()
    return any(path.parent.glob(f".{path.name}.*.tmp"))


def check_store(url: str, path: Path, backend: str) -> dict[str, str]:
    """Open the store as a new user would and return what each slot holds."""
    if backend == "sqlite":
        # Opening rolls back the killed writer's journal; then the file must be sound.
        with open_url(url) as store:
            store.names()
        connection = sqlite3.connect(path)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            connection.close()
    with open_url(url) as store:
        held = {}
        for name in store.names():
            token = store.get(name)
            assert token is not None, f"{name} is listed but holds no token"
            held[name] = token.access_token
        return held


@pytest.mark.slow
@pytest.mark.parametrize("backend_url", CRASH_BACKENDS, indirect=True)
def test_killed_writers_leave_every_acknowledged_token(
    backend_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["backend_url"]
    path = tmp_path / ("tokens.db" if backend == "sqlite" else "tokens.json")
    rng = random.Random(f"crash-{backend}")
    context: Any = worker_context("forkserver")
    reader, writer = context.Pipe(duplex=False)
    expected: dict[str, str] = {}  # slot -> the last acknowledged token written to it
    next_n = 0
    kills = corrupt = lost = in_flight_landed = torn = acknowledged = 0
    started = time.monotonic()
    try:
        for trial in range(KILLS):
            group = start_workers(
                [(ack_writer, (backend_url, SLOTS, next_n, writer))], method="forkserver"
            )
            (process,) = group.processes
            acks = wait_until_ready(reader.fileno())
            time.sleep(rng.uniform(0, 0.05))
            os.kill(process.pid, signal.SIGKILL)
            process.join(30)
            assert process.exitcode == -signal.SIGKILL, f"trial {trial}: {process.exitcode}"
            kills += 1
            acks += read_acks(reader.fileno())
            numbers = [int(line) for line in acks]
            assert numbers == list(range(next_n, next_n + len(numbers))), f"trial {trial}"
            acknowledged += len(numbers)
            for n in numbers:
                expected[f"slot-{n % SLOTS}"] = f"v-{n}"
            flight = next_n + len(numbers)  # the put that may have been under way
            flight_slot = f"slot-{flight % SLOTS}"
            torn += interrupted(path, backend)
            try:
                held = check_store(backend_url, path, backend)
            except Exception as exc:  # any failure to open or read is a corrupt store
                corrupt += 1
                raise AssertionError(f"trial {trial}: store unreadable: {exc!r}") from exc
            if held.get(flight_slot) == f"v-{flight}":
                in_flight_landed += 1
                expected[flight_slot] = f"v-{flight}"
            missing = {s: v for s, v in expected.items() if held.get(s) != v}
            lost += len(missing)
            assert not missing, f"trial {trial}: acknowledged writes lost: {missing}"
            assert set(held) <= {f"slot-{i}" for i in range(SLOTS)}, f"trial {trial}: {held}"
            next_n = flight + 1
    finally:
        reader.close()
        writer.close()
        record(
            "crash",
            backend=backend,
            kills=kills,
            corrupt_stores=corrupt,
            lost_acknowledged_writes=lost,
            acknowledged_puts=acknowledged,
            kills_mid_write=torn,
            in_flight_puts_that_landed=in_flight_landed,
            seconds=round(time.monotonic() - started, 1),
        )
    # The kills must land inside writes often enough to prove something.
    assert torn >= KILLS // 10, f"only {torn} of {KILLS} kills interrupted a write"
    with open_url(backend_url) as store:  # and the store takes writes again
        store.delete("slot-0")
        assert check_store(backend_url, path, backend).get("slot-0") is None
