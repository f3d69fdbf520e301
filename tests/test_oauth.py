"""WebexOAuth against FakeWebex over real HTTP: the flow, the guide's troubleshooting cases,
retries and error messages."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from webex_tokens.callback import parse_callback_url
from webex_tokens.errors import (
    AuthorizationDenied,
    CallbackError,
    ConfigError,
    OAuthError,
    ReauthorizationRequired,
    RedirectURIMismatch,
    TokenEndpointError,
)
from webex_tokens.oauth import AuthorizationRequest, WebexOAuth
from webex_tokens.settings import load_settings
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redirect_uri(fake_webex: FakeWebex) -> str:
    """A loopback redirect URI on a free port, registered with the emulator."""
    uri = f"http://localhost:{free_port()}/oauth/webex/callback"
    fake_webex.add_redirect_uri(uri)
    return uri


@pytest.fixture
def oauth(fake_webex: FakeWebex, redirect_uri: str) -> WebexOAuth:
    return WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=redirect_uri,
        base_url=fake_webex.base_url,
        timeout=5,
        backoff=0.01,
    )


def issued(fake: FakeWebex, *, expired: bool = False) -> Token:
    """A token the emulator knows, as if logged in (optionally already expired)."""
    now = datetime.now(timezone.utc) - (timedelta(days=30) if expired else timedelta(0))
    return Token.from_response(
        fake.issue_token(), now=now, client_id=fake.client_id, account=fake.user
    )


def deliver(location: str) -> tuple[int, bytes]:
    """GET ``location`` like a browser (urllib: the code stays out of the logs)."""
    try:
        with urllib.request.urlopen(location, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# -- authorization requests ------------------------------------------------------------


def test_authorization_request_has_fresh_state_and_s256_challenge(oauth: WebexOAuth) -> None:
    first, second = oauth.authorization_request(), oauth.authorization_request()
    assert first.state != second.state and first.code_verifier != second.code_verifier
    params = {k: v[0] for k, v in parse_qs(urlsplit(first.url).query).items()}
    assert first.url.startswith(oauth.base_url + "/authorize?")
    assert params["response_type"] == "code"
    assert params["client_id"] == oauth.client_id
    assert params["redirect_uri"] == oauth.redirect_uri == first.redirect_uri
    assert params["scope"] == "spark:all"
    assert params["state"] == first.state
    assert params["code_challenge_method"] == "S256"
    import base64
    import hashlib

    digest = hashlib.sha256(first.code_verifier.encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert first.state not in repr(first) and first.code_verifier not in repr(first)


def test_code_exchange_labels_the_token_with_the_email(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    fake_webex.user = "bob@example.com"
    request = oauth.authorization_request()
    result = parse_callback_url(fake_webex.approve(request.url), request.state)
    token = oauth.exchange_code(result.code, request)
    assert token.account == "bob@example.com"
    assert token.client_id == fake_webex.client_id
    assert token.refresh_token and not token.is_expired(leeway=3600)
    assert fake_webex.calls["people_me"] == 1


def test_named_account_still_records_the_email(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    request = oauth.authorization_request()
    result = parse_callback_url(fake_webex.approve(request.url), request.state)
    token = oauth.exchange_code(result.code, request, account="hr-bot")
    assert token.account == fake_webex.user and fake_webex.calls["people_me"] == 1


def test_swapped_or_altered_request_is_refused_before_any_token_request(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    request = oauth.authorization_request()
    code = parse_callback_url(fake_webex.approve(request.url), request.state).code
    other = WebexOAuth("another-client", "secret", base_url=fake_webex.base_url)
    swapped_verifier = AuthorizationRequest(
        request.url, request.state, "x" * 64, request.redirect_uri
    )
    swapped_redirect = AuthorizationRequest(
        request.url.replace("localhost", "127.0.0.1"),
        request.state,
        request.code_verifier,
        request.redirect_uri.replace("localhost", "127.0.0.1"),
    )
    for bad, what in (
        (swapped_verifier, "code_challenge"),
        (swapped_redirect, "redirect URI"),
    ):
        with pytest.raises(OAuthError, match=what) as caught:
            oauth.exchange_code(code, bad)
        assert "does not belong to this integration" in str(caught.value)
    with pytest.raises(OAuthError, match="client_id"):
        other.exchange_code(code, request)
    assert fake_webex.calls["access_token"] == 0


# -- login --------------------------------------------------------------------------------


def test_login_as_a_browser_would(
    oauth: WebexOAuth, fake_webex: FakeWebex, capsys: pytest.CaptureFixture[str]
) -> None:
    token = oauth.login(open_browser=fake_webex.open_browser, timeout=10)
    assert token.account == fake_webex.user
    # The seed's bytes/str bug: the page is sent as bytes, with a status.
    assert fake_webex.last_callback_status == 200
    assert "sign-in complete" in (fake_webex.last_callback_page or "").lower()
    assert oauth.whoami(token) == fake_webex.user
    assert "/authorize?" in capsys.readouterr().err


def test_login_on_another_port(fake_webex: FakeWebex) -> None:
    port = free_port()
    fake_webex.add_redirect_uri(f"http://localhost:{port}/cb")
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri="http://localhost:1/cb",
        base_url=fake_webex.base_url,
    )
    token = oauth.login(open_browser=fake_webex.open_browser, timeout=10, port=port)
    assert token.account == fake_webex.user


def test_redirect_uri_mismatch_explains_exact_match_and_both_fixes(
    fake_webex: FakeWebex,
) -> None:
    unregistered = f"http://localhost:{free_port()}/oauth/webex/callback"
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=unregistered,
        base_url=fake_webex.base_url,
    )
    with pytest.raises(RedirectURIMismatch) as caught:
        oauth.login(open_browser=fake_webex.open_browser, timeout=5)
    message = str(caught.value)
    assert "redirect_uri_mismatch" in message and unregistered in message
    assert "exactly" in message and "port and path" in message
    assert "developer.webex.com" in message  # fix 1: the integration's redirect URI
    assert "WEBEX_REDIRECT_URI" in message  # fix 2: the environment
    assert fake_webex.calls["access_token"] == 0


def test_redirect_uri_mismatch_from_the_token_endpoint(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    request = oauth.authorization_request()
    code = parse_callback_url(fake_webex.approve(request.url), request.state).code
    body = {"error": "redirect_uri_mismatch", "error_description": "no match"}
    fake_webex.fail_next(400, body=json.dumps(body).encode())
    with pytest.raises(RedirectURIMismatch, match="WEBEX_REDIRECT_URI"):
        oauth.exchange_code(code, request)


@pytest.mark.parametrize("failure", ["returns-false", "raises", "none"])
def test_browser_cannot_open_prints_url_and_accepts_pasted_redirect(
    oauth: WebexOAuth,
    fake_webex: FakeWebex,
    capsys: pytest.CaptureFixture[str],
    failure: str,
) -> None:
    def broken(url: str) -> bool:
        if failure == "raises":
            raise OSError("no display")
        return False

    def paste(question: str) -> str:
        printed = capsys.readouterr().err
        url = next(line.strip() for line in printed.splitlines() if "/authorize?" in line)
        return fake_webex.approve(url)

    opener: Callable[[str], bool] | None = None if failure == "none" else broken
    token = oauth.login(open_browser=opener, timeout=10, prompt=paste)
    assert token.account == fake_webex.user
    assert fake_webex.calls["authorization_code"] == 1


def test_pasting_retries_after_a_wrong_paste(
    oauth: WebexOAuth, fake_webex: FakeWebex, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[str] = []

    def paste(question: str) -> str:
        if not answers:
            answers.append("not a url")
            return "not a url"
        url = next(
            line.strip() for line in capsys.readouterr().err.splitlines() if "/authorize?" in line
        )
        return fake_webex.approve(url)

    token = oauth.login(open_browser=None, timeout=10, prompt=paste)
    assert token.account == fake_webex.user


def test_remote_redirect_uri_uses_the_pasted_url_only(fake_webex: FakeWebex) -> None:
    remote = "https://app.example.com/oauth/webex/callback"
    fake_webex.add_redirect_uri(remote)
    oauth = WebexOAuth(
        fake_webex.client_id, fake_webex.client_secret, remote, base_url=fake_webex.base_url
    )
    opened: list[str] = []

    def browser(url: str) -> bool:
        opened.append(url)
        return True

    token = oauth.login(
        open_browser=browser, timeout=5, prompt=lambda _: fake_webex.approve(opened[0])
    )
    assert token.account == fake_webex.user
    with pytest.raises(CallbackError, match="--port only applies"):
        oauth.login(open_browser=browser, port=free_port())


def test_port_in_use_names_the_port(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    port = urlsplit(oauth.redirect_uri).port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(CallbackError, match=f"port {port}") as caught:
            oauth.login(open_browser=fake_webex.open_browser, timeout=5)
    assert "already in use" in str(caught.value)
    assert fake_webex.calls["authorize"] == 0


def test_callback_without_code_is_an_insufficient_parameters_error(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    def browser(url: str) -> bool:
        location = fake_webex.approve(url)
        state = parse_qs(urlsplit(location).query)["state"][0]
        status, page = deliver(oauth.redirect_uri + "?state=" + state + "&foo=bar")
        assert status == 400 and b"Insufficient parameters" in page
        return True

    with pytest.raises(CallbackError, match="Insufficient parameters") as caught:
        oauth.login(open_browser=browser, timeout=5)
    assert "foo" in str(caught.value)  # says what it received
    assert fake_webex.calls["access_token"] == 0


def test_callback_with_extra_parameters_still_works(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    def browser(url: str) -> bool:
        status, _ = deliver(fake_webex.approve(url) + "&session_state=xyz&extra=1")
        return status == 200

    assert oauth.login(open_browser=browser, timeout=5).account == fake_webex.user


def test_denied_authorization(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    fake_webex.deny_next_authorization()
    with pytest.raises(AuthorizationDenied, match="declined"):
        oauth.login(open_browser=fake_webex.open_browser, timeout=5)
    assert fake_webex.calls["access_token"] == 0


def test_state_mismatch_and_replayed_callback_make_no_token_request(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    kept: list[str] = []

    def browser(url: str) -> bool:
        location = fake_webex.approve(url)
        kept.append(location)
        forged = location.replace("state=", "state=forged")
        status, _ = deliver(forged)
        assert status == 400
        return True

    with pytest.raises(CallbackError, match="within 1 seconds"):
        oauth.login(open_browser=browser, timeout=1)
    assert fake_webex.calls["access_token"] == 0

    def replay(url: str) -> bool:
        status, _ = deliver(kept[0])
        assert status == 400  # the old state belongs to the earlier login
        return True

    with pytest.raises(CallbackError):
        oauth.login(open_browser=replay, timeout=1)
    assert fake_webex.calls["access_token"] == 0


def test_login_times_out_with_a_clear_message(oauth: WebexOAuth) -> None:
    with pytest.raises(CallbackError, match=r"no sign-in came back to .* within 0.3 seconds"):
        oauth.login(open_browser=lambda url: True, timeout=0.3)


# -- code exchange errors --------------------------------------------------------------


def test_reused_code_says_run_the_login_again(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    request = oauth.authorization_request()
    code = parse_callback_url(fake_webex.approve(request.url), request.state).code
    oauth.exchange_code(code, request, account="a")
    with pytest.raises(TokenEndpointError) as caught:
        oauth.exchange_code(code, request, account="a")
    assert caught.value.status == 400 and caught.value.error == "invalid_grant"
    assert "expired or was already used" in str(caught.value)
    assert "run the login again" in str(caught.value)
    assert code not in str(caught.value)


def test_expired_code_says_codes_last_a_minute_or_two() -> None:
    with FakeWebex(code_ttl=0.05) as fake:
        oauth = WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url)
        request = oauth.authorization_request()
        code = parse_callback_url(fake.approve(request.url), request.state).code
        time.sleep(0.1)
        with pytest.raises(TokenEndpointError, match="codes last a minute or two"):
            oauth.exchange_code(code, request)


def test_invalid_client_says_check_the_credentials(fake_webex: FakeWebex) -> None:
    oauth = WebexOAuth(fake_webex.client_id, "wrong-secret", base_url=fake_webex.base_url)
    with pytest.raises(TokenEndpointError) as caught:
        oauth.refresh(issued(fake_webex))
    assert caught.value.status == 401 and caught.value.error == "invalid_client"
    assert "WEBEX_CLIENT_ID" in str(caught.value) and "WEBEX_CLIENT_SECRET" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)


# -- refresh -------------------------------------------------------------------------------


def test_refresh_keeps_account_and_refresh_token(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    old = issued(fake_webex, expired=True)
    new = oauth.refresh(old)
    assert new.access_token != old.access_token and not new.is_expired(leeway=3600)
    assert new.refresh_token == old.refresh_token and new.account == old.account
    assert fake_webex.calls["refresh_token"] == 1


def test_refresh_answer_without_refresh_token_keeps_the_old_one(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    old = issued(fake_webex)
    answer = {"access_token": "new-access", "expires_in": 3600, "token_type": "Bearer"}
    fake_webex.fail_next(200, body=json.dumps(answer).encode())
    new = oauth.refresh(old)
    assert new.access_token == "new-access"
    assert new.refresh_token == old.refresh_token
    assert new.refresh_token_expires_at == old.refresh_token_expires_at


def test_revoked_refresh_token_requires_reauthorization(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    token = issued(fake_webex)
    fake_webex.revoke_refresh_tokens()
    with pytest.raises(ReauthorizationRequired, match="webex-tokens login --name") as caught:
        oauth.refresh(token)
    assert caught.value.account == fake_webex.user
    assert token.refresh_token not in str(caught.value)  # type: ignore[operator]


def test_token_without_refresh_token_requires_reauthorization(oauth: WebexOAuth) -> None:
    with pytest.raises(ReauthorizationRequired, match="no refresh token"):
        oauth.refresh(Token(access_token="a", account="x@example.com"))


# -- retries ---------------------------------------------------------------------------------


def test_429_waits_for_retry_after(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    token = issued(fake_webex)
    fake_webex.fail_next(429, retry_after=0.3)
    started = time.monotonic()
    oauth.refresh(token)
    assert time.monotonic() - started >= 0.3
    assert fake_webex.calls["refresh_token"] == 2


def test_429_asking_too_long_a_wait_stops_at_once(fake_webex: FakeWebex) -> None:
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        base_url=fake_webex.base_url,
        max_retry_after=1,
    )
    fake_webex.fail_next(429, retry_after=120)
    with pytest.raises(TokenEndpointError, match="wait 120 seconds") as caught:
        oauth.refresh(issued(fake_webex))
    assert caught.value.status == 429 and fake_webex.calls["refresh_token"] == 1


def test_429_every_time_gives_up_after_max_retries(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    fake_webex.fail_next(429, retry_after=0.01, times=4)
    with pytest.raises(TokenEndpointError, match="429 Too Many Requests") as caught:
        oauth.refresh(issued(fake_webex))
    assert caught.value.status == 429 and fake_webex.calls["refresh_token"] == 4


def test_503_with_retry_after_then_success(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    fake_webex.fail_next(503, retry_after=0.01)
    fake_webex.fail_next(503, retry_after=0.01)
    assert oauth.refresh(issued(fake_webex)).access_token
    assert fake_webex.calls["refresh_token"] == 3


def test_500_ends_the_refresh_with_status_and_advice(fake_webex: FakeWebex) -> None:
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        base_url=fake_webex.base_url,
        max_retries=2,
        backoff=0.01,
    )
    fake_webex.fail_next(500, times=3)
    with pytest.raises(TokenEndpointError, match=r"failed with HTTP 500 .*next refresh") as caught:
        oauth.refresh(issued(fake_webex))
    assert caught.value.status == 500 and fake_webex.calls["refresh_token"] == 1


def test_timeout_is_reported_and_not_resent(fake_webex: FakeWebex) -> None:
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        base_url=fake_webex.base_url,
        timeout=0.2,
        max_retries=1,
        backoff=0.01,
    )
    fake_webex.delay = 0.6
    with pytest.raises(TokenEndpointError, match=r"did not answer within 0.2 seconds") as caught:
        oauth.refresh(issued(fake_webex))
    assert caught.value.status is None and caught.value.delivered is None
    assert fake_webex.calls["refresh_token"] == 1


def test_proxy_settings_of_the_environment_are_honoured(
    fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch
) -> None:
    def client() -> WebexOAuth:
        return WebexOAuth(
            fake_webex.client_id,
            fake_webex.client_secret,
            base_url=fake_webex.base_url,
            max_retries=1,
            backoff=0,
        )

    # A proxy that answers nothing: the request goes there, not to the emulator.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(TokenEndpointError, match="cannot connect"):
        client().refresh(issued(fake_webex, expired=True))
    assert fake_webex.calls["refresh_token"] == 0
    # NO_PROXY names the emulator's host: straight there.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert not client().refresh(issued(fake_webex, expired=True)).is_expired()
    assert fake_webex.calls["refresh_token"] == 1


def test_unreachable_endpoint_says_check_the_base_url() -> None:
    oauth = WebexOAuth(
        "id", "secret", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1, backoff=0
    )
    with pytest.raises(TokenEndpointError, match=r"cannot connect .*WEBEX_BASE_URL"):
        oauth.refresh(Token(access_token="a", refresh_token="r"))


def test_garbage_answer_shows_status_and_type_but_not_the_body(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    token = issued(fake_webex)
    echoed = f"<html>refresh_token={token.refresh_token}</html>".encode()
    fake_webex.fail_next(400, body=echoed)
    with pytest.raises(TokenEndpointError) as caught:
        oauth.refresh(token)
    message = str(caught.value)
    assert "HTTP 400" in message and "text/html" in message and "not a JSON object" in message
    assert token.refresh_token not in message  # type: ignore[operator]
    fake_webex.fail_next(200, body=b"garbage")
    with pytest.raises(TokenEndpointError, match="HTTP 200"):
        oauth.refresh(token)


def test_answer_without_access_token_is_an_endpoint_error(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    fake_webex.fail_next(200, body=b'{"token_type": "Bearer"}')
    with pytest.raises(TokenEndpointError, match="access_token is missing"):
        oauth.refresh(issued(fake_webex))


# -- configuration -----------------------------------------------------------------------


def test_from_settings_needs_client_id_and_secret() -> None:
    with pytest.raises(ConfigError, match="WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET are not set"):
        WebexOAuth.from_settings(load_settings())


def test_from_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBEX_CLIENT_ID", "cid")
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", "csecret")
    monkeypatch.setenv("WEBEX_SCOPES", "spark:people_read spark:messages_write")
    monkeypatch.setenv("WEBEX_BASE_URL", "http://127.0.0.1:9/v1/")
    oauth = WebexOAuth.from_settings()
    assert oauth.client_id == "cid" and oauth.base_url == "http://127.0.0.1:9/v1"
    assert oauth.scopes == ("spark:people_read", "spark:messages_write")
    assert oauth.redirect_uri == "http://localhost:8000/oauth/webex/callback"
    assert "csecret" not in repr(oauth)


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"client_id": ""}, "WEBEX_CLIENT_ID"),
        ({"client_secret": " "}, "WEBEX_CLIENT_SECRET"),
        ({"redirect_uri": "localhost:8000/cb"}, "WEBEX_REDIRECT_URI"),
        ({"base_url": "webexapis.com"}, "WEBEX_BASE_URL"),
        ({"scopes": ()}, "WEBEX_SCOPES"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs: dict[str, object], hint: str) -> None:
    arguments: dict[str, object] = {"client_id": "id", "client_secret": "secret", **kwargs}
    with pytest.raises(ConfigError, match=hint):
        WebexOAuth(**arguments)  # type: ignore[arg-type]
