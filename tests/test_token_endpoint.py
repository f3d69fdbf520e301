"""The token-endpoint boundary (webex_tokens.token_endpoint) over real HTTP: which
failure is retried for which request, and what each answer becomes.

FakeWebex plays Webex (refresh-token rotation with reuse detection, injected failures,
delays); ScriptedServer plays what FakeWebex cannot: a connection dropped after the
request, a people endpoint that fails.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import hypothesis
import pytest
from hypothesis import strategies as st
from scripted_http import DROP, ScriptedServer, Step, answer

from webex_tokens.callback import parse_callback_url
from webex_tokens.errors import OAuthError, TokenEndpointError, WebexTokensError
from webex_tokens.oauth import WebexOAuth
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token
from webex_tokens.token_answer import token_answer_fields

PERSON = json.dumps({"emails": ["bob@example.com"], "displayName": "Bob"}).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def client(base_url: str, **options: float) -> WebexOAuth:
    settings: dict[str, float] = {"timeout": 0.3, "max_retries": 3, "backoff": 0.01, **options}
    return WebexOAuth("client-id", "client-secret-value", base_url=base_url, **settings)  # type: ignore[arg-type]


def of(fake: FakeWebex, **options: float) -> WebexOAuth:
    settings: dict[str, float] = {"timeout": 0.3, "max_retries": 3, "backoff": 0.01, **options}
    return WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url, **settings)  # type: ignore[arg-type]


def issued(fake: FakeWebex) -> Token:
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    return Token.from_response(
        fake.issue_token(), now=month_ago, client_id=fake.client_id, account=fake.user
    )


def settle(fake: FakeWebex, seconds: float) -> None:
    """Let the emulator finish the requests the client gave up on."""
    time.sleep(seconds)


# -- a refresh token is never presented twice -----------------------------------------------


def test_read_timeout_of_a_refresh_is_never_resent(fake_webex: FakeWebex) -> None:
    fake_webex.rotate_refresh_tokens = True
    token = issued(fake_webex)
    fake_webex.delay = 0.6  # Webex answers, and rotates, after the client gave up
    with pytest.raises(TokenEndpointError) as caught:
        of(fake_webex).refresh(token)
    settle(fake_webex, 0.6)
    assert fake_webex.calls["refresh_token"] == 1  # presented once
    assert fake_webex.revoked_families == 0
    error = caught.value
    assert error.delivered is None and error.status is None
    message = str(error)
    assert "did not answer within 0.3 seconds" in message
    assert "may have used the refresh token" in message and "not sent again" in message
    assert "log in again" in message  # what happens if it was used


def test_connection_dropped_after_the_refresh_was_sent_is_never_resent() -> None:
    with ScriptedServer(DROP) as server:
        with pytest.raises(TokenEndpointError) as caught:
            client(server.base_url).refresh(Token(access_token="a", refresh_token="r-1"))
        assert len(server.seen) == 1
    assert caught.value.delivered is None
    assert "may have used the refresh token" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_without_retry_after_is_not_resent_for_a_refresh(
    fake_webex: FakeWebex, status: int
) -> None:
    fake_webex.fail_next(status, times=4)
    with pytest.raises(TokenEndpointError) as caught:
        of(fake_webex).refresh(issued(fake_webex))
    assert fake_webex.calls["refresh_token"] == 1
    assert caught.value.status == status and caught.value.delivered is None
    assert f"HTTP {status}" in str(caught.value)
    assert "may have used the refresh token" in str(caught.value)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_says_it_was_not_processed_so_a_refresh_is_retried(
    fake_webex: FakeWebex, status: int
) -> None:
    fake_webex.rotate_refresh_tokens = True
    fake_webex.fail_next(status, retry_after=0.2, times=2)
    started = time.monotonic()
    fresh = of(fake_webex).refresh(issued(fake_webex))
    assert time.monotonic() - started >= 0.4
    assert fake_webex.calls["refresh_token"] == 3 and not fresh.is_expired()
    assert fake_webex.revoked_families == 0


def test_429_without_retry_after_is_not_resent_for_a_refresh(fake_webex: FakeWebex) -> None:
    fake_webex.fail_next(429, times=4)
    with pytest.raises(TokenEndpointError, match="429 Too Many Requests") as caught:
        of(fake_webex).refresh(issued(fake_webex))
    assert fake_webex.calls["refresh_token"] == 1
    assert caught.value.status == 429 and caught.value.delivered is True


def test_connect_errors_are_retried_until_webex_listens() -> None:
    port = free_port()
    fake = FakeWebex(port=port)  # not listening yet
    token = Token.from_response(fake.issue_token(), client_id=fake.client_id, account="a")
    oauth = WebexOAuth(
        fake.client_id,
        fake.client_secret,
        base_url=f"http://127.0.0.1:{port}/v1",
        timeout=2,
        max_retries=8,
        backoff=0.1,
    )
    starter = threading.Timer(0.3, fake.start)
    starter.start()
    try:
        # The first attempts find nothing listening: provably not sent, so retried.
        fresh = oauth.refresh(token)
    finally:
        starter.join()
        fake.stop()
    assert fresh.access_token != token.access_token
    assert fake.calls["refresh_token"] == 1


def test_nothing_listening_says_not_delivered() -> None:
    oauth = client(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(TokenEndpointError, match="cannot connect") as caught:
        oauth.refresh(Token(access_token="a", refresh_token="r"))
    assert caught.value.delivered is False


# -- an authorization code is sent once -----------------------------------------------------


def test_read_timeout_of_a_code_exchange_is_never_resent(fake_webex: FakeWebex) -> None:
    oauth = of(fake_webex)
    request = oauth.authorization_request()
    code = parse_callback_url(fake_webex.approve(request.url), request.state).code
    fake_webex.delay = 0.6
    with pytest.raises(TokenEndpointError) as caught:
        oauth.exchange_code(code, request, account="a")
    settle(fake_webex, 0.6)
    assert fake_webex.calls["authorization_code"] == 1
    assert caught.value.delivered is None
    assert "may have used the authorization code" in str(caught.value)
    assert "run the login again" in str(caught.value)
    assert code not in str(caught.value)


def test_server_error_of_a_code_exchange_is_not_resent(fake_webex: FakeWebex) -> None:
    oauth = of(fake_webex)
    request = oauth.authorization_request()
    code = parse_callback_url(fake_webex.approve(request.url), request.state).code
    fake_webex.fail_next(500)
    with pytest.raises(TokenEndpointError, match="HTTP 500") as caught:
        oauth.exchange_code(code, request, account="a")
    assert fake_webex.calls["authorization_code"] == 1 and caught.value.delivered is None


# -- GET /people/me is idempotent: retried -------------------------------------------------


def test_people_lookup_retries_server_errors_timeouts_and_drops() -> None:
    steps = [answer(500), DROP, answer(200, PERSON)]
    with ScriptedServer(*steps) as server:
        assert client(server.base_url).whoami(Token(access_token="a")) == "bob@example.com"
        assert len(server.seen) == 3
    slow = dataclasses.replace(answer(200, PERSON), delay=0.6)
    with ScriptedServer(slow, answer(200, PERSON)) as server:
        assert client(server.base_url).whoami(Token(access_token="a")) == "bob@example.com"
        assert len(server.seen) == 2


# -- no secret the library sent comes back in a message -------------------------------------

#: Secrets with characters that URL-encoding, JSON and HTML change.
REFRESH_TOKEN = 'Rt/9+zQ=x~Kp4&Lm8%Vn2"Wq7<Ys3' + "a" * 20
CLIENT_SECRET = "Cs!5 ab/cd+ef=gh&ij~kl%mn" + "b" * 20
CODE = "Co+de/Xy=Zw~Ab&Cd" + "c" * 20


def windows(secret: str, size: int = 8) -> set[str]:
    """Every run of ``size`` characters of ``secret``, raw and URL-encoded."""
    from urllib.parse import quote, quote_plus

    found: set[str] = set()
    for form in {secret, quote(secret, safe=""), quote_plus(secret, safe=""), json.dumps(secret)}:
        found |= {form[i : i + size] for i in range(len(form) - size + 1)}
    return found


def assert_no_secret(texts: list[str], secrets: list[str]) -> None:
    for secret in secrets:
        for text in texts:
            leaked = [w for w in windows(secret) if w in text]
            assert not leaked, f"{leaked[:3]} of a secret in {text!r}"


def echo_form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(body.decode()))


ECHOES = {
    # The proxy quotes the raw form body: secrets URL-encoded.
    "raw-body": lambda body: {
        "error": "invalid_request",
        "error_description": "could not parse " + body.decode(),
    },
    # It quotes the parsed request as JSON: secrets JSON-escaped, inside a JSON string.
    "json-of-request": lambda body: {
        "error": "invalid_request",
        "error_description": "request: " + json.dumps(echo_form(body)).replace("/", "\\/"),
    },
    # It quotes the start of each value only.
    "partial": lambda body: {
        "error": "invalid_request",
        "error_description": "; ".join(f"{k}={v[:12]}..." for k, v in echo_form(body).items()),
    },
    # Webex's own error shape, with the values decoded.
    "message": lambda body: {"message": "Bad request " + str(echo_form(body)), "errors": []},
    # The error code itself is an echo.
    "error-code": lambda body: {
        "error": echo_form(body).get("refresh_token", "") or echo_form(body).get("code", "")
    },
    "invalid-client": lambda body: {
        "error": "invalid_client",
        "error_description": "wrong secret " + echo_form(body)["client_secret"],
    },
    "invalid-grant": lambda body: {
        "error": "invalid_grant",
        "error_description": "bad grant " + body.decode(),
    },
    "redirect-mismatch": lambda body: {
        "error": "redirect_uri_mismatch",
        "error_description": "redirect_uri not registered for " + body.decode(),
    },
}


@pytest.mark.parametrize("grant", ["refresh", "code"])
@pytest.mark.parametrize("echo", sorted(ECHOES))
def test_echoed_request_secrets_never_reach_a_message_or_a_log(
    echo: str, grant: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    make = ECHOES[echo]
    step = answer(400, lambda body: json.dumps(make(body)).encode())
    with ScriptedServer(step) as server:
        oauth = WebexOAuth(
            "client-id", CLIENT_SECRET, base_url=server.base_url, timeout=2, max_retries=0
        )
        secrets = [CLIENT_SECRET]
        if grant == "refresh":
            secrets.append(REFRESH_TOKEN)
            token = Token(access_token="a", refresh_token=REFRESH_TOKEN)
            call = functools.partial(oauth.refresh, token)
        else:
            request = oauth.authorization_request()
            secrets += [CODE, request.code_verifier]
            call = functools.partial(oauth.exchange_code, CODE, request, account="a")
        with pytest.raises(OAuthError) as caught:
            call()
        [sent] = server.seen
    for secret in secrets:  # the request really carried them
        assert any(w in sent.body.decode() for w in windows(secret))
    error = caught.value
    texts = [str(error), repr(error), caplog.text]
    if isinstance(error, TokenEndpointError):
        texts += [error.description or "", error.error or ""]
    assert_no_secret(texts, secrets)


def test_secret_in_a_non_json_answer_and_its_content_type_is_not_shown() -> None:
    page = f"<html>refresh_token={REFRESH_TOKEN}</html>".encode()
    step = Step(400, page, (("Content-Type", f"text/html; echo={REFRESH_TOKEN}"),))
    token = Token(access_token="a", refresh_token=REFRESH_TOKEN)
    with (
        ScriptedServer(step) as server,
        pytest.raises(TokenEndpointError, match="not a JSON object") as caught,
    ):
        client(server.base_url).refresh(token)
    assert_no_secret([str(caught.value), repr(caught.value)], [REFRESH_TOKEN])
    assert "text/html" in str(caught.value)


def test_the_error_keeps_what_webex_said_that_is_not_a_secret() -> None:
    body = {
        "error": "invalid_request",
        "error_description": f"refresh_token {REFRESH_TOKEN} is odd",
    }
    token = Token(access_token="a", refresh_token=REFRESH_TOKEN)
    with (
        ScriptedServer(answer(400, json.dumps(body).encode())) as server,
        pytest.raises(TokenEndpointError) as caught,
    ):
        client(server.base_url).refresh(token)
    assert caught.value.error == "invalid_request"
    assert caught.value.description == "refresh_token [redacted] is odd"
    assert "refresh_token [redacted] is odd" in str(caught.value)


def test_browser_message_is_generic_and_holds_nothing_from_webex() -> None:
    from webex_tokens.callback import browser_message
    from webex_tokens.errors import AuthorizationDenied, RedirectURIMismatch

    said = "<script>" + REFRESH_TOKEN
    cases = [
        (RedirectURIMismatch(said), "not set up for this address"),
        (TokenEndpointError(said, error="invalid_grant"), "expired or was already used"),
        (TokenEndpointError(said, error="invalid_client"), "misconfigured"),
        (TokenEndpointError(said, delivered=None), "in time"),
        (TokenEndpointError(said, status=400, error="invalid_request"), "could not complete"),
        (AuthorizationDenied(said), "not granted"),
        (OAuthError(said), "could not complete"),
    ]
    for error, expected in cases:
        text = browser_message(error)
        assert expected in text and "<" not in text
        assert_no_secret([text], [REFRESH_TOKEN])


# -- every answer is checked before anything uses it -----------------------------------------

GOOD = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600}

HOSTILE_ANSWERS = {
    "expires-in-text": {**GOOD, "expires_in": "soon"},
    "expires-in-bool": {**GOOD, "expires_in": True},
    "expires-in-negative": {**GOOD, "expires_in": -5},
    "expires-in-huge": {**GOOD, "expires_in": 10**30},
    "expires-in-nan": {**GOOD, "expires_in": float("nan")},
    "refresh-expires-in-list": {**GOOD, "refresh_token_expires_in": [1]},
    "no-access-token": {"token_type": "Bearer"},
    "access-token-number": {**GOOD, "access_token": 12345},
    "access-token-empty": {**GOOD, "access_token": ""},
    "access-token-header-injection": {**GOOD, "access_token": "at\r\nX-Evil: 1"},
    "access-token-space": {**GOOD, "access_token": "at 1"},
    "access-token-huge": {**GOOD, "access_token": "a" * 20000},
    "refresh-token-object": {**GOOD, "refresh_token": {"a": 1}},
    "token-type-mac": {**GOOD, "token_type": "mac"},
    "token-type-echo": {**GOOD, "token_type": REFRESH_TOKEN},
    "scope-number": {**GOOD, "scope": 7},
    "id-token-control": {**GOOD, "id_token": "a\x00b"},
}


@pytest.mark.parametrize("name", sorted(HOSTILE_ANSWERS))
def test_hostile_token_answer_is_a_token_endpoint_error(name: str) -> None:
    body = json.dumps(HOSTILE_ANSWERS[name]).encode()
    token = Token(access_token="a", refresh_token=REFRESH_TOKEN)
    with (
        ScriptedServer(answer(200, body)) as server,
        pytest.raises(TokenEndpointError) as caught,
    ):
        client(server.base_url).refresh(token)
    message = str(caught.value)
    assert "HTTP 200" in message and "not usable" in message and "WEBEX_BASE_URL" in message
    assert caught.value.status == 200
    assert caught.value.delivered is None  # Webex said yes: the refresh token may be used
    assert_no_secret([message, repr(caught.value)], [REFRESH_TOKEN, "client-secret-value"])
    assert "soon" not in message  # values are never shown, only field names


@pytest.mark.parametrize(
    "body",
    [b"[1, 2]", b'"text"', b"null", b"[" * 30000 + b"]" * 30000, b"{" + b" " * 70000 + b"}"],
    ids=["list", "string", "null", "deeply-nested", "over-64-KiB"],
)
def test_unreadable_answers_are_token_endpoint_errors(body: bytes) -> None:
    token = Token(access_token="a", refresh_token="r")
    with (
        ScriptedServer(answer(200, body)) as server,
        pytest.raises(TokenEndpointError, match="HTTP 200") as caught,
    ):
        client(server.base_url).refresh(token)
    assert caught.value.delivered is None


def test_valid_answer_with_odd_but_legal_fields_is_accepted() -> None:
    body = {**GOOD, "expires_in": "3600", "scope": "spark:all spark:people_read", "x": [1]}
    with ScriptedServer(answer(200, json.dumps(body).encode())) as server:
        token = client(server.base_url).refresh(Token(access_token="a", refresh_token="r"))
    assert token.access_token == "at-1" and token.expires_in() is not None
    assert token.scopes == ("spark:all", "spark:people_read") and token.refresh_token == "r"


def test_a_redirect_is_not_followed_with_the_secrets() -> None:
    with ScriptedServer(answer(200, json.dumps(GOOD).encode())) as elsewhere:
        target = elsewhere.base_url + "/access_token"
        with ScriptedServer(answer(307, b"", Location=target)) as server:
            token = Token(access_token="a", refresh_token=REFRESH_TOKEN)
            with pytest.raises(TokenEndpointError, match="HTTP 307") as caught:
                client(server.base_url).refresh(token)
        assert elsewhere.seen == []  # the refresh token went nowhere else
    assert "not followed" in str(caught.value) and target not in str(caught.value)


def test_an_answer_that_trickles_in_is_cut_off_at_the_timeout() -> None:
    import threading as _threading

    stop = _threading.Event()

    def trickle() -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            ports.append(listener.getsockname()[1])
            ready.set()
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000\r\n\r\n{"
                )
                while not stop.wait(0.1):
                    try:
                        connection.sendall(b" ")
                    except OSError:
                        return

    ports: list[int] = []
    ready = _threading.Event()
    server = _threading.Thread(target=trickle, daemon=True)
    server.start()
    ready.wait(5)
    started = time.monotonic()
    try:
        with pytest.raises(TokenEndpointError, match="did not answer within") as caught:
            client(f"http://127.0.0.1:{ports[0]}/v1", timeout=0.5).refresh(
                Token(access_token="a", refresh_token="r")
            )
    finally:
        stop.set()
    assert time.monotonic() - started < 3
    assert caught.value.delivered is None


def test_people_answer_with_a_hostile_email_is_refused() -> None:
    for emails in (["x\r\nInjected: 1"], [REFRESH_TOKEN], [12], "bob@example.com", ["a" * 400]):
        body = json.dumps({"emails": emails}).encode()
        with ScriptedServer(answer(200, body)) as server, pytest.raises(OAuthError):
            client(server.base_url).whoami(Token(access_token=REFRESH_TOKEN))


# -- Hypothesis: whatever comes back, a token or the library's own error ---------------------

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["Bearer", "bearer", "3600", "", REFRESH_TOKEN, "a\r\nb"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_fields = st.sampled_from(
    ["access_token", "refresh_token", "token_type", "expires_in", "refresh_token_expires_in",
     "scope", "id_token", "error", "error_description", "message", "expires_at"]
)  # fmt: skip
_answers = st.dictionaries(_fields | st.text(max_size=8), _values, max_size=8)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(_answers)
def test_any_token_answer_is_checked_fields_or_a_value_error(answer: dict[str, object]) -> None:
    try:
        fields = token_answer_fields(answer)
    except ValueError as exc:
        assert_no_secret([str(exc)], [REFRESH_TOKEN])
        return
    assert set(fields) <= {
        "access_token", "refresh_token", "id_token", "token_type", "expires_in",
        "refresh_token_expires_in", "scope",
    }  # fmt: skip
    token = Token.from_response(fields)  # never raises on checked fields
    assert token.access_token == answer["access_token"]


@pytest.fixture(scope="module")
def hostile() -> Iterator[ScriptedServer]:
    """One server for every example; each example sets its step."""
    with ScriptedServer() as server:
        yield server


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(st.sampled_from([200, 201, 400, 401, 403, 404, 418]), _answers)
def test_any_answer_over_http_is_a_token_or_our_error(
    hostile: ScriptedServer,
    status: int,
    answer_body: dict[str, object],
) -> None:
    server = hostile
    try:
        encoded = json.dumps(answer_body).encode()
    except (TypeError, ValueError):
        return
    server.steps[:] = [Step(status, encoded)]
    token = Token(access_token="a", refresh_token=REFRESH_TOKEN)
    oauth = WebexOAuth("client-id", CLIENT_SECRET, base_url=server.base_url, max_retries=0)
    try:
        fresh = oauth.refresh(token)
    except WebexTokensError as exc:
        assert_no_secret([str(exc), repr(exc)], [REFRESH_TOKEN, CLIENT_SECRET])
    else:
        assert 200 <= status < 300 and fresh.access_token
