"""``webex-tokens add NAME --kind bot|personal`` and ``service-app add ORG_ID --app NAME``
against FakeWebex over real HTTP: what is stored, how it is served and refreshed, and a
clear error with nothing stored for each bad input."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from webex_tokens import ServiceApp, Token
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli
from webex_tokens.service_apps import organization_label
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.plugin import ServiceAppSetup

MANAGER = "admin@developer.example"


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def store(tmp_path: Path, fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch) -> FileStore:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"file://{path}")
    monkeypatch.setenv("WEBEX_BASE_URL", fake_webex.base_url)
    monkeypatch.setenv("WEBEX_CLIENT_ID", fake_webex.client_id)
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", fake_webex.client_secret)
    return FileStore(path)


# -- bots and personal access tokens -------------------------------------------------------


def test_a_bot_token_from_stdin_is_stored_served_and_never_refreshed(
    store: FileStore, fake_bot_token: str
) -> None:
    added = invoke("add", "hr-bot", "--kind", "bot", input=fake_bot_token + "\n")
    assert added.exit_code == 0, added.output
    assert "stored the bot's token of fake-bot@webex.bot" in added.stdout
    assert "does not expire" in added.stdout
    assert fake_bot_token not in added.output
    token = store.get("hr-bot")
    assert token is not None
    assert (token.kind, token.account, token.expires_at, token.refresh_token) == (
        "bot",
        "fake-bot@webex.bot",
        None,
        None,
    )
    served = invoke("token", "hr-bot")
    assert served.stdout == fake_bot_token + "\n"
    refreshed = CliRunner().invoke(cli, ["refresh", "hr-bot"])
    line = error_line(refreshed)
    assert "a bot's token cannot be refreshed" in line
    assert "webex-tokens add hr-bot --kind bot" in line
    listed = invoke("list")
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:2] == ["account", "kind"]
    assert row.split()[:2] == ["hr-bot", "bot"] and row.split()[-1] == "ok"


def test_a_personal_token_lasts_twelve_hours_and_shows_as_due(
    store: FileStore, fake_webex: FakeWebex, fake_personal_token: str
) -> None:
    added = invoke("add", "me", "--kind", "personal", input=f"  {fake_personal_token}  \n\n")
    assert added.exit_code == 0, added.output
    assert "stored the personal access token of alice@example.com" in added.stdout
    token = store.get("me")
    assert token is not None and token.kind == "personal"
    left = token.expires_in()
    assert left is not None and 12 * 3600 - 60 < left <= 12 * 3600
    assert invoke("token", "me").stdout == fake_personal_token + "\n"
    row = invoke("list").stdout.splitlines()[1].split()
    assert row[:2] == ["me", "personal"] and row[-1] == "due"
    line = error_line(CliRunner().invoke(cli, ["refresh", "me"]))
    assert "a personal access token cannot be refreshed" in line
    assert "webex-tokens add me --kind personal" in line
    assert fake_webex.calls["refresh_token"] == 0
    # Once it has expired, serving it says how to store a new one.
    store.put("me", token.replace(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)))
    line = error_line(CliRunner().invoke(cli, ["token", "me"]))
    assert "webex-tokens add me --kind personal" in line


BAD_ADDS = [
    (["add", "x", "--kind", "bot"], "", 2, "no token on standard input"),
    (["add", "x", "--kind", "bot"], "one\ntwo\n", 2, "several lines"),
    (["add", "x", "--kind", "bot"], "a" * 70000, 2, "more than a token"),
    (["add", "x", "--kind", "bot"], "two words\n", 1, "is not an access token"),
    (["add", "x", "--kind", "bot"], "not-a-known-token\n", 1, "Webex refused the token (HTTP 401)"),
    (["add", "x", "--kind", "service_app"], "t\n", 2, "'service_app' is not one of"),
    (["add", "x"], "t\n", 2, "missing option '--kind'"),
    (["add", "", "--kind", "bot"], "t\n", 1, "account name"),
]


@pytest.mark.parametrize(("args", "stdin", "code", "words"), BAD_ADDS)
def test_bad_adds_are_one_clear_error_and_store_nothing(
    store: FileStore, args: list[str], stdin: str, code: int, words: str
) -> None:
    result = CliRunner().invoke(cli, args, input=stdin)
    assert result.exit_code == code, result.output
    assert words in result.stderr
    assert "Traceback" not in result.output
    assert store.names() == []


def test_the_wrong_kind_and_a_name_taken_by_another_kind_are_refused(
    store: FileStore, fake_bot_token: str, fake_personal_token: str
) -> None:
    line = error_line(
        CliRunner().invoke(cli, ["add", "x", "--kind", "personal"], input=fake_bot_token)
    )
    assert "this is a bot's token, not a personal access token; add it with --kind bot" in line
    line = error_line(
        CliRunner().invoke(cli, ["add", "x", "--kind", "bot"], input=fake_personal_token)
    )
    assert "add it with --kind personal" in line
    assert store.names() == []
    store.put("alice", Token(access_token="integration-token", refresh_token="r"))
    line = error_line(
        CliRunner().invoke(cli, ["add", "alice", "--kind", "bot"], input=fake_bot_token)
    )
    assert "'alice' already holds an integration's token; delete it first" in line
    stored = store.get("alice")
    assert stored is not None and stored.access_token == "integration-token"


def test_without_webex_the_token_is_stored_unchecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"file://{path}")
    monkeypatch.setenv("WEBEX_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    result = CliRunner().invoke(cli, ["add", "b", "--kind", "bot"], input="some-bot-token\n")
    assert result.exit_code == 0, result.output
    assert "Webex could not be reached, so the token was not checked" in result.stderr
    token = FileStore(path).get("b")
    assert token is not None and (token.kind, token.account) == ("bot", None)


def test_the_hidden_prompt_on_a_terminal_does_not_echo_the_token(
    store: FileStore, fake_bot_token: str
) -> None:
    main, attached = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "webex_tokens", "add", "hr-bot", "--kind", "bot"],
        stdin=attached,
        stdout=attached,
        stderr=attached,
        env=dict(os.environ),
    )
    os.close(attached)
    seen = b""
    deadline = time.monotonic() + 60
    while b"Paste the bot's token" not in seen and time.monotonic() < deadline:
        seen += os.read(main, 4096)
    os.write(main, fake_bot_token.encode() + b"\n")
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert process.wait(timeout=60) == 0, seen
    assert fake_bot_token.encode() not in seen
    assert b"stored the bot's token" in seen
    token = store.get("hr-bot")
    assert token is not None and token.access_token == fake_bot_token


# -- Service Apps --------------------------------------------------------------------------


@pytest.fixture
def apps(
    store: FileStore,
    fake_service_app: ServiceAppSetup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> ServiceAppSetup:
    """Settings with the Service App ``reports``, and its manager stored."""
    fake = fake_service_app.fake
    monkeypatch.setenv("CLI_REPORTS_SECRET", fake_service_app.app.client_secret)
    (tmp_path / "webex-tokens.toml").write_text(
        textwrap.dedent(
            f"""
            [integrations.reports]
            kind = "service_app"
            client_id = "{fake_service_app.app.client_id}"
            client_secret_env = "CLI_REPORTS_SECRET"
            manager = "{MANAGER}"

            [integrations.lonely]
            kind = "service_app"
            client_id = "other-app"
            client_secret_env = "CLI_OTHER_SECRET"

            [integrations.people]
            client_id = "people-app"
            client_secret_env = "CLI_PEOPLE_SECRET"
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    store.put(
        MANAGER,
        Token.from_response(fake_service_app.manager, client_id=fake.client_id, account=MANAGER),
    )
    return fake_service_app


