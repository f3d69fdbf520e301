"""The Starlette/FastAPI login routes on a real uvicorn server on loopback, driven by an
HTTP client that keeps cookies and follows redirects like a browser, through FakeWebex
and back; and what a hostile client gets: floods, forged, planted and replayed cookies.
The flow's pieces without a server are in test_web_cookies.py; two server processes of
one app in test_web_workers.py.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from starlette.applications import Starlette
from write_faults import WriteFails

from webex_tokens.aio import AsyncWebexClient
from webex_tokens.backends.file import FileStore
from webex_tokens.journal import RescueJournal
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token
from webex_tokens.web import LoginFlow
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
    client = AsyncWebexClient(store=site.store, oauth=site.oauth)
    app = FastAPI()
    app.include_router(login.api_router())

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        account = await login.current_account_async(request)
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
        assert "Sign-in not recognised" in refused.text and "another browser" in refused.text
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


def login_cookie(client: httpx.Client) -> tuple[str, str]:
    """The name and value of the one login cookie ``client`` holds."""
    (found,) = [(c.name, c.value) for c in client.cookies.jar if "_login_" in c.name]
    return found


def signs_in(response: httpx.Response) -> bool:
    """Whether ``response`` gives the browser an account cookie."""
    return any(
        "_account=" in header and "Max-Age=0" not in header
        for header in response.headers.get_list("set-cookie")
    )


def test_callback_without_cookie_declined_or_forged(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    serve(fastapi_app(site), site.port)
    with browser() as person:
        callback = start_login(person, site, fake_webex)
        name, _ = login_cookie(person)
    with browser() as cookieless:
        refused = cookieless.get(callback)
        assert refused.status_code == 400
        assert "Sign-in not recognised" in refused.text
        assert f"at {site.base}/oauth/webex/login" in refused.text  # where to start again
    with httpx.Client(cookies={name: "1.forged-value-here"}) as forger:
        forged = forger.get(callback)
        assert forged.status_code == 400 and "Sign-in not recognised" in forged.text
        assert "Max-Age=0" in forged.headers["set-cookie"]  # the bad cookie is cleared
    with browser() as decliner:
        fake_webex.deny_next_authorization()
        declined = decliner.get(site.base + "/oauth/webex/login")
        assert declined.status_code == 400
        assert "declined" in declined.text
        assert not any("_login_" in c.name for c in decliner.cookies.jar)  # used up
    with browser() as nobody:
        assert nobody.get(site.base + "/oauth/webex/callback?code=x").status_code == 400
    assert site.store.names() == []
    assert fake_webex.calls["authorization_code"] == 0


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


def test_hostile_login_cookies_never_sign_anyone_in(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    """Each hostile cookie comes with a real, unused code and the right state's cookie
    name: only the cookie is wrong. None gets as far as Webex's token endpoint."""
    serve(fastapi_app(site), site.port)
    other_key = LoginFlow(site.store, site.oauth, secret_key="another-app-secret-key-42")
    other_app = WebexOAuth(
        "another-client-id", "x", redirect_uri=site.oauth.redirect_uri, base_url=site.base
    )
    other_integration = LoginFlow(site.store, other_app, secret_key=SECRET_KEY)
    long_ago = LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY, clock=lambda: 1e9)

    def variants(genuine: str) -> dict[str, str]:
        middle = len(genuine) // 2
        flipped = "A" if genuine[middle] != "A" else "B"
        return {
            "tampered": genuine[:middle] + flipped + genuine[middle + 1 :],
            "truncated": genuine[:-6],
            "oversized": genuine + "A" * 4000,
            "unversioned": genuine[2:],
            "empty": "",
        }

    with browser() as person:
        callback = start_login(person, site, fake_webex)
        name, genuine = login_cookie(person)
        hostile = variants(genuine)
        for label, flow in (("other-key", other_key), ("other-integration", other_integration)):
            cookie = flow.login().cookies[-1].value
            assert cookie is not None
            hostile[label] = cookie
        for label, value in hostile.items():
            with httpx.Client(cookies={name: value}, timeout=10) as attacker:
                refused = attacker.get(callback)
            assert refused.status_code == 400, label
            assert "Sign-in not recognised" in refused.text, label
            assert not signs_in(refused), label
        # Sealed with the right key but started too long ago: expired.
        started = long_ago.login()
        stale = fake_webex.approve(dict(started.headers)["Location"])
        value = started.cookies[-1].value
        assert value is not None
        with httpx.Client(cookies={started.cookies[-1].name: value}, timeout=10) as late:
            expired = late.get(stale)
        assert expired.status_code == 400 and "expired" in expired.text
        assert not signs_in(expired)
        assert fake_webex.calls["authorization_code"] == 0
        assert site.store.names() == []
        # None of that touched the real login, which its own browser still finishes.
        assert person.get(callback).status_code == 200
    assert site.store.names() == ["alice@example.com"]


