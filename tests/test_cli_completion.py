"""Shell completion: the scripts, and the completion protocol they call back with.

Each test runs the command as a shell's completion script does: a real process with
``_WEBEX_TOKENS_COMPLETE`` and ``COMP_WORDS``/``COMP_CWORD`` set, reading its answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from webex_tokens import Token
from webex_tokens.backends.file import FileStore


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webex_tokens", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def complete(words: str, *, shell: str = "bash", env: dict[str, str] | None = None) -> list[str]:
    """What ``shell`` is told to offer for the last word of ``words``."""
    parts = words.split(" ")
    variables = {
        "_WEBEX_TOKENS_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1) if shell != "fish" else parts[-1],
        **(env or {}),
    }
    result = run(env=variables)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    if shell == "bash":
        return [line.partition(",")[2] for line in result.stdout.splitlines() if line]
    if shell == "zsh":
        lines = result.stdout.splitlines()
        return [lines[i + 1] for i in range(0, len(lines), 3)]
    return [line.split("\t")[0].partition(",")[2] for line in result.stdout.splitlines()]


@pytest.fixture
def stores(tmp_path: Path) -> dict[str, str]:
    """Two configured stores with accounts, and the environment that names them."""
    dev = tmp_path / "dev.json"
    prod = tmp_path / "prod.json"
    with FileStore(dev) as store:
        for name in ("alice@example.com", "albert@example.com", "bob@example.com"):
            store.put(name, Token(access_token="a-" + name))
    with FileStore(prod) as store:
        store.put("hr-bot", Token(access_token="b", kind="bot"))
    config = tmp_path / "webex-tokens.toml"
    config.write_text(
        'default_store = "dev"\n\n'
        f'[stores.dev]\nurl = "file://{dev}"\ndescription = "my laptop"\n\n'
        f'[stores.prod]\nurl = "file://{prod}"\ndescription = "the servers"\n'
    )
    return {"WEBEX_TOKENS_CONFIG": str(config)}


def test_commands_and_options_complete() -> None:
    assert "completion" in complete("webex-tokens co")
    assert complete("webex-tokens emu") == ["emulator"]
    assert "--due-within" in complete("webex-tokens refresh --d")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_account_names_of_the_default_store_complete(shell: str, stores: dict[str, str]) -> None:
    assert complete("webex-tokens show al", shell=shell, env=stores) == [
        "albert@example.com",
        "alice@example.com",
    ]


def test_account_names_of_the_chosen_store_complete_wherever_store_is(
    stores: dict[str, str],
) -> None:
    assert complete("webex-tokens --store prod token ", env=stores) == ["hr-bot"]
    assert complete("webex-tokens refresh --store prod h", env=stores) == ["hr-bot"]
    assert complete("webex-tokens delete b", env=stores) == ["bob@example.com"]
    assert complete("webex-tokens login --name b", env=stores) == ["bob@example.com"]


def test_store_names_complete_with_their_descriptions(stores: dict[str, str]) -> None:
    assert complete("webex-tokens --store ", env=stores) == ["dev", "prod"]
    assert complete("webex-tokens list --store p", env=stores) == ["prod"]
    assert complete("webex-tokens migrate --from dev --to p", env=stores) == ["prod"]
    zsh = run(
        env={
            **stores,
            "_WEBEX_TOKENS_COMPLETE": "zsh_complete",
            "COMP_WORDS": "webex-tokens --store d",
            "COMP_CWORD": "2",
        }
    )
    assert zsh.stdout.splitlines() == ["plain", "dev", "my laptop"]


def test_a_store_that_cannot_be_opened_completes_nothing_quietly(tmp_path: Path) -> None:
    missing = f"file://{tmp_path / 'nowhere' / 'tokens.json'}"
    assert complete(f"webex-tokens --store {missing} show ") == []
    assert not (tmp_path / "nowhere").exists()
    assert complete("webex-tokens --store nosuchstore show ") == []
    home = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "c")}
    assert complete("webex-tokens token ", env=home) == []  # the default store: none yet
    assert not (tmp_path / "data").exists()
    broken = tmp_path / "broken.toml"
    broken.write_text("this is not toml = = =")
    assert complete("webex-tokens --store ", env={"WEBEX_TOKENS_CONFIG": str(broken)}) == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_for_each_shell(shell: str) -> None:
    result = run("completion", shell)
    assert result.returncode == 0, result.stderr
    assert "_WEBEX_TOKENS_COMPLETE" in result.stdout
    assert f"{shell}_complete" in result.stdout


def test_the_bash_script_is_valid_bash_and_registers_the_command() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = run("completion", "bash").stdout
    checked = subprocess.run(
        [bash, "-c", script + "\ncomplete -p webex-tokens"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "webex-tokens" in checked.stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = run("completion", "powershell")
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid value for '{bash|zsh|fish}'")
