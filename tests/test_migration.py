"""migrate(): between real backends, conflict policies, dry runs, moves, crashes, memory."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from webex_tokens import (
    ConfigError,
    InvalidName,
    StoreCorrupted,
    Token,
    TokenStore,
    open_store,
)
from webex_tokens import migration as migrate_module
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.migration import MigrationReport, migrate
from webex_tokens.store import BaseStore, Keep, Record, RecordChange
from webex_tokens.store_identity import PROBE_PREFIX
from webex_tokens.testing import AWKWARD_NAMES, make_token

NAMES = ["alice@acme.com", "bob@acme.com", "carol@other.org", *AWKWARD_NAMES[1:4]]


def token_for(name: str, *, full: bool = True, minutes: int = 0) -> Token:
    """A distinct token per name; ``minutes`` moves its saved_at later."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    token = make_token(f"access-{digest}", full=full, account=name if full else None)
    return token.replace(saved_at=token.saved_at + timedelta(minutes=minutes))


def fill(store: TokenStore, names: Iterable[str]) -> dict[str, Token]:
    tokens = {name: token_for(name, full=index % 2 == 0) for index, name in enumerate(names)}
    for name, token in tokens.items():
        store.put(name, token)
    return tokens


def contents(store: TokenStore) -> dict[str, dict[str, object]]:
    result = {}
    for name in store.names():
        token = store.get(name)
        assert token is not None
        result[name] = token.to_dict()
    return result


def write_file_store(path: Path, tokens: dict[str, Token]) -> None:
    """Write a file store directly in its documented format (fast for thousands of tokens)."""
    document = {"version": 1, "tokens": {name: t.to_dict() for name, t in tokens.items()}}
    path.write_text(json.dumps(document), encoding="utf-8")
    path.chmod(0o600)


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs when there is one: SQLite's fsync per commit would otherwise
    dominate the bulk tests. A process kill (unlike a power cut) does not depend on fsync.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm, prefix="webex-tokens-test-") as directory:
            yield Path(directory)
    else:
        yield tmp_path


# -- round trips between real backends ---------------------------------------------------


