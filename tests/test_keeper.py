"""The account engine: store and account choice, the cache, single-flight refresh, the
naming of logins, the hook every account operation passes through, and the keep-alive.

Real stores (file, SQLite, memory) and real HTTP against FakeWebex throughout.
"""

from __future__ import annotations

import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from webex_tokens.backends.file import FileStore
from webex_tokens.errors import (
    ConfigError,
    InvalidName,
    ReauthorizationRequired,
    TokenEndpointError,
)
from webex_tokens.keeper import DirectTokenWarning, Keeper, login_name
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.settings import Settings, StoreSource, load_settings
from webex_tokens.store import TokenStore
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token

NAME = "alice@example.com"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def oauth(fake_webex: FakeWebex) -> WebexOAuth:
    return WebexOAuth(
        fake_webex.client_id, fake_webex.client_secret, base_url=fake_webex.base_url, backoff=0
    )


def issued(fake: FakeWebex, name: str = NAME, *, days_ago: float = 0) -> Token:
    when = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return Token.from_response(fake.issue_token(name), now=when, client_id=fake.client_id)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "tokens.json")


# -- the current token ------------------------------------------------------------------


def test_current_is_cached_then_stored_then_refreshed_when_due(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    valid = issued(fake_webex)
    store.put(NAME, valid)
    keeper = Keeper(store, oauth=oauth, settings=Settings())
    assert keeper.current(NAME) == valid
    store.delete(NAME)
    assert keeper.current(NAME) == valid  # from the cache: the store is not read again
    assert keeper.cached(NAME) == valid

    keeper.forget(NAME)
    store.put(NAME, issued(fake_webex, days_ago=30))  # expired
    fresh = keeper.current(NAME)
    assert fresh.access_token != valid.access_token
    assert store.get(NAME) == fresh and fake_webex.calls["refresh_token"] == 1


def test_threads_of_one_keeper_refresh_once_and_touch_the_store_once(
    tmp_path: Path, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    fake_webex.rotate_refresh_tokens = True
    fake_webex.delay = 0.2

    class Counting(FileStore):
        updates = 0

        def update(self, name: str, fn):  # type: ignore[no-untyped-def]
            self.updates += 1
            return super().update(name, fn)

    store = Counting(tmp_path / "tokens.json")
    store.put(NAME, issued(fake_webex, days_ago=30))
    keeper = Keeper(store, oauth=oauth, settings=Settings())
    start = threading.Barrier(8)
    seen: list[str] = []

    def work() -> None:
        start.wait()
        seen.append(keeper.current(NAME).access_token)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert fake_webex.calls["refresh_token"] == 1 and store.updates == 1
    assert fake_webex.revoked_families == 0


def test_missing_token_names_the_login_command(store: FileStore, oauth: WebexOAuth) -> None:
    keeper = Keeper(store, oauth=oauth, settings=Settings())
    with pytest.raises(ReauthorizationRequired) as caught:
        keeper.current("carol@example.com")
    assert caught.value.account == "carol@example.com"
    assert "webex-tokens login --name carol@example.com" in str(caught.value)
    with pytest.raises(InvalidName):
        keeper.current("bad\nname")


def test_refresh_adopts_a_token_stored_instead_of_the_one_seen(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    old = issued(fake_webex)
    store.put(NAME, old)
    keeper = Keeper(store, oauth=oauth, settings=Settings())
    assert keeper.current(NAME) == old
    newer = issued(fake_webex)
    store.put(NAME, newer)  # another process refreshed
    assert keeper.refresh(NAME, seen=old) == newer
    assert fake_webex.calls["refresh_token"] == 0
    forced = keeper.refresh(NAME)
    assert forced.access_token != newer.access_token
    assert fake_webex.calls["refresh_token"] == 1


# -- the hook every account operation passes through ------------------------------------------


def test_every_operation_on_an_account_passes_through_the_hooks_first(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    """The seam of the rescue journal: a hook that writes back a token a failed write left
    behind runs before the keeper reads the account, so its token is the one used."""
    rescued = issued(fake_webex)
    pending = {NAME: rescued}
    calls: list[tuple[str, str]] = []

    def replay(target: TokenStore, name: str) -> None:
        calls.append(("hook", name))
        token = pending.pop(name, None)
        if token is not None:
            target.update(name, lambda _current: token)

    store.put(NAME, issued(fake_webex, days_ago=30))  # the old, expired token
    keeper = Keeper(store, oauth=oauth, settings=Settings(), hooks=[replay])
    assert keeper.current(NAME) == rescued  # replayed, so no refresh was needed
    assert fake_webex.calls["refresh_token"] == 0
    keeper.current(NAME)  # cached: neither the store nor the hooks
    assert calls == [("hook", NAME)]

    keeper.refresh(NAME)
    keeper.stored(NAME)
    label = keeper.save_login(issued(fake_webex).replace(account="bob@example.com"))
    keeper.delete(label)
    assert calls == [("hook", NAME)] * 3 + [("hook", "bob@example.com")] * 2


def test_a_failing_hook_stops_the_operation(store: FileStore, oauth: WebexOAuth) -> None:
    def broken(target: TokenStore, name: str) -> None:
        raise ConfigError("the journal cannot be read; fix its permissions")

    keeper = Keeper(store, oauth=oauth, settings=Settings(), hooks=[broken])
    with pytest.raises(ConfigError, match="journal"):
        keeper.current(NAME)


# -- naming a login ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "current", "account", "expected"),
    [
        ("hr-bot", "default", NAME, "hr-bot"),  # asked for explicitly
        (None, "default", NAME, "default"),  # logging in again keeps the account's name
        (None, None, NAME, NAME),  # a first login: the person's email
        (None, None, None, "default"),  # nothing names it
    ],
)
def test_login_name_rule(
    requested: str | None, current: str | None, account: str | None, expected: str
) -> None:
    token = Token(access_token="a", account=account)
    assert login_name(token, requested=requested, current=current) == expected


def test_login_name_without_a_fallback_refuses_an_unnamed_login() -> None:
    with pytest.raises(ConfigError, match="cannot be named"):
        login_name(Token(access_token="a"), fallback=None)
    with pytest.raises(InvalidName):
        login_name(Token(access_token="a"), requested="bad\nname")


def test_save_login_stores_under_the_rule_and_caches(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    keeper = Keeper(store, oauth=oauth, settings=Settings())
    token = issued(fake_webex).replace(account=NAME)
    assert keeper.save_login(token) == NAME
    assert keeper.save_login(token, current="default") == "default"
    assert store.names() == ["alice@example.com", "default"]
    assert keeper.cached("default") == token


# -- store and account choice ------------------------------------------------------------------


def test_the_store_comes_from_the_settings_and_says_what_chose_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "webex-tokens.toml").write_text(
        textwrap.dedent(
            """
            default_store = "dev"
            [stores.dev]
            url = "memory://keeper-dev"
            [stores.prod]
            url = "memory://keeper-prod"
            """
        )
    )
    monkeypatch.setenv("WEBEX_TOKEN_FILE", str(workdir / ".webex_token.json"))
    monkeypatch.setenv("WEBEX_TOKENS_STORE", "prod")
    with Keeper() as keeper:
        assert keeper.store.url == "memory://keeper-prod"
        assert keeper.choice is not None
        assert keeper.choice.source is StoreSource.STORE_ENV and keeper.choice.name == "prod"
    with Keeper("dev") as keeper:
        assert keeper.choice is not None and keeper.choice.source is StoreSource.ARGUMENT


def test_default_account_precedence(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_url("memory://")
    keeper = Keeper(store, settings=load_settings())
    assert keeper.default_account() is None  # empty: the first login names it
    store.put("default", Token(access_token="d"))
    assert keeper.default_account() == "default"  # the only account
    store.put("b@example.com", Token(access_token="b"))
    assert keeper.default_account() == "default"  # "default" when stored
    store.put("c@example.com", Token(access_token="c"))
    store.delete("default")
    with pytest.raises(ConfigError, match=r"holds 2 accounts .*WEBEX_TOKENS_ACCOUNT"):
        keeper.default_account()

    (workdir / "webex-tokens.toml").write_text('[integration]\naccount = "c@example.com"\n')
    assert Keeper(store, settings=load_settings()).default_account() == "c@example.com"
    monkeypatch.setenv("WEBEX_TOKENS_ACCOUNT", "b@example.com")
    keeper = Keeper(store, settings=load_settings())
    assert keeper.default_account() == "b@example.com"  # the variable over the file
    assert keeper.default_account("x@example.com") == "x@example.com"  # explicit first

    monkeypatch.setenv("WEBEX_TOKENS_ACCOUNT", "bad\tname")
    with pytest.raises(ConfigError, match="WEBEX_TOKENS_ACCOUNT is not a valid account name"):
        Keeper(store, settings=load_settings()).default_account()


def test_direct_token_mode_only_when_asked_for(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBEX_ACCESS_TOKEN", "direct-token-value")
    monkeypatch.setenv("WEBEX_TOKENS_STORE", "memory://")
    plain = Keeper(settings=load_settings())  # the command line: no direct mode
    assert plain.direct_token is None
    with pytest.warns(DirectTokenWarning, match="no refresh support"):
        keeper = Keeper(settings=load_settings(), direct_token=True)
    assert keeper.current("anyone").access_token == "direct-token-value"
    with pytest.raises(ConfigError, match="unset WEBEX_ACCESS_TOKEN"):
        keeper.refresh("anyone")
    assert "direct-token-value" not in repr(keeper)


# -- the keep-alive ---------------------------------------------------------------------------


def test_refresh_many_reports_each_account_and_adopts_what_it_was_told_it_saw(
    tmp_path: Path, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    fake_webex.delay = 0.1
    with open_url(f"sqlite:///{tmp_path}/tokens.db") as store:
        names = [f"user{i}@example.com" for i in range(6)]
        before = {name: issued(fake_webex, name, days_ago=10) for name in names}
        for name, token in before.items():
            store.put(name, token)
        newer = issued(fake_webex, names[0])
        store.put(names[0], newer)  # another host refreshed this one already
        store.put("dead@example.com", Token(access_token="x", refresh_token=None))
        keeper = Keeper(store, oauth=oauth, settings=Settings())
        outcomes = {
            outcome.name: outcome
            for outcome in keeper.refresh_many(
                [*names, "dead@example.com"], seen=before, concurrency=3
            )
        }
        assert set(outcomes) == {*names, "dead@example.com"}
        assert outcomes[names[0]].token == newer  # adopted, not refreshed again
        assert isinstance(outcomes["dead@example.com"].error, ReauthorizationRequired)
        for name in names[1:]:
            token = outcomes[name].token
            assert token is not None and token == store.get(name)
            assert token.access_token != before[name].access_token
        assert fake_webex.calls["refresh_token"] == 5


def test_refresh_many_yields_endpoint_failures(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    store.put(NAME, issued(fake_webex, days_ago=30))
    fake_webex.fail_next(400, body=b'{"error": "invalid_client"}')
    keeper = Keeper(store, oauth=oauth, settings=Settings())
    (outcome,) = keeper.refresh_many([NAME])
    assert outcome.token is None and isinstance(outcome.error, TokenEndpointError)
    with pytest.raises(ValueError, match="at least 1"):
        list(keeper.refresh_many([NAME], concurrency=0))
