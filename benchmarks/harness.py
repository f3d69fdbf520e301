"""What every benchmark group shares: timing, results, tables, machine facts, test data.

Timing rules: each figure is the median over ``repeat`` runs; a subject and its raw
baseline are measured in the same run and interleaved (baseline, subject, subject,
baseline, ...), so a slow moment of the machine hits both.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from webex_tokens import Token

POSTGRES_URL = os.environ.get(
    "WEBEX_TOKENS_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get(
    "WEBEX_TOKENS_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"
)


@dataclass(frozen=True)
class Config:
    """How hard to measure: the full run, or a quick one with tiny counts."""

    quick: bool
    backends: frozenset[str] | None = None  # None: every backend that can run here

    @property
    def repeat(self) -> int:
        return 3 if self.quick else 5

    @property
    def heavy_repeat(self) -> int:
        """Repetitions of the groups whose single run takes seconds."""
        return 1 if self.quick else 3

    @property
    def budget(self) -> float:
        """Seconds one timed batch of a fast operation should take."""
        return 0.01 if self.quick else 0.25

    def wants(self, backend: str) -> bool:
        return self.backends is None or backend in self.backends


# -- results -------------------------------------------------------------------------------


@dataclass
class Goal:
    """A target from the performance requirements and whether this run met it."""

    text: str
    met: bool | None  # None: not measured here
    detail: str


@dataclass
class Section:
    """One group's results: a table, goals, and notes (skips, what was measured)."""

    title: str
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.rows:
            lines.append("| " + " | ".join(self.headers) + " |")
            lines.append("|" + "|".join("---" for _ in self.headers) + "|")
            lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
            lines.append("")
        for goal in self.goals:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[goal.met]
            lines.append(f"- Goal: {goal.text}: **{verdict}** ({goal.detail})")
        for note in self.notes:
            lines.append(f"- {note}")
        if self.goals or self.notes:
            lines.append("")
        return "\n".join(lines)


# -- timing --------------------------------------------------------------------------------


def _batch_size(fn: Callable[[], object], budget: float) -> int:
    fn()  # warm up: connections, caches, lazy imports
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(100_000, int(budget / once)))


def _time_batch(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


@dataclass(frozen=True)
class Measured:
    """Seconds per operation: the median over the runs, and every run."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def compare(
    subject: Callable[[], object],
    baseline: Callable[[], object] | None,
    config: Config,
) -> tuple[Measured, Measured | None]:
    """Time ``subject`` and ``baseline`` in the same run, interleaved, ``repeat`` times."""
    number = _batch_size(subject, config.budget)
    base_number = _batch_size(baseline, config.budget) if baseline is not None else 0
    subject_runs: list[float] = []
    baseline_runs: list[float] = []
    for run in range(config.repeat):
        order = [("s", subject, number), ("b", baseline, base_number)]
        if run % 2:
            order.reverse()
        for kind, fn, count in order:
            if fn is None:
                continue
            (subject_runs if kind == "s" else baseline_runs).append(_time_batch(fn, count))
    return Measured(tuple(subject_runs)), (
        Measured(tuple(baseline_runs)) if baseline is not None else None
    )


# -- formatting ----------------------------------------------------------------------------


def ops(seconds: float) -> str:
    """Operations per second, rounded to three significant figures."""
    rate = 1 / seconds
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def latency(seconds: float) -> str:
    """A duration in the unit that reads best."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def ratio(subject: float, baseline: float) -> str:
    return f"{subject / baseline:.2f}x"


def mebibytes(size: float) -> str:
    return f"{size / 2**20:.0f} MiB"


# -- test data -----------------------------------------------------------------------------

_NOW = datetime.now(timezone.utc).replace(microsecond=0)


def account(index: int) -> str:
    """The name of the ``index``-th account."""
    return f"user{index:06d}@example.com"


def make_token(index: int, *, version: int = 0) -> Token:
    """A token shaped like a real Webex one (lengths of real tokens, one org ID)."""
    org = "1eb65fdf-9643-417f-9974-ad72cae0e10f"
    secret = f"{index:08d}{version:04d}".encode().hex()
    return Token(
        access_token=f"ZDI3MGEx{secret}{'A' * 40}_PF84_{org}",
        refresh_token=f"MTk2NzI0{secret}{'B' * 40}_PF84_{org}",
        token_type="Bearer",
        expires_at=_NOW + timedelta(days=14),
        refresh_token_expires_at=_NOW + timedelta(days=90),
        scopes=("spark:all", "spark:kms", "spark:people_read"),
        client_id="C" + "0123456789abcdef" * 4,
        account=account(index),
        saved_at=_NOW,
    )


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="webex-tokens-bench-") as name:
        yield Path(name)


# -- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def _filesystem(path: Path) -> str:
    best = ("", "unknown")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            mount, kind = fields[1], fields[2]
            if str(path).startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, kind)
    return best[1]


def _server_version(url: str) -> str:
    import sqlalchemy as sa

    try:
        args = {} if url.startswith("sqlite") else {"connect_args": {"connect_timeout": 3}}
        engine = sa.create_engine(url, **args)
        with engine.connect() as connection:
            version = str(connection.exec_driver_sql("SELECT version()").scalar())
        engine.dispose()
    except Exception as exc:  # any failure means "not available"
        return f"not available ({type(exc).__name__})"
    return version.split(" on ", maxsplit=1)[0].split(",", maxsplit=1)[0]


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> list[tuple[str, str]]:
    """Facts about the machine and software the numbers were measured on."""
    temp = Path(tempfile.gettempdir())
    return [
        ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores"),
        ("memory", _memory()),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("temp files", f"{temp} ({_filesystem(temp)})"),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", _server_version(POSTGRES_URL)),
        ("MariaDB", _server_version(MARIADB_URL)),
        (
            "packages",
            ", ".join(
                f"{name} {_package(name)}"
                for name in (
                    "webex-tokens",
                    "SQLAlchemy",
                    "psycopg",
                    "PyMySQL",
                    "cryptography",
                    "keyring",
                )
            ),
        ),
    ]


def available(url: str) -> str | None:
    """None if the database at ``url`` answers, else why not."""
    import sqlalchemy as sa

    try:
        args = {} if url.startswith("sqlite") else {"connect_args": {"connect_timeout": 3}}
        engine = sa.create_engine(url, **args)
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:  # any failure means "not available"
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    return None


def with_table(url: str, table: str) -> str:
    """``url`` with ``?table=`` set (the benchmarks never touch the default table)."""
    return f"{url}{'&' if '?' in url else '?'}table={table}"


def drop_table(url: str, table: str) -> None:
    """Drop ``table`` at ``url`` if it exists."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            sa.Table(table, sa.MetaData()).drop(connection, checkfirst=True)
    finally:
        engine.dispose()


def describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items())
