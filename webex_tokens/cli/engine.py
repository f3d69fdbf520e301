"""The CLI's one door into the library: every decision the commands borrow from it.

Each concept the commands need from the engine or the store layer (open a store, scan
it tolerantly, say whether a token is due, name a new login, ...) is one function here,
named for the concept, so that when the library grows a better function for it only
that one function changes. The commands never reach past this module into settings,
the registry, the refresh engine or the migration engine.

Heavy modules (the OAuth client, SQLAlchemy, the migration engine) are imported inside
the functions that need them, so that ``webex-tokens token`` starts quickly.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..errors import DecryptionError, InvalidToken, StoreCorrupted
from ..registry import is_store_url, open_store
from ..store import TokenStore
from ..token import Token

if TYPE_CHECKING:
    from ..oauth import WebexOAuth
    from ..settings import Settings

__all__ = [
    "REFRESH_DUE_WINDOW",
    "Entry",
    "backend_of",
    "default_origin",
    "expires_within",
    "is_encrypted",
    "is_url",
    "leeway",
    "load_settings",
    "login_command",
    "matching",
    "oauth_from_settings",
    "open_target",
    "refresh_if_due",
    "refresh_now",
    "scan_store",
    "sqlite_path",
    "status",
]

#: A refresh token that expires within this window shows as ``due`` in ``list``.
REFRESH_DUE_WINDOW: Final = 7 * 86400.0


# -- settings and stores ---------------------------------------------------------------


def load_settings(config: str | None) -> Settings:
    """The settings of ``--config`` (or those found the usual way)."""
    from ..settings import load_settings as load

    return load(config)


def open_target(target: str | None, settings: Settings | None = None) -> TokenStore:
    """Open the store ``target`` names (a URL, a configured name, or None: the default).

    ``settings`` resolve a name or the default; a URL needs none.
    """
    return open_store(target, settings=settings)


def default_origin(settings: Settings, store_option: str | None) -> str:
    """Where the store in use comes from, when it is not a configured one.

    ``--store``, ``WEBEX_TOKENS_STORE``, ``WEBEX_TOKEN_FILE`` or ``embedded default``.
    """
    if store_option is not None:
        return "--store"
    if settings.store_override:
        return "WEBEX_TOKENS_STORE"
    if settings.integration.token_file:
        return "WEBEX_TOKEN_FILE"
    return "embedded default"


def is_url(target: str) -> bool:
    """True when ``target`` is a store URL rather than the name of a configured store."""
    return is_store_url(target)


_FERNET_PREFIX: Final = "fernet+"


def is_encrypted(url: str) -> bool:
    """True for a ``fernet+`` URL."""
    return url[: len(_FERNET_PREFIX)].lower() == _FERNET_PREFIX


def backend_of(url: str) -> str:
    """The backend's scheme under any ``fernet+``: ``sqlite``, ``file``, ``keyring``, ..."""
    from ..registry import scheme_of

    return scheme_of(url[len(_FERNET_PREFIX) :] if is_encrypted(url) else url)


def sqlite_path(url: str) -> Path | None:
    """The database file of a (possibly encrypted) SQLite URL, or None."""
    inner = url[len(_FERNET_PREFIX) :] if is_encrypted(url) else url
    if backend_of(inner) != "sqlite":
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(inner.partition("?")[0]).database
    except ArgumentError:
        return None
    if not database or database == ":memory:":
        return None
    return Path(os.path.abspath(os.path.expanduser(database)))


# -- reading a store tolerantly ---------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One account of a store: its token, or why its record cannot be read."""

    name: str
    token: Token | None
    error: str | None = None


_UNREADABLE = (StoreCorrupted, DecryptionError, InvalidToken)


def scan_store(store: TokenStore) -> Iterator[Entry]:
    """Every account in ``store``; an unreadable record is an entry with an ``error``.

    Streams through ``items()`` where the store has it, and falls back to reading name by
    name once a record turns out unreadable, so one bad record never hides the others.
    """
    seen: set[str] = set()
    items = getattr(store, "items", None)
    if callable(items):
        try:
            for name, token in items():
                seen.add(name)
                yield Entry(name, token)
        except _UNREADABLE:
            pass
        else:
            return
    for name in store.names():
        if name in seen:
            continue
        try:
            token = store.get(name)
        except _UNREADABLE as exc:
            yield Entry(name, None, str(exc))
            continue
        if token is not None:
            yield Entry(name, token)


def matching(entries: Iterator[Entry], pattern: str | None) -> Iterator[Entry]:
    """The entries whose names match the glob ``pattern`` (all of them for None)."""
    for entry in entries:
        if pattern is None or fnmatch.fnmatchcase(entry.name, pattern):
            yield entry


# -- when a token is due ----------------------------------------------------------------


def leeway() -> float:
    """Seconds before its expiry at which an access token is refreshed."""
    from ..refresh import DEFAULT_LEEWAY

    return DEFAULT_LEEWAY


def status(token: Token, leeway: float) -> str:
    """ok / due / expired / refresh expired, as ``list`` and ``show`` print it."""
    left = token.expires_in()
    refresh_left = token.refresh_expires_in()
    refresh_dead = token.refresh_token is None or (refresh_left is not None and refresh_left <= 0)
    if left is not None and left <= 0:
        return "refresh expired" if refresh_dead else "expired"
    if refresh_dead and token.refresh_token is not None:
        return "refresh expired"
    if left is not None and left <= leeway:
        return "due"
    if refresh_left is not None and refresh_left <= REFRESH_DUE_WINDOW:
        return "due"
    return "ok"


def expires_within(token: Token, window: float) -> bool:
    """True when the access or the refresh token expires within ``window`` seconds."""
    left = token.expires_in()
    refresh_left = token.refresh_expires_in()
    return (left is not None and left <= window) or (
        refresh_left is not None and refresh_left <= window
    )


# -- OAuth and refreshing ------------------------------------------------------------------


def login_command(name: str) -> str:
    """The command that logs ``name`` in again (``webex-tokens login --name NAME``)."""
    from ..oauth import login_command as command

    return command(name)


def oauth_from_settings(settings: Settings) -> WebexOAuth:
    """The integration's OAuth client, built from the settings."""
    from ..oauth import WebexOAuth

    return WebexOAuth.from_settings(settings)


def refresh_if_due(
    store: TokenStore, name: str, current: Token, oauth: Callable[[], WebexOAuth]
) -> Token:
    """``current`` when it is not due, else the token refreshed single-flight.

    ``oauth`` builds the OAuth client; it is called only when a refresh is needed, so a
    token that is not due needs no integration credentials.
    """
    if not current.is_expired(leeway=leeway()):
        return current
    from ..refresh import ensure_fresh

    return ensure_fresh(store, name, oauth(), seen=current)


def refresh_now(
    store: TokenStore, name: str, oauth: WebexOAuth, *, seen: Token | None = None
) -> Token:
    """Refresh ``name`` now, single-flight (``seen``: the token the caller last read)."""
    from ..refresh import ensure_fresh

    return ensure_fresh(store, name, oauth, force=True, seen=seen)
