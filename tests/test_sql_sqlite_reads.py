"""SQLStore's reads of a SQLite file: one sqlite3 connection kept open, never stale.

The reads bypass SQLAlchemy's pool; these tests check what that must not cost: another
process's writes are seen at once, a reader never holds a lock a writer waits for,
threads read side by side, and a broken file still raises the library's own errors.
The read that ``webex-tokens token`` makes without SQLAlchemy leaves anything unusual to
the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import event

from webex_tokens.backends.sql import SQLStore
from webex_tokens.errors import StoreCorrupted, StoreUnavailable
from webex_tokens.registry import read_record_quickly
from webex_tokens.testing import make_token

_WRITE = """
import sys
from webex_tokens.backends.sql import SQLStore
from webex_tokens.testing import make_token
with SQLStore(sys.argv[1]) as store:
    store.put(sys.argv[2], make_token(sys.argv[3]))
"""


def write_in_another_process(url: str, name: str, access_token: str) -> None:
    """``put`` a token in a process of its own (it fails if it has to wait for a lock)."""
    subprocess.run(
        [sys.executable, "-c", _WRITE, url, name, access_token],
        check=True,
        timeout=60,
        capture_output=True,
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/tokens.db"


def test_a_read_uses_no_pooled_connection(url: str) -> None:
    with SQLStore(url) as store:
        store.put("alice", make_token("a1"))
        checkouts: list[object] = []
        event.listen(store.engine, "checkout", lambda *args: checkouts.append(args))
        for _ in range(3):
            token = store.get("alice")
            assert token is not None and token.access_token == "a1"
        assert store.get("bob") is None
        assert checkouts == []


def test_a_read_sees_another_process_write_and_keeps_no_lock(url: str) -> None:
    with SQLStore(url) as store:
        store.put("alice", make_token("a1"))
        assert store.get("alice") == make_token("a1")
        # The other process waits at most half a second for a lock: a read transaction
        # left open by the kept connection would make its commit time out.
        write_in_another_process(f"{url}?lock_timeout=0.5", "alice", "a2")
        token = store.get("alice")
        assert token is not None and token.access_token == "a2"
        write_in_another_process(f"{url}?lock_timeout=0.5", "bob", "b1")
        assert store.names() == ["alice", "bob"]
        token = store.get("bob")
        assert token is not None and token.access_token == "b1"


def test_threads_read_side_by_side_while_one_writes(url: str) -> None:
    with SQLStore(url) as store:
        store.put("alice", make_token("a-0"))
        failures: list[BaseException] = []
        seen: list[set[str]] = []
        stop = threading.Event()

        def read() -> None:
            tokens: set[str] = set()
            try:
                while not stop.is_set():
                    token = store.get("alice")
                    assert token is not None
                    tokens.add(token.access_token)
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)
            seen.append(tokens)

        readers = [threading.Thread(target=read) for _ in range(8)]
        for thread in readers:
            thread.start()
        for version in range(1, 21):
            store.put("alice", make_token(f"a-{version}"))
        stop.set()
        for thread in readers:
            thread.join(30)
        assert failures == []
        assert len(seen) == 8
        assert set().union(*seen) <= {f"a-{version}" for version in range(21)}
        token = store.get("alice")
        assert token is not None and token.access_token == "a-20"


def test_a_forked_child_reads_on_a_connection_of_its_own(url: str) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    with SQLStore(url) as store:
        store.put("alice", make_token("a1"))
        assert store.get("alice") is not None  # the parent's connection is open
        pid = os.fork()
        if pid == 0:  # the child: read, write, read again, and say how it went
            code = 1
            try:
                store.put("alice", make_token("a2"))
                token = store.get("alice")
                code = 0 if token is not None and token.access_token == "a2" else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        token = store.get("alice")
        assert token is not None and token.access_token == "a2"


def test_a_file_overwritten_with_garbage_is_reported_as_corrupted(url: str, tmp_path: Path) -> None:
    with SQLStore(url) as store:
        store.put("alice", make_token("a1"))
        assert store.get("alice") is not None  # the connection is open
        (tmp_path / "tokens.db").write_bytes(b"not a database at all" * 200)
        with pytest.raises(StoreCorrupted, match="is not a SQLite database"):
            store.get("alice")


def test_a_vanished_file_is_not_created_again_by_a_read(url: str, tmp_path: Path) -> None:
    with SQLStore(url) as store:
        store.put("alice", make_token("a1"))  # no read yet: no connection to read on
        (tmp_path / "tokens.db").unlink()
        with pytest.raises(StoreUnavailable, match="check that"):
            store.get("alice")
        assert not (tmp_path / "tokens.db").exists()


# -- reading a record without opening the store (``webex-tokens token``) -------------


def test_a_plain_store_is_read_quickly(url: str) -> None:
    with SQLStore(url) as store:
        store.put("alice", make_token("a1"))
        record = store._encode(make_token("a1")).data
    assert read_record_quickly(url, "alice") == record
    assert read_record_quickly(url, "bob") is None  # the store says what is missing


@pytest.mark.parametrize(
    "shape",
    [
        "memory",
        "option",
        "driver",
        "encoded",
        "missing",
        "symlink",
        "readable",
        "table",
        "file",
        "foreign",
    ],
)
def test_anything_unusual_is_left_to_the_store(shape: str, tmp_path: Path) -> None:
    """Each of these needs the full path: its options, checks, warnings or errors."""
    database = tmp_path / "tokens.db"
    with SQLStore(f"sqlite:///{database}") as store:
        store.put("alice", make_token("a1"))
    url = f"sqlite:///{database}"
    if shape == "memory":
        url = "sqlite://"
    elif shape == "option":
        url += "?lock_timeout=5"
    elif shape == "driver":
        url = f"sqlite+pysqlite:///{database}"
    elif shape == "encoded":
        url = f"sqlite:///{tmp_path}/%74okens.db"
    elif shape == "missing":
        url = f"sqlite:///{tmp_path}/other.db"
    elif shape == "symlink":
        (tmp_path / "link.db").symlink_to(database)
        url = f"sqlite:///{tmp_path}/link.db"
    elif shape == "readable":
        database.chmod(0o644)
    elif shape == "table":
        with SQLStore(f"sqlite:///{tmp_path}/renamed.db?table=elsewhere") as store:
            store.put("alice", make_token("a1"))
        url = f"sqlite:///{tmp_path}/renamed.db"
    elif shape == "file":
        url = f"file://{tmp_path}/tokens.json"
    elif shape == "foreign":  # planted by another user: the store refuses it, and says so
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(database, 54321, 54321)
    assert read_record_quickly(url, "alice") is None
    assert not (tmp_path / "other.db").exists()
