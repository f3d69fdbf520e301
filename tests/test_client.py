"""WebexClient: the legacy guide's API on token stores, against FakeWebex over real HTTP."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from webex_tokens.backends.file import FileStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.callback import parse_callback_url
from webex_tokens.client import DirectTokenWarning, WebexClient
from webex_tokens.errors import (
    CallbackError,
    ConfigError,
    ReauthorizationRequired,
    TokenEndpointError,
)
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore, TokenUpdate
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def oauth(fake_webex: FakeWebex) -> WebexOAuth:
    uri = f"http://localhost:{free_port()}/oauth/webex/callback"
    fake_webex.add_redirect_uri(uri)
    return WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=uri,
        base_url=fake_webex.base_url,
        backoff=0,
    )


def no_browser(url: str) -> bool:
    raise AssertionError("no login was expected")


def issued(fake: FakeWebex, *, expired: bool = False, account: str | None = None) -> Token:
    when = datetime.now(timezone.utc) - (timedelta(days=30) if expired else timedelta(0))
    return Token.from_response(
        fake.issue_token(), now=when, client_id=fake.client_id, account=account or fake.user
    )


class CountingStore:
    """A real store that counts every call made to it."""

    def __init__(self, inner: TokenStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls = 0

    def get(self, name: str) -> Token | None:
        self.calls += 1
        return self.inner.get(name)

    def put(self, name: str, token: Token) -> None:
        self.calls += 1
        self.inner.put(name, token)

    def delete(self, name: str) -> bool:
        self.calls += 1
        return self.inner.delete(name)

    def names(self) -> list[str]:
        self.calls += 1
        return self.inner.names()

    def update(self, name: str, fn: TokenUpdate) -> Token | None:
        self.calls += 1
        return self.inner.update(name, fn)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> CountingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- logging in on every kind of store ----------------------------------------------------


@pytest.fixture(params=["file", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield f"file://{tmp_path}/tokens.json"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/tokens.db"
    else:
        server = request.getfixturevalue("postgres_server")
        table = request.getfixturevalue("unique_table")
        yield f"{server}?table={table}"
        engine = sa.create_engine(server)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()


def test_auto_auth_logs_in_and_saves_under_the_email(
    store_url: str, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    with WebexClient(store=store_url, oauth=oauth, open_browser=fake_webex.open_browser) as client:
        assert client.name == fake_webex.user and client.using_oauth
        first = client.access_token
    with open_url(store_url) as store:
        assert store.names() == [fake_webex.user]
        saved = store.get(fake_webex.user)
        assert saved is not None and saved.access_token == first
    calls = dict(fake_webex.calls)
    # Next start: the one stored account is used, without a login or a request.
    with WebexClient(store=store_url, oauth=oauth, open_browser=no_browser) as again:
        assert again.access_token == first and again.name == fake_webex.user
    assert dict(fake_webex.calls) == calls


def test_auto_auth_false_does_not_log_in(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    client = WebexClient(auto_auth=False, store=MemoryStore(), oauth=oauth, open_browser=no_browser)
    assert fake_webex.calls["authorize"] == 0
    with pytest.raises(ReauthorizationRequired, match="webex-tokens login"):
        _ = client.access_token


def test_auto_auth_logs_in_again_when_the_refresh_token_is_dead(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    store = MemoryStore()
    store.put("default", issued(fake_webex, expired=True))  # e.g. a legacy token file
    fake_webex.revoke_refresh_tokens()
    client = WebexClient(store=store, oauth=oauth, open_browser=fake_webex.open_browser)
    assert fake_webex.calls["authorization_code"] == 1
    assert store.names() == ["default"]  # the account keeps its name
    assert store.get("default").access_token == client.access_token  # type: ignore[union-attr]


# -- the legacy API --------------------------------------------------------------------------


def test_manual_flow_like_the_guide(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    store = MemoryStore()
    client = WebexClient(auto_auth=False, store=store, oauth=oauth)
    url = client._build_authorization_url()
    location = fake_webex.approve(url)
    code = parse_callback_url(location, _state(location)).code
    data = client.exchange_code_for_token(code)
    assert set(data) >= {"access_token", "refresh_token", "expires_in", "token_type"}
    assert data["expires_in"] > 3600 and data["token_type"] == "Bearer"
    assert client.access_token == data["access_token"]
    assert store.get(fake_webex.user).access_token == data["access_token"]  # type: ignore[union-attr]
    with pytest.raises(CallbackError, match="call build_authorization_url"):
        client.exchange_code_for_token(code)


def test_exchange_accepts_the_whole_redirect_url(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    client = WebexClient(auto_auth=False, store=MemoryStore(), oauth=oauth)
    location = fake_webex.approve(client.build_authorization_url())
    assert client.exchange_code_for_token(location)["access_token"] == client.access_token
    client.build_authorization_url()
    with pytest.raises(CallbackError, match="state"):
        client.exchange_code_for_token(location)  # an answer to the earlier request


def test_exchange_without_build_explains_the_order(oauth: WebexOAuth) -> None:
    client = WebexClient(auto_auth=False, store=MemoryStore(), oauth=oauth)
    with pytest.raises(CallbackError, match="build_authorization_url"):
        client.exchange_code_for_token("abc")


def _state(location: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(location).query)["state"][0]


def test_refresh_access_token_returns_expires_in(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    store = MemoryStore()
    old = issued(fake_webex)
    store.put("bot", old)
    client = WebexClient(store=store, name="bot", oauth=oauth, open_browser=no_browser)
    data = client.refresh_access_token()
    assert data["expires_in"] > 3600 and data["access_token"] != old.access_token
    assert client.access_token == data["access_token"] == store.get("bot").access_token  # type: ignore[union-attr]
    assert fake_webex.calls["refresh_token"] == 1


def test_expired_token_is_refreshed_on_access(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    store = MemoryStore()
    store.put("bot", issued(fake_webex, expired=True))
    client = WebexClient(auto_auth=False, store=store, name="bot", oauth=oauth)
    token = client.access_token
    assert fake_webex.calls["refresh_token"] == 1
    assert store.get("bot").access_token == token  # type: ignore[union-attr]


def test_cached_access_token_touches_neither_store_nor_network(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    inner = MemoryStore()
    inner.put("bot", issued(fake_webex))
    store = CountingStore(inner)
    client = WebexClient(store=store, name="bot", oauth=oauth, open_browser=no_browser)
    first = client.access_token
    store_calls, network = store.calls, dict(fake_webex.calls)
    started = time.perf_counter()
    for _ in range(10_000):
        assert client.access_token == first
    elapsed = time.perf_counter() - started
    assert store.calls == store_calls and dict(fake_webex.calls) == network
    assert elapsed < 1.0  # about a microsecond each: an attribute read and a comparison


# -- configuration from the environment -------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_env(directory: Path, fake: FakeWebex, **extra: str) -> None:
    values = {
        "WEBEX_CLIENT_ID": fake.client_id,
        "WEBEX_CLIENT_SECRET": fake.client_secret,
        "WEBEX_BASE_URL": fake.base_url,
        **extra,
    }
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def test_legacy_token_file_and_dotenv(
    in_tmp: Path, fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = fake_webex.issue_token()
    legacy = in_tmp / ".webex_token.json"
    saved_at = (datetime.now() - timedelta(days=1)).isoformat()
    legacy.write_text(
        json.dumps(
            {
                "access_token": answer["access_token"],
                "refresh_token": answer["refresh_token"],
                "saved_at": saved_at,
            }
        )
    )
    write_env(in_tmp, fake_webex)
    monkeypatch.setenv("WEBEX_TOKEN_FILE", str(legacy))
    client = WebexClient(open_browser=no_browser)
    assert client.token_file == legacy and client.name == "default"
    assert client.access_token == answer["access_token"]
    data = client.refresh_access_token()
    assert data["access_token"] != answer["access_token"]
    assert FileStore(legacy).get("default").access_token == data["access_token"]  # type: ignore[union-attr]


def test_setting_token_file_switches_store(
    in_tmp: Path, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    client = WebexClient(store=MemoryStore(), oauth=oauth, open_browser=fake_webex.open_browser)
    assert client.token_file is None
    other = FileStore(in_tmp / "prod.json")
    prod = issued(fake_webex, account="prod@example.com")
    other.put("prod@example.com", prod)
    client.token_file = in_tmp / "prod.json"
    assert client.token_file == in_tmp / "prod.json"
    assert client.name == "prod@example.com" and client.access_token == prod.access_token


def test_legacy_file_in_the_current_directory_is_pointed_out(
    in_tmp: Path, oauth: WebexOAuth
) -> None:
    (in_tmp / ".webex_token.json").write_text('{"access_token": "x"}')
    with pytest.warns(UserWarning, match="WEBEX_TOKEN_FILE=.webex_token.json"):
        WebexClient(auto_auth=False, store=None, oauth=oauth).close()


def test_direct_token_warns_and_never_refreshes(
    in_tmp: Path,
    fake_webex: FakeWebex,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_env(in_tmp, fake_webex, WEBEX_ACCESS_TOKEN="direct-token-value")
    with pytest.warns(DirectTokenWarning, match="no refresh support") as warned:
        client = WebexClient(store=None, open_browser=no_browser)
    message = str(warned[0].message)
    assert "WEBEX_CLIENT_ID/SECRET" in message and "12 hours" in message
    assert "no refresh support" in caplog.text
    assert client.using_direct_token and not client.using_oauth
    assert client.access_token == "direct-token-value"
    with pytest.raises(ConfigError, match="unset WEBEX_ACCESS_TOKEN"):
        client.refresh_access_token()
    assert dict(fake_webex.calls) == {"people_me": 1}  # what kind of token: never a refresh
    assert "direct-token-value" not in repr(client)


def test_missing_credentials_are_a_config_error(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match="WEBEX_CLIENT_ID"):
        WebexClient(store=MemoryStore())


def test_several_accounts_need_a_name(
    oauth: WebexOAuth, fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    for name in ("a@example.com", "b@example.com"):
        store.put(name, issued(fake_webex, account=name))
    with pytest.raises(ConfigError, match=r"holds 2 accounts .*WEBEX_TOKENS_ACCOUNT"):
        WebexClient(store=store, oauth=oauth, open_browser=no_browser)
    monkeypatch.setenv("WEBEX_TOKENS_ACCOUNT", "b@example.com")
    client = WebexClient(store=store, oauth=oauth, open_browser=no_browser)
    assert client.access_token == store.get("b@example.com").access_token  # type: ignore[union-attr]


# -- session and SDK ------------------------------------------------------------------------


def test_session_refreshes_through_the_store(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    store = MemoryStore()
    store.put("bot", issued(fake_webex))
    client = WebexClient(store=store, name="bot", oauth=oauth, open_browser=no_browser)
    session = client.session
    assert session.get("people/me", timeout=5).json()["emails"] == [fake_webex.user]
    # Another process leaves an expired token: the next request refreshes it first.
    store.put("bot", issued(fake_webex, expired=True))
    client.keeper.forget()  # as if this process had just started
    response = session.get(fake_webex.base_url + "/people/me", timeout=5)
    assert response.status_code == 200 and fake_webex.calls["refresh_token"] == 1
    assert session.token["access_token"] == store.get("bot").access_token  # type: ignore[union-attr]


def test_webex_api_talks_to_the_configured_base_url(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    store = MemoryStore()
    store.put("bot", issued(fake_webex))
    client = WebexClient(store=store, name="bot", oauth=oauth, open_browser=no_browser)
    api: Any = client.webex_api()
    assert api.people.me().emails == [fake_webex.user]


def test_refresh_failure_propagates_with_its_type(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    store = MemoryStore()
    store.put("bot", issued(fake_webex, expired=True))
    client = WebexClient(auto_auth=False, store=store, name="bot", oauth=oauth)
    fake_webex.fail_next(500, times=4)
    with pytest.raises(TokenEndpointError):
        _ = client.access_token


# -- issue 13: one resolver for the store and the account -------------------------------------


def test_integration_account_in_the_settings_file_chooses_the_account(
    in_tmp: Path, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    url = f"file://{in_tmp}/tokens.json"
    with open_url(url) as store:
        for name in ("a@example.com", "b@example.com"):
            store.put(name, issued(fake_webex, account=name))
    (in_tmp / "webex-tokens.toml").write_text('[integration]\naccount = "b@example.com"\n')
    with WebexClient(store=url, oauth=oauth, open_browser=no_browser) as client:
        assert client.name == "b@example.com"
        stored = FileStore(in_tmp / "tokens.json").get("b@example.com")
        assert stored is not None and client.access_token == stored.access_token


def test_webex_tokens_store_wins_over_webex_token_file_as_for_the_cli(
    in_tmp: Path, oauth: WebexOAuth, fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = issued(fake_webex, account="bot")
    FileStore(in_tmp / "chosen.json").put("bot", chosen)
    FileStore(in_tmp / "legacy.json").put("bot", issued(fake_webex, account="bot"))
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"file://{in_tmp}/chosen.json")
    monkeypatch.setenv("WEBEX_TOKEN_FILE", str(in_tmp / "legacy.json"))
    with WebexClient(oauth=oauth, open_browser=no_browser) as client:
        assert client.token_file == in_tmp / "chosen.json"
        assert client.access_token == chosen.access_token
    from click.testing import CliRunner

    from webex_tokens.cli import cli

    printed = CliRunner().invoke(cli, ["token", "bot"], catch_exceptions=False).output
    assert printed.strip() == chosen.access_token  # the CLI opens the same store
