"""The file store under real concurrent processes and writers killed mid-write."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from webex_tokens.backends.file import FileStore
from webex_tokens.testing import make_token
from webex_tokens.testing.processes import (
    count_of,
    count_worker,
    increment_worker,
    put_worker,
    run_workers,
    watch_worker,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="uses fork and SIGKILL")


def test_puts_of_distinct_names_from_four_processes_all_survive(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/tokens.json"
    run_workers(put_worker, [(url, f"p{i}", 100) for i in range(4)])
    store = FileStore(tmp_path / "tokens.json")
    names = store.names()
    assert len(names) == 400
    assert set(names) == {f"p{i}-{j}" for i in range(4) for j in range(100)}
    token = store.get("p3-99")
    assert token is not None and token.access_token == "p3-99"


def test_updates_from_eight_processes_are_never_lost(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/tokens.json"
    run_workers(increment_worker, [(url, "counter", 50) for _ in range(8)])
    assert count_of(FileStore(tmp_path / "tokens.json").get("counter")) == 400


def test_reader_never_sees_a_partial_file_during_1000_writes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    url = f"file://{path}"
    FileStore(path).put("other", make_token("other"))  # a bigger file tears more easily
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    reader = context.Process(target=watch_worker, args=(url, "counter", ready, stop, results))
    reader.start()
    try:
        assert ready.wait(60), "the reader process did not start reading"
        run_workers(count_worker, [(url, "counter", 1000)])
    finally:
        stop.set()
        report = results.get(timeout=60)
        reader.join(30)
    assert reader.exitcode == 0
    assert report["errors"] == []
    assert report["reads"] > 1
    assert report["last"] == 1000  # the reader's final read saw the final write
    assert count_of(FileStore(path).get("counter")) == 1000


# -- writers killed at random moments ---------------------------------------------------


def _write_forever(path: str, ack_fd: int) -> None:
    """Put counter tokens 1, 2, ... past the stored one, acknowledging each on ``ack_fd``."""
    store = FileStore(path)
    count = count_of(store.get("counter"))
    while True:
        count += 1
        store.put("counter", make_token(f"count-{count}"))
        os.write(ack_fd, f"{count}\n".encode())


def _acknowledged(read_fd: int) -> list[int]:
    data = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return [int(line) for line in data.split()]


def _check_after_kill(path: Path, before: int, acks: list[int], trial: int) -> int:
    """The file parses and holds the last acknowledged counter or the one in flight."""
    raw = path.read_bytes()
    document = json.loads(raw)  # a torn file fails here
    assert document["version"] == 1, f"trial {trial}"
    count = count_of(FileStore(path).get("counter"))
    floor = acks[-1] if acks else before
    assert acks == list(range(before + 1, before + 1 + len(acks))), f"trial {trial}"
    assert count in (floor, floor + 1), f"trial {trial}: {count} after acks up to {floor}"
    return count


@pytest.mark.slow
def test_writer_killed_at_random_moments_leaves_old_or_new_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    FileStore(path).put("other", make_token("other"))
    # fork: a child starts in a millisecond, so hundreds of kills take seconds, not minutes.
    context = multiprocessing.get_context("fork")
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    rng = random.Random(20260101)
    count, trials, torn = 0, 250, 0
    outcomes: set[str] = set()
    try:
        for trial in range(trials):
            writer = context.Process(target=_write_forever, args=(str(path), write_fd))
            writer.start()
            time.sleep(rng.uniform(0, 0.025))
            assert writer.pid is not None
            os.kill(writer.pid, signal.SIGKILL)
            writer.join(10)
            assert writer.exitcode == -signal.SIGKILL, f"trial {trial}: {writer.exitcode}"
            acks = _acknowledged(read_fd)
            torn += any(tmp_path.glob(".tokens.json.*.tmp"))
            new_count = _check_after_kill(path, count, acks, trial)
            outcomes.add("acked" if new_count == (acks[-1] if acks else count) else "in flight")
            count = new_count
    finally:
        os.close(read_fd)
        os.close(write_fd)
    # The kills must have landed mid-write (leaving a temp file) often enough to matter.
    assert torn >= trials // 10, f"only {torn} of {trials} kills interrupted a write"
    assert "acked" in outcomes
    store = FileStore(path)
    assert store.get("other") == make_token("other")
    store.put("after", make_token())
    # No temp file left behind: the token file and the directory of its locks only.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json", "tokens.json.locks"]


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    from webex_tokens.backends.file import FileStore
    from webex_tokens.token import Token

    store = FileStore(sys.argv[1])
    token = store.get("counter")
    count = int(token.access_token.rsplit("-", 1)[1]) if token else 0
    print("ready", flush=True)
    while True:
        count += 1
        store.put("counter", Token(access_token=f"count-{count}", refresh_token="r" * 40,
                                   expires_at=datetime.now(timezone.utc)))
        print(count, flush=True)
    """
)


def test_separate_interpreter_killed_mid_write_leaves_old_or_new_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    rng = random.Random(7)
    count = 0
    for trial in range(12):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0, 0.05))
        writer.kill()
        # Read the rest through the same buffered stream as "ready": acks that arrived
        # with it sit in that buffer, and communicate() would read past them.
        with writer.stdout:
            output = writer.stdout.read()
        writer.wait(timeout=10)
        assert writer.returncode == -signal.SIGKILL
        acks = [int(line) for line in output.split()]
        count = _check_after_kill(path, count, acks, trial)
    assert count > 0
