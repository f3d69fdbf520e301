"""The device grant (webex_tokens.device) against FakeWebex over real HTTP: pending in both
styles, slow_down, the default interval, expiry, timeout, denial, 429, and the CLI's
``login --device``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from webex_tokens import open_store
from webex_tokens.cli import cli
from webex_tokens.cli.engine import qr_code
from webex_tokens.device import DeviceAuthorization
from webex_tokens.errors import AuthorizationDenied, DeviceCodeExpired, TokenEndpointError
from webex_tokens.login import Notice
from webex_tokens.oauth import WebexOAuth
from webex_tokens.testing.fake_webex import FakeWebex


@pytest.fixture
def fast(fake_webex: FakeWebex) -> FakeWebex:
    """An emulator whose device codes are polled every 0.2 s, the first poll too."""
    fake_webex.device.interval = 0.2
    fake_webex.device.first_poll_waits = True
    return fake_webex


@pytest.fixture
def oauth(fake_webex: FakeWebex) -> WebexOAuth:
    return WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        base_url=fake_webex.base_url,
        scopes=("spark:all",),
        timeout=5,
        backoff=0.01,
    )


class FakeTime:
    """An injected clock and sleep: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


@pytest.mark.parametrize("style", ["webex", "rfc8628"])
def test_device_login_polls_once_per_interval_until_approved(
    fast: FakeWebex, oauth: WebexOAuth, style: str, capfd: pytest.CaptureFixture[str]
) -> None:
    fast.device.pending_style = style
    fast.device.auto_approve_as = "dev@example.com"
    fast.device.auto_approve_after_polls = 4
    notices: list[Notice] = []
    started = time.monotonic()
    token = oauth.device_login(notify=notices.append, timeout=20)
    elapsed = time.monotonic() - started

    flow = fast.device.latest
    assert token.account == "dev@example.com" and token.refresh_token is not None
    assert [poll.outcome for poll in flow.polls] == ["authorization_pending"] * 4 + ["issued"]
    assert {poll.status for poll in flow.polls[:-1]} == {428 if style == "webex" else 400}
    # One request per interval: never sooner (no slow_down), and no more than time allows.
    assert all(gap >= 0.2 for gap in flow.gaps), flow.gaps
    assert flow.polls[0].at - flow.issued_at >= 0.2
    assert len(flow.polls) <= elapsed / 0.2 + 1
    [notice] = notices
    assert notice.kind == "device_code" and notice.user_code == flow.user_code
    assert notice.url == f"{fast.device.verification_uri}?userCode={flow.user_code}"
    assert flow.user_code in notice.message and fast.device.verification_uri in notice.message
    assert capfd.readouterr() == ("", "")  # the library prints nothing itself


def test_slow_down_adds_five_seconds_and_nothing_is_sent_after_expiry(
    fast: FakeWebex, oauth: WebexOAuth
) -> None:
    fast.device.first_poll_waits = False
    fast.device.expires_in = 60
    flow = oauth.device_authorization()
    fake_time = FakeTime()  # polls arrive at once, so the emulator says slow_down

    with pytest.raises(DeviceCodeExpired, match="expired before anyone approved it") as caught:
        oauth.poll_device(flow, clock=fake_time.clock, sleep=fake_time.sleep)

    outcomes = [poll.outcome for poll in fast.device.latest.polls]
    assert outcomes[:3] == ["authorization_pending", "slow_down", "slow_down"]
    assert fake_time.sleeps[:4] == [0.2, 0.2, 5.2, 10.2]
    # The last wait ends at the code's expiry, and no poll follows it.
    assert fake_time.now == pytest.approx(flow.expires_at.timestamp(), abs=0.01)
    assert len(outcomes) == len(fake_time.sleeps) - 1
    assert "run the login again" in str(caught.value)


def test_interval_defaults_to_five_seconds(fake_webex: FakeWebex, oauth: WebexOAuth) -> None:
    fake_webex.device.interval = None
    fake_webex.device.auto_approve_as = "dev@example.com"
    flow = oauth.device_authorization()
    assert flow.interval == 5.0
    fake_time = FakeTime()
    token = oauth.poll_device(flow, clock=fake_time.clock, sleep=fake_time.sleep)
    assert fake_time.sleeps == [5.0] and token.account == "dev@example.com"


def test_expired_token_answer_raises_device_code_expired(
    fast: FakeWebex, oauth: WebexOAuth
) -> None:
    flow = oauth.device_authorization()
    fast.device.expire(flow.user_code)
    with pytest.raises(DeviceCodeExpired, match=flow.user_code):
        oauth.poll_device(flow)
    assert [poll.outcome for poll in fast.device.latest.polls] == ["expired_token"]


def test_code_running_out_sends_no_poll_after_expiry(fast: FakeWebex, oauth: WebexOAuth) -> None:
    fast.device.expires_in = 0.7
    with pytest.raises(DeviceCodeExpired):
        oauth.poll_device(oauth.device_authorization())
    flow = fast.device.latest
    assert flow.polls and flow.polls_after_expiry == 0
    assert {poll.outcome for poll in flow.polls} == {"authorization_pending"}


def test_timeout_raises_device_code_expired(fast: FakeWebex, oauth: WebexOAuth) -> None:
    flow = oauth.device_authorization()
    started = time.monotonic()
    with pytest.raises(DeviceCodeExpired, match=r"within 0\.7 seconds") as caught:
        oauth.poll_device(flow, timeout=0.7)
    assert 0.6 <= time.monotonic() - started < 3
    assert len(fast.device.latest.polls) <= 3
    assert "--timeout" in str(caught.value)


