"""``webex-tokens token NAME`` as scripts call it, against a bare Python read of the token.

Scripts type ``$(webex-tokens token NAME)`` in shell loops, so what counts is a fresh
process, start-up included. Each figure is the median over many fresh processes of
``python -m webex_tokens token NAME``, interleaved (baseline, command, command,
baseline, ...) with its baseline, a bare one-liner reading the same token:

* file store: ``python -c "import json; print(json.load(open(P))['tokens'][N][...])"``;
* the embedded default SQLite store (no settings, ``XDG_DATA_HOME`` pointing at it):
  ``python -c "import sqlite3, json; ..."``, one select of the same row.

Both run with the same Python, in an empty directory with an empty home (no settings
file, no ``.env``), on a store of 100 accounts whose tokens are not due. A second table
shows where the command's time goes: ``python -X importtime`` of the same command,
summed by what was imported (importtime inflates each figure, so read the shares).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import Config, Goal, Section, account, latency, make_token, ratio, scratch_dir

from webex_tokens import open_store

ACCOUNTS = 100
GOAL = 3.0
NAME = account(42)

# Where an imported module's own import time is counted, first match wins.
_GROUPS: Sequence[tuple[str, str]] = (
    ("webex_tokens.cli", "webex_tokens.cli (this command's code)"),
    ("webex_tokens.registry", "webex_tokens.registry"),
    ("webex_tokens.settings", "webex_tokens.settings"),
    ("webex_tokens.backends", "webex_tokens.backends (the store's backend)"),
    ("webex_tokens", "webex_tokens: the rest (errors, token, store, locks, refresh, ...)"),
    ("importlib.metadata", "importlib.metadata (entry points, with email, zipfile, ...)"),
    ("click", "click"),
    ("sqlalchemy", "sqlalchemy"),
    ("platformdirs", "platformdirs"),
    ("tomllib", "tomllib"),
    ("rich", "rich"),
    ("authlib", "authlib"),
    ("requests", "requests"),
    ("cryptography", "cryptography"),
    ("dotenv", "dotenv"),
)
_HEAVY = ("rich", "requests", "authlib", "sqlalchemy", "cryptography", "dotenv")
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def _environment(home: Path, store: str | None) -> dict[str, str]:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    if store is not None:
        environment["WEBEX_TOKENS_STORE"] = store
    return environment


def _run(command: Sequence[str], home: Path, environment: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - our own command, with this Python
        command, capture_output=True, text=True, cwd=home, env=environment, check=False
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {completed.stderr[-500:]}")
    return seconds, completed.stdout


def _compare(
    *,
    command: Sequence[str],
    baseline: Sequence[str],
    home: Path,
    environment: dict[str, str],
    runs: int,
    expected: str,
) -> tuple[float, float]:
    """Medians of ``command`` and ``baseline``, each run ``runs`` times interleaved."""
    times: dict[str, list[float]] = {"command": [], "baseline": []}
    for _ in range(2):  # warm the page cache and the .pyc files
        _run(command, home, environment)
        _run(baseline, home, environment)
    for index in range(runs):
        order = [("baseline", baseline), ("command", command)]
        if index % 2:
            order.reverse()
        for kind, argv in order:
            seconds, out = _run(argv, home, environment)
            if out != expected:
                raise RuntimeError(f"{kind} printed {out[:40]!r}, not the token")
            times[kind].append(seconds)
    return statistics.median(times["command"]), statistics.median(times["baseline"])


def import_breakdown(
    command: Sequence[str], home: Path, environment: dict[str, str]
) -> list[tuple[str, float]]:
    """Seconds of import time by group, from ``-X importtime``.

    Each module's own time counts for the nearest group among itself and the modules
    that imported it: the ``email`` package that ``importlib.metadata`` needs counts as
    entry points, the standard library modules click needs count as click.
    """
    completed = subprocess.run(  # noqa: S603 - our own command, with this Python
        [command[0], "-X", "importtime", *command[1:]],
        capture_output=True,
        text=True,
        cwd=home,
        env=environment,
        check=True,
    )
    # importtime prints a module after everything it imported, indented one level less.
    pending: list[tuple[int, _Import]] = []
    for line in completed.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match is None:
            continue
        depth = len(match[3])
        node = _Import(match[4], int(match[1]) / 1e6, [])
        while pending and pending[-1][0] > depth:
            node.children.append(pending.pop()[1])
        pending.append((depth, node))
    totals: dict[str, float] = defaultdict(float)
    for _, root in pending:
        root.count(totals, None)
    return sorted(totals.items(), key=lambda item: -item[1])


@dataclass
class _Import:
    module: str
    own: float
    children: list[_Import]

    def count(self, totals: dict[str, float], inherited: str | None) -> None:
        group = next(
            (
                label
                for prefix, label in _GROUPS
                if self.module == prefix or self.module.startswith(prefix + ".")
            ),
            inherited,
        )
        totals[group or "the interpreter's start-up (site, encodings, ...)"] += self.own
        for child in self.children:
            child.count(totals, group)


def _fill(url: str) -> str:
    with open_store(url) as store:
        for index in range(ACCOUNTS):
            store.put(account(index), make_token(index))
        token = store.get(NAME)
    if token is None:
        raise RuntimeError(f"{NAME} was not stored in {url}")
    return token.access_token + "\n"


def run(config: Config) -> list[Section]:
    runs = 5 if config.quick else 41
    python = sys.executable
    command = [python, "-m", "webex_tokens", "token", NAME]
    section = Section(
        f"`webex-tokens token NAME`: a fresh process, {ACCOUNTS} accounts in the store",
        ("store", "command", "bare Python read", "ratio", "goal"),
    )
    breakdowns: list[Section] = []
    with scratch_dir() as home:
        file_path = home / "tokens.json"
        file_url = f"file://{file_path}"
        database = home / "data" / "webex-tokens" / "tokens.db"
        cases = [
            (
                "file",
                file_url,
                file_url,
                "import json; "
                f"print(json.load(open({str(file_path)!r}))['tokens'][{NAME!r}]['access_token'])",
            ),
            (
                "sqlite (embedded default)",
                f"sqlite:///{database}",
                None,
                "import sqlite3, json; "  # noqa: S608 - a fixed query with a bound name
                f"c = sqlite3.connect({str(database)!r}); "
                "print(json.loads(c.execute('select data from webex_tokens where name = ?', "
                f"({NAME!r},)).fetchone()[0])['access_token'])",
            ),
        ]
        results: dict[str, float] = {}
        for label, url, store_env, one_liner in cases:
            expected = _fill(url)
            environment = _environment(home, store_env)
            subject, base = _compare(
                command=command,
                baseline=[python, "-c", one_liner],
                home=home,
                environment=environment,
                runs=runs,
                expected=expected,
            )
            results[label] = subject / base
            section.rows.append(
                [
                    label,
                    latency(subject),
                    latency(base),
                    ratio(subject, base),
                    f"{GOAL:.0f}x",
                ]
            )
            parts = import_breakdown(command, home, environment)
            total = sum(seconds for _, seconds in parts)
            breakdown = Section(
                f"Where `token NAME` spends its import time: {label} store",
                ("imported", "self time (importtime)", "share"),
            )
            breakdown.rows.extend(
                [name, latency(seconds), f"{seconds / total:.0%}"] for name, seconds in parts
            )
            heavy = sorted(
                {name.split(" ")[0] for name, _ in parts if name.split(" ")[0] in _HEAVY}
            )
            breakdown.notes.append(
                "Heavy packages imported: "
                + (", ".join(heavy) if heavy else "none")
                + f" (looked for: {', '.join(_HEAVY)})."
            )
            breakdowns.append(breakdown)
        floor, _ = _run([python, "-c", "pass"], home, _environment(home, None))
    for label, value in results.items():
        section.goals.append(
            Goal(
                f"`token NAME` on the {label} store within {GOAL:.0f}x of the bare read",
                value <= GOAL,
                f"{value:.2f}x",
            )
        )
    section.notes.append(
        f"Medians of {runs} fresh processes each, interleaved; `python -c pass` takes "
        f"{latency(floor)} here."
    )
    return [section, *breakdowns]
