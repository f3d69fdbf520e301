"""Write the records of this directory with webex-tokens 0.1.0 (commit 3f43b4e).

Run from a checkout of 0.1.0, with its dependencies installed::

    git archive 3f43b4e webex_tokens | tar -x -C /tmp/v010
    PYTHONPATH=/tmp/v010 python tests/data/records-0.1.0/make.py tests/data/records-0.1.0

tests/test_records_0_1_0.py reads every record back with the current release, on every
backend 0.1.0 had: the file store, Fernet over a file, SQLite, the SQL servers (the rows
are replayed into a table of 0.1.0's layout) and the keyring (the entries are replayed).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import keyring.backend

import webex_tokens
from webex_tokens import Token
from webex_tokens.backends.fernet import FernetStore
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.keyring import KeyringStore
from webex_tokens.backends.sql import SQLStore

#: The test key of the Fernet records (a fixture, protecting nothing).
KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="
T0 = datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=timezone.utc)


def tokens() -> dict[str, Token]:
    """What 0.1.0 could store: every optional field set, none set, and some of them."""
    return {
        "alice@example.com": Token(
            access_token="access-alice",
            refresh_token="refresh-alice",
            expires_at=T0 + timedelta(days=14),
            refresh_token_expires_at=T0 + timedelta(days=90),
            scopes=("spark:all", "spark:kms"),
            client_id="C0ffee",
            account="alice@example.com",
            saved_at=T0,
        ),
        "bare": Token(access_token="access-bare", saved_at=T0),
        "Zoë Ünïcode 日本語": Token(
            access_token="access-zoe",
            expires_at=T0 + timedelta(hours=12),
            scopes=("spark:people_read",),
            account="zoe@example.com",
            saved_at=T0,
        ),
    }


class DictKeyring(keyring.backend.KeyringBackend):
    """A keyring in a dict, to record what 0.1.0 wrote."""

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


def main(directory: Path) -> None:
    assert webex_tokens.__version__.startswith("0.1.0"), webex_tokens.__version__
    for path in directory.glob("*.json"):
        path.unlink()
    (directory / "tokens.db").unlink(missing_ok=True)
    written = tokens()
    with FileStore(directory / "file-tokens.json") as store:
        for name, token in written.items():
            store.put(name, token)
    with FernetStore(FileStore(directory / "fernet-tokens.json"), KEY) as store:
        for name, token in written.items():
            store.put(name, token)
    with SQLStore(f"sqlite:///{directory / 'tokens.db'}") as store:
        for name, token in written.items():
            store.put(name, token)
    with sqlite3.connect(directory / "tokens.db") as connection:
        connection.row_factory = sqlite3.Row
        rows: list[dict[str, Any]] = [
            dict(row) for row in connection.execute("SELECT * FROM webex_tokens ORDER BY name")
        ]
    (directory / "sql-rows.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
    ring = DictKeyring()
    with KeyringStore(
        "webex-tokens-0.1.0", backend=ring, allow_insecure=True, lock_path=directory / "x.lock"
    ) as store:
        for name, token in written.items():
            store.put(name, token)
    for lock in directory.glob("*.lock"):
        lock.unlink()
    entries = [
        {"service": service, "username": username, "password": password}
        for (service, username), password in sorted(ring.entries.items())
    ]
    (directory / "keyring-entries.json").write_text(
        json.dumps(entries, ensure_ascii=False, indent=1) + "\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
