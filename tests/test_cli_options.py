"""Global options (``--store``, ``--config``, ``--debug``) before or after the command.

Given on both sides, the one after the command wins.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from webex_tokens import Token
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def names_listed(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [line.split()[0] for line in result.stdout.splitlines()[1:]]


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, FileStore]:
    """Three file stores: the environment's default, and ``a`` and ``b`` by URL."""
    made = {}
    for label in ("env", "a", "b"):
        store = FileStore(tmp_path / f"{label}.json")
        store.put(f"{label}-user", Token(access_token=f"tok-{label}"))
        made[label] = store
    monkeypatch.setenv("WEBEX_TOKENS_STORE", made["env"].url)
    return made


@pytest.fixture
def config(tmp_path: Path, stores: dict[str, FileStore]) -> Path:
    """A settings file naming the stores ``a`` and ``b``."""
    path = tmp_path / "webex-tokens.toml"
    path.write_text(
        f'[stores.a]\nurl = "{stores["a"].url}"\n\n[stores.b]\nurl = "{stores["b"].url}"\n'
    )
    return path


def test_store_after_the_command(stores: dict[str, FileStore]) -> None:
    assert names_listed(invoke("list")) == ["env-user"]
    assert names_listed(invoke("list", "--store", stores["a"].url)) == ["a-user"]
    assert names_listed(invoke("--store", stores["a"].url, "list")) == ["a-user"]


def test_the_store_after_the_command_wins(stores: dict[str, FileStore]) -> None:
    result = invoke("--store", stores["a"].url, "list", "--store", stores["b"].url)
    assert names_listed(result) == ["b-user"]
    shown = invoke("--store", stores["a"].url, "show", "b-user", "--store", stores["b"].url)
    assert shown.exit_code == 0 and "b-user" in shown.stdout


def test_config_after_the_command_names_the_stores(config: Path) -> None:
    assert names_listed(invoke("list", "--config", str(config), "--store", "b")) == ["b-user"]
    listed = invoke("list", "--all-stores", "--config", str(config))
    assert names_listed(listed) == ["a-user", "b-user"]
    chosen = invoke("stores", "--store", "b", "--config", str(config))
    assert chosen.exit_code == 0
    rows = {line.split()[0]: line.split()[1:] for line in chosen.stdout.splitlines()[1:3]}
    assert rows["a"][1:] == ["file", "no"] and rows["b"][1:] == ["file", "no", "*"]


def test_the_config_after_the_command_wins(config: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[stores.c]\nurl = "memory://"\n')
    result = invoke("--config", str(other), "list", "--config", str(config), "--store", "a")
    assert names_listed(result) == ["a-user"]
    missing = invoke("--config", str(config), "list", "--config", str(other), "--store", "a")
    assert missing.exit_code == 1
    assert "'a', which is not configured" in missing.stderr


def test_token_delete_and_export_take_the_store_after_the_command(
    stores: dict[str, FileStore], tmp_path: Path
) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "webex_tokens", "token", "a-user", "--store", stores["a"].url],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout == "tok-a\n"
    bundle = tmp_path / "bundle.json"
    assert invoke("export", str(bundle), "--store", stores["b"].url).exit_code == 0
    assert invoke("import", str(bundle), "--store", stores["a"].url).exit_code == 0
    assert stores["a"].names() == ["a-user", "b-user"]
    assert invoke("delete", "b-user", "--store", stores["b"].url).exit_code == 0
    assert stores["b"].names() == []


def test_migrate_takes_its_source_from_the_store_after_the_command(
    stores: dict[str, FileStore],
) -> None:
    result = invoke("migrate", "--to", stores["b"].url, "--store", stores["a"].url)
    assert result.exit_code == 0, result.output
    assert stores["b"].names() == ["a-user", "b-user"]
    assert stores["env"].names() == ["env-user"]


def test_debug_after_the_command_shows_the_traceback() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "webex_tokens", "list", "--store", "bogus://x", "--debug"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 1
    assert "Traceback" in process.stderr and "InvalidStoreURL" in process.stderr
    quiet = invoke("list", "--store", "bogus://x")
    assert quiet.exit_code == 1 and "Traceback" not in quiet.stderr


def test_every_command_documents_the_global_options() -> None:
    for name in cli.commands:
        result = invoke(name, "--help")
        assert result.exit_code == 0, name
        for option in ("--store NAME|URL", "--config FILE", "--debug"):
            assert option in result.stdout, (name, option)
