"""The web login's sealed cookies and ended sessions, through LoginFlow's methods (no
server): what a cookie holds and hides, what opens it, expiry, per-browser limits,
logout records, failures of the session store, settings and deprecations. The same
behaviour over real HTTP is in test_web_fastapi.py, test_web_flask.py and
test_web_workers.py.
"""

from __future__ import annotations

import base64
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from sql_tables import drop_table

from webex_tokens.errors import ConfigError
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore
from webex_tokens.testing import make_token
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.web import ACCOUNT_COOKIE, LOGIN_COOKIE, LoginFlow, PendingLogins, WebResponse
from webex_tokens.web.cookies import MAX_COOKIE_LENGTH, CookieSealer, LoginTicket, SessionTicket
from webex_tokens.web.sessions import SESSION_PREFIX, SessionRevocations

SECRET_KEY = "test-secret-key-0123456789"
REDIRECT = "http://127.0.0.1:8000/oauth/webex/callback"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def oauth(fake_webex: FakeWebex) -> WebexOAuth:
    fake_webex.add_redirect_uri(REDIRECT)
    return WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=REDIRECT,
        base_url=fake_webex.base_url,
    )


@pytest.fixture
def store() -> TokenStore:
    return open_url("memory://")


def jar(answer: WebResponse, cookies: dict[str, str] | None = None) -> dict[str, str]:
    """A browser's cookies after ``answer``: set ones added, cleared ones removed."""
    cookies = dict(cookies or {})
    for cookie in answer.cookies:
        if cookie.value is None:
            cookies.pop(cookie.name, None)
        else:
            cookies[cookie.name] = cookie.value
    return cookies


def sign_in(
    flow: LoginFlow, fake: FakeWebex, cookies: dict[str, str] | None = None
) -> dict[str, str]:
    """A whole login through the flow's methods: the browser's cookies afterwards."""
    started = flow.login(cookies)
    cookies = jar(started, cookies)
    callback = fake.approve(dict(started.headers)["Location"])
    answer = flow.callback(httpx.URL(callback).query.decode(), cookies)
    assert answer.status == 200, answer.body
    return jar(answer, cookies)


# -- sealing -------------------------------------------------------------------------------


def test_a_sealed_value_opens_only_with_its_key_purpose_and_context() -> None:
    sealer = CookieSealer(SECRET_KEY, "login", b"client\0redirect")
    payload = {"s": "the-state", "v": "the-verifier", "n": None}
    value = sealer.seal(payload)
    assert value.startswith("1.") and len(value) < 200
    assert sealer.open(value) == payload
    assert sealer.seal(payload) != value  # a fresh nonce each time
    for secret in ("the-state", "the-verifier"):
        assert secret not in value
        assert secret.encode() not in base64.urlsafe_b64decode(value[2:] + "==")
    assert CookieSealer(SECRET_KEY.encode(), "login", b"client\0redirect").open(value) == payload
    for other in (
        CookieSealer("another-secret-key-0123456", "login", b"client\0redirect"),
        CookieSealer(SECRET_KEY, "account", b"client\0redirect"),
        CookieSealer(SECRET_KEY, "login", b"other-client\0redirect"),
    ):
        assert other.open(value) is None
    assert "the-" not in repr(sealer) and SECRET_KEY not in repr(sealer)


def test_every_altered_or_malformed_value_opens_as_none() -> None:
    sealer = CookieSealer(SECRET_KEY, "account", b"client")
    value = sealer.seal({"a": "alice@example.com", "i": "sid", "t": 1})
    body = value[2:]
    for index in range(len(body)):  # every single-character change is detected
        changed = "A" if body[index] != "A" else "B"
        assert sealer.open("1." + body[:index] + changed + body[index + 1 :]) is None
    for bad in (
        value[:-1],
        value[:20],
        value + "A",
        "1.",
        "",
        "2." + body,
        body,
        "1." + body + "=",
        "1.!!!!",
        "1." + "A" * (MAX_COOKIE_LENGTH),
        None,
        42,
        b"1.abc",
    ):
        assert sealer.open(bad) is None, bad


def test_tickets_refuse_payloads_of_the_wrong_shape() -> None:
    good = LoginTicket("state", "verifier", "session", 10, None)
    assert LoginTicket.from_payload(good.to_payload()) == good
    assert LoginTicket.from_payload({**good.to_payload(), "n": "a-nonce"}).nonce == "a-nonce"  # type: ignore[union-attr]
    for broken in (
        {"s": "x"},
        {**good.to_payload(), "t": True},
        {**good.to_payload(), "t": -1},
        {**good.to_payload(), "t": float("inf")},
        {**good.to_payload(), "v": ""},
        {**good.to_payload(), "n": 3},
        None,
    ):
        assert LoginTicket.from_payload(broken) is None
    session = SessionTicket("alice", "sid", 10)
    assert SessionTicket.from_payload(session.to_payload()) == session
    assert SessionTicket.from_payload({"a": "alice", "i": "sid", "t": "10"}) is None
    assert "alice" not in repr(session) and "verifier" not in repr(good)