def test_file_to_sqlite_to_fernet_postgresql_and_back_keeps_every_token(
    tmp_path: Path, postgres_server: str, unique_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv("WEBEX_TOKENS_KEY", Fernet.generate_key().decode())
    file_url = f"file://{tmp_path}/tokens.json"
    sqlite_url = f"sqlite:///{tmp_path}/tokens.db"
    postgres_url = f"fernet+{postgres_server}?table={unique_table}"
    back_url = f"file://{tmp_path}/back.json"
    try:
        with open_store(file_url) as source:
            original = fill(source, AWKWARD_NAMES)
        for source_url, target_url in [
            (file_url, sqlite_url),
            (sqlite_url, postgres_url),
            (postgres_url, back_url),
        ]:
            report = migrate(source_url, target_url)
            assert report.ok and report.copied == len(original), (target_url, report.outcomes)
        with open_store(back_url) as back:
            assert contents(back) == {name: t.to_dict() for name, t in original.items()}
        with open_store(postgres_url) as encrypted:
            assert contents(encrypted) == contents(open_store(sqlite_url))
        # The PostgreSQL rows hold ciphertext only.
        engine = sa.create_engine(postgres_server)
        with engine.connect() as connection:
            query = f"SELECT data FROM {unique_table}"  # noqa: S608 - a generated table name
            data = connection.exec_driver_sql(query).scalars()
            assert not any("access-" in row for row in data)
        engine.dispose()
        # Running it again changes nothing.
        again = migrate(sqlite_url, postgres_url)
        assert (again.copied, again.unchanged, again.skipped) == (0, len(original), len(original))
    finally:
        engine = sa.create_engine(postgres_server)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {unique_table}")
        engine.dispose()


def test_stores_given_as_objects_stay_open_and_names_resolve_through_settings(
    tmp_path: Path,
) -> None:
    config = tmp_path / "webex-tokens.toml"
    config.write_text(f'[stores.old]\nurl = "file://{tmp_path}/old.json"\n')
    with open_store(f"file://{tmp_path}/old.json") as old:
        tokens = fill(old, NAMES)
    from webex_tokens.settings import load_settings

    target = MemoryStore()
    report = migrate("old", target, settings=load_settings(config))
    assert report.copied == len(tokens)
    assert contents(target) == {name: t.to_dict() for name, t in tokens.items()}
    target.put("still-open", make_token())  # not closed by migrate


# -- conflicts ----------------------------------------------------------------------------

SOURCE = token_for("x", minutes=10)
OLDER = token_for("older", minutes=0)
NEWER = token_for("newer", minutes=20)
SAME_TIME = token_for("same-time", minutes=10)


def conflict_stores() -> tuple[MemoryStore, MemoryStore]:
    source, target = MemoryStore(), MemoryStore()
    for name in ("absent", "equal", "older", "newer", "same-time"):
        source.put(name, SOURCE)
    target.put("equal", SOURCE)
    target.put("older", OLDER)
    target.put("newer", NEWER)
    target.put("same-time", SAME_TIME)
    return source, target


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            "skip",
            {"absent": ("copied", SOURCE), "equal": ("unchanged", SOURCE),
             "older": ("skipped", OLDER), "newer": ("skipped", NEWER),
             "same-time": ("skipped", SAME_TIME)},
        ),
        (
            "overwrite",
            {"absent": ("copied", SOURCE), "equal": ("unchanged", SOURCE),
             "older": ("overwritten", SOURCE), "newer": ("overwritten", SOURCE),
             "same-time": ("overwritten", SOURCE)},
        ),
        (
            "newer",
            {"absent": ("copied", SOURCE), "equal": ("unchanged", SOURCE),
             "older": ("overwritten", SOURCE), "newer": ("skipped", NEWER),
             "same-time": ("skipped", SAME_TIME)},
        ),
    ],
)  # fmt: skip
def test_conflict_policies(policy: str, expected: dict[str, tuple[str, Token]]) -> None:
    source, target = conflict_stores()
    seen: list[tuple[str, str]] = []
    report = migrate(source, target, on_conflict=policy, progress=lambda n, o: seen.append((n, o)))
    outcomes = {name: outcome for name, outcome, _ in report.outcomes}
    assert outcomes == {name: outcome for name, (outcome, _) in expected.items()}
    assert sorted(seen) == sorted(outcomes.items())
    for name, (_, token) in expected.items():
        assert target.get(name) == token, name
    assert report.copied == 1
    assert report.unchanged == 1
    assert report.overwritten == sum(o == "overwritten" for o, _ in expected.values())
    assert report.skipped == sum(o in ("skipped", "unchanged") for o, _ in expected.values())
    assert report.ok and report.failed == 0
    assert str(report).startswith("1 copied, ") and "\n" not in str(report)