def test_hostile_account_cookies_sign_no_one_in(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    serve(fastapi_app(site), site.port)
    other_key = LoginFlow(site.store, site.oauth, secret_key="another-app-secret-key-42")
    with browser() as person:
        assert person.get(site.base + "/oauth/webex/login").status_code == 200
        (genuine,) = [c.value for c in person.cookies.jar if c.name == "webex_tokens_account"]
        assert genuine is not None
        assert person.get(site.base + "/me").status_code == 200
        start_login(person, site, fake_webex)
        _, login_value = login_cookie(person)
    middle = len(genuine) // 2
    hostile = {
        "tampered": genuine[:middle]
        + ("A" if genuine[middle] != "A" else "B")
        + genuine[middle + 1 :],
        "truncated": genuine[:-6],
        "oversized": genuine + "A" * 4000,
        "a login cookie": login_value,
        "other-key": other_key_account_cookie(other_key, fake_webex),
        "plain text": "alice@example.com",
    }
    for label, value in hostile.items():
        with httpx.Client(cookies={"webex_tokens_account": value}, timeout=10) as attacker:
            assert attacker.get(site.base + "/me").status_code == 401, label


def other_key_account_cookie(flow: LoginFlow, fake: FakeWebex) -> str:
    """An account cookie that another app (another secret key) really issued."""
    started = flow.login()
    callback = fake.approve(dict(started.headers)["Location"])
    answer = flow.callback(
        httpx.URL(callback).query.decode(), {c.name: c.value for c in started.cookies if c.value}
    )
    assert answer.status == 200
    (cookie,) = [c.value for c in answer.cookies if c.name == "webex_tokens_account"]
    assert cookie is not None
    return cookie


def test_a_flood_of_anonymous_logins_evicts_no_real_one(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    serve(fastapi_app(site), site.port)
    with browser() as person:
        callback = start_login(person, site, fake_webex)
        with httpx.Client(timeout=10) as anonymous:
            for _ in range(2000):
                assert anonymous.get(site.base + "/oauth/webex/login").status_code == 302
                anonymous.cookies.clear()
        assert person.get(callback).status_code == 200
        assert person.get(site.base + "/me").json()["account"] == "alice@example.com"


def test_logout_ends_the_session_for_a_copied_cookie(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    serve(fastapi_app(site), site.port)
    with browser() as person, browser() as other_device:
        assert person.get(site.base + "/oauth/webex/login").status_code == 200
        assert other_device.get(site.base + "/oauth/webex/login").status_code == 200
        copied = dict(person.cookies)
        with httpx.Client(cookies=copied) as thief:
            assert thief.get(site.base + "/me").status_code == 200
            assert person.get(site.base + "/oauth/webex/logout").status_code == 200
            assert thief.get(site.base + "/me").status_code == 401
            # Logging out again with the ended session changes nothing.
            assert thief.get(site.base + "/oauth/webex/logout").status_code == 200
        assert other_device.get(site.base + "/me").status_code == 200  # its own session
    assert site.store.names() == ["alice@example.com"]  # the token stays stored


def test_a_browser_keeps_at_most_max_logins(site: Site, fake_webex: FakeWebex, serve: Any) -> None:
    serve(fastapi_app(site, max_logins_per_browser=3), site.port)
    with browser() as person:
        tabs = []
        for number in range(4):
            fake_webex.user = f"tab{number}@example.com"
            tabs.append(start_login(person, site, fake_webex))
        assert len([c for c in person.cookies.jar if "_login_" in c.name]) == 3
        oldest = person.get(tabs[0])
        assert oldest.status_code == 400 and "Sign-in not recognised" in oldest.text
        for tab in tabs[1:]:
            assert person.get(tab).status_code == 200
    assert site.store.names() == ["tab1@example.com", "tab2@example.com", "tab3@example.com"]


def test_secure_cookies_are_host_only_and_planted_ones_are_ignored(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    """With ``cookie_secure`` (an https site) every cookie is ``__Host-``: Secure, Path=/,
    no Domain. What an attacker on a sibling domain or on plain HTTP can plant has no
    such prefix (browsers refuse it from them), and the app reads no other name.

    The test server speaks plain HTTP, so the browser's part (sending Secure cookies) is
    played by hand: the Cookie header carries what an https browser would send.
    """
    serve(fastapi_app(site, cookie_secure=True), site.port)

    def cookies_of(answer: httpx.Response) -> dict[str, str]:
        found = {}
        for header in answer.headers.get_list("set-cookie"):
            attributes = [part.strip() for part in header.split(";")]
            assert "Secure" in attributes and "Path=/" in attributes and "HttpOnly" in attributes
            assert not any(part.lower().startswith("domain") for part in attributes)
            name, _, value = attributes[0].partition("=")
            assert name.startswith("__Host-webex_tokens_")
            if value and "Max-Age=0" not in attributes:
                found[name] = value
        return found

    with httpx.Client(timeout=10) as client:
        fake_webex.user = "attacker@example.com"
        planted_login = client.get(site.base + "/oauth/webex/login")
        attacker_callback = fake_webex.approve(planted_login.headers["location"])
        planted = cookies_of(planted_login)
        fake_webex.user = "victim@example.com"
        started = client.get(site.base + "/oauth/webex/login")
        callback = fake_webex.approve(started.headers["location"])
        genuine = cookies_of(started)
        # The attacker's own valid cookie, planted without the prefix: ignored.
        without_prefix = {name.removeprefix("__Host-"): value for name, value in planted.items()}
        refused = client.get(attacker_callback, headers=_cookie_header(without_prefix))
        assert refused.status_code == 400 and not signs_in(refused)
        assert site.store.names() == []
        # The victim's browser, sending its __Host- cookie back, completes.
        done = client.get(callback, headers=_cookie_header(genuine))
        assert done.status_code == 200
        account = cookies_of(done)
        assert list(account) == ["__Host-webex_tokens_account"]
        me = client.get(site.base + "/me", headers=_cookie_header(account))
        assert me.json()["account"] == "victim@example.com"
        plain = {"webex_tokens_account": account["__Host-webex_tokens_account"]}
        assert client.get(site.base + "/me", headers=_cookie_header(plain)).status_code == 401
    assert site.store.names() == ["victim@example.com"]


def _cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}


def test_token_endpoint_failure_shows_and_logs_no_upstream_text(
    site: Site, fake_webex: FakeWebex, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A token endpoint (or a proxy) that quotes the request back: the browser gets a
    generic page and the log the status and error code only."""
    caplog.set_level(logging.DEBUG)
    impatient = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=site.oauth.redirect_uri,
        base_url=fake_webex.base_url,
        max_retries=0,
    )
    site.oauth = impatient
    serve(fastapi_app(site), site.port)
    quoted = "QUOTED-BACK-code_verifier-and-client_secret"
    body = json.dumps({"error": "invalid_request", "error_description": quoted}).encode()
    with browser() as person:
        callback = start_login(person, site, fake_webex)
        fake_webex.fail_next(400, body=body)
        failed = person.get(callback)
    assert failed.status_code == 502
    assert "Sign-in failed" in failed.text
    assert quoted not in failed.text and "invalid_request" not in failed.text
    logs = app_logs(caplog)
    assert "HTTP 400, error invalid_request" in logs
    assert quoted not in logs
    assert site.store.names() == []


# -- the flow without a server --------------------------------------------------------------


def flow_callback(flow: LoginFlow, fake: FakeWebex, **kwargs: Any) -> Any:
    """Log in through the flow's methods directly (no server): the callback's answer."""
    started = flow.login()
    cookies = {c.name: c.value for c in started.cookies if c.value}
    callback = fake.approve(dict(started.headers)["Location"])
    return flow.callback(httpx.URL(callback).query.decode(), cookies, **kwargs)


def test_failures_after_the_checks_get_their_own_status(
    site: Site, fake_webex: FakeWebex, caplog: pytest.LogCaptureFixture
) -> None:
    flow = LoginFlow(site.store, site.oauth, secret_key=SECRET_KEY)
    bad_name = flow_callback(flow, fake_webex, account_name=lambda token: "bad\nname")
    assert bad_name.status == 500
    assert b"could not be stored" in bad_name.body
    assert "control character" in caplog.text

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
    assert b"Sign-in failed" in refused.body and b"503" not in refused.body
    assert "HTTP 503" in caplog.text
    assert site.store.names() == []


def test_login_with_webex_gives_the_app_the_verified_identity(
    site: Site, fake_webex: FakeWebex, serve: Any
) -> None:
    site.oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=site.oauth.redirect_uri,
        scopes=("spark:all", "openid", "email", "profile"),
        base_url=fake_webex.base_url,
    )
    login = WebexLogin(site.store, site.oauth, secret_key=SECRET_KEY, success_url="/whoami")
    app = FastAPI()
    app.include_router(login.api_router())

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        person = await login.current_identity_async(request)
        if person is None:
            raise HTTPException(401, "not signed in")
        assert login.current_identity(request) == person
        return person

    serve(app, site.port)
    fake_webex.user = "frank@example.com"
    with browser() as person:
        me = person.get(site.base + "/oauth/webex/login")
        assert me.status_code == 200, me.text
        identity = me.json()
        assert identity["email"] == "frank@example.com" and identity["email_verified"] is True
        assert identity["account"] == "frank@example.com" and identity["name"]
        assert identity["iss"] == fake_webex.oidc.issuer and identity["sub"]
        assert "aud" not in identity and "nonce" not in identity
        person.get(site.base + "/oauth/webex/logout")
        assert person.get(site.base + "/whoami").status_code == 401

    fake_webex.user = "mallory@example.com"
    for fault in ("bad_signature", "wrong_audience", "alg_none"):
        fake_webex.oidc.break_next_id_token(fault)
        with browser() as stranger:
            refused = stranger.get(site.base + "/oauth/webex/login")
            assert refused.status_code == 400 and "Sign-in failed" in refused.text
            assert stranger.get(site.base + "/whoami").status_code == 401
    assert site.store.names() == ["frank@example.com"]


def test_without_openid_there_is_no_identity(site: Site, fake_webex: FakeWebex, serve: Any) -> None:
    login = WebexLogin(site.store, site.oauth, secret_key=SECRET_KEY)
    app = FastAPI()
    app.include_router(login.api_router())

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {
            "account": await login.current_account_async(request),
            "identity": await login.current_identity_async(request),
        }

    serve(app, site.port)
    with browser() as person:
        assert person.get(site.base + "/oauth/webex/login").status_code == 200
        assert person.get(site.base + "/whoami").json() == {
            "account": fake_webex.user,
            "identity": None,
        }


def test_a_login_whose_store_write_fails_waits_in_the_journal(
    site: Site, fake_webex: FakeWebex, tmp_path: Path
) -> None:
    """The code is spent once exchanged: a token the store refused is not thrown away,
    and the next operation on the account stores it."""
    store = FileStore(tmp_path / "tokens.json")
    failing = WriteFails(store, failures=1)
    flow = LoginFlow(failing, site.oauth, secret_key=SECRET_KEY)
    answer = flow_callback(flow, fake_webex)
    assert answer.status == 500
    assert b"could not be stored" in answer.body
    assert store.names() == []
    (name,) = [entry.account for entry in RescueJournal().entries()]
    assert RescueJournal().replay(store, name)
    stored = store.get(name)
    assert stored is not None and stored.account == fake_webex.user
    assert RescueJournal().is_empty()
