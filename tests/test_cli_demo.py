"""``webex-tokens demo``: the whole story against FakeWebex, on a machine with no settings."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from webex_tokens import Token, open_store
from webex_tokens.cli import cli

STEPS = [
    "== 1. Start the Webex emulator",
    "== 2. webex-tokens login",
    "== 3. webex-tokens login --device",
    "== 4. webex-tokens list",
    "== 5. webex-tokens token",
    "== 6. webex-tokens refresh",
    "== 7. webex-tokens migrate into an encrypted store",
    "== 8. webex-tokens list (from the encrypted store)",
    "== 9. Next: do it for real",
]


@pytest.fixture
def fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment with empty user directories under tmp_path and no settings at all."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    return dict(os.environ)


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m webex_tokens ARGS`` (default: ``demo``) as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "webex_tokens", *(args or ("demo",))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_runs_every_step_in_the_embedded_default_store(
    fresh_machine: dict[str, str], tmp_path: Path
) -> None:
    process = run_demo(fresh_machine, "demo", "--keep")

    assert process.returncode == 0, process.stderr
    positions = [process.stdout.find(step) for step in STEPS]
    assert -1 not in positions, process.stdout
    assert positions == sorted(positions)
    assert "Logged in as demo@example.com" in process.stdout
    assert "1 copied" in process.stdout and "holds ciphertext only" in process.stdout
    assert process.stdout.count("sha256:") >= 3
    assert process.stderr == ""
    database = tmp_path / "data" / "webex-tokens" / "tokens.db"
    assert database.exists()
    with open_store() as store:
        assert store.url.endswith(str(database))
        assert store.names() == ["demo@example.com"]
        token = store.get("demo@example.com")
    assert token is not None and token.refresh_token is not None
    for secret in (token.access_token, token.refresh_token):
        assert secret not in process.stdout + process.stderr
    assert token.fingerprint in process.stdout  # the refreshed token is the stored one


def test_demo_without_keep_never_creates_the_default_store(
    fresh_machine: dict[str, str], tmp_path: Path
) -> None:
    process = run_demo(fresh_machine)
    assert process.returncode == 0, process.stderr
    assert "Tokens go to a temporary store" in process.stdout
    assert "token saved to temporary store" in process.stdout
    assert "the temporary store is gone" in process.stdout
    assert not (tmp_path / "data").exists()  # nothing in the user data directory


def test_demo_leaves_the_default_store_alone(fresh_machine: dict[str, str]) -> None:
    alice = Token(access_token="alice-token", account="alice@example.com")
    with open_store() as store:
        store.put("alice@example.com", alice)
        url = store.url
    database = Path(url.removeprefix("sqlite:///"))
    before = database.stat().st_mtime_ns
    first = run_demo(fresh_machine)
    second = run_demo(fresh_machine)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    with open_store() as store:
        assert store.names() == ["alice@example.com"]
        assert store.get("alice@example.com") == alice
    assert database.stat().st_mtime_ns == before
    assert "alice" not in first.stdout


def test_demo_into_a_chosen_store_removes_its_account_and_leaves_the_others(
    fresh_machine: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/chosen.db"
    alice = Token(access_token="alice-token", account="alice@example.com")
    with open_store(url) as store:
        store.put("alice@example.com", alice)
    process = run_demo(fresh_machine, "--store", url, "demo")
    assert process.returncode == 0, process.stderr
    assert "was removed from" in process.stdout
    with open_store(url) as store:
        assert store.names() == ["alice@example.com"]


def test_demo_shows_the_device_grant_and_ends_with_the_next_step_for_real(
    fresh_machine: dict[str, str],
) -> None:
    process = run_demo(fresh_machine)
    assert process.returncode == 0, process.stderr
    device = process.stdout[process.stdout.index(STEPS[2]) : process.stdout.index(STEPS[3])]
    assert "enter the code" in device and "/verify?userCode=" in device
    assert "Logged in as demo@example.com" in device
    last = process.stdout[process.stdout.index(STEPS[-1]) :]
    assert "https://developer.webex.com/my-apps" in last
    assert "http://localhost:8000/oauth/webex/callback" in last
    assert "webex-tokens login --device" in last and "webex-tokens login " in last


def test_demo_refuses_to_touch_a_real_account_of_the_same_name(
    fresh_machine: dict[str, str],
) -> None:
    real = Token(
        access_token="real-token",
        client_id="C0ffee",
        account="demo@example.com",
        saved_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    with open_store() as store:
        store.put("demo@example.com", real)
    result = CliRunner().invoke(cli, ["demo", "--keep"], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already holds a real account named 'demo@example.com'" in lines[0]
    assert "--account" in lines[0]
    with open_store() as store:
        assert store.get("demo@example.com") == real


def test_demo_into_another_store_with_another_account(fresh_machine: dict[str, str]) -> None:
    result = CliRunner().invoke(
        cli,
        ["--store", "memory://", "demo", "--account", "bot@acme.example"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Logged in as bot@acme.example; token saved to memory://" in result.stdout
    assert not (Path(fresh_machine["XDG_DATA_HOME"]) / "webex-tokens").exists()


def test_demo_needs_no_test_tools(fresh_machine: dict[str, str]) -> None:
    """The emulator ships in webex_tokens.testing, but the demo must not need pytest."""
    blocked = "import sys; sys.modules['pytest'] = None; from webex_tokens.cli import main; main()"
    process = subprocess.run(
        [sys.executable, "-c", blocked, "--store", "memory://", "demo"],
        env=fresh_machine,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert STEPS[-1] in process.stdout
