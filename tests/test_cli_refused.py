"""An account whose refresh Webex refused shows "log in again" in ``list``, not ``expired``.

The refusal is remembered in the refresh history (a file in the user state directory),
for the refresh token it was seen with: a new login clears it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_cli_tables import on_terminal

from webex_tokens import Token
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli
from webex_tokens.cli.history import history_path, read_history
from webex_tokens.testing.fake_webex import FakeWebex


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def webex(fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch) -> FakeWebex:
    monkeypatch.setenv("WEBEX_CLIENT_ID", fake_webex.client_id)
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", fake_webex.client_secret)
    monkeypatch.setenv("WEBEX_BASE_URL", fake_webex.base_url)
    return fake_webex


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileStore:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"file://{path}")
    return FileStore(path)


def issued(fake: FakeWebex, user: str) -> Token:
    return Token.from_response(fake.issue_token(user), client_id=fake.client_id, account=user)


def statuses(result: Result) -> dict[str, str]:
    document = json.loads(result.stdout)
    return {account["name"]: account["status"] for account in document["accounts"]}


def test_a_refused_refresh_shows_log_in_again_until_a_new_login(
    webex: FakeWebex, store: FileStore, tmp_path: Path
) -> None:
    token = issued(webex, "alice@example.com")
    store.put("alice", token.replace(expires_at=token.saved_at))  # expired: refresh fixes it
    assert statuses(invoke("list", "--json")) == {"alice": "expired"}

    webex.revoke_refresh_tokens()
    refused = invoke("refresh", "alice")
    assert refused.exit_code == 1
    assert "log in again" in refused.stderr

    plain = invoke("list")
    assert plain.exit_code == 0
    assert plain.stdout.splitlines()[1].split()[-1] == "refused"
    document = json.loads(invoke("list", "--json").stdout)["accounts"][0]
    assert document["status"] == "refused"
    assert document["action"] == "webex-tokens login --name alice"
    assert "status:             refused" in invoke("show", "alice").stdout

    env = {key: value for key, value in os.environ.items() if key.startswith(("WEBEX", "XDG_"))}
    code, lines = on_terminal("list", cwd=tmp_path, env=env)
    assert code == 0
    assert any(line.rstrip().endswith("log in again") for line in lines), lines
    assert "log in again: webex-tokens login --name alice" in lines

    # The history holds no secret and only its owner reads it.
    path = history_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token.access_token not in text
    assert token.refresh_token is not None and token.refresh_token not in text

    # A new login brings a new refresh token: the refusal no longer applies.
    store.put("alice", issued(webex, "alice@example.com"))
    assert statuses(invoke("list", "--json")) == {"alice": "ok"}


def test_refresh_all_remembers_each_refusal_and_each_success(
    webex: FakeWebex, store: FileStore
) -> None:
    for name in ("a", "b"):
        store.put(name, issued(webex, f"{name}@example.com"))
    webex.revoke_refresh_tokens()
    store.put("c", issued(webex, "c@example.com"))
    result = invoke("refresh", "--all", "--due-within", "100d")
    assert result.exit_code == 1
    assert "2 failed" in result.stdout
    assert statuses(invoke("list", "--json")) == {"a": "refused", "b": "refused", "c": "ok"}
    notes = read_history(store.url)
    assert {name: note.result for name, note in notes.items()} == {
        "a": "refused",
        "b": "refused",
        "c": "refreshed",
    }


def test_token_remembers_a_refusal(webex: FakeWebex, store: FileStore) -> None:
    token = issued(webex, "alice@example.com")
    store.put("alice", token.replace(expires_at=token.saved_at))
    webex.revoke_refresh_tokens()
    result = invoke("token", "alice")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert statuses(invoke("list", "--json")) == {"alice": "refused"}


def test_a_history_that_cannot_be_written_does_not_fail_the_refresh(
    webex: FakeWebex, store: FileStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "state-is-a-file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocked))
    store.put("alice", issued(webex, "alice@example.com"))
    result = invoke("refresh", "alice")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("refreshed alice")
    warnings = result.stderr.splitlines()
    assert "warning: the result of the refresh could not be noted" in result.stderr
    # The rescue journal lives in the same state directory: it says so too, once.
    assert len(warnings) == 2, warnings
    assert all(line.startswith("warning: ") for line in warnings)


def test_a_damaged_history_counts_as_empty(webex: FakeWebex, store: FileStore) -> None:
    store.put("alice", issued(webex, "alice@example.com"))
    path = history_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert statuses(invoke("list", "--json")) == {"alice": "ok"}
    webex.revoke_refresh_tokens()
    assert invoke("refresh", "alice").exit_code == 1
    assert statuses(invoke("list", "--json")) == {"alice": "refused"}
