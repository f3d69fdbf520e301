"""The one table every SQL store keeps its tokens in, as plain names (no SQLAlchemy).

The SQLAlchemy table (:mod:`._table`) is built from these names, and the read of a
token that needs no SQLAlchemy (:mod:`._sqlite_read`) selects the same columns, so both
paths agree on one definition.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["COLUMNS", "DEFAULT_TABLE", "TABLE_NAME", "select_record_sql"]

DEFAULT_TABLE: Final = "webex_tokens"
#: The columns, in order: the primary key, the record, its version (0 marks a
#: placeholder row an update inserted to lock it), when it was written and when its
#: access token expires.
COLUMNS: Final = ("name", "data", "version", "updated_at", "expires_at")
#: What a table name may be: it is written into statements, so nothing to quote.
TABLE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # always fullmatch


def select_record_sql(table: str) -> str:
    """The DB-API (qmark) statement reading the record of one name from ``table``.

    Raises:
        ValueError: ``table`` is not a valid table name.
    """
    if not TABLE_NAME.fullmatch(table):
        raise ValueError(f"not a table name: {table!r}")
    name, data, version = COLUMNS[:3]
    return f"SELECT {data} FROM {table} WHERE {name} = ? AND {version} > 0"  # noqa: S608 - checked name
