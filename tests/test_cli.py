"""The ``webex-tokens`` command: every command, its output, its exit codes and its errors.

Most cases run in-process through click's CliRunner; each command also runs at least once
as a real ``python -m webex_tokens`` subprocess.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from webex_tokens import Token, open_store
from webex_tokens.backends.fernet import FernetStore
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli, format_duration, parse_duration
from webex_tokens.errors import DecryptionError
from webex_tokens.testing.fake_webex import FakeWebex

NOW = datetime.now(timezone.utc)


@pytest.fixture(autouse=True)
def _fresh_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expiry times are relative to each test's start, however late in a long run it is."""
    monkeypatch.setattr(sys.modules[__name__], "NOW", datetime.now(timezone.utc))


def make(
    access: str,
    *,
    account: str | None = "alice@example.com",
    expires_in: timedelta | None = timedelta(hours=12),
    refresh_in: timedelta | None = timedelta(days=90),
    refresh: bool = True,
) -> Token:
    """A token whose expiry times are relative to now."""
    return Token(
        access_token=access,
        refresh_token=("refresh-" + access) if refresh else None,
        expires_at=NOW + expires_in if expires_in is not None else None,
        refresh_token_expires_at=NOW + refresh_in if refresh and refresh_in is not None else None,
        scopes=("spark:all", "spark:kms"),
        client_id="C0ffee",
        account=account,
        saved_at=NOW,
    )


