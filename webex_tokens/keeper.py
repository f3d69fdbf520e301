"""The account engine: one store, many accounts, each token always valid.

Every surface is a thin layer over one :class:`Keeper`: :class:`~webex_tokens.client.WebexClient`
is a keeper bound to one account plus the legacy guide's API, the
:class:`~webex_tokens.aio.AsyncWebexClient` is a keeper plus a per-loop asyncio lock and
``asyncio.to_thread``, and the command line and the web login routes call it directly.
Each decision below is made here once:

- **which store**: the store given, else :meth:`Settings.choose_store
  <webex_tokens.settings.Settings.choose_store>` (kept as :attr:`Keeper.choice`);
- **which account**: :meth:`Keeper.default_account`, through
  :meth:`Settings.default_account <webex_tokens.settings.Settings.default_account>`;
- **the current token**: :meth:`Keeper.current`: the cached token while it is not due,
  else the stored one, refreshed through :func:`~webex_tokens.refresh.ensure_fresh`
  (single-flight across threads here, and across processes and hosts through
  ``store.update``) when :func:`~webex_tokens.refresh.is_due` says so;
- **how a login is named**: :func:`login_name`, applied by :meth:`Keeper.save_login`;
- **direct-token mode** (``WEBEX_ACCESS_TOKEN``, never refreshed, with a warning).

Every operation that reads or writes an account in the store first passes through
:meth:`Keeper.prepare`, which runs the keeper's :class:`AccountHook` callables with the
store and the account's name. That is where the rescue journal replays a refreshed token
that a failed store write left behind, before anything else touches the account. A
cached read that is not due touches neither the store nor the hooks.

The keeper is synchronous and thread-safe. It never prints; it warns (``warnings`` and
``logging``) only about direct-token mode.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
import webbrowser
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

from .errors import ConfigError, ReauthorizationRequired, WebexTokensError
from .journal import RescueJournal, default_journal
from .refresh import DEFAULT_LEEWAY, ensure_fresh, is_due, serve_until
from .settings import DEFAULT_ACCOUNT, StoreChoice
from .store import TokenStore, redact_url, validate_name
from .token import Token

if TYPE_CHECKING:
    from .credentials import Credentials
    from .login import Notify
    from .oauth import WebexOAuth
    from .settings import Settings

__all__ = [
    "AccountHook",
    "CacheSlot",
    "DirectTokenWarning",
    "Keeper",
    "RefreshOutcome",
    "legacy_token_dict",
    "login_name",
]

log = logging.getLogger(__name__)

# Warnings point at the code that built the client: warn() <- Keeper() <- Client() <- caller.
_CALLER: Final = 3


class DirectTokenWarning(UserWarning):
    """A direct access token (``WEBEX_ACCESS_TOKEN``) is in use: it cannot be refreshed."""


class AccountHook(Protocol):
    """Called with the store and an account's name before any operation on that account.

    A hook may read and write the account through the store (under ``store.update``);
    it runs in the thread of the operation, possibly in several threads at once for
    different accounts, and what it raises ends the operation.
    """

    def __call__(self, store: TokenStore, name: str) -> None: ...


class CacheSlot:
    """One account's cached token and the lock that makes its refresh single-flight.

    ``entry`` is ``(token, deadline)`` with the deadline in :func:`time.time` seconds, or
    None; it is replaced in one assignment, so a reader never sees half of it. Surfaces
    that read the token on every call (``WebexClient.access_token``) keep the slot and
    read ``entry`` themselves: a dictionary lookup less than :meth:`Keeper.cached`.
    """

    __slots__ = ("entry", "lock")

    def __init__(self) -> None:
        self.entry: tuple[Token, float] | None = None
        self.lock = threading.Lock()

    def valid(self) -> Token | None:
        """The cached token while it is not due, else None."""
        entry = self.entry
        if entry is not None and time.time() < entry[1]:
            return entry[0]
        return None


@dataclass(frozen=True)
class RefreshOutcome:
    """What :meth:`Keeper.refresh_many` did for one account: a token, or the error."""

    name: str
    token: Token | None = None
    error: WebexTokensError | OSError | None = None


def login_name(
    token: Token,
    *,
    requested: str | None = None,
    current: str | None = None,
    fallback: str | None = DEFAULT_ACCOUNT,
) -> str:
    """The name a new login is saved under: the one rule every surface applies.

    The first of: the name ``requested`` explicitly (``name=``, ``--name``, a web app's
    ``account_name`` hook); the account ``current``\\ly in use (logging in again keeps
    its name, so a legacy file's ``default`` stays ``default``); the account the token
    names (the email from ``/people/me`` or the ID token); ``fallback``.

    Raises:
        InvalidName: the chosen name is not a valid account name.
        ConfigError: nothing names the login and ``fallback`` is None.
    """
    for name in (requested, current, token.account, fallback):
        if name is not None:
            return validate_name(name)
    raise ConfigError(
        "the login cannot be named: Webex reported no email for it; pass the account's "
        "name (name=..., --name, or the web app's account_name hook)"
    )


def legacy_token_dict(token: Token) -> dict[str, Any]:
    """The legacy client's token dict: the token endpoint's answer, plus ``saved_at``."""
    data: dict[str, Any] = {"access_token": token.access_token, "token_type": token.token_type}
    expires_in = token.expires_in()
    if expires_in is not None:
        data["expires_in"] = max(0, int(expires_in))
    if token.refresh_token is not None:
        data["refresh_token"] = token.refresh_token
    refresh_in = token.refresh_expires_in()
    if refresh_in is not None:
        data["refresh_token_expires_in"] = max(0, int(refresh_in))
    if token.scopes:
        data["scope"] = " ".join(token.scopes)
    data["saved_at"] = token.saved_at.isoformat()
    return data


def _same(a: Token, b: Token) -> bool:
    return a.access_token == b.access_token


class Keeper:
    """The account engine over one store (see the module's documentation).

    Args:
        store: a :class:`~webex_tokens.store.TokenStore`, a store URL or the name of a
            configured store; default: the default store of the settings (see
            :meth:`Settings.choose_store <webex_tokens.settings.Settings.choose_store>`).
            A store opened here is closed by :meth:`close`.
        oauth: the integration's OAuth client; default: built from the settings the
            first time a refresh or a login needs it.
        settings: the settings; default: :func:`~webex_tokens.settings.load_settings`.
        leeway: seconds before expiry from which a token is refreshed.
        hooks: the :class:`AccountHook` callables :meth:`prepare` runs after the journal.
        journal: the rescue journal (default: the user's); :meth:`prepare` replays it first.
        direct_token: accept direct-token mode: with ``WEBEX_ACCESS_TOKEN`` set and
            neither ``store`` nor ``oauth`` given, every account's token is that token,
            never refreshed, and a :class:`DirectTokenWarning` is issued. The clients
            accept it (the legacy guide's behaviour); the command line does not.
        owns_store: whether :meth:`close` closes the store (default: when opened here).

    Raises:
        ConfigError: the settings are invalid or name an unknown store.
        StoreError: the store cannot be opened.
    """

    def __init__(
        self,
        store: TokenStore | str | None = None,
        *,
        oauth: WebexOAuth | None = None,
        settings: Settings | None = None,
        leeway: float = DEFAULT_LEEWAY,
        hooks: Sequence[AccountHook] = (),
        direct_token: bool = False,
        owns_store: bool | None = None,
        journal: RescueJournal | None = None,
    ) -> None:
        if settings is None:
            from .settings import load_settings

            settings = load_settings()
        self._settings = settings
        self._oauth = oauth
        self._oauth_lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._leeway = float(leeway)
        self._journal = journal if journal is not None else default_journal()
        self._hooks = (self._journal, *hooks)
        self._slots: dict[str, CacheSlot] = {}
        self._slots_lock = threading.Lock()
        self._direct: Token | None = None
        integration = settings.integration
        if direct_token and integration.access_token and store is None and oauth is None:
            from .credentials import direct_token_warning

            self._direct = Token(access_token=integration.access_token)
            message = direct_token_warning(integration)
            log.warning("%s", message)
            warnings.warn(message, DirectTokenWarning, stacklevel=_CALLER)
        self._choice: StoreChoice | None = None
        if isinstance(store, str) or store is None:
            from .registry import open_store

            self._choice = settings.choose_store(store)
            self._store = open_store(store, settings=settings)
            opened = True
        else:
            self._store, opened = store, False
        self._owns_store = opened if owns_store is None else owns_store

    # -- what it works on --------------------------------------------------------------

    @property
    def store(self) -> TokenStore:
        """The token store."""
        return self._store

    @property
    def choice(self) -> StoreChoice | None:
        """How the store was chosen (None when a store object was given)."""
        return self._choice

    @property
    def settings(self) -> Settings:
        """The settings in use."""
        return self._settings

    @property
    def leeway(self) -> float:
        """Seconds before expiry from which a token is refreshed."""
        return self._leeway

    @property
    def oauth(self) -> WebexOAuth:
        """The OAuth client (built from the settings on first use).

        Raises:
            ConfigError: ``WEBEX_CLIENT_ID`` or ``WEBEX_CLIENT_SECRET`` is not set.
        """
        with self._oauth_lock:
            if self._oauth is None:
                from .oauth import WebexOAuth

                self._oauth = WebexOAuth.from_settings(self._settings)
            return self._oauth

    @property
    def credentials(self) -> Credentials:
        """What renews each token (:class:`~webex_tokens.credentials.Credentials`)."""
        with self._oauth_lock:
            if self._credentials is None:
                from .credentials import Credentials

                self._credentials = Credentials(self._settings, lambda: self.oauth, self.current)
            return self._credentials

    @property
    def base_url(self) -> str:
        """The Webex API base URL (``https://webexapis.com/v1``), without a trailing slash."""
        if self._oauth is not None:
            return self._oauth.base_url
        return self._settings.integration.base_url.rstrip("/")

    @property
    def direct_token(self) -> Token | None:
        """The direct token (``WEBEX_ACCESS_TOKEN``) when in direct-token mode, else None."""
        return self._direct

    def use_store(self, store: TokenStore, *, owns_store: bool = True) -> None:
        """Switch to ``store`` (closing the previous one if it was the keeper's) and
        forget every cached token."""
        with self._slots_lock:
            if self._owns_store:
                self._store.close()
            self._store, self._owns_store, self._choice = store, owns_store, None
            self._slots = {}

    def refuse_direct(self, what: str) -> None:
        """Raise :class:`ConfigError` when in direct-token mode: ``what`` cannot be done.

        Raises:
            ConfigError: a direct access token is in use.
        """
        if self._direct is not None:
            raise ConfigError(
                f"cannot {what}: a direct access token (WEBEX_ACCESS_TOKEN) is in use and has "
                "no refresh support; switch to OAuth2: unset WEBEX_ACCESS_TOKEN, set "
                "WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET, and log in"
            )

    # -- accounts ----------------------------------------------------------------------

    def default_account(self, name: str | None = None) -> str | None:
        """The account to use (see :meth:`Settings.default_account
        <webex_tokens.settings.Settings.default_account>`): ``name``, else
        ``WEBEX_TOKENS_ACCOUNT``, else ``[integration] account``, else the only account
        stored, else ``default`` if stored; None when the store is empty.

        Raises:
            ConfigError: several accounts are stored and nothing chooses one.
            InvalidName: ``name`` is not a valid account name.
            StoreError: the store cannot be read.
        """
        where = f"the store {redact_url(self._store.url)}"
        return self._settings.default_account(self._store.names, name, where=where)

    def prepare(self, name: str) -> None:
        """Run the hooks for ``name``: every operation on an account calls this first."""
        for hook in self._hooks:
            hook(self._store, name)

    def slot(self, name: str) -> CacheSlot:
        """The cache slot of the account ``name`` (made on first use).

        Raises:
            InvalidName: ``name`` is not a valid account name.
        """
        slot = self._slots.get(name)
        if slot is None:
            validate_name(name)
            with self._slots_lock:
                slot = self._slots.setdefault(name, CacheSlot())
        return slot

    def cached(self, name: str) -> Token | None:
        """The cached token of ``name`` while it is not due (no store, no network)."""
        if self._direct is not None:
            return self._direct
        slot = self._slots.get(name)
        return slot.valid() if slot is not None else None

    def remember(self, name: str, token: Token) -> Token:
        """Cache ``token`` as the current token of ``name`` until it is due."""
        self.slot(name).entry = (token, serve_until(token, self._leeway))
        return token

    def forget(self, name: str | None = None) -> None:
        """Drop the cached token of ``name`` (of every account when None): the next
        read goes to the store."""
        slots = list(self._slots.values()) if name is None else [self._slots.get(name)]
        for slot in slots:
            if slot is not None:
                slot.entry = None

    def missing(self, name: str | None) -> ReauthorizationRequired:
        """The error for an account with no stored token, naming the command that logs in."""
        from .oauth import login_command

        where = redact_url(self._store.url)
        if name is None:
            return ReauthorizationRequired(
                f"no token is stored in {where} yet; log in with client.login() or: "
                f"{login_command(None)}"
            )
        return ReauthorizationRequired(
            f"no token is stored for {name!r} in {where}; log in with client.login() or: "
            f"{login_command(name)}",
            account=name,
        )

    # -- tokens ------------------------------------------------------------------------

    def current(self, name: str) -> Token:
        """The current token of ``name``: cached while not due, else read from the
        store and, when due, refreshed single-flight (one refresh across threads,
        processes and hosts; a token another process refreshed meanwhile is adopted).

        Raises:
            ReauthorizationRequired: no token is stored, or it can no longer be
                refreshed; the message gives the command that logs in again.
            TokenEndpointError: the refresh failed for another reason.
            ConfigError: a refresh is due but the OAuth credentials are missing.
            InvalidName: ``name`` is not a valid account name.
            StoreError: the store cannot be read or written.
        """
        if self._direct is not None:
            return self._direct
        slot = self.slot(name)
        token = slot.valid()
        if token is not None:
            return token
        with slot.lock:
            token = slot.valid()  # another thread may have just fetched it
            if token is not None:
                return token
            self.prepare(name)
            stored = self._store.get(name)
            if stored is None:
                raise self.missing(name)
            if is_due(stored, self._leeway):
                stored = self._ensure_fresh(name, force=False, seen=stored)
            slot.entry = (stored, serve_until(stored, self._leeway))
            return stored

    def stored(self, name: str) -> Token | None:
        """The token stored for ``name`` as it is (not refreshed), or None.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            StoreError: the store cannot be read.
        """
        validate_name(name)
        self.prepare(name)
        return self._store.get(name)

    def refresh(self, name: str, *, seen: Token | None = None) -> Token:
        """Refresh ``name``'s token now, single-flight, and return the new one.

        Args:
            name: the account.
            seen: the token the caller holds (one Webex just answered 401 to, or the one
                ``refresh --all`` found due); a valid token that another thread or
                process stored instead of it is returned without a second refresh.

        Raises:
            ConfigError: a direct access token is in use, or the OAuth credentials
                are missing.
            ReauthorizationRequired: no token is stored, or the refresh token expired
                or was revoked.
            TokenEndpointError: the refresh failed for another reason (see
                :func:`~webex_tokens.refresh.ensure_fresh` for an unanswered one).
        """
        self.refuse_direct("refresh the access token")
        slot = self.slot(name)
        with slot.lock:
            cached = slot.valid()
            if seen is not None and cached is not None and not _same(cached, seen):
                return cached
            if seen is None and slot.entry is not None:
                seen = slot.entry[0]
            self.prepare(name)
            token = self._ensure_fresh(name, force=True, seen=seen)
            slot.entry = (token, serve_until(token, self._leeway))
            return token

    def _ensure_fresh(self, name: str, *, force: bool, seen: Token | None) -> Token:
        how = self.credentials
        fresh = ensure_fresh(
            self._store,
            name,
            how,
            force=force,
            leeway=self._leeway,
            seen=seen,
            reobtain=how.reobtain,
            journal=self._journal,
        )
        return fresh

    def token_for(self, name: str, refused: Token | None = None) -> Token:
        """The current token of ``name``, or, with ``refused`` (a token Webex answered
        401 to), a replacement for it (see :meth:`refresh` with ``seen``).

        Raises:
            ReauthorizationRequired: as :meth:`current` and :meth:`refresh`.
            TokenEndpointError: the refresh failed.
        """
        if refused is None:
            return self.current(name)
        return self.refresh(name, seen=refused)

    def refresh_many(
        self,
        names: Iterable[str],
        *,
        seen: Mapping[str, Token] | None = None,
        concurrency: int = 4,
    ) -> Iterator[RefreshOutcome]:
        """Refresh several accounts, ``concurrency`` at a time, yielding each outcome as
        it completes (the keep-alive: ``webex-tokens refresh --all``).

        Each refresh is :meth:`refresh` (single-flight; with ``seen[name]``, a token
        another process stored meanwhile is adopted). A failure is yielded, not raised.
        Closing the iterator early (or Ctrl-C) drops the refreshes not yet started; the
        running ones finish and save their tokens.

        Raises:
            ValueError: ``concurrency`` is below 1.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
        from concurrent.futures import ThreadPoolExecutor, as_completed  # only for many

        known = seen or {}
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh")
        try:
            futures = {
                pool.submit(self.refresh, name, seen=known.get(name)): name for name in names
            }
            for future in as_completed(futures):
                name = futures[future]
                try:
                    token = future.result()
                except (WebexTokensError, OSError) as exc:
                    yield RefreshOutcome(name, error=exc)
                else:
                    yield RefreshOutcome(name, token=token)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    # -- logins ------------------------------------------------------------------------

    def save_login(
        self, token: Token, *, name: str | None = None, current: str | None = None
    ) -> str:
        """Store the token of a new login under :func:`login_name` and cache it.

        Args:
            token: the token the login produced.
            name: the name asked for explicitly, if any.
            current: the account the caller already uses, if any.

        Returns:
            The name it was stored under.

        Raises:
            InvalidName: the chosen name is not a valid account name.
            StoreError: the store cannot be written (the token waits in the journal).
        """
        label = login_name(token, requested=name, current=current)
        self.prepare(label)
        self._journal.put(self._store, label, token)  # a login cannot be had twice
        self.remember(label, token)
        return label

    def login(
        self,
        *,
        name: str | None = None,
        current: str | None = None,
        open_browser: Callable[[str], bool] | None = webbrowser.open,
        timeout: float = 300,
        port: int | None = None,
        prompt: Callable[[str], str] | None = None,
        notify: Notify | None = None,
    ) -> tuple[str, Token]:
        """Log in through the browser (see :meth:`WebexOAuth.login
        <webex_tokens.oauth.WebexOAuth.login>`) and save the token (:meth:`save_login`).

        Returns:
            The name the token was stored under, and the token.

        Raises:
            ConfigError: the OAuth credentials are missing, or a direct token is in use.
            OAuthError: the login failed.
        """
        self.refuse_direct("log in")
        token = self.oauth.login(
            open_browser=open_browser,
            timeout=timeout,
            account=name,
            port=port,
            prompt=prompt,
            notify=notify,
        )
        return self.save_login(token, name=name, current=current), token

    def delete(self, name: str) -> bool:
        """Delete the token of ``name`` from the store and the cache; True if there was one.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            StoreError: the store cannot be written.
        """
        validate_name(name)
        self.prepare(name)
        self.forget(name)
        return self._store.delete(name)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if the keeper owns it."""
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> Keeper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "direct token" if self._direct is not None else "oauth"
        return f"Keeper(mode={mode!r}, store={redact_url(self._store.url)!r})"
