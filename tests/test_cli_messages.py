"""Messages in one voice: usage errors, the version, key rotation, export, unreadable records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

import webex_tokens
from webex_tokens import Token
from webex_tokens.backends.fernet import FernetStore
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "message", "help_of"),
    [
        (["list", "--bogus"], "error: no such option '--bogus'", "webex-tokens list"),
        (["lst"], "error: no such command 'lst'. Did you mean 'list'?", "webex-tokens"),
        (["show"], "error: missing argument 'NAME'", "webex-tokens show"),
        (
            ["refresh", "--all", "--due-within", "soon"],
            "error: invalid value for '--due-within': 'soon' is not a duration",
            "webex-tokens refresh",
        ),
        (["refresh"], "error: give either an account NAME or --all", "webex-tokens refresh"),
        (["--bogus", "list"], "error: no such option '--bogus'", "webex-tokens"),
    ],
)
def test_a_usage_error_is_one_error_line_naming_the_help(
    args: list[str], message: str, help_of: str, tmp_path: Path
) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "webex_tokens", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "WEBEX_TOKENS_STORE": f"file://{tmp_path}/t.json"},
    )
    assert process.returncode == 2
    [line] = process.stderr.splitlines()
    assert line.startswith(message), line
    assert line.endswith(f"(see {help_of} --help)")
    assert ". (see" not in line
    assert process.stdout == ""


def test_no_arguments_still_shows_the_help() -> None:
    result = CliRunner().invoke(cli, [], prog_name="webex-tokens")
    assert result.exit_code in (0, 2)  # click 8.2 and later exit 2, as for a usage error
    assert "Usage: webex-tokens" in result.output and "Commands:" in result.output


def test_version_package_and_docs_agree() -> None:
    version = webex_tokens.__version__
    assert invoke("--version").stdout == f"webex-tokens, version {version}\n"
    getting_started = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert f"webex-tokens, version {version}\n" in getting_started
    assert f"webex_tokens-{version}-py3-none-any.whl" in getting_started
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = changelog.split("## [", 2)[2].split("]", 1)[0]
    assert version.endswith(".dev0") and version != released  # a development version
    assert tuple(map(int, version.split(".")[:3])) > tuple(map(int, released.split(".")))


def test_the_docs_say_how_to_install_before_a_release() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        text = page.read_text(encoding="utf-8")
        assert "pip install ." in text and "python -m build --wheel" in text, page
        assert "not on PyPI" in text, page


def test_rotate_key_with_one_key_claims_no_old_key(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    with FernetStore(FileStore(tmp_path / "enc.json"), key) as store:
        store.put("a", Token(access_token="tok-a"))
    url = f"fernet+file://{tmp_path}/enc.json"
    process = subprocess.run(
        [sys.executable, "-m", "webex_tokens", "--store", url, "rotate-key"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "WEBEX_TOKENS_KEY": key},
    )
    assert process.returncode == 0, process.stderr
    assert "re-encrypted 1 token(s)" in process.stdout
    assert "the old key can now be removed" not in process.stdout
    assert "keep the first key only" in process.stdout


def test_export_to_stdout_does_not_ask_to_delete_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put("a", Token(access_token="tok-a"))
    monkeypatch.setenv("WEBEX_TOKENS_STORE", store.url)
    piped = invoke("export", "--stdout", "-")
    assert piped.exit_code == 0
    assert json.loads(piped.stdout)["tokens"]["a"]["access_token"] == "tok-a"
    [warning] = piped.stderr.splitlines()
    assert warning.startswith("warning: the bundle written to stdout holds 1 ")
    assert "delete" not in warning and "webex-tokens import -" in warning
    to_file = invoke("export", str(tmp_path / "b.json"))
    assert "delete it once imported" in to_file.stderr


@pytest.fixture
def wrong_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store of 40 records encrypted under one key, opened with another."""
    url = f"fernet+file://{tmp_path}/enc.json"
    with FernetStore(FileStore(tmp_path / "enc.json"), Fernet.generate_key()) as store:
        for index in range(40):
            store.put(f"user{index:02d}@example.com", Token(access_token=f"tok-{index}"))
    monkeypatch.setenv("WEBEX_TOKENS_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("WEBEX_TOKENS_STORE", url)
    return url


def test_forty_unreadable_records_are_one_line_with_the_count_and_the_fix(
    wrong_key: str,
) -> None:
    result = invoke("list")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: 40 of 40 records in {wrong_key} cannot be read")
    assert "(--debug or --json shows each)" in line
    assert "'user00@example.com'" in line and "WEBEX_TOKENS_KEY" in line
    assert len([row for row in result.stdout.splitlines() if row.endswith("unreadable")]) == 40


def test_debug_and_json_show_each_unreadable_record(wrong_key: str) -> None:
    debug = invoke("list", "--debug")
    assert debug.exit_code == 1
    errors = [line for line in debug.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 40 and "'user39@example.com'" in errors[-1]
    as_json = invoke("list", "--json")
    accounts = json.loads(as_json.stdout)["accounts"]
    assert len(accounts) == 40
    assert all(a["status"] == "unreadable" and a["name"] in a["error"] for a in accounts)
    assert len(as_json.stderr.splitlines()) == 1