def test_service_app_add_obtains_and_keeps_a_token(apps: ServiceAppSetup, store: FileStore) -> None:
    result = invoke("service-app", "add", apps.org_id, "--app", "reports")
    assert result.exit_code == 0, result.output
    name = f"reports:{organization_label(apps.org_id)}"
    assert f"saved to {store.url} as {name}" in result.stdout
    token = store.get(name)
    assert token is not None and (token.kind, token.org_id) == ("service_app", apps.org_id)
    assert apps.fake.service_apps.mints == {apps.org_id: 1}
    named = invoke("service-app", "add", apps.org_id, "--app", "reports", "--name", "acme")
    assert named.exit_code == 0, named.output
    assert store.get("acme") is not None
    listed = invoke("list")
    header = listed.stdout.splitlines()[0].split()
    assert header[:3] == ["account", "kind", "organization"]
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["acme"][1:3] == ["service_app", organization_label(apps.org_id)]
    assert rows[MANAGER][1:3] == ["integration", "-"]
    shown = invoke("show", "acme").stdout
    assert "service_app" in shown and organization_label(apps.org_id) in shown
    assert token.access_token not in listed.output + shown


def test_refresh_all_keeps_service_app_tokens_alive(
    apps: ServiceAppSetup, store: FileStore
) -> None:
    app = ServiceApp(apps.app.client_id, apps.app.client_secret, base_url=apps.fake.base_url)
    minted = app.obtain(apps.org_id, apps.manager_token)
    soon = datetime.now(timezone.utc) + timedelta(days=2)
    store.put("acme", minted.replace(refresh_token_expires_at=soon))
    result = invoke("refresh", "--all")
    assert result.exit_code == 0, result.output
    assert apps.fake.service_apps.refreshes == {apps.org_id: 1}
    fresh = store.get("acme")
    assert fresh is not None and fresh.access_token != minted.access_token
    assert fresh.kind == "service_app"


