"""The Starlette/FastAPI login routes on a real uvicorn server on loopback, driven by an
HTTP client that keeps cookies and follows redirects like a browser, through FakeWebex
and back. Also the shared flow's pieces: pending logins, cookies, the secret key.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from starlette.applications import Starlette

from webex_tokens.aio import AsyncWebexClient
from webex_tokens.errors import ConfigError
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token
from webex_tokens.web import LOGIN_COOKIE, LoginFlow, PendingLogins
from webex_tokens.web.starlette import WebexLogin

SECRET_KEY = "test-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Site:
    """An app under test: its base URL, store and integration."""

    def __init__(self, fake: FakeWebex) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        redirect_uri = self.base + "/oauth/webex/callback"
        fake.add_redirect_uri(redirect_uri)
        self.oauth = WebexOAuth(
            fake.client_id, fake.client_secret, redirect_uri=redirect_uri, base_url=fake.base_url
        )
        self.store: TokenStore = open_url("memory://")


@pytest.fixture
def site(fake_webex: FakeWebex) -> Site:
    return Site(fake_webex)


def fastapi_app(site: Site, **options: Any) -> FastAPI:
    """The shape of the example app: login routes plus an endpoint calling Webex."""
    options.setdefault("secret_key", SECRET_KEY)
    login = WebexLogin(site.store, site.oauth, **options)
    client = AsyncWebexClient(site.store, oauth=site.oauth)
    app = FastAPI()
    app.include_router(login.api_router())

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        account = login.current_account(request)
        if account is None:
            raise HTTPException(401, "not signed in")
        async with httpx.AsyncClient(auth=client.auth(account)) as http:
            response = await http.get(client.base_url + "/people/me")
        return {"account": account, "emails": response.json()["emails"]}

    return app


@pytest.fixture
def serve() -> Iterator[Any]:
    """Run an ASGI app under uvicorn on a port, in a thread; stopped after the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, log_level="info", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        servers.append((server, thread))

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def browser() -> httpx.Client:
    """A browser: keeps cookies, follows redirects."""
    return httpx.Client(follow_redirects=True, timeout=10)


def code_in(page: httpx.Response) -> str:
    """The authorization code Webex redirected the browser with (from the history)."""
    return httpx.URL(page.history[-1].headers["location"]).params["code"]


def start_login(client: httpx.Client, site: Site, fake: FakeWebex) -> str:
    """Begin a login in ``client`` and approve it at Webex: the callback URL to open."""
    response = client.get(site.base + "/oauth/webex/login", follow_redirects=False)
    assert response.status_code == 302
    return fake.approve(response.headers["location"])


