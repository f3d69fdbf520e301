"""No access token, refresh token, client secret, code or verifier in logs, errors or reprs.

The whole flow runs with every logger at DEBUG (ours, Authlib's, requests', urllib3's and
the root logger): login, code exchange, refresh, cached reads, the client's session, and
error paths. The secrets searched for are the real ones, taken from the emulator and the
store, so the test fails as soon as one leaks.
"""

from __future__ import annotations

import logging
import secrets
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from webex_tokens.backends.file import FileStore
from webex_tokens.callback import parse_callback_url
from webex_tokens.client import WebexClient
from webex_tokens.errors import OAuthError, WebexTokensError
from webex_tokens.oauth import WebexOAuth
from webex_tokens.refresh import ensure_fresh
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token

LOGGERS = ("", "authlib", "urllib3", "requests", "webex_tokens")


@pytest.fixture
def fake() -> Iterator[FakeWebex]:
    port = _free_port()
    with FakeWebex(
        client_secret="secret-" + secrets.token_urlsafe(24),
        redirect_uris=(f"http://localhost:{port}/oauth/webex/callback",),
        rotate_refresh_tokens=True,
    ) as emulator:
        yield emulator


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_nothing_secret_is_logged_raised_or_shown(  # noqa: PLR0915 - one flow, in order
    fake: FakeWebex,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    secrets_seen: set[str] = {fake.client_secret}
    shown: list[str] = []  # every message, repr and str produced along the way

    def browser(url: str) -> bool:
        """A browser: approve, then deliver the redirect with urllib (which logs nothing,
        as a real browser's requests are not in this program's logs)."""
        location = fake.approve(url)
        secrets_seen.add(parse_qs(urlsplit(location).query)["code"][0])
        with urllib.request.urlopen(location, timeout=5):  # noqa: S310 - loopback
            pass
        return True

    oauth = WebexOAuth(
        fake.client_id, fake.client_secret, fake.redirect_uris[0], base_url=fake.base_url
    )
    store = FileStore(tmp_path / "tokens.json")

    # Login through the client, then everything the client does.
    client = WebexClient(store=store, oauth=oauth, open_browser=browser)
    token = store.get(fake.user)
    assert token is not None and token.refresh_token is not None
    secrets_seen |= {token.access_token, token.refresh_token}
    assert client.access_token == token.access_token
    refreshed = client.refresh_access_token()
    secrets_seen |= {refreshed["access_token"], refreshed["refresh_token"]}
    assert client.session.get("people/me", timeout=5).status_code == 200
    shown += [repr(client), str(client), repr(client.session), repr(store), repr(oauth)]

    # A manual authorization and its pieces.
    request = oauth.authorization_request()
    secrets_seen.add(request.code_verifier)
    result = parse_callback_url(fake.approve(request.url), request.state)
    secrets_seen.add(result.code)
    manual = oauth.exchange_code(result.code, request)
    secrets_seen |= {manual.access_token, manual.refresh_token or ""}
    shown += [repr(request), str(request), repr(result), str(result), repr(manual), str(manual)]

    # Error paths: a reused code, a wrong secret, a rotated-away refresh token.
    errors: list[WebexTokensError] = []
    with pytest.raises(OAuthError) as reused:
        oauth.exchange_code(result.code, request)
    errors.append(reused.value)
    wrong = WebexOAuth(fake.client_id, "wrong-" + fake.client_secret, base_url=fake.base_url)
    secrets_seen.add(wrong._client_secret)
    with pytest.raises(OAuthError) as refused:
        wrong.refresh(manual)
    errors.append(refused.value)
    oauth.refresh(manual)  # rotates: manual's refresh token is now used up
    stale = Token(access_token=manual.access_token, refresh_token=manual.refresh_token)
    store.put("stale", stale.replace(expires_at=manual.saved_at))
    with pytest.raises(OAuthError) as reuse_detected:
        ensure_fresh(store, "stale", oauth)
    errors.append(reuse_detected.value)
    assert fake.revoked_families == 1  # the error path really ran
    shown += [str(error) for error in errors] + [repr(error) for error in errors]
    shown += [repr(store.get(name)) for name in store.names()]

    printed = capsys.readouterr()
    logged = [caplog.text] + [record.getMessage() for record in caplog.records]
    secrets_seen.discard("")
    assert len(secrets_seen) >= 10
    assert any("people/me" in line for line in logged)  # DEBUG logging really was on
    # The search can fail: the token file itself holds some of these secrets.
    assert any(secret in (tmp_path / "tokens.json").read_text() for secret in secrets_seen)
    haystacks = {"logs": logged, "shown": shown, "stdout/stderr": [printed.out, printed.err]}
    leaks = [
        f"{where}: {secret[:6]}..."
        for where, texts in haystacks.items()
        for secret in secrets_seen
        if any(secret in text for text in texts)
    ]
    assert not leaks, leaks


def test_device_grant_and_id_tokens_leak_nothing(
    fake: FakeWebex, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    fake.device.interval = 0.1
    oauth = WebexOAuth(
        fake.client_id,
        fake.client_secret,
        fake.redirect_uris[0],
        scopes=("spark:all", "openid", "email", "profile"),
        base_url=fake.base_url,
    )
    secrets_seen: set[str] = {fake.client_secret}
    shown: list[str] = []

    flow = oauth.device_authorization()
    secrets_seen.add(flow.device_code)
    fake.device.approve(flow.user_code)
    token = oauth.poll_device(flow)
    assert token.id_token is not None and token.refresh_token is not None
    secrets_seen |= {token.access_token, token.refresh_token, token.id_token}
    shown += [repr(flow), str(flow), repr(token), str(token)]

    request = oauth.authorization_request()
    assert request.nonce is not None  # public: it travels in the browser's URL, as state
    secrets_seen.add(request.code_verifier)
    fake.oidc.break_next_id_token("bad_signature")
    result = parse_callback_url(fake.approve(request.url), request.state)
    secrets_seen.add(result.code)
    with pytest.raises(OAuthError) as refused:
        oauth.exchange_code(result.code, request)
    shown += [repr(request), str(refused.value), repr(refused.value)]
    expired = oauth.device_authorization()
    secrets_seen.add(expired.device_code)
    fake.device.expire(expired.user_code)
    with pytest.raises(OAuthError) as ran_out:
        oauth.poll_device(expired)
    shown += [str(ran_out.value), repr(expired)]

    printed = capsys.readouterr()
    logged = [caplog.text] + [record.getMessage() for record in caplog.records]
    assert any("device/token" in line for line in logged)  # DEBUG logging really was on
    haystacks = {"logs": logged, "shown": shown, "stdout/stderr": [printed.out, printed.err]}
    leaks = [
        f"{where}: {secret[:6]}..."
        for where, texts in haystacks.items()
        for secret in secrets_seen
        if any(secret in text for text in texts)
    ]
    assert not leaks, leaks
