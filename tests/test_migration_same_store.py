"""migrate() onto the same store under another URL: a move is refused, a copy does nothing.

Every alias a user can write is tried against the real thing: a SQLite file with an extra
option or through a symlinked directory, a file store through a symlink or under
``fernet+``, PostgreSQL by ``localhost`` and by ``127.0.0.1``, MariaDB with an extra
driver option.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sql_tables import drop_table

from webex_tokens import ConfigError, open_store
from webex_tokens import migration as migration_module
from webex_tokens.backends.fernet import generate_key
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.cli import cli
from webex_tokens.migration import migrate
from webex_tokens.store_identity import PROBE_PREFIX, same_store
from webex_tokens.testing import make_token

NAMES = ["alice@acme.com", "bob@acme.com", "carol@acme.com", "dave@acme.com", "erin@acme.com"]


def fill(url: str) -> dict[str, dict[str, object]]:
    with open_store(url) as store:
        for name in NAMES:
            store.put(name, make_token(f"access-{name}", account=name))
        return contents(url)


def contents(url: str) -> dict[str, dict[str, object]]:
    with open_store(url) as store:
        found = {}
        for name in store.names():
            token = store.get(name)
            assert token is not None
            found[name] = token.to_dict()
        return found


def _sqlite_option(tmp: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp}/t.db", f"sqlite:///{tmp}/t.db?lock_timeout=30"


def _sqlite_symlinked_directory(tmp: Path) -> tuple[str, str]:
    (tmp / "real").mkdir(mode=0o700)
    (tmp / "alias").symlink_to(tmp / "real")
    return f"sqlite:///{tmp}/real/t.db", f"sqlite:///{tmp}/alias/t.db"


def _file_symlinked_directory(tmp: Path) -> tuple[str, str]:
    (tmp / "real").mkdir(mode=0o700)
    (tmp / "alias").symlink_to(tmp / "real")
    return f"file://{tmp}/real/t.json", f"file://{tmp}/alias/t.json?lock_timeout=30"


def _file_relative_and_absolute(tmp: Path) -> tuple[str, str]:
    return f"file://{tmp}/t.json", f"file:{Path('t.json')}"


ALIASES: dict[str, Callable[[Path], tuple[str, str]]] = {
    "sqlite-extra-option": _sqlite_option,
    "sqlite-symlinked-directory": _sqlite_symlinked_directory,
    "file-symlinked-directory": _file_symlinked_directory,
    "file-relative-path": _file_relative_and_absolute,
}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = generate_key()
    monkeypatch.setenv("WEBEX_TOKENS_KEY", value)
    return value


@pytest.fixture
def postgres_aliases(postgres_server: str, unique_table: str) -> Iterator[tuple[str, str]]:
    base = postgres_server.partition("?")[0]
    first = f"{base}?table={unique_table}".replace("@127.0.0.1", "@localhost")
    second = f"{base}?table={unique_table}&connect_timeout=3".replace("@localhost", "@127.0.0.1")
    assert first != second
    yield first, second
    drop_table(postgres_server, unique_table)


@pytest.fixture
def mysql_aliases(mysql_server: str, unique_table: str) -> Iterator[tuple[str, str]]:
    base = mysql_server.partition("?")[0]
    yield f"{base}?table={unique_table}", f"{base}?table={unique_table}&connect_timeout=3"
    drop_table(mysql_server, unique_table)


def check_move_refused_and_copy_a_no_op(source: str, target: str) -> None:
    before = fill(source)
    assert len(before) == len(NAMES)

    with pytest.raises(ConfigError, match="both reach the same store") as info:
        migrate(source, target, move=True)
    assert "\n" not in str(info.value)
    assert contents(source) == before  # nothing deleted, no probe left behind

    report = migrate(source, target)
    assert report.same_store and report.ok
    assert (report.copied, report.skipped, report.deleted, report.total) == (0, 0, 0, 0)
    assert str(report) == "nothing to do: the source and the target are the same store"
    assert contents(source) == before

    # the other way round too
    with pytest.raises(ConfigError, match="both reach the same store"):
        migrate(target, source, move=True, dry_run=source.startswith(("sqlite", "file")))
    assert contents(target) == before


@pytest.mark.parametrize("alias", list(ALIASES))
def test_a_local_store_under_another_url_is_the_same_store(
    alias: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source, target = ALIASES[alias](tmp_path)
    check_move_refused_and_copy_a_no_op(source, target)


def test_an_encrypted_url_of_a_plain_file_is_the_same_store(tmp_path: Path, key: str) -> None:
    plain = f"file://{tmp_path}/t.json"
    before = fill(plain)
    with pytest.raises(ConfigError, match="both reach the same store"):
        migrate(plain, f"fernet+{plain}", move=True)
    assert contents(plain) == before


def test_postgresql_by_localhost_and_by_127_0_0_1_is_the_same_store(
    postgres_aliases: tuple[str, str],
) -> None:
    check_move_refused_and_copy_a_no_op(*postgres_aliases)


def test_mariadb_with_an_extra_driver_option_is_the_same_store(
    mysql_aliases: tuple[str, str],
) -> None:
    check_move_refused_and_copy_a_no_op(*mysql_aliases)


def test_two_tables_of_one_database_are_different_stores(
    postgres_server: str, unique_table: str
) -> None:
    base = postgres_server.partition("?")[0]
    source, target = f"{base}?table={unique_table}", f"{base}?table={unique_table}_b"
    try:
        before = fill(source)
        report = migrate(source, target, move=True)
        assert (report.copied, report.deleted, report.same_store) == (5, 5, False)
        assert contents(target) == before and contents(source) == {}
        with open_store(target) as store:
            assert not [name for name in store.names() if name.startswith(PROBE_PREFIX)]
    finally:
        drop_table(postgres_server, unique_table)
        drop_table(postgres_server, unique_table + "_b")


def test_two_memory_stores_are_different_and_one_is_itself() -> None:
    first, second = MemoryStore(), MemoryStore()
    assert not same_store(first, second)
    assert first.names() == second.names() == []  # the probe was removed
    assert same_store(first, first)


def test_a_move_stops_and_puts_the_token_back_if_the_delete_reached_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Should the identity check ever miss an alias, the check after each delete catches it.
    source, target = _sqlite_option(tmp_path)
    before = fill(source)
    monkeypatch.setattr(migration_module, "same_store", lambda *args, **kwargs: False)
    with pytest.raises(ConfigError, match="so both are the same store; it was put back"):
        migrate(source, target, move=True)
    assert contents(source) == before


def test_the_cli_refuses_the_move_in_one_line_and_says_a_copy_did_nothing(tmp_path: Path) -> None:
    source, target = _sqlite_option(tmp_path)
    before = fill(source)
    runner = CliRunner()
    moved = runner.invoke(cli, ["migrate", "--from", source, "--to", target, "--move"])
    assert moved.exit_code == 1
    assert moved.stderr.count("\n") == 1 and "both reach the same store" in moved.stderr
    assert contents(source) == before
    copied = runner.invoke(cli, ["migrate", "--from", source, "--to", target, "--json"])
    assert copied.exit_code == 0, copied.output
    assert '"same_store": true' in copied.stdout
    plain = runner.invoke(cli, ["migrate", "--from", source, "--to", target])
    assert "nothing to do: the source and the target are the same store" in plain.stdout