# -- the login cookie --------------------------------------------------------------------------


def test_each_login_has_its_own_cookie_holding_nothing_readable(
    store: TokenStore, oauth: WebexOAuth
) -> None:
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY)
    answer = flow.login()
    (cookie,) = answer.cookies
    state = httpx.URL(dict(answer.headers)["Location"]).params["state"]
    assert cookie.name == flow.login_cookie_name(state)
    assert cookie.name.startswith(LOGIN_COOKIE + "_") and len(cookie.name) == len(LOGIN_COOKIE) + 17
    assert cookie.httponly and cookie.samesite == "lax" and not cookie.secure
    assert cookie.path == "/oauth/webex" and cookie.max_age == 600
    assert cookie.value is not None and state not in cookie.value
    assert cookie.value not in repr(answer)  # a response's repr hides cookie values
    other = flow.login()
    assert other.cookies[0].name != cookie.name


def test_secure_cookies_are_host_prefixed_and_plain_names_are_not_read(
    store: TokenStore, fake_webex: FakeWebex
) -> None:
    redirect = "https://app.example.com/oauth/webex/callback"
    fake_webex.add_redirect_uri(redirect)
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=redirect,
        base_url=fake_webex.base_url,
    )
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY)
    assert flow.cookie_secure and flow.account_cookie == "__Host-" + ACCOUNT_COOKIE
    started = flow.login()
    (cookie,) = started.cookies
    assert cookie.name.startswith("__Host-" + LOGIN_COOKIE + "_")
    assert cookie.secure and cookie.path == "/"
    query = httpx.URL(fake_webex.approve(dict(started.headers)["Location"])).query.decode()
    assert cookie.value is not None
    # Planted without the prefix (all a sibling domain or plain HTTP can do): not read.
    planted = {cookie.name.removeprefix("__Host-"): cookie.value}
    assert flow.callback(query, planted).status == 400
    answer = flow.callback(query, {cookie.name: cookie.value})
    assert answer.status == 200
    (account,) = [c for c in answer.cookies if c.value is not None]
    assert account.name == "__Host-" + ACCOUNT_COOKIE and account.secure and account.path == "/"
    assert flow.current_account({account.name: account.value or ""}) == "alice@example.com"
    assert flow.current_account({ACCOUNT_COOKIE: account.value or ""}) is None
    assert store.names() == ["alice@example.com"]


def test_a_login_cookie_expires_and_is_used_once(
    store: TokenStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    clock = Clock()
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY, pending_ttl=60, clock=clock)
    started = flow.login()
    cookies = jar(started)
    query = httpx.URL(fake_webex.approve(dict(started.headers)["Location"])).query.decode()
    clock.now += 61
    late = flow.callback(query, cookies)
    assert late.status == 400 and b"expired" in late.body
    assert [c.value for c in late.cookies] == [None]  # cleared
    clock.now -= 61
    first = flow.callback(query, cookies)
    assert first.status == 200
    assert flow.login_cookie_name(httpx.URL("?" + query).params["state"]) not in jar(first, cookies)
    assert fake_webex.calls["authorization_code"] == 1


def test_the_legacy_single_value_forms_still_work(
    store: TokenStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    """Earlier releases passed one cookie's value, not the request's cookies."""
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY)
    started = flow.login("an old login cookie value")
    (cookie,) = started.cookies
    query = httpx.URL(fake_webex.approve(dict(started.headers)["Location"])).query.decode()
    answer = flow.callback(query, cookie.value)
    assert answer.status == 200
    account = jar(answer)[ACCOUNT_COOKIE]
    assert flow.current_account(account) == "alice@example.com"
    assert flow.logout(account).status == 200
    assert flow.current_account(account) is None


def test_a_browser_keeps_its_newest_logins_only(store: TokenStore, oauth: WebexOAuth) -> None:
    clock = Clock()
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY, max_logins_per_browser=2, clock=clock)
    cookies: dict[str, str] = {"unrelated": "kept", flow.login_cookie_name("junk"): "1.junk"}
    names = []
    for _ in range(12):
        clock.now += 0.002  # logins a few milliseconds apart are still told apart
        answer = flow.login(cookies)
        cookies = jar(answer, cookies)
        names.append(answer.cookies[-1].name)
        # the junk and all but the newest two are gone, at every step
        assert sorted(cookies) == sorted(["unrelated", *names[-2:]])
    clock.now += 601
    answer = flow.login(cookies)  # both earlier logins have expired meanwhile
    assert sorted(jar(answer, cookies)) == sorted(["unrelated", answer.cookies[-1].name])


