"""``--json``: one document per command, checked against its schema, with no secret in it.

Errors still go to stderr as one ``error:`` line, with the usual exit codes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from webex_tokens import Token
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli
from webex_tokens.cli.schemas import DOCUMENTS, problems
from webex_tokens.testing.fake_webex import FakeWebex

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def document(result: Result, command: str) -> dict[str, Any]:
    """The one JSON document on stdout, checked against the schema of ``command``."""
    parsed = json.loads(result.stdout)
    assert problems(parsed, command) == [], parsed
    assert list(parsed)[:2] == ["command", "schema_version"]
    assert parsed["schema_version"] == 1
    return parsed  # type: ignore[no-any-return]


def token(name: str, **changes: Any) -> Token:
    now = datetime.now(timezone.utc)
    fields: dict[str, Any] = {
        "access_token": f"secret-access-{name}",
        "refresh_token": f"secret-refresh-{name}",
        "expires_at": now + timedelta(hours=12),
        "refresh_token_expires_at": now + timedelta(days=90),
        "scopes": ("spark:all",),
        "client_id": "C0ffee",
        "account": name,
        "saved_at": now,
    }
    return Token(**{**fields, **changes})


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileStore:
    store = FileStore(tmp_path / "tokens.json")
    monkeypatch.setenv("WEBEX_TOKENS_STORE", store.url)
    now = datetime.now(timezone.utc)
    store.put("alice@example.com", token("alice@example.com"))
    store.put("bob@example.com", token("bob@example.com", expires_at=now - timedelta(hours=1)))
    store.put(
        "dave@example.com",
        token(
            "dave@example.com",
            expires_at=now - timedelta(days=3),
            refresh_token_expires_at=now - timedelta(days=1),
        ),
    )
    store.put("erin-bot", Token(access_token="secret-access-erin", kind="bot", saved_at=now))
    return store


def no_secret_in(text: str) -> None:
    assert "secret-" not in text


def test_list_json(store: FileStore) -> None:
    result = invoke("list", "--json")
    assert result.exit_code == 0, result.output
    listed = document(result, "list")
    no_secret_in(result.output)
    by_name = {account["name"]: account for account in listed["accounts"]}
    assert list(by_name) == sorted(store.names())
    alice = by_name["alice@example.com"]
    assert alice["status"] == "ok" and alice["action"] is None
    assert alice["store"] == store.url == alice["store_url"]
    assert 43000 < alice["expires_in"] <= 43200 and alice["scopes"] == ["spark:all"]
    assert alice["fingerprint"] == token("alice@example.com").fingerprint
    assert by_name["bob@example.com"]["status"] == "expired"
    assert by_name["bob@example.com"]["expires_in"] < 0
    dave = by_name["dave@example.com"]
    assert dave["status"] == "refresh expired"
    assert dave["action"] == "webex-tokens login --name dave@example.com"
    erin = by_name["erin-bot"]
    assert erin["kind"] == "bot" and erin["has_refresh_token"] is False
    assert erin["refresh_fingerprint"] is None and erin["expires_at"] is None
    assert listed["errors"] == []


def test_list_json_of_an_unreadable_record_exits_1_and_says_why(store: FileStore) -> None:
    raw = json.loads(store.path.read_text())
    raw["tokens"]["broken"] = {"version": 1, "access_token": 42}
    store.path.write_text(json.dumps(raw))
    result = invoke("list", "--json")
    assert result.exit_code == 1
    listed = document(result, "list")
    broken = next(a for a in listed["accounts"] if a["name"] == "broken")
    assert broken["status"] == "unreadable" and "'broken'" in broken["error"]
    assert broken["expires_at"] is None and broken["scopes"] is None
    assert len(listed["accounts"]) == 5
    assert result.stderr.startswith("error: ")


def test_list_json_of_every_store_names_the_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = FileStore(tmp_path / "good.json")
    good.put("ops", token("ops"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    broken.chmod(0o600)
    config = tmp_path / "webex-tokens.toml"
    config.write_text(
        f'[stores.good]\nurl = "{good.url}"\n\n[stores.broken]\nurl = "file://{broken}"\n'
    )
    result = invoke("--config", str(config), "list", "--all-stores", "--json")
    assert result.exit_code == 1
    listed = document(result, "list")
    assert [a["name"] for a in listed["accounts"]] == ["ops"]
    assert listed["accounts"][0]["store"] == "good"
    [error] = listed["errors"]
    assert error["store"] == "broken" and "not valid JSON" in error["message"]
    assert "error: broken: " in result.stderr


def test_show_json_masks_unless_revealed(store: FileStore) -> None:
    masked = invoke("show", "alice@example.com", "--json")
    assert masked.exit_code == 0
    shown = document(masked, "show")["account"]
    no_secret_in(masked.output)
    assert "access_token" not in shown and shown["name"] == "alice@example.com"
    revealed = document(invoke("show", "alice@example.com", "--json", "--reveal"), "show")
    assert revealed["account"]["access_token"] == "secret-access-alice@example.com"
    assert revealed["account"]["refresh_token"] == "secret-refresh-alice@example.com"


def test_a_command_that_cannot_run_prints_no_document(store: FileStore) -> None:
    result = invoke("show", "nobody", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: no token named 'nobody'")
    usage = invoke("refresh", "--json")
    assert usage.exit_code == 2 and usage.stdout == ""


def test_stores_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROD_KEY", Fernet.generate_key().decode())
    config = tmp_path / "webex-tokens.toml"
    config.write_text(
        'default_store = "dev"\n[stores.dev]\nurl = "memory://"\ndescription = "scratch"\n'
        f'[stores.prod]\nurl = "fernet+sqlite:///{tmp_path}/p.db"\nkey_env = "PROD_KEY"\n'
    )
    listed = document(invoke("--config", str(config), "stores", "--json"), "stores")
    assert listed["settings_file"] == str(config)
    dev, prod = listed["stores"]
    assert dev == {
        "name": "dev",
        "url": "memory://",
        "backend": "memory",
        "encrypted": False,
        "default": True,
        "description": "scratch",
        "origin": "settings file",
    }
    assert prod["encrypted"] is True and prod["backend"] == "sqlite" and not prod["default"]
    other = document(
        invoke("--config", str(config), "--store", "file:///tmp/x.json", "stores", "--json"),
        "stores",
    )
    assert other["stores"][-1]["name"] is None
    assert other["stores"][-1]["origin"] == "--store" and other["stores"][-1]["default"]


def test_doctor_json_counts_the_problems_and_exits_1(store: FileStore) -> None:
    healthy = invoke("doctor", "--json")
    assert healthy.exit_code == 0, healthy.output
    checked = document(healthy, "doctor")
    assert checked["ok"] is True and checked["problems"] == 0
    [section] = checked["stores"]
    assert section["url"] == store.url
    assert any("4 account(s), all readable" in f["message"] for f in section["findings"])
    assert checked["integration"]["findings"][0]["level"] == "warning"
    store.path.chmod(0o644)
    sick = invoke("doctor", "--json")
    assert sick.exit_code == 1
    report = document(sick, "doctor")
    assert report["ok"] is False and report["problems"] == 1
    no_secret_in(sick.output)


@pytest.fixture
def webex(
    fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[FakeWebex, FileStore]:
    monkeypatch.setenv("WEBEX_CLIENT_ID", fake_webex.client_id)
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", fake_webex.client_secret)
    monkeypatch.setenv("WEBEX_BASE_URL", fake_webex.base_url)
    store = FileStore(tmp_path / "tokens.json")
    monkeypatch.setenv("WEBEX_TOKENS_STORE", store.url)
    return fake_webex, store


def issued(fake: FakeWebex, user: str, **changes: Any) -> Token:
    made = Token.from_response(fake.issue_token(user), client_id=fake.client_id, account=user)
    return made.replace(**changes) if changes else made


def test_refresh_all_json(webex: tuple[FakeWebex, FileStore]) -> None:
    fake, store = webex
    now = datetime.now(timezone.utc)
    store.put("due@example.com", issued(fake, "due@example.com", expires_at=now))
    store.put("fine@example.com", issued(fake, "fine@example.com"))
    store.put(
        "gone@example.com",
        issued(fake, "gone@example.com", refresh_token="not-a-refresh-token", expires_at=now),
    )
    result = invoke("refresh", "--all", "--json", "--due-within", "1d")
    assert result.exit_code == 1
    refreshed = document(result, "refresh")
    assert refreshed["due_within"] == 86400 and refreshed["store"] == store.url
    [done] = refreshed["refreshed"]
    new = store.get("due@example.com")
    assert new is not None and done["name"] == "due@example.com"
    assert done["fingerprint"] == new.fingerprint and done["expires_in"] > 13 * 86400
    [failed] = refreshed["failed"]
    assert failed["name"] == "gone@example.com"
    assert "webex-tokens login --name gone@example.com" in failed["error"]
    assert refreshed["not_due"] == ["fine@example.com"]
    assert result.stderr.startswith("error: gone@example.com: ")
    assert new.access_token not in result.output and "not-a-refresh-token" not in result.output


def test_refresh_name_json(webex: tuple[FakeWebex, FileStore]) -> None:
    fake, store = webex
    store.put("a@example.com", issued(fake, "a@example.com"))
    process = subprocess.run(
        [sys.executable, "-m", "webex_tokens", "refresh", "a@example.com", "--json"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    refreshed = json.loads(process.stdout)
    assert problems(refreshed, "refresh") == []
    assert refreshed["due_within"] is None and refreshed["not_due"] == []
    assert [r["name"] for r in refreshed["refreshed"]] == ["a@example.com"]
    fake.revoke_refresh_tokens()
    refused = invoke("refresh", "a@example.com", "--json")
    assert refused.exit_code == 1
    assert [f["name"] for f in document(refused, "refresh")["failed"]] == ["a@example.com"]
    assert len(refused.stderr.strip().splitlines()) == 1


def test_migrate_json(store: FileStore, tmp_path: Path) -> None:
    target = FileStore(tmp_path / "target.json")
    target.put("alice@example.com", token("alice@example.com", access_token="other"))
    dry = invoke("migrate", "--to", target.url, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = document(dry, "migrate")
    assert planned["dry_run"] is True and planned["counts"]["copied"] == 3
    assert planned["source"] == store.url and planned["target_url"] == target.url
    moving = invoke("migrate", "--to", target.url, "--move", "--json")
    moved = document(moving, "migrate")
    assert moved["counts"] == {
        "copied": 3,
        "skipped": 1,
        "unchanged": 0,
        "overwritten": 0,
        "deleted": 3,
        "failed": 0,
    }
    outcomes = {o["name"]: o["outcome"] for o in moved["outcomes"]}
    assert outcomes["alice@example.com"] == "skipped" and outcomes["erin-bot"] == "copied"
    assert moved["ok"] is True and moved["move"] is True
    no_secret_in(dry.output + moving.output)


def test_import_json(store: FileStore, tmp_path: Path) -> None:
    legacy = tmp_path / ".webex_token.json"
    legacy.write_text(json.dumps({"access_token": "secret-legacy", "refresh_token": "secret-r"}))
    imported = invoke("import", str(legacy), "--name", "hr-bot", "--json")
    assert imported.exit_code == 0, imported.output
    report = document(imported, "import")
    assert report["form"] == "token" and report["source"] == str(legacy)
    assert report["source_url"] is None and report["counts"]["copied"] == 1
    assert report["outcomes"] == [{"name": "hr-bot", "outcome": "copied", "detail": None}]
    no_secret_in(imported.output)
    bundle = tmp_path / "bundle.json"
    assert invoke("export", str(bundle)).exit_code == 0
    again = document(invoke("import", str(bundle), "--json"), "import")
    assert again["form"] == "bundle" and again["counts"]["unchanged"] == 5
    bad = invoke("import", str(tmp_path / "absent.json"), "--json")
    assert bad.exit_code == 1 and bad.stdout == ""


def test_the_documented_examples_fit_the_schemas() -> None:
    """Each ``<!-- cli-json: COMMAND -->`` in docs/cli.md is followed by a valid example."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    examples = re.findall(r"<!-- cli-json: (\S+) -->\s*```json\n(.*?)```", text, flags=re.S)
    assert sorted(command for command, _ in examples) == sorted(DOCUMENTS)
    for command, example in examples:
        assert problems(json.loads(example), command) == [], command


def test_every_command_with_a_schema_takes_json() -> None:
    for command in DOCUMENTS:
        assert "--json" in invoke(command, "--help").stdout, command
