"""Tables readable at 80 columns: on a real terminal (a pty) and in a pipe read by a script."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from webex_tokens import Token
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli, format_duration
from webex_tokens.cli.output import fold_path

LONG_NAME = "hr-bot-production@acme-corporation.example"
SCOPES = ("spark:all", "spark:kms", "spark:people_read", "meeting:schedules_read")
PROD_URL = (
    "fernet+sqlite:////var/lib/some-application/webex/tokens.db"
    "?key_env=WEBEX_TOKENS_PROD_KEY&table=webex_tokens"
)


def on_terminal(
    *args: str, cwd: Path, env: dict[str, str], columns: int = 80
) -> tuple[int, list[str]]:
    """Run the command with its stdout on a pseudo-terminal ``columns`` wide."""
    main, attached = pty.openpty()
    fcntl.ioctl(attached, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "webex_tokens", *args],
        stdin=subprocess.DEVNULL,
        stdout=attached,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **env, "TERM": "xterm-256color"},
    )
    os.close(attached)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the command has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.stderr is not None
    with process.stderr:
        errors = process.stderr.read()
    assert process.wait(timeout=60) == 0, errors
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode()).replace("\r\n", "\n")
    return process.returncode, [line.rstrip() for line in text.splitlines()]


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A settings file with three stores; dev holds accounts in every state."""
    now = datetime.now(timezone.utc)
    dev = FileStore(tmp_path / "data" / "tokens.json")

    def token(**changes: object) -> Token:
        fields: dict[str, object] = {
            "access_token": "a",
            "refresh_token": "r",
            "expires_at": now + timedelta(hours=12),
            "refresh_token_expires_at": now + timedelta(days=90),
            "scopes": SCOPES,
        }
        return Token(**{**fields, **changes})  # type: ignore[arg-type]

    dev.put("alice@example.com", token())
    dev.put(LONG_NAME, token(expires_at=now - timedelta(minutes=3)))
    dev.put(
        "dave@example.com",
        token(
            expires_at=now - timedelta(days=1112),
            refresh_token_expires_at=now - timedelta(days=1000),
        ),
    )
    dev.put("erin-bot", Token(access_token="b", kind="bot"))
    (tmp_path / "webex-tokens.toml").write_text(
        'default_store = "dev"\n'
        f'[stores.dev]\nurl = "{dev.url}"\ndescription = "local development on this laptop"\n'
        f'[stores.prod]\nurl = "{PROD_URL}"\n'
        "[stores.staging]\n"
        'url = "postgresql+psycopg://tokens@db.staging.internal.example.com:5432/tokens"\n'
        'description = "shared by the staging API hosts"\n'
    )
    monkeypatch.chdir(tmp_path)
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "d")}


def test_list_on_an_80_column_terminal(machine: dict[str, str], tmp_path: Path) -> None:
    _, lines = on_terminal("list", cwd=tmp_path, env=machine)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert "…" not in "\n".join(lines)  # nothing cut off
    assert lines[0].startswith("store: dev (file://")
    header = next(i for i, line in enumerate(lines) if line.startswith("account "))
    rows = {line.split()[0]: line for line in lines[header + 1 :] if line and line[0] != " "}
    assert rows["dave@example.com"].split()[1:4] == ["3y", "ago", "2y"]
    # A bot's token says so under its name (plain output has a kind column instead).
    assert lines[lines.index(rows["erin-bot"]) + 1] == "[bot]"
    assert rows["dave@example.com"].endswith("log in again")
    assert rows["alice@example.com"].endswith("ok")
    # The long name folds onto the next lines of its column, whole.
    first = next(i for i, line in enumerate(lines) if line.startswith("hr-bot-"))
    width = lines[header].index("expires in")
    pieces = [lines[first][:width].strip()]
    for line in lines[first + 1 :]:
        if not line[:width].strip() or line.startswith("log in again"):
            break
        pieces.append(line[:width].strip())
    assert "".join(pieces) == LONG_NAME
    # Scopes wrap between scopes, never inside one.
    assert all(
        any(scope in line for line in lines)
        for scope in ("spark:people_read", "meeting:schedules_read")
    )
    assert "log in again: webex-tokens login --name dave@example.com" in lines


def test_stores_on_an_80_column_terminal_folds_urls_at_separators(
    machine: dict[str, str], tmp_path: Path
) -> None:
    _, lines = on_terminal("stores", cwd=tmp_path, env=machine)
    assert lines[-1].startswith("settings file: ")
    lines = lines[:-1]  # a path of the test's temporary directory, wrapped by the terminal
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert "…" not in "\n".join(lines)
    start, end = lines[0].index("url"), lines[0].index("backend")
    first = next(i for i, line in enumerate(lines) if line.startswith("prod "))
    pieces = [lines[first][start:end].strip()]
    for line in lines[first + 1 :]:
        if line[:start].strip():
            break
        pieces.append(line[start:end].strip())
    assert "".join(pieces) == PROD_URL
    assert len(pieces) > 1
    # Each line breaks after a separator, unless what lies between two is longer than it.
    full = max(len(piece) for piece in pieces)
    assert all(piece[-1] in "/?&+@." or len(piece) == full for piece in pieces[:-1]), pieces


def test_a_wide_terminal_keeps_one_line_per_row(machine: dict[str, str], tmp_path: Path) -> None:
    _, lines = on_terminal("stores", cwd=tmp_path, env=machine, columns=200)
    assert [line.split()[0] for line in lines[1:4]] == ["dev", "prod", "staging"]
    assert PROD_URL in lines[2]


def test_plain_list_in_a_pipe_fits_80_columns_and_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded default store is named ``default``, not by its long path, on each row."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "a-rather-long-data-home" / "share"))
    monkeypatch.chdir(tmp_path)
    now = datetime.now(timezone.utc)

    def add(name: str, expires: float) -> None:
        token = Token(
            access_token="t",
            refresh_token="r",
            expires_at=now + timedelta(seconds=expires),
            refresh_token_expires_at=now + timedelta(days=60),
            scopes=("spark:all",),
        )
        added = CliRunner().invoke(cli, ["import", "-", "--name", name], input=_json(token))
        assert added.exit_code == 0, added.output

    def listed() -> list[str]:
        return subprocess.run(
            [sys.executable, "-m", "webex_tokens", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=dict(os.environ),
        ).stdout.splitlines()

    add("alice@example.com", 12 * 3600)
    add("carol@example.com", 3600)
    lines = listed()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    add("bob@example.com", -1112 * 86400)
    header, *rows = [re.split(r"\s{2,}", line) for line in listed()]
    assert header == ["account", "store", "expires in", "refresh expires in", "scopes", "status"]
    by_name = {row[0]: row for row in rows}
    assert {row[1] for row in rows} == {"default"}
    assert by_name["bob@example.com"][2:] == ["expired 3y ago", "59d 23h", "spark:all", "expired"]


def _json(token: Token) -> str:
    import json

    return json.dumps(token.to_dict())


def test_fold_path_breaks_after_separators_only_when_it_must() -> None:
    assert fold_path("file:///a/b.json", 80) == "file:///a/b.json"
    folded = fold_path(PROD_URL, 24).splitlines()
    assert "".join(folded) == PROD_URL
    assert all(len(line) <= 24 for line in folded)
    assert fold_path("x" * 30, 12).splitlines() == ["x" * 12, "x" * 12, "x" * 6]


def test_long_durations_read_as_years() -> None:
    assert format_duration(1112 * 86400 + 23 * 3600) == "3y 17d"
    assert format_duration(365 * 86400) == "1y"
    assert format_duration(364 * 86400 + 3600) == "364d 1h"
