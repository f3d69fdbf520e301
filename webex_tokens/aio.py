"""AsyncWebexClient: always-valid Webex tokens for asyncio programs (bots, web apps).

::

    client = AsyncWebexClient(store="sqlite:///tokens.db")
    token = await client.get_access_token("alice@example.com")
    async with client.session("alice@example.com") as http:   # Authlib's httpx client
        me = (await http.get("people/me")).json()

The refresh decision is the one of :mod:`webex_tokens.refresh`, not a second copy:
:func:`~webex_tokens.refresh.ensure_fresh` runs in a worker thread, where it holds the
store's lock (``store.update``) and calls the token endpoint, while the event loop keeps
serving other tasks. Single-flight has two levels:

- within the event loop, one :class:`asyncio.Lock` per account: of many coroutines that
  find the same token due, one goes to the worker thread and the others wait for its
  answer, so the store sees one update;
- across threads, processes and hosts, ``store.update``: a process that finds the token
  already refreshed by another one adopts it.

Only standard asyncio is used (not trio). Store I/O never runs on the event loop thread
once the client is built; :meth:`AsyncWebexClient.create` builds it in a worker thread
too (building reads the settings and opens the store).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import threading
import time
import warnings
import weakref
import webbrowser
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from .errors import ConfigError, ReauthorizationRequired
from .oauth import WebexOAuth, login_command
from .refresh import DEFAULT_LEEWAY, ensure_fresh
from .store import TokenStore, redact_url, validate_name
from .token import Token

if TYPE_CHECKING:
    from .auth import WebexAuth
    from .settings import Settings

__all__ = ["AsyncWebexClient"]

log = logging.getLogger(__name__)

_DEFAULT_ACCOUNT: Final = "default"
_ACCOUNT_VARIABLE: Final = "WEBEX_TOKENS_ACCOUNT"


class AsyncWebexClient:
    """A Webex client for asyncio whose tokens are always valid, for one or many accounts.

    It behaves like :class:`~webex_tokens.client.WebexClient` (same store and account
    defaults, same single-flight refresh through ``store.update``) but every method that
    may touch the store or the network is a coroutine, and one client serves any number
    of accounts: pass the account to each call, or rely on the default account.

    Args:
        store: a :class:`~webex_tokens.store.TokenStore`, a store URL or the name of a
            configured store; default: the ``WEBEX_TOKEN_FILE`` file if set, else the
            default store of the settings. A store opened here is closed by :meth:`aclose`.
        name: the default account; default: the only account in the store, else
            ``WEBEX_TOKENS_ACCOUNT``, else ``default`` if stored. With several accounts
            and none of these, pass the account to each call.
        oauth: the OAuth client; default: built from ``WEBEX_CLIENT_ID`` and friends
            when a refresh or login first needs it.
        leeway: seconds before expiry from which a token is refreshed.
        open_browser: how :meth:`login` opens the authorization URL (None: print it and
            read the pasted redirect URL).
        settings: the settings to use instead of loading them.

    ``WEBEX_ACCESS_TOKEN`` without an explicit ``store`` or ``oauth`` selects a direct
    token: used as is for every account, never refreshed, with a
    :class:`~webex_tokens.client.DirectTokenWarning`.

    Raises:
        StoreError: the store cannot be opened.
        ConfigError: the settings are invalid.
    """

    def __init__(
        self,
        store: TokenStore | str | None = None,
        name: str | None = None,
        oauth: WebexOAuth | None = None,
        *,
        leeway: float = DEFAULT_LEEWAY,
        open_browser: Callable[[str], bool] | None = webbrowser.open,
        settings: Settings | None = None,
    ) -> None:
        from .client import _DIRECT_MODE_WARNING, DirectTokenWarning, WebexClient

        if settings is None:
            from .settings import load_settings

            settings = load_settings()
        if name is not None:
            validate_name(name)
        self._settings = settings
        integration = settings.integration
        self._oauth = oauth
        self._oauth_lock = threading.Lock()
        self._leeway = float(leeway)
        self._open_browser = open_browser
        self._name = name
        self._name_resolved = name is not None
        self._cache: dict[str, tuple[Token, float]] = {}
        # asyncio locks belong to one event loop: keep one set per loop.
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()
        self._direct: Token | None = None
        if integration.access_token and store is None and oauth is None:
            self._direct = Token(access_token=integration.access_token, account=name)
            log.warning("%s", _DIRECT_MODE_WARNING)
            warnings.warn(_DIRECT_MODE_WARNING, DirectTokenWarning, stacklevel=2)
        # The same store choice as WebexClient (WEBEX_TOKEN_FILE, URL, configured name).
        self._store, self._owns_store = WebexClient._open(store, integration.token_file)

    @classmethod
    async def create(
        cls,
        store: TokenStore | str | None = None,
        name: str | None = None,
        oauth: WebexOAuth | None = None,
        **options: Any,
    ) -> AsyncWebexClient:
        """Build a client in a worker thread, so reading the settings and opening the
        store do not block the event loop. Takes the arguments of the constructor."""
        return await asyncio.to_thread(functools.partial(cls, store, name, oauth, **options))

    # -- configuration ----------------------------------------------------------------

    @property
    def store(self) -> TokenStore:
        """The token store in use."""
        return self._store

    @property
    def name(self) -> str | None:
        """The default account, once known (None until resolved or when there is none)."""
        return self._name

    @property
    def oauth(self) -> WebexOAuth:
        """The OAuth client (built from the settings on first use).

        Raises:
            ConfigError: ``WEBEX_CLIENT_ID`` or ``WEBEX_CLIENT_SECRET`` is not set.
        """
        with self._oauth_lock:
            if self._oauth is None:
                self._oauth = WebexOAuth.from_settings(self._settings)
            return self._oauth

    @property
    def base_url(self) -> str:
        """The Webex API base URL (``https://webexapis.com/v1``), without a trailing slash."""
        if self._oauth is not None:
            return self._oauth.base_url
        return self._settings.integration.base_url.rstrip("/")

    @property
    def using_oauth(self) -> bool:
        """True when tokens come from OAuth2 (and are refreshed)."""
        return self._direct is None

    @property
    def using_direct_token(self) -> bool:
        """True when ``WEBEX_ACCESS_TOKEN`` is used as is (no refresh)."""
        return self._direct is not None

    async def default_account(self) -> str | None:
        """The default account (see the ``name`` argument), read from the store if needed.

        Raises:
            ConfigError: the store holds several accounts and none is chosen.
            StoreError: the store cannot be read.
        """
        if not self._name_resolved:
            self._name = await asyncio.to_thread(self._resolve_name)
            self._name_resolved = True
        return self._name

    def _resolve_name(self) -> str | None:
        names = self._store.names()
        if len(names) == 1:
            return names[0]
        chosen = os.environ.get(_ACCOUNT_VARIABLE) or getattr(
            self._settings, "default_account", None
        )
        if chosen:
            return str(chosen)
        if _DEFAULT_ACCOUNT in names:
            return _DEFAULT_ACCOUNT
        return None

    async def _account(self, account: str | None) -> str:
        if account is not None:
            return validate_name(account)
        name = await self.default_account()
        if name is not None:
            return name
        count = len(await asyncio.to_thread(self._store.names))
        if count == 0:
            raise ReauthorizationRequired(
                f"no token is stored in {redact_url(self._store.url)} yet; log in with "
                f"await client.login() or: {login_command(None)}"
            )
        raise ConfigError(
            f"the store {redact_url(self._store.url)} holds {count} accounts and no default "
            f"is chosen; pass the account, e.g. await client.get_access_token('alice@"
            f"example.com'), or set AsyncWebexClient(name=...) or {_ACCOUNT_VARIABLE}"
        )

    # -- tokens -----------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        lock = locks.get(name)
        if lock is None:
            lock = locks[name] = asyncio.Lock()
        return lock

    def _cached(self, name: str) -> Token | None:
        entry = self._cache.get(name)
        if entry is not None and time.time() < entry[1]:
            return entry[0]
        return None

    def _remember(self, name: str, token: Token) -> Token:
        deadline = (
            token.expires_at.timestamp() - self._leeway
            if token.expires_at is not None
            else math.inf
        )
        self._cache[name] = (token, deadline)
        return token

    async def get_access_token(self, account: str | None = None) -> str:
        """A valid access token for ``account`` (default: the default account).

        See :meth:`get_token`.
        """
        return (await self.get_token(account)).access_token

    async def get_token(self, account: str | None = None) -> Token:
        """A valid :class:`~webex_tokens.token.Token`, refreshed single-flight when due.

        A cached token that is not due is returned at once. Otherwise one coroutine per
        account reads the store (and refreshes through ``store.update`` if the token is
        due) in a worker thread while the others wait for its answer.

        Raises:
            ReauthorizationRequired: no token is stored for the account, or it can no
                longer be refreshed; the message gives the command that logs in again.
            TokenEndpointError: the refresh failed for another reason.
            ConfigError: a refresh is due but the OAuth credentials are missing, or no
                account is given and there is no default one.
            InvalidName: ``account`` is not a valid account name.
        """
        if self._direct is not None:
            return self._direct
        name = await self._account(account)
        cached = self._cached(name)
        if cached is not None:
            return cached
        async with self._lock(name):
            cached = self._cached(name)  # another coroutine may have just fetched it
            if cached is not None:
                return cached
            token = await asyncio.to_thread(self._fresh, name, False, None)
            return self._remember(name, token)

    async def refresh(self, account: str | None = None, *, seen: Token | None = None) -> Token:
        """Refresh the token now, single-flight, and return the new one.

        Args:
            account: the account (default: the default account).
            seen: the token the caller holds (for example one Webex just answered 401
                to); if another coroutine or process has already replaced it with a
                valid token, that one is returned without a second refresh.

        Raises:
            ConfigError: a direct access token is in use (it cannot be refreshed).
            ReauthorizationRequired: the refresh token expired or was revoked.
            TokenEndpointError: the refresh failed for another reason.
        """
        if self._direct is not None:
            raise _direct_refusal()
        name = await self._account(account)
        async with self._lock(name):
            cached = self._cached(name)
            if seen is not None and cached is not None and not _same(cached, seen):
                return cached
            token = await asyncio.to_thread(self._fresh, name, True, seen or cached)
            return self._remember(name, token)

    def _fresh(self, name: str, force: bool, seen: Token | None) -> Token:
        """The blocking part, run in a worker thread: read, then refresh if due (or, with
        ``force``, refresh unless the store holds a valid token other than ``seen``)."""
        if not force:
            stored = self._store.get(name)
            if stored is None:
                raise ReauthorizationRequired(
                    f"no token is stored for {name!r} in {redact_url(self._store.url)}; "
                    f"log in with await client.login() or: {login_command(name)}",
                    account=name,
                )
            if not stored.is_expired(leeway=self._leeway):
                return stored
            return ensure_fresh(self._store, name, self.oauth, leeway=self._leeway, seen=stored)
        return ensure_fresh(
            self._store, name, self.oauth, force=True, leeway=self._leeway, seen=seen
        )

    def _token_blocking(self, account: str | None, refused: Token | None) -> Token:
        """The blocking equivalent of :meth:`get_token` / :meth:`refresh`, for
        synchronous callers (the ``httpx.Client`` and ``requests`` adapters)."""
        if self._direct is not None:
            if refused is not None:
                raise _direct_refusal()
            return self._direct
        if account is None:
            if not self._name_resolved:
                self._name, self._name_resolved = self._resolve_name(), True
            account = self._name
        if account is None:
            raise ConfigError(
                f"no account given and no default account in {redact_url(self._store.url)}; "
                "pass the account to WebexAuth(client, account) or set AsyncWebexClient(name=...)"
            )
        name = validate_name(account)
        cached = self._cached(name)
        if refused is None and cached is not None:
            return cached
        if refused is not None and cached is not None and not _same(cached, refused):
            return cached
        return self._remember(name, self._fresh(name, refused is not None, refused))

    async def refresh_access_token(self, account: str | None = None) -> dict[str, Any]:
        """Refresh now and return the token dict of the legacy client (``expires_in``...).

        Raises:
            ConfigError, ReauthorizationRequired, TokenEndpointError: as :meth:`refresh`.
        """
        from .client import _token_dict

        return _token_dict(await self.refresh(account))

    async def login(
        self,
        *,
        account: str | None = None,
        timeout: float = 300,
        port: int | None = None,
        prompt: Callable[[str], str] | None = None,
    ) -> Token:
        """Log in through the browser and a loopback callback (see
        :meth:`WebexOAuth.login <webex_tokens.oauth.WebexOAuth.login>`), in a worker
        thread, and store the token.

        The token is stored under ``account``, else the default account, else the email
        of the person who logged in.

        Raises:
            ConfigError: the OAuth credentials are missing, or a direct token is in use.
            OAuthError: the login failed.
        """
        if self._direct is not None:
            raise ConfigError(
                "cannot log in: a direct access token (WEBEX_ACCESS_TOKEN) is in use and has "
                "no refresh support; switch to OAuth2: unset WEBEX_ACCESS_TOKEN, set "
                "WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET, and log in"
            )
        name = account if account is not None else await self.default_account()
        oauth = await asyncio.to_thread(lambda: self.oauth)
        token = await asyncio.to_thread(
            functools.partial(
                oauth.login,
                self._open_browser,
                timeout,
                account=name,
                port=port,
                prompt=prompt,
            )
        )
        label = validate_name(name or token.account or _DEFAULT_ACCOUNT)
        await asyncio.to_thread(self._store.put, label, token)
        if self._name is None:
            self._name, self._name_resolved = label, True
        return self._remember(label, token)

    # -- HTTP -------------------------------------------------------------------------

    def auth(self, account: str | None = None) -> WebexAuth:
        """An ``httpx.Auth`` sending ``account``'s token, refreshing once on a 401.

        Raises:
            ImportError: httpx is not installed (``pip install 'webex-tokens[async]'``).
        """
        from .auth import WebexAuth

        return WebexAuth(self, account)

    def session(self, account: str | None = None, **options: Any) -> Any:
        """An Authlib ``AsyncOAuth2Client`` (an ``httpx.AsyncClient``) for ``account``.

        Each request carries the account's current token (refreshed single-flight
        through the store when due, and once more on a 401, see
        :class:`~webex_tokens.auth.WebexAuth`). Relative URLs are taken from the API
        base: ``await session.get("people/me")``. Use it as ``async with``.

        Args:
            account: the account (default: the default account).
            options: more ``httpx.AsyncClient`` options (``timeout``, ``transport``...).

        Raises:
            ImportError: httpx is not installed (``pip install 'webex-tokens[async]'``).
        """
        return _session_class()(self, account, base_url=self.base_url + "/", **options)

    # -- lifecycle --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the store if this client opened it (in a worker thread)."""
        if self._owns_store:
            await asyncio.to_thread(self._store.close)

    def close(self) -> None:
        """Close the store if this client opened it (blocking)."""
        if self._owns_store:
            self._store.close()

    async def __aenter__(self) -> AsyncWebexClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        mode = "direct token" if self._direct is not None else "oauth"
        return (
            f"AsyncWebexClient(mode={mode!r}, store={redact_url(self._store.url)!r}, "
            f"name={self._name!r})"
        )


def _same(a: Token, b: Token) -> bool:
    return a.access_token == b.access_token


def _direct_refusal() -> ConfigError:
    return ConfigError(
        "cannot refresh the access token: a direct access token (WEBEX_ACCESS_TOKEN) is in "
        "use and has no refresh support; switch to OAuth2: unset WEBEX_ACCESS_TOKEN, set "
        "WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET, and log in"
    )


@functools.lru_cache(maxsize=1)
def _session_class() -> type[Any]:
    """Authlib's ``AsyncOAuth2Client`` taking its token from an :class:`AsyncWebexClient`
    (built on first use: httpx is an optional dependency)."""
    try:
        import httpx
        from authlib.integrations.httpx_client import AsyncOAuth2Client
    except ImportError:
        raise ImportError(
            "AsyncWebexClient.session() needs httpx, which is not installed; run: "
            "pip install 'webex-tokens[async]'"
        ) from None
    from .auth import WebexAuth

    class AsyncStoreSession(AsyncOAuth2Client):  # type: ignore[misc] # Authlib has no hints
        """Requests carry the store's token (through :class:`WebexAuth`), never a token
        kept on the session, so refreshes go through the store instead of Authlib's own."""

        def __init__(self, client: AsyncWebexClient, account: str | None, **options: Any):
            super().__init__(client_id=None, token=None, **options)
            self._webex_auth = WebexAuth(client, account)
            self._webex_client = client

        def _auth_for(self, kwargs: dict[str, Any]) -> None:
            withhold = kwargs.pop("withhold_token", False)
            if not withhold and kwargs.get("auth", httpx.USE_CLIENT_DEFAULT) is (
                httpx.USE_CLIENT_DEFAULT
            ):
                kwargs["auth"] = self._webex_auth
            kwargs["withhold_token"] = True  # Authlib's own token handling stays out

        async def request(self, method: str, url: Any, **kwargs: Any) -> Any:
            self._auth_for(kwargs)
            return await super().request(method, url, **kwargs)

        def stream(self, method: str, url: Any, **kwargs: Any) -> Any:
            self._auth_for(kwargs)
            return super().stream(method, url, **kwargs)

        def __repr__(self) -> str:
            return f"<webex-tokens async session for {self._webex_client!r}>"

    return AsyncStoreSession