BAD_SERVICE_APP_ADDS = [
    (["--app", "nope"], r"no [integrations.nope] in the settings (configured: reports, lonely"),
    (["--app", "people"], "[integrations.people] is an integration, not a Service App"),
    (["--app", "lonely"], "[integrations.lonely] names no manager; add manager = ACCOUNT"),
    (["--app", "reports", "--name", "a\x07b"], "account name"),
]


@pytest.mark.parametrize(("args", "words"), BAD_SERVICE_APP_ADDS)
def test_bad_service_app_adds_are_one_clear_error_and_store_nothing(
    apps: ServiceAppSetup, store: FileStore, args: list[str], words: str
) -> None:
    line = error_line(CliRunner().invoke(cli, ["service-app", "add", apps.org_id, *args]))
    assert words in line
    assert store.names() == [MANAGER]
    assert apps.fake.calls["service_app_token"] == 0


def test_service_app_add_refusals_store_nothing(apps: ServiceAppSetup, store: FileStore) -> None:
    line = error_line(
        CliRunner().invoke(cli, ["service-app", "add", "nonsense", "--app", "reports"])
    )
    assert "not a Webex organization ID" in line
    stranger = apps.fake.org_id("stranger.example")
    line = error_line(CliRunner().invoke(cli, ["service-app", "add", stranger, "--app", "reports"]))
    assert "has not authorized the Service App" in line
    store.delete(MANAGER)
    line = error_line(
        CliRunner().invoke(cli, ["service-app", "add", apps.org_id, "--app", "reports"])
    )
    assert f"no token is stored for {MANAGER!r}" in line
    assert store.names() == []
    assert apps.fake.service_apps.mints == {}


def test_global_options_after_the_subcommand(
    apps: ServiceAppSetup, tmp_path: Path, store: FileStore
) -> None:
    other = tmp_path / "other.json"
    FileStore(other).put(MANAGER, store.get(MANAGER))  # type: ignore[arg-type]
    result = invoke(
        "service-app",
        "add",
        apps.org_id,
        "--app",
        "reports",
        "--name",
        "x",
        "--store",
        f"file://{other}",
    )
    assert result.exit_code == 0, result.output
    assert FileStore(other).get("x") is not None and store.get("x") is None


def test_list_with_every_kind_fits_an_80_column_terminal(
    apps: ServiceAppSetup, store: FileStore, tmp_path: Path, fake_bot_token: str
) -> None:
    from test_cli_tables import on_terminal

    app = ServiceApp(apps.app.client_id, apps.app.client_secret, base_url=apps.fake.base_url)
    store.put(
        "reports-production@acme-corporation.example", app.obtain(apps.org_id, apps.manager_token)
    )
    store.put("hr-bot", Token(access_token=fake_bot_token, kind="bot"))
    store.put("me", Token(access_token="p", kind="personal"))
    _, lines = on_terminal("list", cwd=tmp_path, env={})
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert "…" not in "\n".join(lines)
    text = "\n".join(lines)
    names = [line.split()[0] for line in lines if line and line[0] != " "]
    assert names[names.index("hr-bot") + 1] == "[bot]"
    assert names[names.index("me") + 1] == "[personal]"
    assert "[service_app]" in names
    assert f"[org {organization_label(apps.org_id)[:8]}]" in text
