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
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from ..errors import DecryptionError, InvalidToken, StoreCorrupted
from ..registry import is_store_url, open_store
from ..store import TokenStore, redact_url
from ..token import Token

if TYPE_CHECKING:
    from ..keeper import Keeper
    from ..login import Notice, Notify
    from ..migration import MigrationReport
    from ..oauth import WebexOAuth
    from ..refresh import Expiries
    from ..settings import Settings

__all__ = [
    "Entry",
    "StoreFacts",
    "active_store",
    "add_static_token",
    "backend_of",
    "check_name",
    "configured_stores",
    "default_origin",
    "device_login",
    "expires_within",
    "expiry_times",
    "interactive_login",
    "is_encrypted",
    "is_url",
    "keeper",
    "leeway",
    "load_settings",
    "login_command",
    "matching",
    "migrate_tokens",
    "oauth_from_settings",
    "obtain_service_app",
    "open_existing",
    "open_for_writing",
    "organization_label",
    "qr_code",
    "redact_url",
    "resolve_store_url",
    "scan_store",
    "sqlite_path",
    "status",
    "store_facts",
]


# -- settings and stores ---------------------------------------------------------------


def load_settings(config: str | None) -> Settings:
    """The settings of ``--config`` (or those found the usual way)."""
    from ..settings import load_settings as load

    return load(config)


def open_existing(target: str | None, settings: Settings | None = None) -> TokenStore:
    """Open the store a command that only reads (or updates what exists) works on.

    ``list``, ``show``, ``token``, ``export``, ``delete`` and ``doctor`` use this: they
    must never create a store (a mistyped path would otherwise become an empty store),
    so a store whose file or table does not exist raises ``StoreNotFound`` and nothing
    (no directory, database, table or key file) is created. ``token`` may still write
    through the store it gets (a refresh saves the new token).
    """
    return open_store(target, settings=settings, create=False)


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
    """What chose the store in use, when it is not a configured one: ``--store``,
    ``WEBEX_TOKENS_STORE``, ``WEBEX_TOKEN_FILE``, ``default_store`` or ``embedded
    default`` (:meth:`Settings.choose_store <webex_tokens.settings.Settings.choose_store>`)."""
    from ..settings import StoreSource

    source = settings.choose_store(store_option).source
    return "--store" if source is StoreSource.ARGUMENT else source.value


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
    engine: TokenStore  # the store under any fernet+ wrapper (what holds the records)


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
        engine=base,
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


def valid_token_quickly(settings: Settings, target: str | None, name: str) -> Token | None:
    """``name``'s stored token when it is not due and its store can be read without
    being opened (:func:`~webex_tokens.registry.read_record_quickly`: a plain SQLite
    file, read without SQLAlchemy), so ``token`` can print it at once.

    None for anything else (another store, no such token, a record that does not
    decode, a token that is due, anything waiting in the rescue journal): the command
    then goes through the keeper, which opens the store, stores what the journal holds,
    refreshes a due token and reports every problem. The keeper's decisions are the ones
    used here: the same leeway and :func:`~webex_tokens.refresh.is_due`.

    Raises:
        ConfigError: ``target`` (or the default store) names no configured store.
    """
    import json

    from ..errors import InvalidName
    from ..journal import default_journal
    from ..refresh import is_due
    from ..registry import read_record_quickly
    from ..store import validate_name

    try:
        validate_name(name)
    except InvalidName:
        return None
    url = target if target is not None and is_store_url(target) else settings.store_url(target)
    if not default_journal().is_empty():
        return None  # a token waits to be stored: the keeper stores it first
    record = read_record_quickly(url, name)
    if record is None:
        return None
    try:
        token = Token.from_dict(json.loads(record))
    except (ValueError, InvalidToken, TypeError, RecursionError):
        return None
    return None if is_due(token, leeway()) else token


def status(token: Token, leeway: float, *, refused: bool = False) -> str:
    """How ``token`` stands in ``list``: :func:`~webex_tokens.refresh.token_status`
    (``refused``: Webex refused its refresh token, as the refresh history remembers)."""
    from ..refresh import token_status

    return token_status(token, leeway, refused=refused)


def expiry_times(token: Token) -> Expiries:
    """When the access and refresh tokens of ``token`` expire, recorded or estimated
    (:func:`~webex_tokens.refresh.expiries`)."""
    from ..refresh import expiries

    return expiries(token)