def test_the_conflict_decision_is_taken_under_the_target_lock() -> None:
    """A token written to the target after migrate listed it but before the write is seen."""

    class RacingTarget(MemoryStore):
        def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
            # Another writer saves a newer token just before migrate's update runs.
            self._write(name, self._encode(NEWER))
            super()._update_record(name, change)

    source, target = MemoryStore(), RacingTarget()
    source.put("alice", SOURCE)
    report = migrate(source, target, on_conflict="newer")
    assert report.skipped == 1 and target.get("alice") == NEWER


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"on_conflict": "replace"}, ConfigError, r"'skip', 'overwrite' or 'newer', not 'replace'"),
        ({"names": 42}, ConfigError, r"list of names or a glob, not int"),
        ({"names": ""}, ConfigError, r"empty glob"),
        ({"names": ["ok", ""]}, InvalidName, r"empty"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    source = MemoryStore()
    source.put("ok", make_token())
    target = MemoryStore()
    with pytest.raises(error, match=message):
        migrate(source, target, **kwargs)  # type: ignore[arg-type]
    assert target.names() == []


def test_a_move_onto_the_same_store_is_refused_and_a_copy_does_nothing(tmp_path: Path) -> None:
    store = MemoryStore()
    store.put("alice", make_token())
    with pytest.raises(ConfigError, match="same store"):
        migrate(store, store, move=True)
    assert migrate(store, store).same_store
    url = f"file://{tmp_path}/t.json"
    with pytest.raises(ConfigError, match="same store"):
        migrate(url, url, move=True)
    assert store.names() == ["alice"]


# -- selection ----------------------------------------------------------------------------


def test_glob_selects_by_name_case_sensitively() -> None:
    source, target = MemoryStore(), MemoryStore()
    fill(source, [*NAMES, "dave@ACME.COM"])
    report = migrate(source, target, names="*@acme.com")
    assert target.names() == ["alice@acme.com", "bob@acme.com"]
    assert report.copied == 2 and report.total == 2


def test_list_selects_names_and_reports_missing_ones() -> None:
    source, target = MemoryStore(), MemoryStore()
    tokens = fill(source, NAMES)
    report = migrate(source, target, names=["bob@acme.com", "nobody", "bob@acme.com", NAMES[3]])
    assert target.names() == sorted(["bob@acme.com", NAMES[3]])
    assert target.get(NAMES[3]) == tokens[NAMES[3]]
    assert (report.copied, report.failed, report.ok) == (2, 1, False)
    assert ("nobody", "failed", "there is no token by this name in the source") in report.outcomes


# -- dry run ------------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_predicts_the_real_run(tmp_path: Path) -> None:
    source_path, target_path = tmp_path / "source.json", tmp_path / "target.json"
    with FileStore(source_path) as source, FileStore(target_path) as target:
        fill(source, NAMES)
        target.put(NAMES[0], token_for(NAMES[0], minutes=-5))  # older: overwritten by newer
        target.put(NAMES[1], token_for(NAMES[1], minutes=+5))  # newer: skipped
        target.put(NAMES[2], source.get(NAMES[2]) or make_token())  # identical: unchanged
        before = (source_path.read_bytes(), target_path.read_bytes())
        stats = (os.stat(source_path).st_mtime_ns, os.stat(target_path).st_mtime_ns)

        dry = migrate(source, target, on_conflict="newer", move=True, dry_run=True)

        assert (source_path.read_bytes(), target_path.read_bytes()) == before
        assert (os.stat(source_path).st_mtime_ns, os.stat(target_path).st_mtime_ns) == stats
        assert dry.dry_run and "dry run" in str(dry)
        real = migrate(source, target, on_conflict="newer", move=True)
    counts = ("copied", "skipped", "unchanged", "overwritten", "deleted", "failed")
    assert [getattr(dry, c) for c in counts] == [getattr(real, c) for c in counts]
    assert [o[:2] for o in dry.outcomes] == [o[:2] for o in real.outcomes]
    assert (real.copied, real.overwritten, real.unchanged, real.skipped) == (3, 1, 1, 2)
    assert real.deleted == 5  # all but the one the target kept a newer token for


# -- move ---------------------------------------------------------------------------------


def test_move_deletes_each_token_after_verifying_it(tmp_path: Path) -> None:
    with FileStore(tmp_path / "s.json") as source, FileStore(tmp_path / "t.json") as target:
        tokens = fill(source, NAMES)
        report = migrate(source, target, move=True)
        assert source.names() == []
        assert contents(target) == {name: t.to_dict() for name, t in tokens.items()}
        assert (report.copied, report.deleted, report.ok) == (len(NAMES), len(NAMES), True)


class AlteringStore(MemoryStore):
    """A target that stores what it is given but reads back something else."""

    def _read(self, name: str) -> str | None:
        data = super()._read(name)
        if data is None:
            return None
        record = json.loads(data)
        record["access_token"] = "not-what-was-written"
        return json.dumps(record)


class UnreadableStore(MemoryStore):
    """A target that writes records but then cannot read them back."""

    def get(self, name: str) -> Token | None:
        raise StoreCorrupted(f"the token {name!r} in {self.url} is unreadable")


@pytest.mark.parametrize("target_class", [AlteringStore, UnreadableStore])
def test_move_never_deletes_a_token_it_could_not_read_back(
    target_class: type[MemoryStore],
) -> None:
    source, target = MemoryStore(), target_class()
    tokens = fill(source, NAMES)
    report = migrate(source, target, move=True)
    assert contents(source) == {name: t.to_dict() for name, t in tokens.items()}
    assert (report.deleted, report.failed, report.ok) == (0, len(NAMES), False)
    assert target.names() == sorted(NAMES)  # the copies were written
    for _, outcome, detail in report.outcomes:
        assert outcome == "failed" and detail and "\n" not in detail and "access-" not in detail


def test_move_keeps_a_source_token_refreshed_during_the_move() -> None:
    source = MemoryStore()
    source.put("alice", SOURCE)
    refreshed = SOURCE.replace(access_token="refreshed", saved_at=SOURCE.saved_at + timedelta(1))

    class Target(MemoryStore):
        refresh_pending = True

        def get(self, name: str) -> Token | None:
            # The read-back is the moment between the copy and the delete: another
            # process refreshes the token in the source right then.
            if self.refresh_pending:
                source.put(name, refreshed)
                self.refresh_pending = False
            return super().get(name)

    target = Target()
    report = migrate(source, target, move=True)
    assert source.get("alice") == refreshed and target.get("alice") == SOURCE
    assert (report.copied, report.deleted, report.failed) == (0, 0, 1)
    assert "changed during the move" in (report.outcomes[0][2] or "")
    # Running it again as the message says carries the refreshed token over and finishes.
    done = migrate(source, target, on_conflict="newer", move=True)
    assert (done.overwritten, done.deleted, done.ok) == (1, 1, True)
    assert target.get("alice") == refreshed and source.names() == []


def test_move_keeps_tokens_the_target_kept_its_own_for() -> None:
    source, target = MemoryStore(), MemoryStore()
    source.put("alice", SOURCE)
    target.put("alice", NEWER)
    report = migrate(source, target, move=True)
    assert source.get("alice") == SOURCE and target.get("alice") == NEWER
    assert report.outcomes == [
        ("alice", "skipped", "the target holds a different token (on_conflict='skip'); "
         "the source token was kept")
    ]  # fmt: skip


# -- failures of single records -------------------------------------------------------------


def test_an_unreadable_record_fails_alone_and_the_rest_is_copied(tmp_path: Path) -> None:
    path = tmp_path / "source.json"
    tokens = {name: token_for(name) for name in NAMES}
    records: dict[str, object] = {n: t.to_dict() for n, t in tokens.items()}
    records["broken-shape"] = 5  # neither an object nor a string
    records["broken-token"] = {"refresh_token": "no access token"}
    path.write_text(json.dumps({"version": 1, "tokens": records}))
    target = MemoryStore()
    report = migrate(f"file://{path}", target)
    assert contents(target) == {name: t.to_dict() for name, t in tokens.items()}
    assert (report.copied, report.failed, report.ok) == (len(NAMES), 2, False)
    failures = {name: detail for name, outcome, detail in report.outcomes if outcome == "failed"}
    assert set(failures) == {"broken-shape", "broken-token"}
    assert all(
        detail and "unreadable" in detail and "\n" not in detail for detail in failures.values()
    )
    assert "no access token" not in str(failures)


def test_a_record_under_another_key_fails_alone_in_an_encrypted_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    url = f"fernet+sqlite:///{tmp_path}/enc.db"
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("WEBEX_TOKENS_KEY", new_key)
    with open_store(url) as store:
        tokens = fill(store, NAMES)
    # A key listed first encrypts; the store accepts it because the second key reads it.
    monkeypatch.setenv("WEBEX_TOKENS_KEY", f"{old_key},{new_key}")
    with open_store(url) as store:
        store.put("written-with-the-old-key", make_token("old"))
    monkeypatch.setenv("WEBEX_TOKENS_KEY", new_key)
    target = MemoryStore()
    report = migrate(url, target)
    assert contents(target) == {name: t.to_dict() for name, t in tokens.items()}
    assert report.failed == 1 and report.failures()[0][0] == "written-with-the-old-key"
    assert "cannot be decrypted" in (report.failures()[0][2] or "")


def test_a_source_that_cannot_be_listed_stops_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"version": 1, "tokens": {"alice": {"access_token": "x"')  # truncated
    target = MemoryStore()
    with pytest.raises(StoreCorrupted, match="not valid JSON"):
        migrate(f"file://{path}", target)
    assert target.names() == []


def test_failed_writes_are_recorded_and_the_rest_goes_on() -> None:
    class Refusing(MemoryStore):
        def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
            if name.startswith("bob"):
                raise StoreCorrupted("the target refused this record; fix it")
            super()._update_record(name, change)

    source, target = MemoryStore(), Refusing()
    fill(source, NAMES)
    report = migrate(source, target)
    assert report.failures() == [
        ("bob@acme.com", "failed", "the target refused this record; fix it")
    ]
    assert report.copied == len(NAMES) - 1


def test_the_outcome_list_is_bounded_and_keeps_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate_module, "MAX_LISTED_OUTCOMES", 5)
    source, target = MemoryStore(), MemoryStore()
    names = [f"user{i:02d}" for i in range(20)]
    fill(source, names)
    report = migrate(source, target, names=[*names, "missing-1", "missing-2"])
    assert len(report.outcomes) == 5
    assert report.omitted == 17
    # The oldest non-failures made room for the failures.
    assert [o[0] for o in report.outcomes] == [
        "user02",
        "user03",
        "user04",
        "missing-1",
        "missing-2",
    ]
    assert (report.copied, report.failed) == (20, 2)


# -- interruption ---------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from webex_tokens.migration import migrate

    def progress(name, outcome):
        print(outcome, flush=True)

    migrate(sys.argv[1], sys.argv[2], move=sys.argv[3] == "move", progress=progress)
    """
)


def run_and_kill(source_url: str, target_url: str, *, move: bool, after: int) -> int:
    """Run a migration in a child process and SIGKILL it after ``after`` names."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, source_url, target_url, "move" if move else "copy"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    done = 0
    deadline = time.monotonic() + 60
    while done < after and time.monotonic() < deadline:
        if not child.stdout.readline():
            break
        done += 1
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL, "the migration ended before it was killed"
    return done


def sql_rows(url: str) -> tuple[int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT count(*), count(DISTINCT name) FROM webex_tokens"
        ).one()
    engine.dispose()
    return int(row[0]), int(row[1])


def bulk_sql_store(url: str, tokens: dict[str, Token]) -> int:
    """Insert ``tokens`` into the SQL store at ``url`` in one statement; return their size."""
    from webex_tokens.backends.sql import SQLStore

    size = 0
    store = SQLStore(url)
    try:
        rows = []
        for name, token in tokens.items():
            record = store._encode(token)
            rows.append(store._values(name, record))
            size += len(name) + len(record.data)
        with store.engine.begin() as connection:
            connection.execute(sa.insert(store._table), rows)
    finally:
        store.close()
    return size


@pytest.mark.slow
@pytest.mark.parametrize("move", [False, True], ids=["copy-file-to-sqlite", "move-sqlite"])
def test_a_killed_migration_finishes_on_the_next_run_without_duplicates(
    fast_dir: Path, move: bool
) -> None:
    count = 2000
    tokens = {f"user{i:05d}@example.com": token_for(f"user{i}") for i in range(count)}
    if move:
        source_url = f"sqlite:///{fast_dir}/source.db"
        bulk_sql_store(source_url, tokens)
    else:
        source_path = fast_dir / "legacy.json"
        write_file_store(source_path, tokens)
        source_url = f"file://{source_path}"
    target_url = f"sqlite:///{fast_dir}/tokens.db"

    assert run_and_kill(source_url, target_url, move=move, after=300) == 300
    with open_store(target_url) as target:
        copied_before = len(target.names())
    with open_store(source_url) as source:
        left = len(source.names())
    assert 300 <= copied_before < count
    if move:  # each name copied was deleted too, except perhaps the one being moved
        assert count - copied_before <= left <= count - 300
    else:
        assert left == count

    report = migrate(source_url, target_url, move=move)
    assert report.ok, report.failures()
    assert report.copied + report.unchanged == left
    assert report.copied == count - copied_before
    assert sql_rows(target_url) == (count, count)
    with open_store(target_url) as target:
        assert contents(target) == {name: t.to_dict() for name, t in tokens.items()}
    with open_store(source_url) as source:
        assert len(source.names()) == (0 if move else count)
    rerun = migrate(source_url, target_url, move=move)
    assert (rerun.copied, rerun.failed) == (0, 0)


# -- streaming and memory --------------------------------------------------------------------


class DigestStore(BaseStore):
    """A target that keeps only a digest of what it was given: it holds no tokens, so the
    memory measured is the migration's own."""

    url = "digest://"

    def __init__(self) -> None:
        self.count = 0
        self.digest = hashlib.sha256()

    def _read(self, name: str) -> str | None:
        return None

    def _write(self, name: str, record: Record) -> None:
        raise AssertionError("migrate writes through update() only")

    def _remove(self, name: str) -> bool:
        return False

    def _iter_names(self) -> Iterable[str]:
        return []

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        result = change(None)
        if name.startswith(PROBE_PREFIX):  # the check that source and target differ
            return
        assert isinstance(result, Record) and not isinstance(result, Keep)
        self.count += 1
        self.digest.update(name.encode() + b"\0" + result.data.encode() + b"\0")


@pytest.mark.slow
def test_memory_stays_flat_when_migrating_100k_tokens_from_sqlite(fast_dir: Path) -> None:
    from webex_tokens.backends.sql import SQLStore

    count = 100_000
    url = f"sqlite:///{fast_dir}/big.db"
    tokens = {f"user{i:06d}@example.com": token_for(f"user{i}") for i in range(count)}
    total_size = bulk_sql_store(url, tokens)
    expected = hashlib.sha256()
    for name, token in tokens.items():
        data = json.dumps(token.to_dict(), separators=(",", ":"), ensure_ascii=False)
        expected.update(name.encode() + b"\0" + data.encode() + b"\0")
    del tokens

    with SQLStore(url) as source:
        target = DigestStore()
        tracemalloc.start()
        try:
            report = migrate(source, target)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (report.copied, report.ok, target.count) == (count, True, count)
    assert target.digest.hexdigest() == expected.hexdigest()  # every token, in full
    assert len(report.outcomes) == migrate_module.MAX_LISTED_OUTCOMES
    assert peak < total_size / 4, f"peak {peak:,} bytes for {total_size:,} bytes of tokens"


def test_copy_between_two_tables_of_one_sqlite_file(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/one.db"
    source_url, target_url = f"{database}?table=old&lock_timeout=2", f"{database}?lock_timeout=2"
    with open_store(source_url) as source:
        tokens = fill(source, NAMES)
    started = time.monotonic()
    report = migrate(source_url, target_url)
    assert report.ok and report.copied == len(NAMES)
    assert time.monotonic() - started < 2  # no waiting on its own read lock
    with open_store(target_url) as target:
        assert contents(target) == {name: t.to_dict() for name, t in tokens.items()}


def test_report_is_a_value() -> None:
    report = MigrationReport(copied=2, skipped=1, unchanged=1, failed=1)
    assert not report.ok and report.total == 4
    assert str(report) == "2 copied, 1 skipped (1 unchanged), 0 overwritten, 0 deleted, 1 failed"
