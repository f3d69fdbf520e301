"""Single-flight refresh: the pure decisions, and ensure_fresh on real stores and FakeWebex."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from webex_tokens.backends.file import FileStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.cli import cli
from webex_tokens.errors import ReauthorizationRequired, TokenEndpointError
from webex_tokens.oauth import WebexOAuth
from webex_tokens.refresh import (
    ACCESS_TOKEN_LIFETIME,
    REFRESH_TOKEN_LIFETIME,
    Action,
    decide,
    decide_after_refusal,
    ensure_fresh,
    expiries,
    is_due,
    merge_refreshed,
    token_status,
)
from webex_tokens.registry import open_url
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
        # Due because its refresh token expires within the leeway: refresh while it can.
        (
            token(refresh_token_expires_at=NOW + timedelta(seconds=60)),
            False,
            None,
            Action.REFRESH,
            "due",
        ),
        # Its refresh token is dead, but the access token still serves until it expires.
        (
            token(refresh_token_expires_at=NOW - timedelta(days=1)),
            False,
            None,
            Action.ADOPT,
            "access token is still valid",
        ),
        # A record without expiry saved long ago is estimated dead: refresh it.
        (
            token(expires_in=None, saved_at=NOW - timedelta(days=15)),
            False,
            None,
            Action.REFRESH,
            "due",
        ),
    ],
)
def test_decide(
    current: Token | None, force: bool, seen: Token | None, action: Action, reason: str
) -> None:
    decision = decide(current, force=force, leeway=120, seen=seen, now=NOW)
    assert decision.action is action and reason in decision.reason


# -- when a token is due -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "within", "due"),
    [
        (token(expires_in=3600), 60, False),
        (token(expires_in=3600), 7200, True),  # the access token expires within the window
        (
            token(expires_in=10 * 86400, refresh_token_expires_at=NOW + timedelta(days=3)),
            7 * 86400,
            True,
        ),
        (
            token(expires_in=10 * 86400, refresh_token_expires_at=NOW + timedelta(days=30)),
            7 * 86400,
            False,
        ),
        # A dead refresh token of a token without one does not count: nothing can renew it.
        (token(refresh_token=None, expires_in=None), 100 * 86400, False),
        (Token(access_token="bot", kind="bot"), 100 * 86400, False),
    ],
)
def test_is_due_when_the_access_or_the_refresh_token_expires_within_the_window(
    current: Token, within: float, due: bool
) -> None:
    assert is_due(current, within, now=NOW) is due


def test_a_record_without_expiry_gets_the_documented_lifetimes_from_saved_at() -> None:
    saved = NOW - timedelta(days=10)
    legacy = Token(access_token="a", refresh_token="r", saved_at=saved)
    when = expiries(legacy)
    assert when.estimated
    assert when.access_at == saved + ACCESS_TOKEN_LIFETIME == saved + timedelta(days=14)
    assert when.refresh_at == saved + REFRESH_TOKEN_LIFETIME == saved + timedelta(days=90)
    assert not is_due(legacy, 86400, now=NOW)  # 4 days left
    assert is_due(legacy, 7 * 86400, now=NOW)
    assert token_status(legacy, now=NOW) == "ok"
    recorded = expiries(token())
    assert not recorded.estimated and recorded.access_at == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    ("current", "status"),
    [
        (token(), "ok"),
        (token(expires_in=60), "due"),
        (token(expires_in=-60), "expired"),
        (token(expires_in=-60, refresh_token=None), "refresh expired"),
        (token(refresh_token_expires_at=NOW - timedelta(days=1)), "refresh expired"),
        (token(refresh_token_expires_at=NOW + timedelta(days=2)), "due"),
        (token(expires_in=None, refresh_token=None), "unknown"),
        (Token(access_token="bot", kind="bot"), "ok"),
    ],
)
def test_token_status(current: Token, status: str) -> None:
    assert token_status(current, now=NOW) == status


def test_a_refused_refresh_token_needs_a_login_whatever_its_expiry_says() -> None:
    assert token_status(token(), now=NOW, refused=True) == "refused"
    assert token_status(token(expires_in=-60), now=NOW, refused=True) == "refused"
    bot = Token(access_token="bot", kind="bot")
    assert token_status(bot, now=NOW, refused=True) == "ok"  # nothing to refuse


def test_an_imported_legacy_token_file_is_due_for_the_keep_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 #4: `.webex_token.json` has no expiry; imported, it used to read as never due."""
    monkeypatch.chdir(tmp_path)
    legacy = tmp_path / ".webex_token.json"
    saved_at = (datetime.now() - timedelta(days=3)).isoformat()  # the legacy file's local time
    legacy.write_text(
        json.dumps(
            {"access_token": "ZTA2-access", "refresh_token": "RzdiM-refresh", "saved_at": saved_at}
        )
    )
    url = f"sqlite:///{tmp_path}/tokens.db"
    result = CliRunner().invoke(
        cli, ["--store", url, "import", str(legacy)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    with open_url(url) as store:
        (name,) = store.names()
        imported = store.get(name)
    assert imported is not None and imported.expires_at is None  # as the legacy file said
    assert is_due(imported, 100 * 86400)  # refresh --all --due-within 100d refreshes it
    assert is_due(imported, 11.5 * 86400) and not is_due(imported, 10.5 * 86400)
    assert expiries(imported).estimated and token_status(imported) == "ok"


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


# -- a refresh whose answer never came (issue 12 #3) ------------------------------------


class Unanswered(WebexOAuth):
    """The network layer of a refresh that timed out after sending: nobody can tell
    whether Webex used the refresh token (``delivered=None``). Optionally, another host
    stores a fresh token meanwhile."""

    def __init__(self, fake: FakeWebex, store: FileStore, meanwhile: Token | None = None):
        super().__init__(fake.client_id, fake.client_secret, base_url=fake.base_url)
        self.store = store
        self.meanwhile = meanwhile
        self.presented: list[str | None] = []

    def refresh(self, token: Token) -> Token:
        self.presented.append(token.refresh_token)
        if self.meanwhile is not None:
            self.store.put(NAME, self.meanwhile)  # a host that does not share this lock
        raise TokenEndpointError(
            "the Webex token endpoint did not answer within 10 seconds", delivered=None
        )


def test_unanswered_refresh_is_not_resent_and_says_what_to_expect(
    store: FileStore, fake_webex: FakeWebex
) -> None:
    old = issued(fake_webex, expired=True)
    store.put(NAME, old)
    oauth = Unanswered(fake_webex, store)
    with pytest.raises(TokenEndpointError) as caught:
        ensure_fresh(store, NAME, oauth)
    message = str(caught.value)
    assert oauth.presented == [old.refresh_token]  # presented once, never again
    assert caught.value.delivered is None
    assert "Webex may have used its refresh token, so it was not sent again" in message
    assert f"log in again (webex-tokens login --name {NAME})" in message
    assert "the next attempt refreshes it normally" in message
    assert old.refresh_token not in message  # type: ignore[operator]
    assert store.get(NAME) == old  # nothing written over it


def test_unanswered_refresh_adopts_a_token_stored_meanwhile(
    store: FileStore, fake_webex: FakeWebex
) -> None:
    old = issued(fake_webex, expired=True)
    store.put(NAME, old)
    newer = issued(fake_webex, expired=False)
    oauth = Unanswered(fake_webex, store, meanwhile=newer)
    assert ensure_fresh(store, NAME, oauth) == newer
    assert oauth.presented == [old.refresh_token]


def test_timed_out_refresh_presents_the_refresh_token_once(
    store: FileStore, fake_webex: FakeWebex
) -> None:
    """Against the emulator: the answer comes after the client gave up; the rotated
    refresh token is never presented again, so no family is revoked for reuse."""
    fake_webex.rotate_refresh_tokens = True
    fake_webex.delay = 0.6
    old = issued(fake_webex, expired=True)
    store.put(NAME, old)
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        base_url=fake_webex.base_url,
        timeout=0.2,
        max_retries=0,
    )
    with pytest.raises(TokenEndpointError):
        ensure_fresh(store, NAME, oauth)
    time.sleep(fake_webex.delay)  # let the emulator finish the answer nobody read
    assert fake_webex.calls["refresh_token"] == 1
    assert fake_webex.revoked_families == 0
    assert store.get(NAME) == old


def test_timed_out_refresh_explains_itself_once(store: FileStore, fake_webex: FakeWebex) -> None:
    fake_webex.delay = 0.4
    store.put(NAME, issued(fake_webex, expired=True))
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        base_url=fake_webex.base_url,
        timeout=0.2,
        max_retries=0,
    )
    with pytest.raises(TokenEndpointError) as caught:
        ensure_fresh(store, NAME, oauth)
    message = str(caught.value)
    assert "did not answer within 0.2 seconds), and Webex may have used its refresh" in message
    assert message.count("may have used") == 1, message
    time.sleep(fake_webex.delay)
