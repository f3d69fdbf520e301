"""``webex-tokens token NAME`` stays light: what it imports, not how long it takes.

Scripts call it in ``$(...)`` in loops, so its start-up is its cost. The timing goals
live in ``benchmarks/bench_cli.py``; this checks the imports behind them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from webex_tokens import Token
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.sql import SQLStore
from webex_tokens.journal import RescueJournal
from webex_tokens.settings import default_store_url
from webex_tokens.testing.fake_webex import FakeWebex

HEAVY = ("rich", "requests", "authlib", "sqlalchemy", "cryptography", "dotenv", "keyring")
OTHER_COMMANDS = (
    "webex_tokens.cli.accounts",
    "webex_tokens.cli.transfer",
    "webex_tokens.cli.keys",
    "webex_tokens.cli.doctor",
    "webex_tokens.cli.demo",
    "webex_tokens.cli.schemas",
)

# Runs the command as the console script does, then prints what it imported.
_PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
from webex_tokens.cli import main
main()
"""


def modules_imported_by(*args: str, env: dict[str, str]) -> tuple[str, set[str]]:
    process = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return process.stdout, set(json.loads(process.stderr.strip().splitlines()[-1]))


def test_token_imports_nothing_heavy_and_no_other_command(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put("alice", Token(access_token="tok-alice"))
    out, modules = modules_imported_by("token", "alice", env={"WEBEX_TOKENS_STORE": store.url})
    assert out == "tok-alice\n"
    top_level = {name.split(".")[0] for name in modules}
    assert sorted(top_level & set(HEAVY)) == []
    assert sorted(modules & set(OTHER_COMMANDS)) == []
    assert "webex_tokens.cli.tokens" in modules


def valid(access_token: str) -> Token:
    """A token that is not due for days."""
    now = datetime.now(timezone.utc)
    return Token(
        access_token=access_token,
        refresh_token="refresh-" + access_token,
        expires_at=now + timedelta(days=10),
        refresh_token_expires_at=now + timedelta(days=80),
    )


def test_token_reads_the_embedded_sqlite_store_without_sqlalchemy() -> None:
    with SQLStore(default_store_url()) as store:  # XDG_DATA_HOME is the test's own
        store.put("alice", valid("tok-alice"))
        store.put("bob", valid("tok-bob"))
    out, modules = modules_imported_by("token", "alice", env={})
    assert out == "tok-alice\n"
    top_level = {name.split(".")[0] for name in modules}
    assert sorted(top_level & set(HEAVY)) == []
    # Nor the entry points of plugins: a built-in scheme needs none.
    assert "importlib.metadata" not in modules


def test_token_of_a_due_token_on_sqlite_takes_the_full_path_and_refreshes(
    fake_webex: FakeWebex, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/tokens.db"
    issued = Token.from_response(fake_webex.issue_token("due@example.com"))
    with SQLStore(url) as store:
        store.put("due", issued.replace(expires_at=datetime.now(timezone.utc)))
    out, modules = modules_imported_by(
        "token",
        "due",
        env={
            "WEBEX_TOKENS_STORE": url,
            "WEBEX_CLIENT_ID": fake_webex.client_id,
            "WEBEX_CLIENT_SECRET": fake_webex.client_secret,
            "WEBEX_BASE_URL": fake_webex.base_url,
        },
    )
    with SQLStore(url) as store:
        fresh = store.get("due")
    assert fresh is not None and fresh.access_token != issued.access_token
    assert out == fresh.access_token + "\n"
    assert fake_webex.calls["refresh_token"] == 1
    assert "sqlalchemy" in {name.split(".")[0] for name in modules}


def test_token_on_a_database_others_can_read_takes_the_full_path_and_warns(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/tokens.db"
    with SQLStore(url) as store:
        store.put("alice", valid("tok-alice"))
    (tmp_path / "tokens.db").chmod(0o644)
    process = subprocess.run(
        [sys.executable, "-c", _PROBE, "token", "alice"],
        env={**os.environ, "WEBEX_TOKENS_STORE": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout == "tok-alice\n"
    assert "readable by other users" in process.stderr
    assert "it is 0600 now" in process.stderr
    assert (tmp_path / "tokens.db").stat().st_mode & 0o777 == 0o600


def test_token_refuses_a_database_in_a_directory_others_can_write(tmp_path: Path) -> None:
    """The quick read trusts a file only as the store would: anyone who can write the
    directory could have swapped the database in."""
    shared = tmp_path / "shared"
    shared.mkdir()
    url = f"sqlite:///{shared}/tokens.db"
    with SQLStore(url) as store:
        store.put("alice", valid("tok-alice"))
    shared.chmod(0o777)
    process = subprocess.run(
        [sys.executable, "-m", "webex_tokens", "token", "alice"],
        env={**os.environ, "WEBEX_TOKENS_STORE": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode != 0
    assert process.stdout == ""
    assert "others can write" in process.stderr or "other users can write" in process.stderr


def test_list_in_a_pipe_does_not_draw_with_rich(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put("alice", Token(access_token="tok-alice"))
    out, modules = modules_imported_by("list", env={"WEBEX_TOKENS_STORE": store.url})
    assert out.splitlines()[1].startswith("alice ")
    assert "rich" not in {name.split(".")[0] for name in modules}


def test_token_stores_what_waits_in_the_journal_before_answering(tmp_path: Path) -> None:
    """The quick read serves the stored token only when the rescue journal is empty:
    a newer token waiting there (its store write failed) is stored and printed."""
    url = f"sqlite:///{tmp_path}/tokens.db"
    with SQLStore(url) as store:
        store.put("alice", valid("tok-old"))
        RescueJournal().keep(store, "alice", valid("tok-new"), previous=valid("tok-old"))
    process = subprocess.run(
        [sys.executable, "-m", "webex_tokens", "token", "alice"],
        env={**os.environ, "WEBEX_TOKENS_STORE": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout == "tok-new\n"
    with SQLStore(url) as store:
        stored = store.get("alice")
    assert stored is not None and stored.access_token == "tok-new"
    assert RescueJournal().is_empty()
