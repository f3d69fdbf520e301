"""The SQLAlchemy table of a SQL store, built from :mod:`._schema`, and its column types."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect

from ...store import MAX_NAME_LENGTH
from ._schema import COLUMNS

__all__ = ["MYSQL", "make_table", "now"]

MYSQL: Final = frozenset({"mysql", "mariadb"})


class _Name(sa.types.TypeDecorator[str]):
    """An account name, compared byte for byte so that case and trailing spaces count.

    MySQL/MariaDB compare even ``utf8mb4_bin`` text with trailing spaces stripped, so
    names are kept there as UTF-8 in ``VARBINARY``; PostgreSQL uses the ``C`` collation.
    Either way the database orders names as Python sorts them.
    """

    impl = sa.String(MAX_NAME_LENGTH)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in MYSQL:
            return dialect.type_descriptor(mysql.VARBINARY(4 * MAX_NAME_LENGTH))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.VARCHAR(MAX_NAME_LENGTH, collation="C"))
        return dialect.type_descriptor(sa.String(MAX_NAME_LENGTH))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name in MYSQL:
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8")
        return value  # type: ignore[no-any-return]


class _UTCDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC timestamp on every database (stored naive in UTC where zones are unknown)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)  # type: ignore[no-any-return]
        return value.astimezone(timezone.utc)  # type: ignore[no-any-return]


def make_table(name: str) -> sa.Table:
    """The table ``name`` with the columns of :data:`._schema.COLUMNS`."""
    key, data, version, updated_at, expires_at = COLUMNS
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(key, _Name(), primary_key=True),
        sa.Column(data, sa.Text().with_variant(mysql.MEDIUMTEXT(), *MYSQL), nullable=False),
        sa.Column(version, sa.Integer(), nullable=False),
        sa.Column(updated_at, _UTCDateTime(), nullable=False),
        sa.Column(expires_at, _UTCDateTime(), nullable=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mariadb_engine="InnoDB",
        mariadb_charset="utf8mb4",
    )


def now() -> datetime:
    """The time to write in ``updated_at``."""
    return datetime.now(timezone.utc)