def test_two_users_log_in_and_call_webex(
    site: Site, fake_webex: FakeWebex, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    serve(fastapi_app(site), site.port)
    secrets_seen: list[str] = [fake_webex.client_secret]
    for user in ("alice@example.com", "bob@example.com"):
        fake_webex.user = user
        with browser() as person:
            page = person.get(site.base + "/oauth/webex/login")  # to Webex and back
            assert [str(hop.url.path) for hop in page.history] == [
                "/oauth/webex/login",
                "/v1/authorize",
            ]
            secrets_seen.append(code_in(page))
            assert page.status_code == 200
            assert f"signed in as {user}" in page.text
            me = person.get(site.base + "/me")
            assert me.status_code == 200
            assert me.json() == {"account": user, "emails": [user]}

    assert site.store.names() == ["alice@example.com", "bob@example.com"]
    for name in site.store.names():
        token = site.store.get(name)
        assert token is not None and token.account == name
        assert token.refresh_token is not None
        secrets_seen += [token.access_token, token.refresh_token]
    assert fake_webex.calls["authorization_code"] == 2
    logs = app_logs(caplog)
    # The server's request log names the callback, without its query (code and state).
    assert "/oauth/webex/callback?[redacted]" in logs
    assert "logged in 'bob@example.com'" in logs
    for secret in secrets_seen:
        assert secret not in logs


def app_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What the server side logged: every record not made by the test's own thread
    (whose HTTP client, the browser, logs the URLs it visits)."""
    main = threading.main_thread().ident
    return "\n".join(
        f"{record.name} {record.getMessage()}" for record in caplog.records if record.thread != main
    )


def test_callback_with_another_browsers_state_is_rejected(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    serve(fastapi_app(site), site.port)
    with browser() as victim, browser() as attacker:
        callback = start_login(victim, site, fake_webex)
        start_login(attacker, site, fake_webex)  # the attacker has a login cookie of its own
        refused = attacker.get(callback)
        assert refused.status_code == 400
        assert "another browser" in refused.text
        assert site.store.names() == []
        assert fake_webex.calls["authorization_code"] == 0
        assert attacker.get(site.base + "/me").status_code == 401
        # The login still belongs to its own browser, which can finish it.
        assert victim.get(callback).status_code == 200
    assert site.store.names() == ["alice@example.com"]


def test_replayed_callback_is_rejected(site: Site, fake_webex: FakeWebex, serve: Any) -> None:
    serve(fastapi_app(site), site.port)
    with browser() as person:
        callback = start_login(person, site, fake_webex)
        assert person.get(callback).status_code == 200
        stored = site.store.get("alice@example.com")
        replay = person.get(callback)
        assert replay.status_code == 400
        assert "already used" in replay.text
    assert fake_webex.calls["authorization_code"] == 1
    assert site.store.get("alice@example.com") == stored


def test_callback_without_cookie_declined_or_forged(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    serve(fastapi_app(site), site.port)
    with browser() as person:
        callback = start_login(person, site, fake_webex)
    with browser() as cookieless:
        refused = cookieless.get(callback)
        assert refused.status_code == 400
        assert "without the cookie" in refused.text
        assert f"at {site.base}/oauth/webex/login" in refused.text  # where to start again
    with browser() as forger:
        forger.cookies.set(LOGIN_COOKIE, "forged.value.here", domain="127.0.0.1")
        assert "without the cookie" in forger.get(callback).text
    with browser() as decliner:
        fake_webex.deny_next_authorization()
        declined = decliner.get(site.base + "/oauth/webex/login")
        assert declined.status_code == 400
        assert "declined" in declined.text
    with browser() as nobody:
        assert nobody.get(site.base + "/oauth/webex/callback?code=x").status_code == 400
    assert site.store.names() == []


def test_logout_health_and_success_url(site: Site, fake_webex: FakeWebex, serve: Any) -> None:
    serve(fastapi_app(site, success_url="/me"), site.port)
    with browser() as person:
        landed = person.get(site.base + "/oauth/webex/login")
        assert str(landed.url) == site.base + "/me"  # redirected there after the login
        assert landed.json()["account"] == "alice@example.com"
        assert person.get(site.base + "/oauth/webex/logout").status_code == 200
        assert person.get(site.base + "/me").status_code == 401
        health = person.get(site.base + "/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_plain_starlette_with_account_name_hook(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    paths: list[str] = []

    def team_name(token: Token, request: Any) -> str:
        paths.append(request.url.path)
        return f"team-{token.account}"

    login = WebexLogin(site.store, site.oauth, secret_key=SECRET_KEY, account_name=team_name)
    serve(Starlette(routes=login.routes), site.port)
    with browser() as person:
        assert person.get(site.base + "/oauth/webex/login").status_code == 200
    assert site.store.names() == ["team-alice@example.com"]
    assert paths == ["/oauth/webex/callback"]  # the hook saw the callback's request
    stored = site.store.get("team-alice@example.com")
    assert stored is not None and stored.account == "alice@example.com"


def test_many_logins_from_one_browser_each_complete(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    """Two tabs of one browser: both logins stay valid (one session id, two states)."""
    serve(fastapi_app(site), site.port)
    with browser() as person:
        fake_webex.user = "alice@example.com"
        first = start_login(person, site, fake_webex)
        fake_webex.user = "bob@example.com"
        second = start_login(person, site, fake_webex)
        assert person.get(second).status_code == 200
        assert person.get(first).status_code == 200
    assert site.store.names() == ["alice@example.com", "bob@example.com"]


# -- the shared flow without a server ----------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pending_logins_are_bounded_and_expire(site: Site) -> None:
    clock = Clock()
    pending = PendingLogins(max_size=3, ttl=60, clock=clock)
    requests = [site.oauth.authorization_request() for _ in range(5)]
    for request in requests:
        pending.add(request, "browser-1")
    assert len(pending) == 3
    assert pending.take(requests[0].state, "browser-1") == "unknown"  # dropped: oldest
    assert pending.take(requests[4].state, "browser-2") == "other-browser"
    assert pending.take(requests[4].state, "browser-1") == requests[4]
    assert pending.take(requests[4].state, "browser-1") == "unknown"  # used once
    clock.now += 61
    assert pending.take(requests[3].state, "browser-1") == "unknown"  # expired
    assert len(pending) == 0
    with pytest.raises(ConfigError) as excinfo:
        PendingLogins(max_size=0)
    assert "max_pending must be 1 or more" in str(excinfo.value)


def test_login_cookie_holds_only_a_session_id(site: Site) -> None:
    flow = LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY)
    answer = flow.login(None)
    (cookie,) = answer.cookies
    assert cookie.name == LOGIN_COOKIE and cookie.httponly and cookie.samesite == "lax"
    assert cookie.value is not None
    location = dict(answer.headers)["Location"]
    state = httpx.URL(location).params["state"]
    taken = flow.pending.take(state, flow._browser(cookie.value))
    assert not isinstance(taken, str)
    assert taken.code_verifier not in cookie.value
    assert state not in cookie.value


def test_signed_cookies_survive_a_restart_with_the_same_key(site: Site) -> None:
    first = LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY)
    same_key = LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY)
    other_key = LoginFlow(site.store, site.oauth, secret_key="another-secret-key-987654")
    signed = first._account_signer.dumps("alice@example.com")
    assert same_key.current_account(signed) == "alice@example.com"
    assert other_key.current_account(signed) is None
    assert first.current_account(None) is None
    # A login cookie is not an account cookie, even under the same key.
    login_cookie = first.login(None).cookies[0].value
    assert first.current_account(login_cookie) is None


def test_secret_key_from_environment_or_generated(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_SECRET_KEY", SECRET_KEY)
    from_env = LoginFlow(site.store, site.oauth)
    assert LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY).current_account(
        from_env._account_signer.dumps("alice@example.com")
    )
    monkeypatch.delenv("WEBEX_TOKENS_SECRET_KEY")
    with caplog.at_level(logging.WARNING, logger="webex_tokens.web.flow"):
        LoginFlow(site.store, site.oauth)
    assert "generated for this process" in caplog.text
    assert "WEBEX_TOKENS_SECRET_KEY" in caplog.text


def test_bad_settings_are_refused_with_a_fix(site: Site) -> None:
    with pytest.raises(ConfigError) as short:
        LoginFlow(site.store, site.oauth, secret_key="short")
    assert "at least 16 characters" in str(short.value)
    assert "secrets.token_urlsafe" in str(short.value)
    with pytest.raises(ConfigError) as path:
        LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY, prefix="/auth")
    assert "/auth/callback" in str(path.value) and "WEBEX_REDIRECT_URI" in str(path.value)
    with pytest.raises(ConfigError) as prefix:
        LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY, prefix="oauth/")
    assert "prefix must be a path" in str(prefix.value)


def flow_callback(flow: LoginFlow, fake: FakeWebex, **kwargs: Any) -> Any:
    """Log in through the flow's methods directly (no server): the callback's answer."""
    started = flow.login(None)
    cookie = started.cookies[0].value
    callback = fake.approve(dict(started.headers)["Location"])
    return flow.callback(httpx.URL(callback).query.decode(), cookie, **kwargs)


def test_failures_after_the_checks_get_their_own_status(
    site: Site, fake_webex: FakeWebex, caplog: pytest.LogCaptureFixture
) -> None:
    flow = LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY)
    bad_name = flow_callback(flow, fake_webex, account_name=lambda token: "bad\nname")
    assert bad_name.status == 500
    assert b"could not be stored" in bad_name.body
    assert "control characters" in caplog.text or "account name" in caplog.text

    impatient = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=site.oauth.redirect_uri,
        base_url=fake_webex.base_url,
        max_retries=0,
    )
    flow = LoginFlow(site.store, impatient, secret_key=SECRET_KEY)
    fake_webex.fail_next(503)
    refused = flow_callback(flow, fake_webex)
    assert refused.status == 502
    assert b"HTTP 503" in refused.body
    assert site.store.names() == []
