"""The examples run as users run them, against FakeWebex, configured only through the
standard settings (WEBEX_* and WEBEX_TOKENS_* variables):

- examples/fastapi_app.py under uvicorn, logged in through by a browser-like client;
- examples/bot.py as a script, with a store seeded with an expired token;
- the keep-alive command of examples/keep_alive/ (cron and systemd), against a seeded store.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from webex_tokens.registry import open_url
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEEP_ALIVE = EXAMPLES / "keep_alive"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(fake: FakeWebex, store_url: str, **more: str) -> dict[str, str]:
    """The process environment with the integration pointed at FakeWebex."""
    return {
        **os.environ,
        "WEBEX_CLIENT_ID": fake.client_id,
        "WEBEX_CLIENT_SECRET": fake.client_secret,
        "WEBEX_BASE_URL": fake.base_url,
        "WEBEX_TOKENS_STORE": store_url,
        "PYTHONUNBUFFERED": "1",
        **more,
    }


def seed(url: str, fake: FakeWebex, name: str, *, days_ago: float) -> Token:
    """Store a token for ``name`` issued ``days_ago`` days ago (it lasts 14 days)."""
    issued = datetime.now(timezone.utc) - timedelta(days=days_ago)
    token = Token.from_response(
        fake.issue_token(name), now=issued, client_id=fake.client_id, account=name
    )
    with open_url(url) as store:
        store.put(name, token)
    return token


def stored(url: str, name: str) -> Token:
    with open_url(url) as store:
        token = store.get(name)
    assert token is not None
    return token


def test_fastapi_example_logs_users_in_and_calls_webex(
    fake_webex: FakeWebex, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    redirect_uri = base + "/oauth/webex/callback"
    fake_webex.add_redirect_uri(redirect_uri)
    url = f"sqlite:///{tmp_path}/tokens.db"
    env = environment(
        fake_webex,
        url,
        WEBEX_REDIRECT_URI=redirect_uri,
        WEBEX_TOKENS_SECRET_KEY="example-secret-key-0123456789",
    )
    log_path = tmp_path / "app.log"
    with log_path.open("wb") as log_file:
        app = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "fastapi_app.py")],
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert app.poll() is None, log_path.read_text()
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the example app did not start"
            time.sleep(0.1)

        codes = []
        for user in ("alice@example.com", "bob@example.com"):
            fake_webex.user = user
            with httpx.Client(follow_redirects=True, timeout=10) as browser:
                # login -> Webex -> callback -> the app's success_url, /me
                me = browser.get(base + "/oauth/webex/login")
                assert me.status_code == 200, me.text
                assert len(me.history) == 3 and str(me.url) == base + "/me"
                codes.append(httpx.URL(me.history[1].headers["location"]).params["code"])
                assert me.json()["account"] == user
                assert me.json()["displayName"]
        with httpx.Client(timeout=10) as stranger:
            assert stranger.get(base + "/me").status_code == 401
    finally:
        app.send_signal(signal.SIGINT)
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()

    logs = log_path.read_text()
    assert "/oauth/webex/callback?[redacted]" in logs  # the request log is there, redacted
    with open_url(url) as store:
        assert store.names() == ["alice@example.com", "bob@example.com"]
        tokens = [store.get(name) for name in store.names()]
    secrets = [fake_webex.client_secret, *codes]
    for token in tokens:
        assert token is not None and token.refresh_token is not None
        secrets += [token.access_token, token.refresh_token]
    for secret in secrets:
        assert secret not in logs


def test_bot_refreshes_and_calls_webex(fake_webex: FakeWebex, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tokens.db"
    expired = seed(url, fake_webex, "hr-bot@example.com", days_ago=30)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "bot.py")],
        cwd=tmp_path,
        env=environment(fake_webex, url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "bot hr-bot@example.com is Hr-bot <hr-bot@example.com>" in result.stdout
    assert fake_webex.calls["refresh_token"] == 1
    fresh = stored(url, "hr-bot@example.com")
    assert fresh.access_token != expired.access_token
    for secret in (expired.access_token, fresh.access_token, fake_webex.client_secret):
        assert secret not in result.stdout + result.stderr


def test_bot_without_a_token_says_how_to_log_in(fake_webex: FakeWebex, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "bot.py")],
        cwd=tmp_path,
        env=environment(fake_webex, f"sqlite:///{tmp_path}/empty.db"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "webex-tokens login" in result.stderr
    assert "Traceback" not in result.stderr


def keep_alive_commands() -> dict[str, list[str]]:
    """The webex-tokens command line of each scheduler snippet, from the program name on."""
    cron = [
        line
        for line in (KEEP_ALIVE / "webex-tokens-refresh.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    service = [
        line.partition("=")[2]
        for line in (KEEP_ALIVE / "webex-tokens-refresh.service").read_text().splitlines()
        if line.startswith("ExecStart=")
    ]
    timer = (KEEP_ALIVE / "webex-tokens-refresh.timer").read_text()
    assert "OnCalendar=" in timer and "[Install]" in timer
    commands = {}
    for source, lines in (("cron", cron), ("systemd", service)):
        assert len(lines) == 1, source
        words = shlex.split(lines[0].split("&&")[-1].split(">>")[0])
        program = next(i for i, word in enumerate(words) if word.endswith("/webex-tokens"))
        commands[source] = words[program + 1 :]
    return commands


def test_keep_alive_snippets_refresh_only_the_due_accounts(
    fake_webex: FakeWebex, tmp_path: Path
) -> None:
    commands = keep_alive_commands()
    assert commands["cron"] == commands["systemd"] == ["refresh", "--all", "--due-within", "7d"]
    url = f"sqlite:///{tmp_path}/tokens.db"
    due = seed(url, fake_webex, "due@example.com", days_ago=10)  # expires in 4 days
    fine = seed(url, fake_webex, "fine@example.com", days_ago=1)  # expires in 13 days
    program = Path(sys.executable).with_name("webex-tokens")
    if not program.exists():
        pytest.fail(f"{program} is missing: install the package (pip install -e .)")
    result = subprocess.run(
        [str(program), *commands["systemd"]],
        cwd=tmp_path,
        env=environment(fake_webex, url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 refreshed, 0 failed, 1 not due within 7d" in result.stdout
    assert stored(url, "due@example.com").access_token != due.access_token
    assert stored(url, "fine@example.com").access_token == fine.access_token
    assert fake_webex.calls["refresh_token"] == 1


def test_login_with_webex_example_knows_who_signed_in(
    fake_webex: FakeWebex, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    redirect_uri = base + "/oauth/webex/callback"
    fake_webex.add_redirect_uri(redirect_uri)
    url = f"sqlite:///{tmp_path}/tokens.db"
    env = environment(
        fake_webex,
        url,
        WEBEX_REDIRECT_URI=redirect_uri,
        WEBEX_SCOPES="spark:all openid email profile",
        WEBEX_TOKENS_SECRET_KEY="example-secret-key-0123456789",
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    log_path = tmp_path / "app.log"
    with log_path.open("wb") as log_file:
        app = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "login_with_webex.py")],
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert app.poll() is None, log_path.read_text()
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the example app did not start"
            time.sleep(0.1)

        fake_webex.user = "erin.example@example.com"
        with httpx.Client(follow_redirects=True, timeout=10) as browser:
            assert "Login with Webex" in browser.get(base + "/").text
            home = browser.get(base + "/oauth/webex/login")  # Webex, callback, then /
            assert home.status_code == 200 and str(home.url) == base + "/"
            assert "Hello Erin Example" in home.text
            person = browser.get(base + "/whoami").json()
            assert person["email"] == "erin.example@example.com"
            assert person["account"] == "erin.example@example.com" and person["sub"]
        fake_webex.oidc.break_next_id_token("wrong_nonce")
        with httpx.Client(follow_redirects=True, timeout=10) as stranger:
            refused = stranger.get(base + "/oauth/webex/login")
            assert refused.status_code == 400
            assert stranger.get(base + "/whoami").status_code == 401
    finally:
        app.send_signal(signal.SIGINT)
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()

    with open_url(url) as store:
        assert store.names() == ["erin.example@example.com"]  # the refused login stored nothing
        token = store.get("erin.example@example.com")
    assert token is not None and token.id_token is not None
    assert token.id_token not in log_path.read_text()