# -- the session and logout ----------------------------------------------------------------------


def test_a_session_ends_at_logout_or_at_its_age(
    store: TokenStore, oauth: WebexOAuth, fake_webex: FakeWebex, tmp_path: Path
) -> None:
    clock = Clock()
    sessions = f"sqlite:///{tmp_path}/sessions.db"
    flow = LoginFlow(
        store,
        oauth,
        secret_key=SECRET_KEY,
        account_max_age=3600,
        session_store=sessions,
        clock=clock,
    )
    first = sign_in(flow, fake_webex)
    second = sign_in(flow, fake_webex)
    assert first[ACCOUNT_COOKIE] != second[ACCOUNT_COOKIE]
    same_key = LoginFlow(store, oauth, secret_key=SECRET_KEY, session_store=sessions, clock=clock)
    other_key = LoginFlow(
        store, oauth, secret_key="another-secret-key-987654", session_store=sessions, clock=clock
    )
    assert same_key.current_account(first) == "alice@example.com"  # a restart, another worker
    assert other_key.current_account(first) is None
    clock.now += 3601
    assert flow.current_account(first) is None  # too old
    clock.now -= 3601 + 120
    assert flow.current_account(first) is None  # from the future: beyond the clock skew
    clock.now += 120
    out = flow.logout(first)
    assert out.status == 200 and all(c.value is None for c in out.cookies)
    assert same_key.current_account(first) is None
    assert same_key.current_account(second) == "alice@example.com"
    with open_url(sessions) as records:
        (record,) = records.names()
    assert record.startswith(SESSION_PREFIX)
    session_id = flow._account_sealer.open(first[ACCOUNT_COOKIE])["i"]  # type: ignore[index]
    assert session_id not in record


def test_logout_clears_the_browsers_login_cookies_too(
    store: TokenStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY)
    cookies = sign_in(flow, fake_webex)
    cookies = jar(flow.login(cookies), cookies)
    assert len(cookies) == 2
    assert jar(flow.logout(cookies), cookies) == {}
    assert flow.logout().status == 200  # nobody signed in: nothing to end


def test_the_default_session_store_is_beside_the_default_token_store(
    store: TokenStore,
    oauth: WebexOAuth,
    fake_webex: FakeWebex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY)
    database = tmp_path / "webex-tokens" / "web-sessions.db"
    assert not database.exists()  # opened when first needed
    cookies = sign_in(flow, fake_webex)
    flow.logout(cookies)
    assert database.exists()
    assert LoginFlow(store, oauth, secret_key=SECRET_KEY).current_account(cookies) is None


def test_a_failing_session_store_signs_no_one_in(
    store: TokenStore,
    oauth: WebexOAuth,
    fake_webex: FakeWebex,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "sessions.json"
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY, session_store=f"file://{path}")
    cookies = sign_in(flow, fake_webex)
    assert flow.current_account(cookies) == "alice@example.com"
    path.write_text('{"version": 1, "tokens": {')  # the store breaks
    with caplog.at_level(logging.ERROR, logger="webex_tokens.web.flow"):
        assert flow.current_account(cookies) is None
        out = flow.logout(cookies)
    assert out.status == 500 and b"could not end the session" in out.body
    assert all(c.value is None for c in out.cookies)  # the browser is signed out all the same
    assert (
        "counts as signed out" in caplog.text
        and "logout of 'alice@example.com' not recorded" in caplog.text
    )


def test_ended_session_records_are_swept_once_expired(tmp_path: Path) -> None:
    clock = Clock()
    records = open_url(f"sqlite:///{tmp_path}/sessions.db")
    records.put("unrelated", make_token())
    sessions = SessionRevocations(records, clock=clock)
    sessions.revoke("short", until=clock.now + 10)
    sessions.revoke("long", until=clock.now + 10_000)
    assert sessions.is_revoked("short") and sessions.is_revoked("long")
    assert not sessions.is_revoked("never-ended")
    clock.now += 3601  # the next logout sweeps
    sessions.revoke("later", until=clock.now + 10)
    assert not sessions.is_revoked("short")
    assert sessions.is_revoked("long") and sessions.is_revoked("later")
    assert "unrelated" in records.names()


# -- settings and deprecations -------------------------------------------------------------------