def invoke(*args: str, input: str | bytes | None = None) -> Result:
    """Run the command in-process; a bug's exception propagates instead of being captured."""
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run(
    *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m webex_tokens ARGS`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "webex_tokens", *args],
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of a failed command (and no traceback)."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def rows_of(stdout: str) -> list[list[str]]:
    """The rows of a plain table, cut at the header's column starts (empty cells kept)."""
    lines = stdout.strip("\n").splitlines()
    starts = [match.start() for match in re.finditer(r"\S+(?: \S+)*", lines[0])]
    ends = [*starts[1:], None]
    return [[line[a:b].strip() for a, b in zip(starts, ends, strict=True)] for line in lines]


def table(stdout: str) -> dict[str, list[str]]:
    """Plain ``list`` output as {account: [columns...]}."""
    header, *rows = rows_of(stdout)
    assert header[0] == "account"
    return {row[0]: row for row in rows}


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "tokens.json"


@pytest.fixture
def store_url(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A file store made the default through WEBEX_TOKENS_STORE."""
    url = f"file://{store_path}"
    monkeypatch.setenv("WEBEX_TOKENS_STORE", url)
    return url


@pytest.fixture
def filled(store_url: str, store_path: Path) -> FileStore:
    """The default store holding accounts in every state ``list`` distinguishes."""
    store = FileStore(store_path)
    store.put("alice@example.com", make("tok-alice"))
    store.put(
        "bob@example.com",
        make("tok-bob", account="bob@example.com", expires_in=-timedelta(minutes=3)),
    )
    store.put("carol@example.com", make("tok-carol", expires_in=timedelta(seconds=60)))
    store.put(
        "dave@example.com",
        make("tok-dave", expires_in=-timedelta(hours=1), refresh_in=-timedelta(days=1)),
    )
    store.put("erin-bot", make("tok-erin", refresh=False, expires_in=None).replace(kind="bot"))
    store.put("frank@example.com", make("tok-frank", refresh_in=timedelta(days=2)))
    return store


# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("12h", 43200),
        ("7d", 604800),
        ("1w", 604800),
        ("1d12h", 129600),
        ("90s", 90),
        ("0", 0),
        ("3600", 3600),
        (" 2H ", 7200),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "-1d", "d", "1.5d", "abc", "7 days"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 30m, 12h, 7d or 1w"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(11 * 3600 + 59 * 60 + 30) == "11h 59m"
    assert format_duration(3 * 86400 + 4 * 3600) == "3d 4h"
    assert format_duration(-180) == "3m"
    assert format_duration(42) == "42s"
    assert format_duration(86400) == "1d"


# -- the command frame: help, version, errors ------------------------------------------------


def test_help_lists_every_command_and_version_prints() -> None:
    process = run("--help")
    assert process.returncode == 0
    for command in [
        "login",
        "list",
        "show",
        "token",
        "refresh",
        "delete",
        "migrate",
        "import",
        "export",
        "keygen",
        "rotate-key",
        "stores",
        "doctor",
        "demo",
    ]:
        assert f"  {command} " in process.stdout or f"  {command}\n" in process.stdout, command
    version = run("--version")
    assert version.returncode == 0 and "webex-tokens" in version.stdout


def test_bad_store_url_is_one_error_line_exit_1_and_debug_shows_the_traceback() -> None:
    process = run("--store", "bogus://where", "list")
    assert process.returncode == 1
    line = one_error_line(process.stderr)
    assert "unknown store scheme 'bogus'" in line
    debug = run("--debug", "--store", "bogus://where", "list")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "InvalidStoreURL" in debug.stderr


def test_unknown_store_name_says_how_to_configure_it() -> None:
    result = invoke("--store", "nowhere", "list")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "'nowhere'" in line and "add [stores.nowhere] to the settings file" in line


@pytest.mark.parametrize(
    "args",
    [
        ["show"],
        ["refresh"],
        ["refresh", "alice", "--all"],
        ["refresh", "--all", "--due-within", "7x"],
        ["migrate"],
        ["export"],
        ["no-such-command"],
        ["list", "--bogus"],
    ],
)
def test_usage_errors_exit_2(args: list[str], store_url: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_bad_duration_names_the_units(store_url: str) -> None:
    result = invoke("refresh", "--all", "--due-within", "soon")
    assert result.exit_code == 2
    assert "e.g. 30m, 12h, 7d or 1w" in result.stderr


# -- list ----------------------------------------------------------------------------------


def test_list_shows_every_account_with_expiry_and_status(filled: FileStore) -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    rows = table(result.stdout)
    assert set(rows) == {
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
        "erin-bot",
        "frank@example.com",
    }
    status = {name: row[-1] for name, row in rows.items()}
    assert status == {
        "alice@example.com": "ok",
        "bob@example.com": "expired",
        "carol@example.com": "due",
        "dave@example.com": "refresh expired",
        "erin-bot": "ok",
        "frank@example.com": "due",
    }
    alice = rows["alice@example.com"]
    # A bot's token is stored too, so a kind column follows the account.
    assert alice[1] == "integration" and rows["erin-bot"][1] == "bot"
    assert alice[2] == filled.url
    assert alice[3] in ("11h 59m", "12h")
    assert alice[4] in ("89d 23h", "90d")
    assert alice[5] == "spark:all spark:kms"
    assert rows["bob@example.com"][3] in ("expired 3m ago", "expired 2m ago")
    assert rows["erin-bot"][3:5] == ["unknown", "no refresh"]
    for secret in ("tok-", "refresh-"):
        assert secret not in result.output


def test_list_shows_an_unreadable_record_and_exits_1(filled: FileStore, store_path: Path) -> None:
    document = json.loads(store_path.read_text())
    document["tokens"]["broken"] = {"version": 1, "access_token": 42}
    store_path.write_text(json.dumps(document))
    result = invoke("list")
    assert result.exit_code == 1
    rows = table(result.stdout)
    assert rows["broken"][-1] == "unreadable"
    assert rows["alice@example.com"][-1] == "ok" and len(rows) == 7
    line = one_error_line(result.stderr)
    assert "'broken'" in line and "unreadable" in line


def test_list_of_an_empty_store_says_how_to_add_one(store_url: str) -> None:
    result = invoke("list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "webex-tokens login" in result.stderr


def test_list_in_a_subprocess_with_the_store_from_the_environment(filled: FileStore) -> None:
    process = run("list")
    assert process.returncode == 0, process.stderr
    assert table(process.stdout)["carol@example.com"][-1] == "due"
    assert process.stderr == ""


def test_list_names_a_store_given_by_url(filled: FileStore, tmp_path: Path) -> None:
    other = FileStore(tmp_path / "other.json")
    other.put("zed", make("tok-zed"))
    result = invoke("--store", other.url, "list")
    assert result.exit_code == 0
    assert list(table(result.stdout)) == ["zed"]


# -- show ----------------------------------------------------------------------------------


def test_show_masks_the_secrets_unless_revealed(filled: FileStore) -> None:
    masked = invoke("show", "alice@example.com")
    assert masked.exit_code == 0
    assert "tok-alice" not in masked.output and "refresh-tok-alice" not in masked.output
    token = filled.get("alice@example.com")
    assert token is not None
    assert token.fingerprint in masked.stdout
    assert "status:" in masked.stdout and "ok" in masked.stdout
    assert "spark:all spark:kms" in masked.stdout
    process = run("show", "alice@example.com", "--reveal")
    assert process.returncode == 0
    assert "tok-alice" in process.stdout and "refresh-tok-alice" in process.stdout


def test_show_of_a_missing_name_points_to_list(filled: FileStore) -> None:
    process = run("show", "nobody")
    assert process.returncode == 1
    line = one_error_line(process.stderr)
    assert "no token named 'nobody'" in line and "webex-tokens list" in line
    assert process.stdout == ""


def test_show_refuses_an_invalid_name(filled: FileStore) -> None:
    result = invoke("show", "x" * 300)
    assert result.exit_code == 1
    assert "the limit is 255" in one_error_line(result.stderr)


# -- token ---------------------------------------------------------------------------------


def test_token_prints_only_the_token(filled: FileStore) -> None:
    process = run("token", "alice@example.com")
    assert process.returncode == 0, process.stderr
    assert process.stdout == "tok-alice\n"
    assert process.stderr == ""


def test_token_of_a_missing_name_prints_nothing_on_stdout(filled: FileStore) -> None:
    result = invoke("token", "nobody")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "webex-tokens list" in one_error_line(result.stderr)


# -- delete --------------------------------------------------------------------------------


def test_delete_removes_and_a_second_delete_fails(filled: FileStore) -> None:
    process = run("delete", "bob@example.com")
    assert process.returncode == 0, process.stderr
    assert "deleted bob@example.com" in process.stdout
    assert "bob@example.com" not in filled.names()
    again = invoke("delete", "bob@example.com")
    assert again.exit_code == 1
    assert "no token named 'bob@example.com'" in one_error_line(again.stderr)


# -- export / import -----------------------------------------------------------------------


def test_export_writes_a_private_bundle_and_warns(filled: FileStore, tmp_path: Path) -> None:
    target = tmp_path / "out" / "bundle.json"
    target.parent.mkdir()
    process = run("export", "--names", "*@example.com", str(target))
    assert process.returncode == 0, process.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "warning:" in process.stderr and "plain text" in process.stderr
    assert "tok-" not in process.stdout + process.stderr
    bundle = json.loads(target.read_text())
    assert bundle["format"] == "webex-tokens-export" and bundle["version"] == 1
    assert sorted(bundle["tokens"]) == [n for n in filled.names() if n.endswith("@example.com")]
    alice = filled.get("alice@example.com")
    assert alice is not None
    assert Token.from_dict(bundle["tokens"]["alice@example.com"]) == alice


def test_export_refuses_to_overwrite_unless_forced(filled: FileStore, tmp_path: Path) -> None:
    target = tmp_path / "bundle.json"
    target.write_text("precious")
    result = invoke("export", str(target))
    assert result.exit_code == 1
    assert "already exists; pass --force" in one_error_line(result.stderr)
    assert target.read_text() == "precious"
    forced = invoke("export", "--force", str(target))
    assert forced.exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(json.loads(target.read_text())["tokens"]) == 6


def test_export_to_stdout_needs_the_flag(filled: FileStore) -> None:
    refused = invoke("export", "-")
    assert refused.exit_code == 2
    assert "--stdout" in refused.stderr
    allowed = invoke("export", "--stdout", "--names", "alice*", "-")
    assert allowed.exit_code == 0
    assert list(json.loads(allowed.stdout)["tokens"]) == ["alice@example.com"]
    assert "warning:" in allowed.stderr


def test_export_with_no_match_writes_nothing(filled: FileStore, tmp_path: Path) -> None:
    target = tmp_path / "bundle.json"
    result = invoke("export", "--names", "nobody*", str(target))
    assert result.exit_code == 1
    assert "no tokens match 'nobody*'" in one_error_line(result.stderr)
    assert not target.exists()


def test_import_reads_the_legacy_token_file(store_url: str, tmp_path: Path) -> None:
    legacy = tmp_path / ".webex_token.json"
    legacy.write_text(
        json.dumps(
            {
                "access_token": "ZTA2NDkyYTkt-s3cr3tA",
                "refresh_token": "RzdiMDBiMGIt-s3cr3tR",
                "saved_at": "2025-10-31T22:54:13.135722",
            }
        )
    )
    process = run("import", str(legacy))
    assert process.returncode == 0, process.stderr
    assert "1 copied" in process.stdout
    assert "s3cr3t" not in process.stdout + process.stderr
    named = invoke("import", "--name", "hr-bot", str(legacy))
    assert named.exit_code == 0
    store = open_store(store_url)
    assert store.names() == ["default", "hr-bot"]
    token = store.get("hr-bot")
    assert token is not None and token.refresh_token == "RzdiMDBiMGIt-s3cr3tR"


def test_import_of_an_export_round_trips_into_another_store(
    filled: FileStore, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.json"
    assert invoke("export", str(bundle)).exit_code == 0
    other = FileStore(tmp_path / "other.json")
    result = invoke("--store", other.url, "import", str(bundle))
    assert result.exit_code == 0, result.output
    assert "6 copied" in result.stdout
    assert other.names() == filled.names()
    assert other.get("carol@example.com") == filled.get("carol@example.com")


def test_import_skips_existing_names_unless_told(filled: FileStore, tmp_path: Path) -> None:
    legacy = tmp_path / "t.json"
    legacy.write_text(json.dumps({"access_token": "replacement", "saved_at": NOW.isoformat()}))
    skipped = invoke("import", "--name", "alice@example.com", str(legacy))
    assert skipped.exit_code == 0
    assert "1 skipped" in skipped.stdout and "--on-conflict overwrite" in skipped.stderr
    assert filled.get("alice@example.com") == make("tok-alice").replace(saved_at=NOW)
    replaced = invoke(
        "import", "--name", "alice@example.com", "--on-conflict", "overwrite", str(legacy)
    )
    assert replaced.exit_code == 0 and "1 overwritten" in replaced.stdout
    token = filled.get("alice@example.com")
    assert token is not None and token.access_token == "replacement"


def test_import_from_stdin(store_url: str) -> None:
    document = json.dumps({"access_token": "piped", "account": "pipe@example.com"})
    result = invoke("import", "-", input=document)
    assert result.exit_code == 0
    assert open_store(store_url).names() == ["pipe@example.com"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not valid JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        ('{"hello": 1}', "neither a token, an export bundle nor"),
        ('{"access_token": ""}', "does not hold a valid token"),
        ('{"format": "webex-tokens-export", "version": 9, "tokens": {}}', "pip install -U"),
        ('{"version": 1, "tokens": {"a": "gAAAAAencrypted"}}', "is encrypted"),
    ],
)
def test_import_of_a_bad_file_is_one_clear_error(
    store_url: str, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "in.json"
    path.write_text(content)
    result = invoke("import", str(path))
    assert result.exit_code == 1
    assert message in one_error_line(result.stderr)
    assert open_store(store_url).names() == []


def test_import_name_with_a_bundle_is_a_usage_error(filled: FileStore, tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    assert invoke("export", str(bundle)).exit_code == 0
    result = invoke("import", "--name", "x", str(bundle))
    assert result.exit_code == 2


def test_import_of_a_missing_file_is_one_error_line(store_url: str, tmp_path: Path) -> None:
    result = invoke("import", str(tmp_path / "absent.json"))
    assert result.exit_code == 1
    assert "No such file or directory" in one_error_line(result.stderr)


# -- keygen / rotate-key ---------------------------------------------------------------


def test_keygen_prints_a_fernet_key_and_how_to_use_it() -> None:
    process = run("keygen")
    assert process.returncode == 0
    key = process.stdout.strip()
    assert process.stdout == key + "\n"
    Fernet(key.encode())  # a valid key
    assert "export WEBEX_TOKENS_KEY=" in process.stderr
    assert key not in process.stderr


def test_keygen_to_a_private_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "key"
    result = invoke("keygen", "--file", str(path))
    assert result.exit_code == 0 and result.stdout == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    Fernet(key.encode())
    again = invoke("keygen", "--file", str(path))
    assert again.exit_code == 1
    assert path.read_text().strip() == key


def test_rotate_key_re_encrypts_under_the_new_key(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    url = f"fernet+file://{tmp_path}/enc.json"
    with FernetStore(FileStore(tmp_path / "enc.json"), old) as store:
        for name in ("a", "b", "c"):
            store.put(name, make("tok-" + name))
    process = run("--store", url, "rotate-key", env={"WEBEX_TOKENS_KEY": f"{new},{old}"})
    assert process.returncode == 0, process.stderr
    assert "re-encrypted 3 token(s)" in process.stdout
    assert new not in process.stdout and old not in process.stdout
    with FernetStore(FileStore(tmp_path / "enc.json"), new) as store:
        assert [store.get(n) for n in ("a", "b", "c")] == [make("tok-" + n) for n in "abc"]
    with (
        FernetStore(FileStore(tmp_path / "enc.json"), old) as store,
        pytest.raises(DecryptionError),
    ):
        store.get("a")


def test_rotate_key_on_a_plain_store_says_it_is_not_encrypted(filled: FileStore) -> None:
    result = invoke("rotate-key")
    assert result.exit_code == 1
    assert "is not encrypted" in one_error_line(result.stderr)


def test_an_encrypted_store_without_its_key_is_one_error_line(tmp_path: Path) -> None:
    FileStore(tmp_path / "enc.json").put("alice", make("s3cret-access"))
    result = invoke("--store", f"fernet+file://{tmp_path}/enc.json", "list")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "WEBEX_TOKENS_KEY" in line and "webex-tokens keygen" in line


# -- stores / doctor / two named stores -----------------------------------------------------


@pytest.fixture
def two_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A webex-tokens.toml naming dev (a plain file) and prod (Fernet over SQLite)."""
    monkeypatch.setenv("WEBEX_TOKENS_PROD_KEY", Fernet.generate_key().decode())
    config = tmp_path / "webex-tokens.toml"
    config.write_text(
        'default_store = "dev"\n\n'
        "[stores.dev]\n"
        f'url = "file://{tmp_path}/dev/tokens.json"\n'
        'description = "local development"\n\n'
        "[stores.prod]\n"
        f'url = "fernet+sqlite:///{tmp_path}/prod/tokens.db"\n'
        'key_env = "WEBEX_TOKENS_PROD_KEY"\n'
    )
    return config


def test_two_named_stores_side_by_side_from_the_cli_and_python(
    two_stores: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webex_tokens.settings import load_settings

    config = str(two_stores)
    for name in ("alice@dev.example", "bob@dev.example", "carol@dev.example"):
        legacy = tmp_path / f"{name}.json"
        legacy.write_text(json.dumps(make("dev-" + name, account=name).to_dict()))
        assert invoke("--config", config, "import", str(legacy)).exit_code == 0
    bundle = tmp_path / "dev.json"
    assert invoke("--config", config, "export", "--names", "*", str(bundle)).exit_code == 0
    moved = invoke(
        "--config", config, "migrate", "--from", "dev", "--to", "prod", "--names", "[ab]*"
    )
    assert moved.exit_code == 0, moved.output
    assert "2 copied" in moved.stdout and "dev -> prod" in moved.stdout
    prod_token = make("prod-only", account="ops@prod.example")
    settings = load_settings(two_stores)
    with open_store("prod", settings=settings) as prod:
        prod.put("ops@prod.example", prod_token)
        assert prod.names() == ["alice@dev.example", "bob@dev.example", "ops@prod.example"]

    dev_rows = table(invoke("--config", config, "list").stdout)
    assert set(dev_rows) == {"alice@dev.example", "bob@dev.example", "carol@dev.example"}
    assert {row[1] for row in dev_rows.values()} == {"dev"}
    prod_rows = table(run("--config", config, "--store", "prod", "list").stdout)
    assert set(prod_rows) == {"alice@dev.example", "bob@dev.example", "ops@prod.example"}
    everything = invoke("--config", config, "list", "--all-stores")
    assert everything.exit_code == 0
    stores_of: dict[str, list[str]] = {}
    for line in everything.stdout.splitlines()[1:]:
        account, store = line.split()[:2]
        stores_of.setdefault(account, []).append(store)
    assert stores_of["alice@dev.example"] == ["dev", "prod"]
    assert stores_of["carol@dev.example"] == ["dev"] and stores_of["ops@prod.example"] == ["prod"]

    # From Python: the settings file found in the current directory, or given explicitly.
    monkeypatch.chdir(tmp_path)
    with open_store("dev") as dev:
        assert dev.names() == ["alice@dev.example", "bob@dev.example", "carol@dev.example"]
    with open_store("prod", settings=settings) as prod:
        assert prod.get("ops@prod.example") == prod_token
    # The prod database holds ciphertext only; without the key it cannot be read.
    assert b"prod-only" not in (tmp_path / "prod" / "tokens.db").read_bytes()
    monkeypatch.delenv("WEBEX_TOKENS_PROD_KEY")
    denied = invoke("--store", "prod", "show", "ops@prod.example")
    assert denied.exit_code == 1
    assert "WEBEX_TOKENS_PROD_KEY" in one_error_line(denied.stderr)


def test_stores_lists_the_configured_stores(two_stores: Path) -> None:
    process = run("--config", str(two_stores), "stores")
    assert process.returncode == 0, process.stderr
    *table_lines, last = process.stdout.splitlines()
    assert last == f"settings file: {two_stores}"
    header, dev, prod = rows_of("\n".join(table_lines))
    assert header == ["name", "url", "backend", "encrypted", "default", "description"]
    assert dev == [
        "dev",
        f"file://{two_stores.parent}/dev/tokens.json",
        "file",
        "no",
        "*",
        "local development",
    ]
    assert prod[0] == "prod" and prod[2:] == ["sqlite", "yes", "", ""]
    assert prod[1].startswith("fernet+sqlite:///") and "key_env=WEBEX_TOKENS_PROD_KEY" in prod[1]
    chosen = invoke("--config", str(two_stores), "--store", "prod", "stores")
    _, dev, prod = rows_of("\n".join(chosen.stdout.splitlines()[:-1]))
    assert (dev[4], prod[4]) == ("", "*")


def test_stores_without_settings_shows_the_embedded_default(tmp_path: Path) -> None:
    result = invoke("stores")
    assert result.exit_code == 0
    _, row = rows_of("\n".join(result.stdout.splitlines()[:-1]))
    assert row[0] == "(embedded default)" and row[4] == "*"
    assert row[1] == f"sqlite:///{os.environ['XDG_DATA_HOME']}/webex-tokens/tokens.db"
    assert result.stdout.splitlines()[-1] == "settings file: none"


def test_doctor_finds_no_problem_in_healthy_stores(two_stores: Path, tmp_path: Path) -> None:
    from webex_tokens.settings import load_settings

    with open_store("prod", settings=load_settings(two_stores)) as prod:
        prod.put("ops", make("ops"))
    process = run("--config", str(two_stores), "doctor")
    assert process.returncode == 0, process.stdout + process.stderr
    out = process.stdout
    assert "dev: file://" in out and "prod: fernet+sqlite:///" in out
    assert "encrypted (Fernet), keys from the environment variable WEBEX_TOKENS_PROD_KEY" in out
    assert "reachable: 1 account(s), all readable" in out
    assert f"{tmp_path}/prod/tokens.db is mode 600" in out
    assert "WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET not set" in out
    assert "0 problem(s)" in out.splitlines()[-1]


def test_doctor_reports_each_problem_and_exits_1(two_stores: Path, tmp_path: Path) -> None:
    from webex_tokens.settings import load_settings

    settings = load_settings(two_stores)
    with open_store("prod", settings=settings) as prod:
        prod.put("ops", make("ops"))
    with open_store("dev", settings=settings) as dev:
        dev.put("alice", make("alice"))
    (tmp_path / "dev" / "tokens.json").chmod(0o644)
    wrong_key = {"WEBEX_TOKENS_PROD_KEY": Fernet.generate_key().decode()}
    process = run("--config", str(two_stores), "doctor", env=wrong_key)
    assert process.returncode == 1
    problems = [line for line in process.stdout.splitlines() if line.strip().startswith("problem")]
    assert len(problems) == 2, process.stdout
    assert "tokens.json is mode 644" in problems[0] and "chmod 600" in problems[0]
    assert "1 of 1 record(s) unreadable" in problems[1] and "cannot be decrypted" in problems[1]
    assert "2 problem(s)" in process.stdout.splitlines()[-1]
    assert "Traceback" not in process.stderr


def test_doctor_of_an_unreachable_store(tmp_path: Path) -> None:
    FileStore(tmp_path / "x.json").put("alice", make("s3cret-access"))
    result = invoke("--store", f"fernet+file://{tmp_path}/x.json", "doctor")
    assert result.exit_code == 1
    assert "problem  cannot open: no Fernet key" in result.stdout


# -- login / token / refresh against FakeWebex --------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def webex(fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch) -> FakeWebex:
    """FakeWebex with the integration settings (and a free redirect URI) pointing at it."""
    redirect_uri = f"http://127.0.0.1:{free_port()}/oauth/webex/callback"
    fake_webex.add_redirect_uri(redirect_uri)
    monkeypatch.setenv("WEBEX_CLIENT_ID", fake_webex.client_id)
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", fake_webex.client_secret)
    monkeypatch.setenv("WEBEX_BASE_URL", fake_webex.base_url)
    monkeypatch.setenv("WEBEX_REDIRECT_URI", redirect_uri)
    return fake_webex


def issued(fake: FakeWebex, user: str, **changes: object) -> Token:
    token = Token.from_response(fake.issue_token(user), client_id=fake.client_id, account=user)
    return token.replace(**changes) if changes else token


def test_login_opens_the_browser_and_saves_under_the_email(
    webex: FakeWebex, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", webex.open_browser)
    webex.user = "carol@example.com"
    result = invoke("login")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Logged in as carol@example.com; token saved to {store_url} as carol@example.com\n"
    )
    named = invoke("login", "--name", "carol-bot")
    assert named.exit_code == 0
    store = open_store(store_url)
    assert store.names() == ["carol-bot", "carol@example.com"]
    token = store.get("carol@example.com")
    assert token is not None and token.client_id == webex.client_id
    assert token.access_token not in result.output + named.output


def test_login_without_a_browser_takes_the_pasted_redirect_url(
    webex: FakeWebex, store_url: str
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "webex_tokens", "login", "--no-browser", "--name", "pasted"],
        env=dict(os.environ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = next(line.strip() for line in process.stderr if line.strip().startswith("http"))
        location = webex.approve(url)
        stdout, stderr = process.communicate(location + "\n", timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stdout.endswith(f"Logged in as {webex.user}; token saved to {store_url} as pasted\n")
    assert open_store(store_url).names() == ["pasted"]
    with open_store(store_url) as store:
        token = store.get("pasted")
    assert token is not None and token.account == webex.user  # the email, despite --name


def test_ctrl_c_during_login_exits_130_with_one_line(webex: FakeWebex, store_url: str) -> None:
    import signal

    process = subprocess.Popen(
        [sys.executable, "-m", "webex_tokens", "login", "--no-browser"],
        env=dict(os.environ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        next(line for line in process.stderr if line.strip().startswith("http"))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in stderr


def test_login_without_client_credentials_says_how_to_set_them(store_url: str) -> None:
    result = invoke("login")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET are not set" in line


def test_login_with_an_unregistered_redirect_uri_explains_the_fix(
    webex: FakeWebex, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", webex.open_browser)
    monkeypatch.setenv("WEBEX_REDIRECT_URI", f"http://127.0.0.1:{free_port()}/elsewhere")
    result = invoke("login", "--timeout", "5")
    assert result.exit_code == 1
    line = one_error_line(result.stderr.splitlines()[-1])
    assert "redirect_uri_mismatch" in line and "WEBEX_REDIRECT_URI" in line


def test_token_refreshes_a_due_token_first(webex: FakeWebex, store_url: str) -> None:
    store = open_store(store_url)
    store.put("due", issued(webex, "due@example.com", expires_at=NOW + timedelta(seconds=30)))
    process = run("token", "due")
    assert process.returncode == 0, process.stderr
    fresh = store.get("due")
    assert fresh is not None and process.stdout == fresh.access_token + "\n"
    assert (fresh.expires_in() or 0) > 13 * 86400
    assert webex.calls["refresh_token"] == 1
    assert process.stderr == ""


def test_token_with_a_revoked_refresh_token_names_the_login_command(
    webex: FakeWebex, store_url: str
) -> None:
    store = open_store(store_url)
    store.put("gone", issued(webex, "gone@example.com", expires_at=NOW))
    webex.revoke_refresh_tokens()
    result = invoke("token", "gone")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "webex-tokens login --name gone" in one_error_line(result.stderr)


def test_refresh_name_forces_a_refresh(webex: FakeWebex, store_url: str) -> None:
    store = open_store(store_url)
    before = issued(webex, "a@example.com")
    store.put("a@example.com", before)
    process = run("refresh", "a@example.com")
    assert process.returncode == 0, process.stderr
    after = store.get("a@example.com")
    assert after is not None and after.access_token != before.access_token
    assert process.stdout == (
        f"refreshed a@example.com: access token {after.fingerprint} expires in "
        f"{format_duration(after.expires_in() or 0)}\n"
    )
    assert webex.calls["refresh_token"] == 1
    missing = invoke("refresh", "nobody")
    assert missing.exit_code == 1 and "webex-tokens list" in one_error_line(missing.stderr)


# -- migrate -------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> FileStore:
    store = FileStore(tmp_path / "source.json")
    for name in ("alice@acme.example", "bob@acme.example", "carol@other.example"):
        store.put(name, make("tok-" + name, account=name))
    return store


def test_migrate_copies_with_a_summary_and_one_line_per_account(
    source: FileStore, tmp_path: Path
) -> None:
    target_url = f"sqlite:///{tmp_path}/target.db"
    process = run("migrate", "--from", source.url, "--to", target_url, "--names", "*@acme.example")
    assert process.returncode == 0, process.stderr
    assert process.stdout.splitlines()[:2] == [
        "copied alice@acme.example",
        "copied bob@acme.example",
    ]
    assert process.stdout.splitlines()[-1].endswith(
        ": 2 copied, 0 skipped, 0 overwritten, 0 deleted, 0 failed"
    )
    with open_store(target_url) as target:
        assert target.names() == ["alice@acme.example", "bob@acme.example"]
        assert target.get("bob@acme.example") == source.get("bob@acme.example")
    again = invoke("migrate", "--from", source.url, "--to", target_url)
    assert again.exit_code == 0
    assert "1 copied, 2 skipped (2 unchanged)" in again.stdout
    assert again.stderr == ""  # identical tokens need no --on-conflict hint


def test_migrate_dry_run_and_move(
    source: FileStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_STORE", source.url)
    target = FileStore(tmp_path / "target.json")
    dry = invoke("migrate", "--to", target.url, "--move", "--dry-run")
    assert dry.exit_code == 0
    assert "3 copied" in dry.stdout and "(dry run: nothing changed)" in dry.stdout
    assert target.names() == [] and len(source.names()) == 3
    moved = invoke("migrate", "--to", target.url, "--move")
    assert moved.exit_code == 0
    assert "3 copied, 0 skipped, 0 overwritten, 3 deleted, 0 failed" in moved.stdout
    assert source.names() == [] and len(target.names()) == 3


def test_migrate_conflicts_and_failures(source: FileStore, tmp_path: Path) -> None:
    target = FileStore(tmp_path / "target.json")
    target.put("alice@acme.example", make("other"))
    skipped = invoke("migrate", "--from", source.url, "--to", target.url)
    assert skipped.exit_code == 0
    assert "2 copied, 1 skipped" in skipped.stdout
    assert "--on-conflict overwrite" in skipped.stderr
    document = json.loads(source.path.read_text())
    document["tokens"]["broken"] = {"version": 1}
    source.path.write_text(json.dumps(document))
    failed = invoke(
        "migrate", "--from", source.url, "--to", target.url, "--on-conflict", "overwrite"
    )
    assert failed.exit_code == 1
    assert "1 overwritten" in failed.stdout and "1 failed" in failed.stdout
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: broken: ")
    token = target.get("alice@acme.example")
    assert token is not None and token.access_token == "tok-alice@acme.example"


def test_migrate_move_into_the_same_store_is_refused(source: FileStore) -> None:
    result = invoke("migrate", "--from", source.url, "--to", source.url, "--move")
    assert result.exit_code == 1
    assert "same store" in one_error_line(result.stderr)
    assert source.names()
    copied = invoke("migrate", "--from", source.url, "--to", source.url)
    assert copied.exit_code == 0 and "nothing to do" in copied.stdout


def test_list_all_stores_reports_a_broken_store_and_lists_the_rest(
    two_stores: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webex_tokens.settings import load_settings

    with open_store("prod", settings=load_settings(two_stores)) as prod:
        prod.put("ops", make("ops"))
    dev_file = tmp_path / "dev" / "tokens.json"
    dev_file.parent.mkdir(mode=0o700)
    dev_file.write_text("{not json")
    dev_file.chmod(0o600)
    result = invoke("--config", str(two_stores), "list", "--all-stores")
    assert result.exit_code == 1
    assert list(table(result.stdout)) == ["ops"]
    line = one_error_line(result.stderr)
    assert line.startswith("error: dev: ") and "not valid JSON" in line
    assert dev_file.read_text() == "{not json"
    single = invoke("--config", str(two_stores), "list")
    assert single.exit_code == 1 and single.stdout == ""
    assert "not valid JSON" in one_error_line(single.stderr)
    monkeypatch.delenv("WEBEX_TOKENS_PROD_KEY")
    no_key = invoke("--config", str(two_stores), "--store", "dev", "list", "--all-stores")
    assert no_key.exit_code == 1
    errors = no_key.stderr.strip().splitlines()
    assert [e.split(":")[0:2] for e in errors] == [["error", " dev"], ["error", " prod"]]
    assert "WEBEX_TOKENS_PROD_KEY" in errors[1]


def test_library_warnings_are_one_warning_line_on_stderr(
    filled: FileStore, store_path: Path
) -> None:
    store_path.chmod(0o644)
    result = invoke("list")
    assert result.exit_code == 0
    assert len(table(result.stdout)) == 6
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("warning: token file ") and "chmod 600" in lines[0]
