"""The URL of a SQL store: the SQLAlchemy URL, the store's own options, and how it is shown."""

from __future__ import annotations

import math
from typing import Final
from urllib.parse import parse_qsl

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

from ...errors import InvalidStoreURL
from ...store import DEFAULT_LOCK_TIMEOUT
from ...urls import redact_url, shown_url
from ._schema import DEFAULT_TABLE, TABLE_NAME

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DRIVERS",
    "OPTIONS",
    "check_table_name",
    "display_url",
    "parse_url",
    "seconds",
]

#: Seconds to wait for a database server to answer a new connection.
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
#: The store's own options in the URL's query; the rest goes to the driver.
OPTIONS: Final = ("table", "lock_timeout", "connect_timeout")
#: A bare ``postgresql://`` or ``mysql://`` means the driver the extras install.
DEFAULT_DRIVERS: Final = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}


def parse_url(url: str) -> tuple[URL, dict[str, str]]:
    """Split ``url`` into the SQLAlchemy URL (our options removed, default drivers filled
    in) and our options."""
    if not isinstance(url, str):
        raise InvalidStoreURL(f"a store URL must be text, not {type(url).__name__}")
    try:
        sa_url = sa.make_url(url)
    except (ArgumentError, ValueError):
        raise InvalidStoreURL(
            f"{shown_url(url)} is not a database URL; write e.g. sqlite:///tokens.db or "
            "postgresql+psycopg://USER@HOST/DATABASE"
        ) from None
    backend = sa_url.get_backend_name()
    if backend not in ("sqlite", *DEFAULT_DRIVERS):
        raise InvalidStoreURL(
            f"{shown_url(url)} names the database {backend!r}; webex-tokens supports "
            "SQLite, PostgreSQL, MySQL and MariaDB"
        )
    if "+" not in sa_url.drivername and backend in DEFAULT_DRIVERS:
        sa_url = sa_url.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
    # SQLAlchemy drops blank values; read ours from the text so "?table=" is an error.
    options = {
        key: value
        for key, value in parse_qsl(url.partition("?")[2], keep_blank_values=True)
        if key in OPTIONS
    }
    sa_url = sa_url.difference_update_query(OPTIONS)
    if backend == "sqlite":
        if sa_url.query:
            unknown = ", ".join(sorted(sa_url.query))
            raise InvalidStoreURL(
                f"unknown option {unknown} in {shown_url(url)}; the options of a SQLite "
                f"store are {', '.join(OPTIONS)}"
            )
        if "\x00" in (sa_url.database or ""):
            raise InvalidStoreURL(
                f"{shown_url(url)} names a file with a NUL character (%00) in its path; "
                "write the path of the database file, e.g. sqlite:///tokens.db"
            )
        if sa_url.username or sa_url.password or sa_url.host or sa_url.port:
            raise InvalidStoreURL(
                f"{shown_url(url)} is not a SQLite URL; write sqlite:///relative/path.db, "
                "sqlite:////absolute/path.db or sqlite:///~/tokens.db"
            )
    return sa_url, options


def display_url(sa_url: URL, table: str, lock_timeout: float, connect_timeout: float) -> str:
    """The store's URL without its password, with the options that differ from defaults."""
    options = {
        "table": table if table != DEFAULT_TABLE else None,
        "lock_timeout": f"{lock_timeout:g}" if lock_timeout != DEFAULT_LOCK_TIMEOUT else None,
        "connect_timeout": (
            f"{connect_timeout:g}" if connect_timeout != DEFAULT_CONNECT_TIMEOUT else None
        ),
    }
    shown = sa_url.update_query_dict({key: value for key, value in options.items() if value})
    return redact_url(shown.render_as_string(hide_password=True))


def check_table_name(table: object, url: str) -> None:
    """Refuse a table name that is not lower-case letters, digits and underscores."""
    if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
        raise InvalidStoreURL(
            f"the table name for {shown_url(url)} is not allowed; use lower-case "
            "letters, digits and underscores (at most 63, not starting with a digit), "
            "e.g. ?table=webex_tokens_prod"
        )


def seconds(
    url: str, key: str, given: float | None, options: dict[str, str], default: float
) -> float:
    """The positive number of seconds of option ``key``: ``given``, else the URL's, else
    ``default``."""
    raw: object = given if given is not None else options.get(key, default)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidStoreURL(
            f"{key} for {shown_url(url)} is not a positive number of seconds; write "
            f"e.g. ?{key}={default:g}"
        )
    return value
