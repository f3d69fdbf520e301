from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webex_tokens import LockTimeout, StoreCorrupted, StoreError, Token, open_store
from webex_tokens.backends.file import LEGACY_ACCOUNT, FileStore
from webex_tokens.locks import AccountLocks, interprocess_lock
from webex_tokens.testing import StoreConformance, make_token
from webex_tokens.testing.processes import count_of, hold_lock_worker


class TestFileStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[FileStore]:
        store = FileStore(tmp_path / "tokens.json")
        with store:
            yield store


# -- permissions ----------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run the test with umask 000, the worst case for files created without a mode."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_file_is_0600_and_new_directories_0700_even_under_umask_000(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "tokens.json"
    with FileStore(path) as store:
        store.put("alice", make_token())
        store.update("alice", lambda token: make_token("refreshed"))
    assert mode_of(path) == 0o600
    assert mode_of(path.with_name("tokens.json.locks") / "store") == 0o600
    assert mode_of(path.with_name("tokens.json.locks")) == 0o700
    for directory in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert mode_of(directory) == 0o700, directory
    assert mode_of(tmp_path) == stat.S_IMODE(os.stat(tmp_path).st_mode)  # not touched


@pytest.mark.usefixtures("open_umask")
def test_update_alone_creates_private_file_and_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "tokens.json"
    FileStore(path).update("alice", lambda token: make_token())
    assert mode_of(path) == 0o600 and mode_of(path.parent) == 0o700


def test_readable_file_is_warned_about_and_made_private_on_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    FileStore(path).put("alice", make_token("s3cr3t-access"))
    path.chmod(0o644)
    store = FileStore(path)
    with caplog.at_level(logging.WARNING, logger="webex_tokens"):
        assert store.get("alice") == make_token("s3cr3t-access")
        store.names()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert str(path) in message and "644" in message and "chmod 600" in message
    assert "s3cr3t" not in caplog.text
    assert mode_of(path) == 0o644  # reading changes nothing
    store.put("bob", make_token())
    assert mode_of(path) == 0o600


def test_private_file_gives_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FileStore(tmp_path / "tokens.json")
    with caplog.at_level(logging.WARNING, logger="webex_tokens"):
        store.put("alice", make_token())
        store.get("alice")
    assert caplog.records == []


# -- symlinks and other non-files ------------------------------------------------------


def test_symlinked_token_file_is_refused_at_open(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    FileStore(real).put("alice", make_token())
    link = tmp_path / "tokens.json"
    link.symlink_to(real)
    before = real.read_bytes()
    with pytest.raises(StoreError, match="symlink") as info:
        FileStore(link)
    assert "point the store at the real file" in str(info.value)
    with pytest.raises(StoreError, match="symlink"):
        open_store(f"file://{link}")
    assert real.read_bytes() == before


def test_dangling_symlink_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "tokens.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(StoreError, match="symlink"):
        FileStore(link)
    assert not (tmp_path / "elsewhere.json").exists()


def test_symlink_swapped_in_after_open_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileStore(path)
    store.put("alice", make_token())
    real = tmp_path / "real.json"
    path.rename(real)
    path.symlink_to(real)
    before = real.read_bytes()
    for call in (
        lambda: store.get("alice"),
        lambda: store.put("bob", make_token()),
        lambda: store.update("alice", lambda token: None),
        lambda: store.delete("alice"),
        store.names,
    ):
        with pytest.raises(StoreError, match="symlink"):
            call()
    assert path.is_symlink() and real.read_bytes() == before


def test_directory_as_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"is a directory; give the path of a file"):
        FileStore(tmp_path)


# -- corrupt files are never written over ------------------------------------------------

