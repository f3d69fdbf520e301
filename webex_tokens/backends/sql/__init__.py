"""SQL databases through SQLAlchemy 2 Core: SQLite, PostgreSQL, MySQL and MariaDB.

All accounts live in one table (``webex_tokens`` unless ``?table=`` names another)::

    name        primary key, up to 255 characters, compared byte for byte
    data        the token record (JSON text, or ciphertext under Fernet)
    version     1 on insert, bumped by every write
    updated_at  when the row was last written (UTC)
    expires_at  when the access token expires (UTC), or NULL

The table is created on first use. On PostgreSQL and MySQL/MariaDB ``update`` runs in
one transaction that holds the row's lock while ``fn`` runs (``SELECT ... FOR UPDATE``,
after an insert-if-absent, so that two hosts creating the same account also queue up).
SQLite can only lock the whole database, so there ``update`` holds a lock file of the
account's (in ``<database>.locks/<table>/``) while ``fn`` runs and writes in a short
``BEGIN IMMEDIATE`` transaction that first checks the row is still the one ``fn`` saw.
Nothing is pickled: rows hold text only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._schema import DEFAULT_TABLE

if TYPE_CHECKING:
    from ._store import SQLStore
    from ._url import DEFAULT_CONNECT_TIMEOUT

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_TABLE", "SQLStore"]

#: Loaded on first use, with SQLAlchemy: the rest of the package reads SQLite without it.
_LAZY = {"SQLStore": "._store", "DEFAULT_CONNECT_TIMEOUT": "._url"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
