"""Single-flight refresh: the pure decisions, and ensure_fresh on real stores and FakeWebex."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from webex_tokens.backends.file import FileStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.errors import ReauthorizationRequired, TokenEndpointError
from webex_tokens.oauth import WebexOAuth
from webex_tokens.refresh import (
    Action,
    decide,
    decide_after_refusal,
    ensure_fresh,
    merge_refreshed,
)
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
NAME = "alice@example.com"


def token(access: str = "a1", *, expires_in: float | None = 3600, **fields: object) -> Token:
    expires_at = NOW + timedelta(seconds=expires_in) if expires_in is not None else None
    values: dict[str, object] = {"refresh_token": "r1", "expires_at": expires_at, **fields}
    return Token(access_token=access, **values)  # type: ignore[arg-type]


# -- the pure decisions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "force", "seen", "action", "reason"),
    [
        (None, False, None, Action.REAUTHORIZE, "no token is stored"),
        (token(), False, None, Action.ADOPT, "still valid"),
        (token(expires_in=60), False, None, Action.REFRESH, "due"),
        (token(expires_in=-60), False, None, Action.REFRESH, "due"),
        (token(), True, None, Action.REFRESH, "forced"),
        (token("a2"), True, token("a1"), Action.ADOPT, "another process"),
        (token("a2", expires_in=-5), True, token("a1"), Action.REFRESH, "due"),
        (token("a1"), True, token("a1"), Action.REFRESH, "forced"),
        (token(expires_in=None), False, None, Action.ADOPT, "still valid"),
        (token(expires_in=-1, refresh_token=None), False, None, Action.REAUTHORIZE, "no refresh"),
        (
            token(expires_in=-1, refresh_token_expires_at=NOW - timedelta(days=1)),
            False,
            None,
            Action.REAUTHORIZE,
            "refresh token has expired",
        ),
    ],
)
def test_decide(
    current: Token | None, force: bool, seen: Token | None, action: Action, reason: str
) -> None:
    decision = decide(current, force=force, leeway=120, seen=seen, now=NOW)
    assert decision.action is action and reason in decision.reason


def test_decide_after_refusal_adopts_only_a_different_valid_token() -> None:
    refused = token("a1", expires_in=-1)
    assert decide_after_refusal(refused, token("a2"), now=NOW).action is Action.ADOPT
    assert decide_after_refusal(refused, refused, now=NOW).action is Action.REAUTHORIZE
    stale = token("a2", expires_in=-1)
    assert decide_after_refusal(refused, stale, now=NOW).action is Action.REAUTHORIZE
    assert decide_after_refusal(refused, None, now=NOW).action is Action.REAUTHORIZE


def test_merge_keeps_what_the_answer_left_out() -> None:
    old = token("a1", account=NAME, client_id="cid", scopes=("spark:all",))
    old = old.replace(refresh_token_expires_at=NOW + timedelta(days=90))
    merged = merge_refreshed(old, Token(access_token="a2"))
    assert merged.access_token == "a2" and merged.refresh_token == "r1"
    assert merged.refresh_token_expires_at == old.refresh_token_expires_at
    assert (merged.account, merged.client_id, merged.scopes) == (NAME, "cid", ("spark:all",))
    rotated = merge_refreshed(old, Token(access_token="a3", refresh_token="r2"))
    assert rotated.refresh_token == "r2" and rotated.refresh_token_expires_at is None


# -- ensure_fresh against the emulator --------------------------------------------------


@pytest.fixture
def oauth(fake_webex: FakeWebex) -> WebexOAuth:
    return WebexOAuth(
        fake_webex.client_id, fake_webex.client_secret, base_url=fake_webex.base_url, backoff=0
    )


def issued(fake: FakeWebex, *, expired: bool) -> Token:
    when = datetime.now(timezone.utc) - (timedelta(days=30) if expired else timedelta(0))
    return Token.from_response(
        fake.issue_token(), now=when, client_id=fake.client_id, account=fake.user
    )


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "tokens.json")


def test_expired_token_is_refreshed_and_saved(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    old = issued(fake_webex, expired=True)
    store.put(NAME, old)
    fresh = ensure_fresh(store, NAME, oauth)
    assert fresh.access_token != old.access_token and not fresh.is_expired(leeway=3600)
    assert store.get(NAME) == fresh
    assert fresh.account == NAME and fresh.refresh_token == old.refresh_token
    assert fake_webex.calls["refresh_token"] == 1
    assert oauth.whoami(fresh) == NAME


def test_valid_token_is_used_without_a_request(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    current = issued(fake_webex, expired=False)
    store.put(NAME, current)
    assert ensure_fresh(store, NAME, oauth) == current
    assert fake_webex.calls["access_token"] == 0


def test_force_refreshes_unless_someone_else_already_did(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    seen = issued(fake_webex, expired=False)
    store.put(NAME, seen)
    forced = ensure_fresh(store, NAME, oauth, force=True)
    assert forced != seen and fake_webex.calls["refresh_token"] == 1
    # A caller still holding `seen` asks for a forced refresh: the stored token is newer.
    assert ensure_fresh(store, NAME, oauth, force=True, seen=seen) == forced
    assert fake_webex.calls["refresh_token"] == 1


def test_threads_refresh_once(store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    fake_webex.rotate_refresh_tokens = True
    store.put(NAME, issued(fake_webex, expired=True))
    results: list[str] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        results.append(ensure_fresh(store, NAME, oauth).access_token)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert fake_webex.calls["refresh_token"] == 1 and fake_webex.revoked_families == 0


def test_refused_refresh_names_the_account_and_the_command(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    old = issued(fake_webex, expired=True)
    store.put("hr bot", old)
    fake_webex.revoke_refresh_tokens()
    with pytest.raises(ReauthorizationRequired) as caught:
        ensure_fresh(store, "hr bot", oauth)
    message = str(caught.value)
    assert caught.value.account == "hr bot"
    assert "webex-tokens login --name 'hr bot'" in message
    assert "expired or revoked" in message
    assert old.refresh_token not in message  # type: ignore[operator]
    assert store.get("hr bot") == old  # nothing overwritten


def test_refused_refresh_adopts_a_token_stored_meanwhile(fake_webex: FakeWebex) -> None:
    store = MemoryStore()
    store.put(NAME, issued(fake_webex, expired=True))
    fake_webex.revoke_refresh_tokens()
    newer = issued(fake_webex, expired=False)

    class LoginDuringRefresh(WebexOAuth):
        """Someone logs the account in again while this refresh is being refused."""

        def refresh(self, token: Token) -> Token:
            store.put(NAME, newer)
            return super().refresh(token)

    oauth = LoginDuringRefresh(
        fake_webex.client_id, fake_webex.client_secret, base_url=fake_webex.base_url
    )
    assert ensure_fresh(store, NAME, oauth) == newer


def test_no_token_stored(store: FileStore, oauth: WebexOAuth) -> None:
    with pytest.raises(ReauthorizationRequired, match="no token is stored") as caught:
        ensure_fresh(store, NAME, oauth)
    assert f"webex-tokens login --name {NAME}" in str(caught.value)


def test_endpoint_failure_leaves_the_stored_token(
    store: FileStore, oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    old = issued(fake_webex, expired=True)
    store.put(NAME, old)
    fake_webex.fail_next(500, times=4)
    with pytest.raises(TokenEndpointError):
        ensure_fresh(store, NAME, oauth)
    assert store.get(NAME) == old


def test_merge_keeps_kind_organization_and_id_token_through_a_refresh() -> None:
    old = Token(
        access_token="a1",
        refresh_token="r1",
        refresh_token_expires_at=NOW + timedelta(days=60),
        kind="service_app",
        org_id="ORG-1",
        id_token="id-1",
    )
    merged = merge_refreshed(old, Token(access_token="a2", refresh_token="r1"))
    assert (merged.kind, merged.org_id, merged.id_token) == ("service_app", "ORG-1", "id-1")
    assert merged.refresh_token_expires_at == old.refresh_token_expires_at
    fresh_id = merge_refreshed(old, Token(access_token="a3", id_token="id-2"))
    assert fresh_id.id_token == "id-2" and fresh_id.refresh_token == "r1"
