"""The Flask login blueprint on a real werkzeug server on loopback, driven by an HTTP
client that keeps cookies and follows redirects like a browser, through FakeWebex and
back. The logic is shared with the Starlette routes (tested in test_web_fastapi.py);
this checks the Flask side of it end to end, hostile cookies and logout included.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import flask
import httpx
import pytest
from werkzeug.serving import make_server

from webex_tokens.client import WebexClient
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token
from webex_tokens.web import ACCOUNT_COOKIE, LoginFlow
from webex_tokens.web.flask import WebexLogin

SECRET_KEY = "test-secret-key-0123456789"


class Site:
    """A Flask app like the FastAPI example, served by werkzeug on a free port."""

    def __init__(self, fake: FakeWebex, **options: Any) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.base = f"http://127.0.0.1:{port}"
        redirect_uri = self.base + "/oauth/webex/callback"
        fake.add_redirect_uri(redirect_uri)
        self.oauth = WebexOAuth(
            fake.client_id, fake.client_secret, redirect_uri=redirect_uri, base_url=fake.base_url
        )
        self.store: TokenStore = open_url("memory://")
        options.setdefault("secret_key", SECRET_KEY)
        self.login = WebexLogin(self.store, self.oauth, **options)
        app = flask.Flask(__name__)
        app.register_blueprint(self.login.blueprint)
        app.add_url_rule("/me", "me", self.me)
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def me(self) -> Any:
        """Call Webex with the token of the account logged in in this browser."""
        account = self.login.current_account()
        if account is None:
            return {"error": "not signed in"}, 401
        with WebexClient(auto_auth=False, store=self.store, name=account, oauth=self.oauth) as c:
            person = c.session.get("people/me", timeout=10).json()
        return {"account": account, "emails": person["emails"]}

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def sites(fake_webex: FakeWebex) -> Iterator[Any]:
    started: list[Site] = []

    def make(**options: Any) -> Site:
        started.append(Site(fake_webex, **options))
        return started[-1]

    yield make
    for site in started:
        site.stop()


def browser() -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=10)


def start_login(client: httpx.Client, site: Site, fake: FakeWebex) -> str:
    response = client.get(site.base + "/oauth/webex/login", follow_redirects=False)
    assert response.status_code == 302
    return fake.approve(response.headers["location"])


def test_two_users_log_in_and_call_webex(
    sites: Any, fake_webex: FakeWebex, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site = sites()
    secrets_seen = [fake_webex.client_secret]
    for user in ("alice@example.com", "bob@example.com"):
        fake_webex.user = user
        with browser() as person:
            page = person.get(site.base + "/oauth/webex/login")  # to Webex and back
            assert len(page.history) == 2  # the login's redirect, then Webex's
            secrets_seen.append(httpx.URL(page.history[-1].headers["location"]).params["code"])
            assert page.status_code == 200 and f"signed in as {user}" in page.text
            assert person.get(site.base + "/me").json() == {"account": user, "emails": [user]}

    assert site.store.names() == ["alice@example.com", "bob@example.com"]
    for name in site.store.names():
        token = site.store.get(name)
        assert token is not None and token.refresh_token is not None
        secrets_seen += [token.access_token, token.refresh_token]
    main = threading.main_thread().ident  # the browser's own logs name the URLs it opens
    logs = "\n".join(r.getMessage() for r in caplog.records if r.thread != main)
    assert "/oauth/webex/callback?[redacted]" in logs  # werkzeug's request log, redacted
    for secret in secrets_seen:
        assert secret not in logs


def test_callback_with_another_browsers_state_is_rejected(
    sites: Any, fake_webex: FakeWebex
) -> None:
    site = sites()
    with browser() as victim, browser() as attacker:
        callback = start_login(victim, site, fake_webex)
        start_login(attacker, site, fake_webex)  # the attacker has a login cookie of its own
        refused = attacker.get(callback)
        assert refused.status_code == 400 and "another browser" in refused.text
        assert site.store.names() == []
        assert victim.get(callback).status_code == 200
    assert site.store.names() == ["alice@example.com"]


def test_replayed_callback_is_rejected(sites: Any, fake_webex: FakeWebex) -> None:
    site = sites()
    with browser() as person:
        callback = start_login(person, site, fake_webex)
        assert person.get(callback).status_code == 200
        replay = person.get(callback)
        assert replay.status_code == 400 and "already used" in replay.text
    assert fake_webex.calls["authorization_code"] == 1


def test_hook_health_logout_and_success_url(sites: Any, fake_webex: FakeWebex) -> None:
    seen: list[str] = []

    def by_org(token: Token, request: Any) -> str:
        seen.append(request.path)
        return "org-" + str(token.account).partition("@")[2]

    site = sites(account_name=by_org, success_url="/me")
    with browser() as person:
        landed = person.get(site.base + "/oauth/webex/login")
        assert str(landed.url) == site.base + "/me"
        assert landed.json() == {"account": "org-example.com", "emails": ["alice@example.com"]}
        assert person.get(site.base + "/oauth/webex/logout").status_code == 200
        assert person.get(site.base + "/me").status_code == 401
        health = person.get(site.base + "/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert seen == ["/oauth/webex/callback"]
    assert site.store.names() == ["org-example.com"]


def test_declined_login_stores_nothing(sites: Any, fake_webex: FakeWebex) -> None:
    site = sites()
    fake_webex.deny_next_authorization()
    with browser() as person:
        declined = person.get(site.base + "/oauth/webex/login")
    assert declined.status_code == 400 and "declined" in declined.text
    assert site.store.names() == []


def signs_in(response: httpx.Response) -> bool:
    """Whether ``response`` gives the browser an account cookie."""
    return any(
        "_account=" in header and "Max-Age=0" not in header
        for header in response.headers.get_list("set-cookie")
    )


def test_logout_ends_the_session_for_a_copied_cookie(sites: Any, fake_webex: FakeWebex) -> None:
    site = sites()
    with browser() as person:
        assert person.get(site.base + "/oauth/webex/login").status_code == 200
        with httpx.Client(cookies=dict(person.cookies), timeout=10) as thief:
            assert thief.get(site.base + "/me").status_code == 200
            assert person.get(site.base + "/oauth/webex/logout").status_code == 200
            assert thief.get(site.base + "/me").status_code == 401
    assert site.store.names() == ["alice@example.com"]


def test_hostile_cookies_never_sign_anyone_in(sites: Any, fake_webex: FakeWebex) -> None:
    site = sites()
    other = LoginFlow(site.store, site.oauth, secret_key="another-app-secret-key-42")
    with browser() as person:
        callback = start_login(person, site, fake_webex)
        ((name, genuine),) = [(c.name, c.value) for c in person.cookies.jar]
        foreign = other.login().cookies[-1].value
        tampered = genuine[:40] + ("x" if genuine[40] != "x" else "y") + genuine[41:]
        for value in (genuine[:-6], tampered, genuine * 5, foreign):
            assert value is not None
            with httpx.Client(cookies={name: value}, timeout=10) as attacker:
                refused = attacker.get(callback)
            assert refused.status_code == 400 and not signs_in(refused)
            with httpx.Client(cookies={ACCOUNT_COOKIE: value}, timeout=10) as attacker:
                assert attacker.get(site.base + "/me").status_code == 401
        assert fake_webex.calls["authorization_code"] == 0
        assert person.get(callback).status_code == 200
    assert site.store.names() == ["alice@example.com"]


def test_secure_cookies_are_host_only(sites: Any, fake_webex: FakeWebex) -> None:
    site = sites(cookie_secure=True)
    with httpx.Client(timeout=10) as client:
        started = client.get(site.base + "/oauth/webex/login")
        (header,) = started.headers.get_list("set-cookie")
        attributes = [part.strip() for part in header.split(";")]
        assert attributes[0].startswith("__Host-webex_tokens_login_")
        assert {"Secure", "HttpOnly", "Path=/"} <= set(attributes)
        assert not any(part.lower().startswith("domain") for part in attributes)
        callback = fake_webex.approve(started.headers["location"])
        done = client.get(callback, headers={"Cookie": attributes[0]})
        assert done.status_code == 200
        cookies = [c.split(";")[0] for c in done.headers.get_list("set-cookie")]
        (account,) = [c for c in cookies if c.startswith("__Host-webex_tokens_account=")]
        me = client.get(site.base + "/me", headers={"Cookie": account})
        assert me.json()["account"] == "alice@example.com"
        planted = account.removeprefix("__Host-")
        assert client.get(site.base + "/me", headers={"Cookie": planted}).status_code == 401
