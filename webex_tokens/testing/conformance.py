"""The conformance suite every :class:`~webex_tokens.store.TokenStore` must pass.

Use it from a test module::

    import pytest
    from webex_tokens.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self, tmp_path):
            with MyStore(tmp_path / "x") as store:
                yield store
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ..errors import InvalidName
from ..store import KEEP, BaseStore, RecordChange, TokenStore, redact_url
from ..token import Token

__all__ = [
    "AWKWARD_NAMES",
    "INVALID_NAMES",
    "StoreConformance",
    "assert_same_fields",
    "every_kind",
    "make_token",
]

#: Valid names a backend must store and return exactly.
AWKWARD_NAMES = [
    "alice@example.com",
    "Zoë Ünïcode 日本語",
    "with  double  spaces ",
    "slashes/and\\backslashes",
    "quotes ' \" ` and ; DROP TABLE webex_tokens; --",
    "percent %41 %2F and + plus",
    "emoji 🎉 astral",
    "..",
    "x" * 255,
    "é" * 255,
]

#: Names every store must refuse with :class:`~webex_tokens.errors.InvalidName`.
INVALID_NAMES = ["", "nul\x00byte", "new\nline", "del\x7f", "esc\x1b[31m", "x" * 256, 42, None]

_T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def make_token(
    access_token: str = "access-0", *, full: bool = True, account: str | None = "alice@example.com"
) -> Token:
    """A token for tests; ``full=False`` leaves every optional field empty."""
    if not full:
        return Token(access_token=access_token, saved_at=_T0)
    return Token(
        access_token=access_token,
        refresh_token="refresh-" + access_token,
        expires_at=_T0 + timedelta(hours=12),
        refresh_token_expires_at=_T0 + timedelta(days=90),
        scopes=("spark:all", "spark:kms"),
        client_id="C0ffee",
        account=account,
        saved_at=_T0,
    )


def every_kind() -> dict[str, Token]:
    """A token of every kind with every field it can have set (microseconds, unicode and
    an ID token included), by name: what a store must give back field for field."""
    full = make_token("integration-0", account="Zoë <zoe@example.com>").replace(
        saved_at=_T0.replace(microsecond=123456),
        expires_at=_T0 + timedelta(hours=12, microseconds=7),
        id_token="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ6b2UifQ.c2lnbmF0dXJl",
    )
    org = "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi8xZWI2NWZkZi05NjQzLTQxN2YtOTk3NC1hZDcyY2FlMGUxMGY"
    return {
        "integration": full,
        "service_app": full.replace(
            access_token="service-app-0",
            refresh_token="service-app-refresh-0",
            kind="service_app",
            org_id=org,
            client_id="C9a",
            scopes=(),
            account=None,
            id_token=None,
        ),
        "bot": Token(access_token="bot-0", kind="bot", account="hr-bot@webex.bot", saved_at=_T0),
        "personal": Token(
            access_token="personal-0",
            kind="personal",
            account="alice@example.com",
            scopes=("spark:all",),
            saved_at=_T0,
        ),
    }


def assert_same_fields(got: Token | None, expected: Token) -> None:
    """Fail unless ``got`` has every field of ``expected``, each equal (and aware times)."""
    assert got is not None, "the token was not read back"
    for field in dataclasses.fields(Token):
        value, wanted = getattr(got, field.name), getattr(expected, field.name)
        assert value == wanted, f"{field.name}: {value!r} != {wanted!r}"
        if isinstance(wanted, datetime):
            assert value.utcoffset() == timedelta(0), f"{field.name} is not UTC"


def _count(token: Token | None) -> int:
    return int(token.access_token.rsplit("-", 1)[1]) if token else 0


def _increment(token: Token | None) -> Token:
    return make_token(f"count-{_count(token) + 1}")


class StoreConformance:
    """The behaviour every token store owes; subclasses provide a ``store`` fixture."""

    # -- get / put / delete / names ------------------------------------------------

    def test_get_missing_is_none(self, store: TokenStore) -> None:
        assert store.get("nobody") is None

    def test_put_then_get_returns_an_equal_token(self, store: TokenStore) -> None:
        token = make_token()
        store.put("alice", token)
        assert store.get("alice") == token

    def test_token_without_optional_fields_round_trips(self, store: TokenStore) -> None:
        token = make_token(full=False)
        store.put("bare", token)
        got = store.get("bare")
        assert got == token
        assert got is not None and got.refresh_token is None and got.scopes == ()

    @pytest.mark.parametrize("kind", ["integration", "service_app", "bot", "personal"])
    def test_every_kind_reads_back_field_for_field(self, store: TokenStore, kind: str) -> None:
        token = every_kind()[kind]
        store.put(kind, token)
        assert_same_fields(store.get(kind), token)
        assert store.update(kind, lambda current: current) is not None
        assert_same_fields(store.get(kind), token)

    def test_put_replaces(self, store: TokenStore) -> None:
        store.put("alice", make_token("first"))
        store.put("alice", make_token("second"))
        got = store.get("alice")
        assert got is not None and got.access_token == "second"
        assert store.names() == ["alice"]

    def test_put_refuses_what_is_not_a_token(self, store: TokenStore) -> None:
        with pytest.raises(TypeError):
            store.put("alice", {"access_token": "x"})  # type: ignore[arg-type]
        assert store.get("alice") is None

    def test_delete_says_whether_something_was_deleted(self, store: TokenStore) -> None:
        store.put("alice", make_token())
        assert store.delete("alice") is True
        assert store.get("alice") is None
        assert store.delete("alice") is False

    def test_names_are_sorted_and_complete(self, store: TokenStore) -> None:
        for name in ["carol", "alice", "bob"]:
            store.put(name, make_token(name))
        assert store.names() == ["alice", "bob", "carol"]
        store.delete("bob")
        assert store.names() == ["alice", "carol"]

    def test_accounts_are_independent(self, store: TokenStore) -> None:
        store.put("alice", make_token("a"))
        store.put("bob", make_token("b"))
        store.delete("alice")
        got = store.get("bob")
        assert got is not None and got.access_token == "b"

    @pytest.mark.parametrize("name", AWKWARD_NAMES, ids=range(len(AWKWARD_NAMES)))
    def test_awkward_names_round_trip(self, store: TokenStore, name: str) -> None:
        store.put(name, make_token("t"))
        assert store.get(name) == make_token("t")
        assert name in store.names()
        assert store.delete(name) is True

    @pytest.mark.parametrize("name", INVALID_NAMES, ids=range(len(INVALID_NAMES)))
    def test_invalid_names_are_refused(self, store: TokenStore, name: Any) -> None:
        for call in (
            lambda: store.get(name),
            lambda: store.put(name, make_token()),
            lambda: store.delete(name),
            lambda: store.update(name, _increment),
        ):
            with pytest.raises(InvalidName) as info:
                call()
            assert isinstance(info.value, ValueError)
            assert str(info.value)
        assert store.names() == []

    # -- update ------------------------------------------------------------------

    def test_update_creates_a_missing_token(self, store: TokenStore) -> None:
        seen: list[Token | None] = []

        def fn(current: Token | None) -> Token:
            seen.append(current)
            return make_token("created")

        result = store.update("new", fn)
        assert seen == [None]
        assert result == make_token("created")
        assert store.get("new") == make_token("created")

    def test_update_sees_the_current_token(self, store: TokenStore) -> None:
        for _ in range(5):
            store.update("counter", _increment)
        assert _count(store.get("counter")) == 5

    def test_update_returning_none_deletes(self, store: TokenStore) -> None:
        store.put("alice", make_token())
        assert store.update("alice", lambda current: None) is None
        assert store.get("alice") is None
        assert store.update("ghost", lambda current: None) is None
        assert store.names() == []

    def test_update_returning_the_same_object_writes_nothing(self, store: TokenStore) -> None:
        store.put("alice", make_token())
        changes: list[RecordChange] = []
        if isinstance(store, BaseStore):
            original = store._update_record

            def spy(name: str, change: Callable[[str | None], RecordChange]) -> None:
                def recording(data: str | None) -> RecordChange:
                    changes.append(change(data))
                    return changes[-1]

                original(name, recording)

            store._update_record = spy  # type: ignore[method-assign]
        before = store.get("alice")
        result = store.update("alice", lambda current: current)
        assert result == before
        assert store.get("alice") == before
        if isinstance(store, BaseStore):
            assert changes == [KEEP]

    def test_update_that_raises_changes_nothing(self, store: TokenStore) -> None:
        store.put("alice", make_token("kept"))

        def fail(current: Token | None) -> Token:
            raise RuntimeError("refresh failed")

        with pytest.raises(RuntimeError, match="refresh failed"):
            store.update("alice", fail)
        got = store.get("alice")
        assert got is not None and got.access_token == "kept"

    def test_update_is_exclusive_across_threads(self, store: TokenStore) -> None:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(10):
                    store.update("counter", _increment)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert _count(store.get("counter")) == 60

    def _update_held_while(
        self, store: TokenStore, name: str, during: Callable[[], None]
    ) -> Token | None:
        """Run ``during`` while another thread is inside ``update(name)``; return what that
        update returned (its function answers ``make_token("refreshed")``)."""
        inside, release = threading.Event(), threading.Event()
        results: list[Token | None] = []

        def slow(current: Token | None) -> Token:
            inside.set()
            release.wait(10)
            return make_token("refreshed")

        updater = threading.Thread(target=lambda: results.append(store.update(name, slow)))
        updater.start()
        try:
            assert inside.wait(10), "update() never called its function"
            during()
        finally:
            release.set()
            updater.join(30)
        assert results, "update() failed"
        return results[0]

    @pytest.mark.parametrize("change", ["put", "delete"])
    def test_a_put_or_delete_landing_during_an_update_stands(
        self, store: TokenStore, change: str
    ) -> None:
        # A login (put) or logout (delete) while a refresh runs must not be undone by the
        # refresh's write: the store ends as if the update came first.
        store.put("alice", make_token("before"))
        done = threading.Event()

        def write() -> None:
            if change == "put":
                store.put("alice", make_token("login"))
            else:
                store.delete("alice")
            done.set()

        writer = threading.Thread(target=write)

        def start_writer() -> None:
            writer.start()
            done.wait(0.5)  # a store may also make it wait for the update: both are fine

        returned = self._update_held_while(store, "alice", start_writer)
        writer.join(30)
        assert done.is_set()
        assert returned is not None and returned.access_token == "refreshed"
        got = store.get("alice")
        assert (got and got.access_token) == ("login" if change == "put" else None)

    def update_locks_one_account(self, store: TokenStore) -> bool:
        """Override to return False for a store whose ``update`` locks the whole store
        while ``fn`` runs; the test that other accounts go on meanwhile is then skipped."""
        return True

    def test_an_update_does_not_hold_up_other_accounts(self, store: TokenStore) -> None:
        if not self.update_locks_one_account(store):
            pytest.skip("this store's update locks the whole store")
        store.put("bob", make_token("count-5"))
        elapsed: list[float] = []

        def update_others() -> None:
            started = time.monotonic()
            store.update("bob", _increment)
            store.update("carol", _increment)
            store.put("dave", make_token("dave"))
            elapsed.append(time.monotonic() - started)

        self._update_held_while(store, "alice", update_others)
        assert elapsed and elapsed[0] < 5, "updates of other accounts waited for alice's"
        assert _count(store.get("bob")) == 6 and _count(store.get("carol")) == 1

    # -- the rest of the protocol ---------------------------------------------------

    def test_url_is_text_without_a_password(self, store: TokenStore) -> None:
        assert isinstance(store.url, str) and store.url
        # Redacting a URL that holds no password or secret option leaves it unchanged.
        assert redact_url(store.url) == store.url

    def test_repr_shows_no_secret(self, store: TokenStore) -> None:
        token = make_token("s3cr3t-access")
        store.put("alice", token)
        for text in (repr(store), str(store), repr(store.get("alice")), str(store.get("alice"))):
            assert "s3cr3t" not in text

    def test_items_yields_every_account(self, store: TokenStore) -> None:
        if not isinstance(store, BaseStore):
            pytest.skip("items() is a BaseStore extension")
        for name in ["b", "a", "c"]:
            store.put(name, make_token(name))
        assert [(name, token.access_token) for name, token in store.items()] == [
            ("a", "a"),
            ("b", "b"),
            ("c", "c"),
        ]
