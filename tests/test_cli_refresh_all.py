"""``webex-tokens refresh --all``: hundreds of accounts refreshed in parallel against FakeWebex."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from webex_tokens import Token
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli
from webex_tokens.testing.fake_webex import FakeWebex

NOW = datetime.now(timezone.utc)


@pytest.fixture(autouse=True)
def _fresh_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expiry times are relative to each test's start, however late in a long run it is."""
    monkeypatch.setattr(sys.modules[__name__], "NOW", datetime.now(timezone.utc))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def webex(fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch) -> FakeWebex:
    """FakeWebex, with the integration settings pointing at it."""
    monkeypatch.setenv("WEBEX_CLIENT_ID", fake_webex.client_id)
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", fake_webex.client_secret)
    monkeypatch.setenv("WEBEX_BASE_URL", fake_webex.base_url)
    return fake_webex


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileStore:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"file://{path}")
    return FileStore(path)


def issued(fake: FakeWebex, user: str, **changes: object) -> Token:
    """A real token from the emulator for ``user``, with some fields changed."""
    token = Token.from_response(fake.issue_token(user), client_id=fake.client_id, account=user)
    return token.replace(**changes) if changes else token


def test_refresh_all_over_200_accounts_names_the_failures(
    webex: FakeWebex, store: FileStore
) -> None:
    kinds: dict[str, str] = {}
    tokens: dict[str, Token] = {}
    for i in range(200):
        name = f"user{i:03d}@example.com"
        kind = ("fresh", "access-soon", "refresh-soon", "expired")[i % 4]
        if i % 4 and i % 20 in (1, 7):
            kind = "bogus"
        all_changes: dict[str, dict[str, object]] = {
            "fresh": {},
            "access-soon": {"expires_at": NOW + timedelta(hours=1)},
            "refresh-soon": {"refresh_token_expires_at": NOW + timedelta(days=2)},
            "expired": {"expires_at": NOW - timedelta(minutes=5)},
            "bogus": {"refresh_token": f"not-a-refresh-token-{i}", "expires_at": NOW},
        }
        tokens[name] = issued(webex, name, **all_changes[kind])
        kinds[name] = kind
    # One write of the whole document, rather than 200 locked rewrites.
    for name, token in tokens.items():
        store.put(name, token)
    failing = sorted(name for name, kind in kinds.items() if kind == "bogus")
    due = sorted(name for name, kind in kinds.items() if kind != "fresh")
    assert len(failing) == 20 and len(due) == 150

    result = invoke("refresh", "--all", "--concurrency", "8")

    assert result.exit_code == 1
    assert "130 refreshed, 20 failed, 50 not due within 7d" in result.stdout
    assert "Traceback" not in result.output
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 20
    for name, line in zip(failing, error_lines, strict=True):
        assert line.startswith(f"error: {name}: ")
        assert f"webex-tokens login --name {name}" in line
    assert "not-a-refresh-token" not in result.output
    for name, kind in kinds.items():
        after = store.get(name)
        assert after is not None
        if kind in ("fresh", "bogus"):
            assert after == tokens[name], name
        else:
            assert after.access_token != tokens[name].access_token, name
            assert (after.expires_in() or 0) > 13 * 86400
    assert webex.calls["refresh_token"] == 150
    refreshed_lines = [line for line in result.stdout.splitlines() if line.startswith("refreshed ")]
    failed_lines = [line for line in result.stdout.splitlines() if line.startswith("failed ")]
    assert len(refreshed_lines) == 130 and len(failed_lines) == 20


def test_due_within_leaves_accounts_that_are_not_due_untouched(
    webex: FakeWebex, store: FileStore
) -> None:
    soon = {
        f"soon{i}": issued(webex, f"soon{i}", expires_at=NOW + timedelta(minutes=20))
        for i in range(3)
    }
    later = {
        f"later{i}": issued(webex, f"later{i}", expires_at=NOW + timedelta(hours=5))
        for i in range(4)
    }
    for name, token in {**soon, **later}.items():
        store.put(name, token)

    result = invoke("refresh", "--all", "--due-within", "30m")

    assert result.exit_code == 0, result.output
    assert "3 refreshed, 0 failed, 4 not due within 30m" in result.stdout
    assert webex.calls["refresh_token"] == 3
    for name, token in later.items():
        assert store.get(name) == token
    for name, token in soon.items():
        after = store.get(name)
        assert after is not None and after.access_token != token.access_token

    wider = invoke("refresh", "--all", "--due-within", "6h", "--concurrency", "2")
    assert wider.exit_code == 0
    assert "4 refreshed, 0 failed, 3 not due within 6h" in wider.stdout
    assert webex.calls["refresh_token"] == 7


def test_refresh_all_in_a_subprocess(webex: FakeWebex, store: FileStore) -> None:
    store.put("a@example.com", issued(webex, "a@example.com", expires_at=NOW))
    store.put("b@example.com", issued(webex, "b@example.com"))
    process = subprocess.run(
        [sys.executable, "-m", "webex_tokens", "refresh", "--all", "--due-within", "1d"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.splitlines()[0].startswith("refreshed a@example.com: expires in 13d")
    assert "1 refreshed, 0 failed, 1 not due within 1d" in process.stdout
    assert webex.calls["refresh_token"] == 1


def test_refresh_all_of_an_empty_store(webex: FakeWebex, store: FileStore) -> None:
    store.put("gone", issued(webex, "gone", expires_at=NOW))
    store.delete("gone")  # the store exists and holds nothing
    calls = webex.calls["refresh_token"]
    result = invoke("refresh", "--all")
    assert result.exit_code == 0
    assert "0 refreshed, 0 failed, 0 not due" in result.stdout
    assert webex.calls["refresh_token"] == calls


def test_refresh_all_counts_an_unreadable_record_as_failed(
    webex: FakeWebex, store: FileStore
) -> None:
    store.put("good", issued(webex, "good", expires_at=NOW))
    document = store.path.read_text().replace('"tokens": {', '"tokens": {"bad": {"version": 1},', 1)
    store.path.write_text(document)
    result = invoke("refresh", "--all")
    assert result.exit_code == 1
    assert "1 refreshed, 1 failed" in result.stdout
    assert result.stderr.startswith("error: bad: ")
