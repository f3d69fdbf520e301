"""The export bundle: Python reads what ``webex-tokens export`` writes, and the other way round."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from webex_tokens import Token, WebexTokensError
from webex_tokens.backends.file import FileStore
from webex_tokens.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    InvalidBundle,
    dumps_bundle,
    loads_bundle,
    read_bundle,
    write_bundle,
)
from webex_tokens.cli import cli

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)

TOKENS = {
    "alice@example.com": Token(
        access_token="tok-alice",
        refresh_token="refresh-alice",
        expires_at=NOW + timedelta(hours=12),
        refresh_token_expires_at=NOW + timedelta(days=90),
        scopes=("spark:all",),
        client_id="C0ffee",
        account="alice@example.com",
        saved_at=NOW,
    ),
    "hr-bot": Token(access_token="tok-bot", kind="bot", account="hr-bot", saved_at=NOW),
    "zoë ünïcode": Token(access_token="tok-zoe", saved_at=NOW),
}


def test_python_reads_what_export_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path / "tokens.json")
    for name, token in TOKENS.items():
        store.put(name, token)
    monkeypatch.setenv("WEBEX_TOKENS_STORE", store.url)
    target = tmp_path / "bundle.json"
    result = CliRunner().invoke(cli, ["export", str(target)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    bundle = read_bundle(target)
    assert bundle.form == "bundle"
    assert bundle.tokens == TOKENS


def test_export_imports_what_python_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "from-python.json"
    write_bundle(path, TOKENS)
    store = FileStore(tmp_path / "tokens.json")
    monkeypatch.setenv("WEBEX_TOKENS_STORE", store.url)
    result = CliRunner().invoke(cli, ["import", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {name: store.get(name) for name in store.names()} == TOKENS


def test_the_document_is_the_documented_schema() -> None:
    document = json.loads(dumps_bundle(TOKENS))
    assert set(document) == {"format", "version", "tokens"}
    assert document["format"] == BUNDLE_FORMAT == "webex-tokens-export"
    assert document["version"] == BUNDLE_VERSION == 1
    assert document["tokens"]["hr-bot"] == TOKENS["hr-bot"].to_dict()
    assert "zoë ünïcode" in dumps_bundle(TOKENS).decode("utf-8")


def test_a_single_legacy_token_is_named_after_its_account_or_default() -> None:
    legacy = {"access_token": "a", "refresh_token": "r", "saved_at": "2025-10-31T22:54:13"}
    bundle = loads_bundle(json.dumps(legacy))
    assert bundle.form == "token" and list(bundle.tokens) == ["default"]
    assert bundle.tokens["default"].refresh_token == "r"
    named = loads_bundle(json.dumps({**legacy, "account": "a@example.com"}))
    assert list(named.tokens) == ["a@example.com"]


def test_a_file_stores_tokens_json_reads_as_it_is(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    for name, token in TOKENS.items():
        store.put(name, token)
    bundle = read_bundle(store.path)
    assert bundle.form == "file store" and bundle.tokens == TOKENS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not valid JSON"),
        ("[1]", "does not hold a JSON object"),
        ('{"hello": 1}', "neither a token, an export bundle nor a webex-tokens file store"),
        ('{"access_token": ""}', "does not hold a valid token"),
        ('{"format": "webex-tokens-export", "version": 2, "tokens": {}}', "pip install -U"),
        ('{"format": "webex-tokens-export", "version": "1", "tokens": {}}', "unknown bundle"),
        ('{"format": "webex-tokens-export", "version": 1}', "has no 'tokens' object"),
        ('{"version": 1, "tokens": {"a": "gAAAAAencrypted"}}', "'a' in in.json is encrypted"),
        ('{"version": 1, "tokens": {"a": [1]}}', "'a' in in.json is not a JSON object"),
        ('{"version": 1, "tokens": {"a": {"version": 1}}}', "'a' in in.json is not valid"),
        ('{"version": 1, "tokens": {"a": {"access_token": "x", "expires_at": NaN}}}', "JSON"),
    ],
)
def test_each_bad_file_is_one_clear_error(content: str, message: str) -> None:
    with pytest.raises(InvalidBundle, match=message.replace("(", r"\(")) as caught:
        loads_bundle(content, source="in.json")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, WebexTokensError)
    assert "\n" not in str(caught.value)


def test_write_bundle_is_private_and_never_replaces_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write_bundle(path, {"hr-bot": TOKENS["hr-bot"]})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_bundle(path, TOKENS)
    assert list(read_bundle(path).tokens) == ["hr-bot"]
    write_bundle(path, TOKENS, replace=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_bundle(path).tokens == TOKENS


def test_write_bundle_never_follows_a_symbolic_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    os.symlink(elsewhere, tmp_path / "link.json")
    with pytest.raises(FileExistsError):
        write_bundle(tmp_path / "link.json", TOKENS)
    assert not elsewhere.exists()
