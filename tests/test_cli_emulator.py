"""``webex-tokens emulator``: FakeWebex in the foreground, run as a real process."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_store

_EXPORT = re.compile(r"^  export (?P<name>WEBEX_[A-Z_]+)=(?P<value>.+)$")


class _Emulator:
    """A running ``webex-tokens emulator`` and what it printed before serving."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webex_tokens", "emulator", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.header: list[str] = []
        self.environment: dict[str, str] = {}
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.header.append(line.rstrip("\n"))
            found = _EXPORT.match(line.rstrip("\n"))
            if found:
                self.environment[found["name"]] = shlex.split(found["value"])[0]
            if line.startswith("Requests answered"):
                break
        else:
            raise AssertionError(f"the emulator did not start: {self.process.stderr.read()}")  # type: ignore[union-attr]

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str, str]:
        """Send ``signum``; return the exit code and the rest of stdout and stderr."""
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=20)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=20)


@pytest.fixture
def started() -> Iterator[list[_Emulator]]:
    running: list[_Emulator] = []
    yield running
    for one in running:
        one.kill()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webex_tokens", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


def test_an_app_logs_in_and_refreshes_against_the_emulator_from_what_it_prints(
    started: list[_Emulator], tmp_path: Path
) -> None:
    fake = _Emulator("--port", "0", "--approve-as", "dev@example.com")
    started.append(fake)
    env = fake.environment
    assert set(env) == {
        "WEBEX_BASE_URL",
        "WEBEX_CLIENT_ID",
        "WEBEX_CLIENT_SECRET",
        "WEBEX_REDIRECT_URI",
    }
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", env["WEBEX_BASE_URL"])
    assert any("logins approved as dev@example.com" in line for line in fake.header)

    # An app configured from those variables logs in without a browser.
    oauth = WebexOAuth(
        env["WEBEX_CLIENT_ID"],
        env["WEBEX_CLIENT_SECRET"],
        redirect_uri=env["WEBEX_REDIRECT_URI"],
        base_url=env["WEBEX_BASE_URL"],
    )
    request = oauth.authorization_request()
    approved = requests.get(request.url, allow_redirects=False, timeout=10)
    assert approved.status_code == 302
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    token = oauth.exchange_code(code, request)
    assert token.account == "dev@example.com"
    url = f"file://{tmp_path / 'tokens.json'}"
    with open_store(url) as store:
        store.put("dev", token)

    # The command itself, pointed at the emulator by the same variables, refreshes it.
    refreshed = _cli("--store", url, "refresh", "dev", env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.startswith("refreshed dev: access token sha256:")

    code_, out, err = fake.stop()
    assert code_ == 0, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert lines[-1] == "emulator stopped"
    log = "\n".join(lines[:-1])
    assert re.search(
        r"^\d\d:\d\d:\d\d GET /v1/authorize 302 client=fake-client-id user=dev@example.com",
        log,
        re.M,
    ), log
    assert re.search(r"POST /v1/access_token 200 .*grant=authorization_code", log), log
    assert re.search(r"POST /v1/access_token 200 .*grant=refresh_token", log), log
    with open_store(url) as store:
        kept = store.get("dev")
    assert kept is not None and kept.refresh_token is not None
    for secret in (
        token.access_token,
        token.refresh_token,
        kept.access_token,
        kept.refresh_token,
        code,
        request.code_verifier,
    ):
        assert secret and secret not in out + err


def test_without_approve_as_a_person_signs_in_and_sigterm_stops_it(
    started: list[_Emulator],
) -> None:
    fake = _Emulator("--port", "0")
    started.append(fake)
    assert any("signed in by hand in the browser" in line for line in fake.header)
    page = requests.get(fake.environment["WEBEX_BASE_URL"] + "/authorize", timeout=10)
    assert page.status_code in (200, 400)
    code, out, err = fake.stop(signal.SIGTERM)
    assert code == 0, err
    assert out.splitlines()[-1] == "emulator stopped"


def test_a_port_in_use_is_one_line_with_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("emulator", "--port", str(port), env={})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use; stop what uses it, or choose another "
        "port (0 for any free one)"
    ]


def test_approve_as_must_be_an_email() -> None:
    result = _cli("emulator", "--approve-as", "nobody", env={})
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid value for '--approve-as': 'nobody' is not")
    assert result.stderr.count("\n") == 1