def expires_within(token: Token, window: float) -> bool:
    """True when the access or the refresh token expires within ``window`` seconds
    (:func:`~webex_tokens.refresh.is_due`, with an estimate for a legacy record)."""
    from ..refresh import is_due

    return is_due(token, window)


# -- logging in ----------------------------------------------------------------------------


def check_name(name: str) -> None:
    """Refuse an account name no store accepts, before anything is asked of anyone.

    Raises:
        InvalidName: empty, too long or holding control characters.
    """
    from ..store import validate_name

    validate_name(name)


def _tell_on_stderr(notice: Notice) -> None:
    """What the login tells a human, on stderr; a prompt follows when a paste is read,
    and a device code's link is also drawn as a QR code when stderr is a terminal."""
    import click

    click.echo(str(notice), err=True)
    if notice.expects_paste:
        click.echo("Redirect URL: ", err=True, nl=False)
    if notice.kind == "device_code" and notice.url and _is_terminal(sys.stderr):
        click.echo(qr_code(notice.url), err=True)


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):  # closed or detached
        return False


def qr_code(text: str) -> str:
    """``text`` as a QR code drawn with block characters, for a terminal (segno)."""
    import io

    import segno

    drawn = io.StringIO()
    segno.make(text, error="m").terminal(out=drawn, compact=True, border=2)
    return drawn.getvalue().rstrip("\n")


def device_login(
    keeper: Keeper, *, timeout: float, account: str | None = None, notify: Notify | None = None
) -> tuple[str, Token]:
    """Run the device-grant login (:func:`webex_tokens.login.device_login`) and save the
    token under the one naming rule (:meth:`Keeper.save_login
    <webex_tokens.keeper.Keeper.save_login>`); return the name and the token.

    ``notify`` None: the code and the link on stderr, with a QR code on a terminal.
    """
    keeper.refuse_direct("log in")
    token = keeper.oauth.device_login(notify or _tell_on_stderr, timeout, account=account)
    return keeper.save_login(token, name=account), token


def interactive_login(
    keeper: Keeper,
    *,
    open_browser: Callable[[str], bool] | None,
    timeout: float,
    account: str | None = None,
    port: int | None = None,
    quiet: bool = False,
) -> tuple[str, Token]:
    """Run the browser login and save the token under the one naming rule
    (:func:`~webex_tokens.keeper.login_name`); return the name and the token.

    ``open_browser`` None: print the URL and read the redirect URL back. ``quiet``
    tells the human nothing (the demo plays the browser).
    """
    return keeper.login(
        name=account,
        open_browser=open_browser,
        timeout=timeout,
        port=port,
        notify=(lambda notice: None) if quiet else _tell_on_stderr,
    )


# -- OAuth and refreshing ------------------------------------------------------------------


def login_command(name: str) -> str:
    """The command that logs ``name`` in again (``webex-tokens login --name NAME``)."""
    from ..login import login_command as command

    return command(name)


def keeper(
    store: TokenStore, settings: Settings | None = None, oauth: WebexOAuth | None = None
) -> Keeper:
    """The account engine over ``store`` (opened by the command, which closes it).

    ``oauth`` None: built from ``settings`` when a refresh or a login first needs it, so
    a token that is not due needs no integration credentials. ``settings`` None: none
    (the demo passes its own ``oauth``).
    """
    from ..keeper import Keeper
    from ..settings import Settings

    return Keeper(store, oauth=oauth, settings=settings or Settings(), owns_store=False)


def oauth_from_settings(settings: Settings) -> WebexOAuth:
    """The integration's OAuth client, built from the settings."""
    from ..oauth import WebexOAuth

    return WebexOAuth.from_settings(settings)


# -- the other kinds of Webex credentials ------------------------------------------------


def add_static_token(keeper: Keeper, name: str, text: str, kind: str) -> tuple[Token, bool]:
    """Check and store a bot's or personal access token
    (:func:`~webex_tokens.credentials.add_static_token`); True when Webex checked it."""
    from ..credentials import add_static_token as add

    return add(keeper, name, text, kind)


def obtain_service_app(
    keeper: Keeper, app: str, org_id: str, name: str | None
) -> tuple[str, Token]:
    """Obtain and store a Service App token for an organization
    (:func:`~webex_tokens.credentials.obtain_service_app`)."""
    from ..credentials import obtain_service_app as obtain

    return obtain(keeper, app, org_id, name)


def organization_label(org_id: str) -> str:
    """The organization's own ID inside its Webex ID, for tables."""
    from ..service_apps import organization_label as label

    return label(org_id)
