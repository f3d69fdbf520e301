"""Migrating 100,000 tokens: sqlite -> sqlite and file -> fernet+sqlite.

Each run is a fresh child process (``python bench_migration.py child ...``), so its peak
memory is its own: the figure is the peak resident size minus the size before the copy
began. The baseline is a bare SQLAlchemy bulk copy of the same rows into the same
(empty, already created) table: rows streamed 1,000 at a time and inserted with
``executemany`` in one transaction; from the file it parses the JSON and encrypts each
record with Fernet, as the encrypted target needs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet
from harness import Config, Goal, Section, latency, mebibytes, ops, ratio, scratch_dir

GOAL = 2.0
BATCH = 1000


# -- inside the child ------------------------------------------------------------------


def _status(field: str) -> int:
    """A size from /proc/self/status (``VmRSS``: resident now, ``VmHWM``: its peak), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    """Restart the peak resident size from the current one (Linux 4.0 and later)."""
    Path("/proc/self/clear_refs").write_text("5")


def _rows_table() -> sa.TableClause:
    return sa.table(
        "webex_tokens",
        sa.column("name"),
        sa.column("data"),
        sa.column("version"),
        sa.column("updated_at"),
        sa.column("expires_at"),
    )


def bare_sql_copy(source: str, target: str) -> int:
    """Copy every row of the source table into the target table; return how many."""
    rows = _rows_table()
    source_engine, target_engine = sa.create_engine(source), sa.create_engine(target)
    copied = 0
    with source_engine.connect() as reading, target_engine.begin() as writing:
        result = reading.execution_options(yield_per=BATCH).execute(sa.select(rows))
        for part in result.partitions():
            writing.execute(sa.insert(rows), [row._asdict() for row in part])
            copied += len(part)
    source_engine.dispose()
    target_engine.dispose()
    return copied


def bare_file_to_fernet_copy(source: Path, target: str, key: str) -> int:
    """Parse the token file, encrypt each record as the Fernet store does, insert it."""
    rows = _rows_table()
    fernet = Fernet(key)
    engine = sa.create_engine(target)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    tokens = json.loads(source.read_bytes())["tokens"]
    batch: list[dict[str, object]] = []
    with engine.begin() as writing:
        for name, value in tokens.items():
            record = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            envelope = json.dumps({"n": name, "d": record}, separators=(",", ":"))
            batch.append(
                {
                    "name": name,
                    "data": fernet.encrypt(envelope.encode()).decode(),
                    "version": 1,
                    "updated_at": now,
                    "expires_at": value.get("expires_at"),
                }
            )
            if len(batch) == BATCH:
                writing.execute(sa.insert(rows), batch)
                batch = []
        if batch:
            writing.execute(sa.insert(rows), batch)
    engine.dispose()
    return len(tokens)


def child(mode: str, source: str, target: str) -> None:
    """Run one migration or bare copy and print its time and memory as JSON."""
    from webex_tokens.migration import migrate

    _reset_peak()
    before = _status("VmRSS")
    started = time.perf_counter()
    if mode == "migrate":
        report = migrate(source, target)
        if not report.ok:
            raise SystemExit(f"migration failed: {report.failures()[:3]}")
        copied = report.copied
    elif mode == "bare-sql":
        copied = bare_sql_copy(source, target)
    else:
        copied = bare_file_to_fernet_copy(Path(source), target, os.environ["WEBEX_TOKENS_KEY"])
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    print(json.dumps({"seconds": seconds, "copied": copied, "memory": peak - before}))


# -- in the benchmark run ---------------------------------------------------------------


def _spawn(mode: str, source: str, target: str, key: str) -> dict[str, float]:
    environment = dict(os.environ, WEBEX_TOKENS_KEY=key)
    completed = subprocess.run(  # noqa: S603 - runs this very file with this Python
        [sys.executable, __file__, "child", mode, source, target],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} failed: {completed.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def run(config: Config) -> list[Section]:
    from bench_scale import bulk_fill, fill_file

    from webex_tokens.backends.file import FileStore
    from webex_tokens.backends.sql import SQLStore

    count = 2_000 if config.quick else 100_000
    section = Section(
        f"Migration of {count:,} tokens (each run a fresh process)",
        (
            "migration",
            "time",
            "tokens/s",
            "bare bulk copy",
            "ratio",
            "peak memory (migrate)",
            "peak memory (bare)",
        ),
    )
    key = Fernet.generate_key().decode()
    worst: list[tuple[float, str]] = []
    with scratch_dir() as directory:
        sqlite_source = SQLStore(f"sqlite:///{directory}/source.db")
        bulk_fill(sqlite_source, count)
        sqlite_source.close()
        file_source = FileStore(directory / "source.json")
        fill_file(file_source, count)
        sqlite_url = f"sqlite:///{directory}/source.db"
        cases = (
            # label, source URL, what the bare copy reads, target prefix, bare copy
            ("sqlite -> sqlite", sqlite_url, sqlite_url, "", "bare-sql"),
            (
                "file -> fernet+sqlite",
                f"file://{file_source.path}",
                str(file_source.path),
                "fernet+",
                "bare-file",
            ),
        )
        for label, source, bare_source, wrapper, bare_mode in cases:
            times: dict[str, list[float]] = {"migrate": [], "bare": []}
            memory: dict[str, list[float]] = {"migrate": [], "bare": []}
            for attempt in range(config.heavy_repeat):
                order = [("migrate", "migrate"), ("bare", bare_mode)]
                if attempt % 2:
                    order.reverse()
                for kind, mode in order:
                    path = directory / f"target-{kind}-{attempt}.db"
                    SQLStore(f"sqlite:///{path}").close()  # the empty table, made beforehand
                    if kind == "migrate":
                        result = _spawn(mode, source, f"{wrapper}sqlite:///{path}", key)
                    else:
                        result = _spawn(mode, bare_source, f"sqlite:///{path}", key)
                    if result["copied"] != count:
                        raise RuntimeError(f"{label} {kind} copied {result['copied']} of {count}")
                    times[kind].append(result["seconds"])
                    memory[kind].append(result["memory"])
                    path.unlink()
            subject = statistics.median(times["migrate"])
            baseline = statistics.median(times["bare"])
            worst.append((subject / baseline, label))
            section.rows.append(
                [
                    label,
                    latency(subject),
                    ops(subject / count),
                    latency(baseline),
                    ratio(subject, baseline),
                    mebibytes(statistics.median(memory["migrate"])),
                    mebibytes(statistics.median(memory["bare"])),
                ]
            )
    highest = max(worst)
    section.goals.append(
        Goal(
            f"migration within {GOAL}x of a bare SQLAlchemy bulk copy",
            highest[0] <= GOAL,
            f"highest ratio {highest[0]:.2f}x ({highest[1]})",
        )
    )
    section.notes.append(
        "Peak memory is the child's peak resident size minus its size when the copy began; "
        "the file source is one JSON document, which both sides parse whole."
    )
    return [section]


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "child":
    child(*sys.argv[2:5])
