"""The token model grows without breaking anyone: every record 0.1.0 wrote reads back
on every backend 0.1.0 had, and a token of every kind written now reads back field for
field through export/import and migrate (the stores themselves: the conformance suite's
``test_every_kind_reads_back_field_for_field``)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import keyring.backend
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from webex_tokens import Token, migrate, open_store
from webex_tokens.backends.fernet import FernetStore
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.keyring import KeyringStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.backends.sql import SQLStore
from webex_tokens.bundle import dumps_bundle, loads_bundle, read_bundle
from webex_tokens.cli import cli
from webex_tokens.store import TokenStore
from webex_tokens.testing.conformance import assert_same_fields, every_kind

RECORDS = Path(__file__).parent / "data" / "records-0.1.0"


def _written_by_0_1_0() -> dict[str, Token]:
    """The tokens make.py stored with 0.1.0 (the same definitions, read from it)."""
    spec = importlib.util.spec_from_file_location("records_0_1_0", RECORDS / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokens: dict[str, Token] = module.tokens()
    return tokens


WRITTEN = _written_by_0_1_0()
KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="


def assert_reads_what_0_1_0_wrote(store: TokenStore) -> None:
    assert store.names() == sorted(WRITTEN)
    for name, token in WRITTEN.items():
        got = store.get(name)
        assert_same_fields(got, token)
        assert got is not None and (got.kind, got.org_id, got.id_token) == (
            "integration",
            None,
            None,
        )


def copied(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copy(RECORDS / name, target)
    target.chmod(0o600)
    return target


# -- records written by 0.1.0 ----------------------------------------------------------------


def test_a_file_store_of_0_1_0_reads_back(tmp_path: Path) -> None:
    with FileStore(copied(tmp_path, "file-tokens.json")) as store:
        assert_reads_what_0_1_0_wrote(store)
        # Writing with this release keeps the others readable, and an integration's
        # record exactly as 0.1.0 wrote it.
        store.put("new", WRITTEN["alice@example.com"])
    document = json.loads((tmp_path / "file-tokens.json").read_text())
    old = json.loads((RECORDS / "file-tokens.json").read_text())
    assert document["tokens"]["new"] == old["tokens"]["alice@example.com"]


def test_a_fernet_store_of_0_1_0_reads_back(tmp_path: Path) -> None:
    inner = FileStore(copied(tmp_path, "fernet-tokens.json"))
    with FernetStore(inner, KEY) as store:
        assert_reads_what_0_1_0_wrote(store)


def test_a_sqlite_store_of_0_1_0_reads_back(tmp_path: Path) -> None:
    with SQLStore(f"sqlite:///{copied(tmp_path, 'tokens.db')}") as store:
        assert_reads_what_0_1_0_wrote(store)


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((RECORDS / "sql-rows.json").read_text())
    for row in rows:
        for column in ("updated_at", "expires_at"):
            if row[column] is not None:
                row[column] = datetime.fromisoformat(row[column])
    return rows


@pytest.fixture(params=["postgres_server", "mysql_server"])
def server_store(request: pytest.FixtureRequest, unique_table: str) -> Iterator[SQLStore]:
    """A table on a SQL server holding the rows 0.1.0 wrote (its layout is unchanged)."""
    server = request.getfixturevalue(request.param)
    with SQLStore(f"{server}?table={unique_table}") as store:
        store.names()  # creates the table
        engine = sa.create_engine(server)
        table = sa.Table(unique_table, sa.MetaData(), autoload_with=engine)
        rows = _rows()
        if isinstance(table.c.name.type, sa.types._Binary):  # MySQL compares names as bytes
            rows = [{**row, "name": row["name"].encode()} for row in rows]
        with engine.begin() as connection:
            connection.execute(sa.insert(table), rows)
        yield store
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {unique_table}")
    engine.dispose()


def test_rows_of_0_1_0_on_a_sql_server_read_back(server_store: SQLStore) -> None:
    assert_reads_what_0_1_0_wrote(server_store)


class DictKeyring(keyring.backend.KeyringBackend):
    """A keyring in a dict, holding the entries 0.1.0 wrote."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


def test_keyring_entries_of_0_1_0_read_back(tmp_path: Path) -> None:
    ring = DictKeyring()
    for entry in json.loads((RECORDS / "keyring-entries.json").read_text()):
        ring.set_password(entry["service"], entry["username"], entry["password"])
    with KeyringStore(
        "webex-tokens-0.1.0", backend=ring, allow_insecure=True, lock_path=tmp_path / "lock"
    ) as store:
        assert_reads_what_0_1_0_wrote(store)


# -- every kind, written now, through export/import and migrate -----------------------------


def test_every_kind_survives_a_bundle_field_for_field() -> None:
    tokens = every_kind()
    bundle = loads_bundle(dumps_bundle(tokens))
    assert sorted(bundle.tokens) == sorted(tokens)
    for name, token in tokens.items():
        assert_same_fields(bundle.tokens[name], token)


def test_every_kind_survives_export_then_import_field_for_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = tmp_path / "a.json", tmp_path / "b.json"
    with FileStore(source) as store:
        for name, token in every_kind().items():
            store.put(name, token)
    bundle = tmp_path / "bundle.json"
    exported = CliRunner().invoke(cli, ["--store", f"file://{source}", "export", str(bundle)])
    assert exported.exit_code == 0, exported.output
    for name, token in every_kind().items():
        assert_same_fields(read_bundle(bundle).tokens[name], token)
    imported = CliRunner().invoke(cli, ["--store", f"file://{target}", "import", str(bundle)])
    assert imported.exit_code == 0, imported.output
    with FileStore(target) as store:
        for name, token in every_kind().items():
            assert_same_fields(store.get(name), token)


@pytest.mark.parametrize(
    "target_url", ["memory://", "sqlite:///{tmp}/t.db", "fernet+file://{tmp}/t.json"]
)
def test_every_kind_survives_migrate_field_for_field(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY)
    source = MemoryStore()
    for name, token in every_kind().items():
        source.put(name, token)
    with open_store(target_url.format(tmp=tmp_path)) as target:
        report = migrate(source, target)
        assert report.copied == len(every_kind())
        for name, token in every_kind().items():
            assert_same_fields(target.get(name), token)