def test_denial_raises_authorization_denied(fast: FakeWebex, oauth: WebexOAuth) -> None:
    flow = oauth.device_authorization()
    fast.device.deny(flow.user_code)
    with pytest.raises(AuthorizationDenied, match="declined"):
        oauth.poll_device(flow)


def test_429_waits_for_retry_after_before_the_next_poll(fast: FakeWebex, oauth: WebexOAuth) -> None:
    fast.device.auto_approve_as = "dev@example.com"
    fast.device.auto_approve_after_polls = 1
    fast.fail_next(429, endpoint="device_token", retry_after=0.6)
    token = oauth.poll_device(oauth.device_authorization())
    polls = fast.device.latest.polls
    assert [poll.outcome for poll in polls] == ["injected", "issued"]
    assert polls[1].at - polls[0].at >= 0.6
    assert token.account == "dev@example.com"


def test_429_without_retry_after_slows_down(fast: FakeWebex, oauth: WebexOAuth) -> None:
    fast.device.first_poll_waits = False  # the clock is ours: the emulator sees no waits
    fast.device.auto_approve_as = "dev@example.com"
    fast.device.auto_approve_after_polls = 1
    fast.fail_next(429, endpoint="device_token")
    fake_time = FakeTime()
    flow = oauth.device_authorization()
    oauth.poll_device(flow, clock=fake_time.clock, sleep=fake_time.sleep)
    assert fake_time.sleeps == [0.2, 5.2]


def test_refused_client_is_a_token_endpoint_error(fake_webex: FakeWebex) -> None:
    wrong = WebexOAuth("C-unknown", "secret", base_url=fake_webex.base_url, timeout=5)
    with pytest.raises(TokenEndpointError, match="WEBEX_CLIENT_ID") as caught:
        wrong.device_authorization()
    assert caught.value.error == "invalid_client"


def test_device_authorization_repr_hides_the_device_code(oauth: WebexOAuth) -> None:
    flow = oauth.device_authorization()
    assert isinstance(flow, DeviceAuthorization)
    assert flow.device_code not in repr(flow) and flow.user_code in repr(flow)
    assert 0 < flow.expires_in() <= 300


# -- webex-tokens login --device -------------------------------------------------------------


@pytest.fixture
def cli_env(fast: FakeWebex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeWebex:
    for name, value in fast.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"file://{tmp_path}/tokens.json")
    monkeypatch.setenv("WEBEX_SCOPES", "spark:all")
    fast.device.auto_approve_as = "dev@example.com"
    fast.device.auto_approve_after_polls = 1
    return fast


def test_login_device_shows_code_and_link_and_saves_under_the_email(cli_env: FakeWebex) -> None:
    result = CliRunner().invoke(cli, ["login", "--device"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    flow = cli_env.device.latest
    assert f"enter the code {flow.user_code}" in result.stderr
    assert f"{cli_env.device.verification_uri}?userCode={flow.user_code}" in result.stderr
    assert "█" not in result.stderr  # not a terminal: no QR code
    assert "Logged in as dev@example.com" in result.stdout
    with open_store() as store:
        assert store.names() == ["dev@example.com"]


def test_login_device_with_a_name_still_records_the_email(cli_env: FakeWebex) -> None:
    result = CliRunner().invoke(
        cli, ["login", "--device", "--name", "ops-box"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    with open_store() as store:
        token = store.get("ops-box")
        assert store.names() == ["ops-box"]
    assert token is not None and token.account == "dev@example.com"


def test_login_device_denied_is_one_line_and_stores_nothing(cli_env: FakeWebex) -> None:
    cli_env.device.auto_approve_as = None
    cli_env.fail_next(400, endpoint="device_token", body=b'{"error": "access_denied"}')
    result = CliRunner().invoke(cli, ["login", "--device"])
    assert result.exit_code == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert "declined" in line and "Traceback" not in result.output
    with open_store() as store:
        assert store.names() == []


def test_login_device_refuses_browser_options(cli_env: FakeWebex) -> None:
    result = CliRunner().invoke(cli, ["login", "--device", "--port", "8000"])
    assert result.exit_code == 2 and "--device takes neither" in result.stderr


def test_qr_code_draws_the_link_for_a_terminal() -> None:
    drawn = qr_code("http://127.0.0.1:8/verify?userCode=BCDF-GHJK")
    lines = drawn.splitlines()
    assert len(lines) > 10 and len({len(line) for line in lines}) == 1
    assert set(drawn) <= {"█", "▀", "▄", " ", "\n"}


def test_login_device_draws_a_qr_code_on_a_terminal(fast: FakeWebex, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    fast.device.auto_approve_as = "dev@example.com"
    fast.device.auto_approve_after_polls = 1
    env = {
        **os.environ,
        **fast.environment(),
        "WEBEX_TOKENS_STORE": f"file://{tmp_path}/tokens.json",
        "WEBEX_SCOPES": "spark:all",
    }
    controller, terminal = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "webex_tokens", "login", "--device"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other side is closed: all was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert process.returncode == 0, shown.decode()
    text = shown.decode()
    assert "enter the code" in text and text.count("█") > 50  # the QR code of the link
    assert b"Logged in as dev@example.com" in process.stdout