def test_bad_settings_are_refused_with_a_fix(store: TokenStore, oauth: WebexOAuth) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"secret_key": "short"}, "at least 16 characters"),
        ({"prefix": "/auth"}, "WEBEX_REDIRECT_URI"),
        ({"prefix": "oauth/"}, "prefix must be a path"),
        ({"pending_ttl": 0}, "pending_ttl must be a number of seconds, e.g. 600"),
        ({"account_max_age": "week"}, "account_max_age must be a number of seconds"),
        (
            {"max_logins_per_browser": 50},
            "max_logins_per_browser must be a whole number from 1 to 10",
        ),
        ({"session_store": store}, "must not be the token store itself"),
    ]
    for options, hint in cases:
        options.setdefault("secret_key", SECRET_KEY)
        with pytest.raises(ConfigError) as info:
            LoginFlow(store, oauth, **options)
        assert hint in str(info.value), options
    with pytest.raises(ConfigError) as short:
        LoginFlow(store, oauth, secret_key="short")
    assert "secrets.token_urlsafe" in str(short.value)


def test_secret_key_from_environment_or_generated(
    store: TokenStore,
    oauth: WebexOAuth,
    fake_webex: FakeWebex,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_SECRET_KEY", SECRET_KEY)
    cookies = sign_in(LoginFlow(store, oauth), fake_webex)
    assert LoginFlow(store, oauth, secret_key=SECRET_KEY).current_account(cookies)
    monkeypatch.delenv("WEBEX_TOKENS_SECRET_KEY")
    with caplog.at_level(logging.WARNING, logger="webex_tokens.web.flow"):
        generated = LoginFlow(store, oauth)
    assert "generated for this process" in caplog.text
    assert "WEBEX_TOKENS_SECRET_KEY" in caplog.text
    assert generated.current_account(cookies) is None


def test_pending_logins_is_deprecated_but_still_works(store: TokenStore, oauth: WebexOAuth) -> None:
    clock = Clock()
    with pytest.warns(DeprecationWarning, match="PendingLogins is deprecated"):
        pending = PendingLogins(max_size=3, ttl=60, clock=clock)
    requests = [oauth.authorization_request() for _ in range(5)]
    for request in requests:
        pending.add(request, "browser-1")
    assert len(pending) == 3
    assert pending.take(requests[0].state, "browser-1") == "unknown"  # dropped: oldest
    assert pending.take(requests[4].state, "browser-2") == "other-browser"
    assert pending.take(requests[4].state, "browser-1") == requests[4]
    clock.now += 61
    assert len(pending) == 0
    with pytest.warns(DeprecationWarning, match="deprecated"), pytest.raises(ConfigError):
        PendingLogins(max_size=0)
    with pytest.warns(DeprecationWarning, match="max_pending is deprecated"):
        flow = LoginFlow(store, oauth, secret_key=SECRET_KEY, max_pending=1000)
    with pytest.warns(DeprecationWarning, match="always empty"):
        assert len(flow.pending) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LoginFlow(store, oauth, secret_key=SECRET_KEY)  # no warning without the old option


def test_a_nonce_travels_in_the_login_cookie_to_the_rebuilt_request(
    store: TokenStore, oauth: WebexOAuth
) -> None:
    """The slot OpenID Connect fills: the rebuilt request's URL carries the nonce."""
    flow = LoginFlow(store, oauth, secret_key=SECRET_KEY)
    request = flow._resume(LoginTicket("a-state-" * 4, "v" * 64, "session", 1, "a-nonce"))
    assert httpx.URL(request.url).params["nonce"] == "a-nonce"
    assert request.state == "a-state-" * 4 and request.redirect_uri == REDIRECT
    plain = flow._resume(LoginTicket("a-state-" * 4, "v" * 64, "session", 1, None))
    assert "nonce" not in httpx.URL(plain.url).params


def test_tokens_shared_by_hosts_call_for_a_session_store_they_share(
    oauth: WebexOAuth, postgres_server: str, unique_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = open_url(f"{postgres_server}?table={unique_table}")
    try:
        with caplog.at_level(logging.WARNING, logger="webex_tokens.web.sessions"):
            LoginFlow(tokens, oauth, secret_key=SECRET_KEY)
        assert "pass session_store= a store they all reach" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="webex_tokens.web.sessions"):
            LoginFlow(tokens, oauth, secret_key=SECRET_KEY, session_store="memory://")
        assert caplog.text == ""
    finally:
        tokens.close()
        drop_table(postgres_server, unique_table)


def test_the_security_page_names_existing_tests() -> None:
    """Each row of the web-login table in docs/security.md names tests that exist."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "security.md").read_text(encoding="utf-8")
    table = text.partition("### Hostile requests to the web login routes")[2].partition("\n#")[0]
    named = re.findall(r"`(tests/test_web_\w+\.py)::(test_\w+)`", table)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`tests/" in line]
    assert len(rows) >= 10 and len(named) >= len(rows)
    for path, test in named:
        assert f"def {test}(" in (root / path).read_text(encoding="utf-8"), f"{path}::{test}"
