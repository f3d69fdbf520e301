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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..errors import DecryptionError, InvalidToken, StoreCorrupted
from ..registry import is_store_url, open_store
from ..store import TokenStore, redact_url
from ..token import Token

if TYPE_CHECKING:
    from ..migration import MigrationReport
    from ..oauth import WebexOAuth
    from ..settings import Settings

__all__ = [
    "REFRESH_DUE_WINDOW",
    "Entry",
    "StoreFacts",
    "active_store",
    "backend_of",
    "check_name",
    "configured_stores",
    "default_origin",
    "expires_within",
    "interactive_login",
    "is_encrypted",
    "is_url",
    "leeway",
    "load_settings",
    "login_command",
    "matching",
    "migrate_tokens",
    "oauth_from_settings",
    "open_existing",
    "open_for_writing",
    "redact_url",
    "refresh_if_due",
    "refresh_now",
    "resolve_store_url",
    "save_login",
    "scan_store",
    "sqlite_path",
    "status",
    "store_facts",
]

#: A refresh token that expires within this window shows as ``due`` in ``list``.
REFRESH_DUE_WINDOW: Final = 7 * 86400.0


# -- settings and stores ---------------------------------------------------------------


def load_settings(config: str | None) -> Settings:
    """The settings of ``--config`` (or those found the usual way)."""
    from ..settings import load_settings as load

    return load(config)


def open_existing(target: str | None, settings: Settings | None = None) -> TokenStore:
    """Open the store a command that only reads (or updates what exists) works on.

    ``list``, ``show``, ``token``, ``export``, ``delete`` and ``doctor`` use this: they
    must never create a store (a mistyped path would otherwise become an empty store).
    Today it opens like :func:`open_for_writing`; it is the one place to call the store
    layer's open-without-creating (raising ``StoreNotFound``) once it exists. ``token``
    may still write through the store it gets (a refresh saves the new token).
    """
    return open_store(target, settings=settings)


def open_for_writing(target: str | None, settings: Settings | None = None) -> TokenStore:
    """Open (creating it if needed) the store ``target`` names: a URL, a name, or None.

    ``settings`` resolve a name or the default store; a URL needs none.
    """
    return open_store(target, settings=settings)


def resolve_store_url(settings: Settings, target: str | None) -> str:
    """The URL of the store ``target`` names (None: the default store), not opened."""
    return settings.store_url(target)


def active_store(settings: Settings, store_option: str | None) -> str | None:
    """The store the commands use: ``--store``, else the settings' default (a name or URL).

    None means the embedded default store.
    """
    return store_option if store_option is not None else settings.default_target


def configured_stores(settings: Settings) -> list[tuple[str, str, str | None]]:
    """The stores of the settings file: ``(name, url, description)``, in file order."""
    return [(name, store.url, store.description) for name, store in settings.stores.items()]


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


@dataclass(frozen=True)
class StoreFacts:
    """What ``doctor`` reports about an open store, beyond its records."""

    key_source: str | None  # where the Fernet keys come from; None: not encrypted
    path: Path | None  # the file the tokens are in (file and SQLite stores)
    keyring_backend: str | None  # the keyring in use (keyring stores)


def store_facts(store: TokenStore) -> StoreFacts:
    """Encryption, file and keyring of ``store`` (the one place the CLI looks inside one)."""
    from ..backends.fernet import FernetStore

    base = store.inner if isinstance(store, FernetStore) else store
    path = getattr(base, "path", None)
    keyring = getattr(base, "backend", None) if backend_of(store.url) == "keyring" else None
    return StoreFacts(
        key_source=store.key_source if isinstance(store, FernetStore) else None,
        path=path if isinstance(path, Path) else None,
        keyring_backend=None
        if keyring is None
        else str(getattr(keyring, "name", type(keyring).__name__)),
    )


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


# -- moving tokens -------------------------------------------------------------------------


def migrate_tokens(
    source: TokenStore,
    target: TokenStore,
    names: str | Sequence[str] | None,
    *,
    on_conflict: str,
    move: bool,
    dry_run: bool,
    progress: Callable[[str, str], None],
) -> MigrationReport:
    """Copy (or move) tokens from ``source`` to ``target``: :func:`webex_tokens.migrate`."""
    from ..migration import migrate

    return migrate(
        source,
        target,
        names,
        on_conflict=on_conflict,
        move=move,
        dry_run=dry_run,
        progress=progress,
    )


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


# -- logging in ----------------------------------------------------------------------------


def check_name(name: str) -> None:
    """Refuse an account name no store accepts, before anything is asked of anyone.

    Raises:
        InvalidName: ``name`` is empty, too long or holds control characters.
    """
    from ..store import validate_name

    validate_name(name)


def interactive_login(
    oauth: WebexOAuth,
    *,
    open_browser: Callable[[str], bool] | None,
    timeout: float,
    account: str | None = None,
    port: int | None = None,
    quiet: bool = False,
) -> Token:
    """Run the browser login of ``oauth`` and return the token (not yet saved).

    ``open_browser`` None: print the URL and read the redirect URL back. ``quiet``
    silences what the login tells a human on stderr (the demo plays the browser).
    """
    if not quiet:
        return oauth.login(open_browser=open_browser, timeout=timeout, account=account, port=port)
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        return oauth.login(open_browser=open_browser, timeout=timeout, account=account, port=port)


def save_login(store: TokenStore, token: Token, name: str | None) -> str:
    """Save a new login in ``store`` and return the name it went under.

    The name asked for, else the account's email, else ``default``.
    """
    label = name or token.account or "default"
    store.put(label, token)
    return label


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