CORRUPT = {
    "garbage": (b"\x00\xff not json at all", "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "truncated": (b'{"version": 1, "tokens": {"alice": {"access_token": "x', "not valid JSON"),
    "list": (b'[{"access_token": "x"}]', "does not hold a JSON object"),
    "nan": (b'{"version": 1, "tokens": {}, "x": NaN}', "not valid JSON"),
    "no-version": (b'{"tokens": {}}', "not a webex-tokens file"),
    "wrong-version": (b'{"version": 0, "tokens": {}}', "not a webex-tokens file"),
    "text-version": (b'{"version": "1", "tokens": {}}', "not a webex-tokens file"),
    "tokens-not-a-map": (b'{"version": 1, "tokens": []}', "not a webex-tokens file"),
    "other-json": (b'{"name": "some other app"}', "not a webex-tokens file"),
    "newer-version": (b'{"version": 2, "tokens": {}}', "newer.*pip install -U webex-tokens"),
}


def snapshot(path: Path) -> tuple[bytes, int, int, int]:
    info = path.stat()
    return path.read_bytes(), info.st_mtime_ns, info.st_ino, stat.S_IMODE(info.st_mode)


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_file_raises_and_is_left_byte_for_byte(tmp_path: Path, kind: str) -> None:
    content, reason = CORRUPT[kind]
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    path.chmod(0o600)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(path)
    store = FileStore(path)
    called: list[object] = []

    def fn(token: Token | None) -> Token:
        called.append(token)
        return make_token()

    for call in (
        lambda: store.get("alice"),
        lambda: store.put("alice", make_token()),
        lambda: store.update("alice", fn),
        lambda: store.delete("alice"),
        store.names,
        lambda: list(store.items()),
    ):
        with pytest.raises(StoreCorrupted, match=reason) as info:
            call()
        assert "left untouched" in str(info.value) and str(path) in str(info.value)
        assert snapshot(path) == before
    assert called == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json", "tokens.json.locks"]


def test_one_unreadable_record_spoils_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    good = make_token().to_dict()
    path.write_text(json.dumps({"version": 1, "tokens": {"bad": 42, "worse": {}, "good": good}}))
    store = FileStore(path)
    assert store.get("good") == make_token()
    before = snapshot(path)
    with pytest.raises(StoreCorrupted, match=r"'bad'.*neither an object nor a string"):
        store.get("bad")
    with pytest.raises(StoreCorrupted, match=r"'worse'.*access_token.*left untouched"):
        store.get("worse")
    with pytest.raises(StoreCorrupted):
        store.update("bad", lambda token: make_token())
    assert snapshot(path) == before


# -- locking ------------------------------------------------------------------------------


def test_update_holds_its_account_lock_and_the_file_lock_only_to_write(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileStore(path)
    store.put("alice", make_token())
    lock_path = tmp_path / "tokens.json.locks" / "store"
    assert store.lock_path == lock_path
    account_lock = AccountLocks(tmp_path / "tokens.json.locks").slot_path("alice")
    observed: dict[str, bool] = {}

    def locked(target: Path) -> bool:
        with open(target, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def inspect(token: Token | None) -> Token | None:
        observed["account lock"] = locked(account_lock)
        observed["file lock"] = locked(lock_path)
        observed["data file"] = locked(path)
        return make_token("changed")

    store.update("alice", inspect)
    assert observed == {"account lock": True, "file lock": False, "data file": False}
    assert not locked(account_lock) and not locked(lock_path)  # released afterwards
    assert lock_path.read_bytes() == b"" and account_lock.read_bytes() == b""  # no data
    assert mode_of(account_lock) == 0o600 and mode_of(account_lock.parent) == 0o700
    assert FileStore(path).get("alice") == make_token("changed")


def test_update_held_by_another_process_times_out(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    FileStore(path).put("alice", make_token("before"))
    context = multiprocessing.get_context("spawn")
    inside, release = context.Event(), context.Event()
    holder = context.Process(
        target=hold_lock_worker, args=(f"file://{path}", "alice", inside, release, 30.0)
    )
    holder.start()
    try:
        assert inside.wait(60), "the lock-holding process never took the lock"
        store = open_store(f"file://{path}?lock_timeout=0.5")
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            store.update("alice", lambda token: make_token("after"))
        waited = time.monotonic() - started
        assert 0.5 <= waited < 10
        message = str(info.value)
        assert "'alice'" in message and "tokens.json.locks" in message
        assert "0.5 seconds" in message and "?lock_timeout=SECONDS" in message
        # Only alice waits: other accounts are updated and written meanwhile.
        started = time.monotonic()
        store.update("bob", lambda token: make_token("bob"))
        store.put("carol", make_token("carol"))
        assert time.monotonic() - started < 0.5
        # Readers do not lock: the old token is still readable.
        assert store.get("alice") == make_token("before")
        # The file lock itself, held too long, makes every writer time out.
        with interprocess_lock(store.lock_path):
            with pytest.raises(LockTimeout, match=r"tokens\.json\.locks/store for more than 0\.5"):
                store.put("bob", make_token())
            with pytest.raises(LockTimeout):
                store.delete("carol")
            with pytest.raises(LockTimeout):
                store.update("bob", lambda token: make_token("later"))
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0
    store.update("alice", lambda token: make_token("after"))
    assert store.get("alice") == make_token("after")


# -- the legacy .webex_token.json -----------------------------------------------------------

LEGACY = {
    "access_token": "ZTA2NDkyYTkt-legacy",
    "refresh_token": "RzdiMDBiMGIt-legacy",
    "saved_at": "2025-10-31T22:54:13.135722",
}


def test_legacy_single_token_file_is_the_default_account(tmp_path: Path) -> None:
    path = tmp_path / ".webex_token.json"
    path.write_text(json.dumps(LEGACY, indent=2))
    path.chmod(0o600)
    before = snapshot(path)
    store = open_store(f"file://{path}")
    assert LEGACY_ACCOUNT == "default"
    assert store.names() == ["default"]
    token = store.get("default")
    assert token == Token.from_dict(LEGACY)
    assert token is not None and token.refresh_token == "RzdiMDBiMGIt-legacy"
    assert snapshot(path) == before  # reading does not convert

    store.put("bob@example.com", make_token())
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert sorted(document["tokens"]) == ["bob@example.com", "default"]
    assert "access_token" not in document
    assert store.get("default") == Token.from_dict(LEGACY)
    assert store.get("bob@example.com") == make_token()


def test_legacy_file_is_converted_by_an_update_of_its_token(tmp_path: Path) -> None:
    path = tmp_path / ".webex_token.json"
    path.write_text(json.dumps(LEGACY))
    store = FileStore(path)
    store.update("default", lambda token: make_token("refreshed"))
    document = json.loads(path.read_text())
    assert document["version"] == 1 and list(document["tokens"]) == ["default"]
    assert store.get("default") == make_token("refreshed")


# -- writes ----------------------------------------------------------------------------


def test_update_returning_the_same_token_does_not_touch_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileStore(path)
    store.put("alice", make_token())
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(path)
    assert store.update("alice", lambda token: token) == make_token()
    assert store.update("nobody", lambda token: token) is None
    assert store.update("nobody", lambda token: None) is None
    assert snapshot(path) == before
    store.update("alice", lambda token: make_token())  # an equal but new token is written
    assert snapshot(path)[2] != before[2]


def test_writes_replace_the_file_instead_of_editing_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileStore(path)
    store.put("alice", make_token())
    inode = path.stat().st_ino
    store.put("bob", make_token())
    assert path.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json", "tokens.json.locks"]


def test_leftover_temp_file_of_a_killed_writer_is_removed_on_next_write(tmp_path: Path) -> None:
    path = tmp_path / "tok[1].json"
    store = FileStore(path)
    store.put("alice", make_token())
    leftover = tmp_path / ".tok[1].json.k1ll3d.tmp"
    leftover.write_bytes(b'{"version": 1, "tokens": {"half')
    unrelated = [tmp_path / ".tok1.json.abc.tmp", tmp_path / ".other.json.abc.tmp"]
    for other in unrelated:
        other.write_bytes(b"someone else's")
    assert store.get("alice") == make_token()  # reads ignore it and leave it
    assert leftover.exists()
    store.put("bob", make_token())
    assert not leftover.exists()
    assert all(other.exists() for other in unrelated)
    assert store.names() == ["alice", "bob"]


def test_file_format_is_readable_json(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileStore(path)
    store.put("alice@example.com", make_token())
    assert json.loads(path.read_text("utf-8")) == {
        "version": 1,
        "tokens": {"alice@example.com": make_token().to_dict()},
    }


def test_deleting_the_last_token_keeps_a_valid_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileStore(path)
    store.put("alice", make_token())
    assert store.delete("alice") is True
    assert json.loads(path.read_text()) == {"version": 1, "tokens": {}}
    assert FileStore(path).names() == []


def test_missing_file_reads_as_empty_and_is_not_created_by_reads(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "tokens.json"
    store = FileStore(path)
    assert store.get("alice") is None and store.names() == [] and store.delete("x") is False
    assert not path.exists()


def test_a_read_never_returns_what_another_writer_replaced(tmp_path: Path) -> None:
    # Same-length tokens written within one clock tick can leave size and times equal;
    # the cached parse must still never outlive the bytes it came from.
    path = tmp_path / "tokens.json"
    reader, writer = FileStore(path), FileStore(path)
    for i in range(50):
        writer.put("alice", make_token(f"access-{i:03d}"))
        token = reader.get("alice")
        assert token is not None and token.access_token == f"access-{i:03d}"
        path.write_bytes(path.read_bytes().replace(b"access-", b"ACCESS-"))  # edited in place
        token = reader.get("alice")
        assert token is not None and token.access_token == f"ACCESS-{i:03d}"


# -- writes from many threads --------------------------------------------------------------


def test_threads_writing_at_once_share_file_writes_and_lose_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    saves: list[int] = []
    save = store._save

    def counting_save(tokens: dict[str, object]) -> None:
        saves.append(len(tokens))
        save(tokens)

    store._save = counting_save  # type: ignore[method-assign]
    barrier = threading.Barrier(16)

    def work(thread: int) -> None:
        barrier.wait()
        for i in range(20):
            store.put(f"t{thread}-{i}", make_token(f"t{thread}-{i}"))
            store.update("counter", lambda token: make_token(f"count-{count_of(token) + 1}"))
        store.delete(f"t{thread}-0")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reopened = FileStore(tmp_path / "tokens.json")
    assert count_of(reopened.get("counter")) == 16 * 20
    assert sorted(reopened.names()) == sorted(
        ["counter"] + [f"t{t}-{i}" for t in range(16) for i in range(1, 20)]
    )
    # 656 writes were asked for; waiting writers were written together.
    assert len(saves) < 16 * 41


def test_a_failed_shared_write_fails_every_writer_in_it(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json", lock_timeout=0.3)
    store.put("kept", make_token("kept"))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            store.put(f"t{n}", make_token())
        except LockTimeout as exc:
            errors.append(exc)

    with interprocess_lock(store.lock_path):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(errors) == 8
    assert FileStore(tmp_path / "tokens.json").names() == ["kept"]


def test_an_update_overtaken_by_a_put_says_so_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put("alice", make_token("before"))

    def login_meanwhile(token: Token | None) -> Token:
        store.put("alice", make_token("login"))  # another writer, while fn runs
        return make_token("refreshed")

    with caplog.at_level(logging.INFO, logger="webex_tokens"):
        assert store.update("alice", login_meanwhile) == make_token("refreshed")
    assert store.get("alice") == make_token("login")
    assert "update of 'alice'" in caplog.text and "not written" in caplog.text
    assert "refresh-" not in caplog.text and "access-" not in caplog.text
