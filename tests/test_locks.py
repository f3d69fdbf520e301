"""The cross-process locks: shared and exclusive modes, timeouts, account locks, and the
lock a change to many accounts (a migration batch) takes against updates in flight."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from webex_tokens import LockTimeout, Token, open_store
from webex_tokens.backends.file import FileStore
from webex_tokens.locks import AccountLocks, interprocess_lock
from webex_tokens.store import BaseStore
from webex_tokens.testing import make_token
from webex_tokens.testing.processes import hold_lock_worker


def held_elsewhere(path: Path, *, shared: bool = False) -> bool:
    """Whether another holder stops this thread from taking ``path`` right now."""
    try:
        with interprocess_lock(path, 0.05, shared=shared):
            return False
    except LockTimeout:
        return True


def test_exclusive_excludes_everyone_and_shared_excludes_only_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with interprocess_lock(path):
        assert held_elsewhere(path) and held_elsewhere(path, shared=True)
    with interprocess_lock(path, shared=True):
        assert held_elsewhere(path)
        assert not held_elsewhere(path, shared=True)
    assert not held_elsewhere(path)


def test_timeout_names_the_lock_and_the_option(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with interprocess_lock(path):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info, interprocess_lock(path, 0.3):
            pass  # pragma: no cover - never taken
        assert 0.3 <= time.monotonic() - started < 2
    assert str(path) in str(info.value) and "?lock_timeout=SECONDS" in str(info.value)


def test_lock_files_are_private_and_created_with_their_directory(tmp_path: Path) -> None:
    os.umask(0o022)
    path = tmp_path / "new" / "dir" / "lock"
    with interprocess_lock(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes() == b""


def test_a_lock_directory_removed_by_hand_is_made_again(tmp_path: Path) -> None:
    locks = AccountLocks(tmp_path / "tokens.json.locks")
    with locks.account("alice"):
        pass
    for leftover in locks.directory.iterdir():
        leftover.unlink()
    locks.directory.rmdir()
    with locks.account("alice"):
        assert held_elsewhere(locks.slot_path("alice"))


def test_account_locks_exclude_the_same_account_only(tmp_path: Path) -> None:
    locks = AccountLocks(tmp_path / "locks", timeout=0.2)
    names = [f"user-{i}" for i in range(200)]
    slots = {locks.slot_path(name) for name in names}
    assert len(slots) > 150  # spread over the slots, and the same every time
    assert locks.slot_path("alice") == AccountLocks(tmp_path / "locks").slot_path("alice")
    other = next(name for name in names if locks.slot_path(name) != locks.slot_path("alice"))
    with locks.account("alice"):
        with locks.account(other):
            pass
        with (
            pytest.raises(LockTimeout, match=r"'alice'.*\?lock_timeout=SECONDS"),
            locks.account("alice"),
        ):
            pass  # pragma: no cover - never taken
        with pytest.raises(LockTimeout, match="updates of some accounts"), locks.every_account():
            pass  # pragma: no cover - never taken
    every = pytest.raises(LockTimeout, match="a change to every account")
    with locks.every_account(), every, locks.account("bob"):
        pass  # pragma: no cover - never taken


def test_a_lock_timeout_inside_the_body_is_not_reworded(tmp_path: Path) -> None:
    locks = AccountLocks(tmp_path / "locks")
    with pytest.raises(LockTimeout, match="from the body"), locks.account("alice"):
        raise LockTimeout("from the body")


@pytest.mark.parametrize("scheme", ["file", "sqlite"])
def test_a_batch_waits_for_updates_in_flight(tmp_path: Path, scheme: str) -> None:
    # A migration batch decides each token under the store's lock; an update already
    # running (a refresh that read the token before the batch) must finish first, or its
    # write would undo the batch's decision, or the batch would decide on a stale token.
    url = f"file://{tmp_path}/tokens.json" if scheme == "file" else f"sqlite:///{tmp_path}/t.db"
    with open_store(url) as setup:
        setup.put("alice", make_token("before"))
    context = multiprocessing.get_context("spawn")
    inside, release = context.Event(), context.Event()
    holder = context.Process(target=hold_lock_worker, args=(url, "alice", inside, release, 30.0))
    holder.start()
    try:
        assert inside.wait(60), "the holder never entered update()"
        with open_store(f"{url}?lock_timeout=0.5") as store:
            assert isinstance(store, BaseStore)

            def replace(token: Token | None) -> Token:
                return make_token("migrated")

            with pytest.raises(LockTimeout, match="updates of some accounts"):
                store.update_many([("alice", replace), ("bob", replace)])
            assert store.get("bob") is None
            release.set()
            holder.join(30)
            assert store.update_many([("alice", replace), ("bob", replace)]) is not None
            assert [store.get(name) for name in ("alice", "bob")] == [make_token("migrated")] * 2
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0


def test_a_thread_blocked_on_an_account_does_not_block_a_reader(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json", lock_timeout=5)
    store.put("alice", make_token("before"))
    inside, release = threading.Event(), threading.Event()

    def slow(token: Token | None) -> Token:
        inside.set()
        release.wait(10)
        return make_token("after")

    updater = threading.Thread(target=store.update, args=("alice", slow))
    updater.start()
    try:
        assert inside.wait(10)
        assert store.get("alice") == make_token("before")
    finally:
        release.set()
        updater.join(30)
    assert store.get("alice") == make_token("after")
