"""AsyncWebexClient: always-valid Webex tokens for asyncio programs (bots, web apps).

::

    client = AsyncWebexClient(store="sqlite:///tokens.db")
    token = await client.get_access_token("alice@example.com")
    async with client.session_for("alice@example.com") as http:   # Authlib's httpx client
        me = (await http.get("people/me")).json()

An ``AsyncWebexClient`` is the account engine (:class:`~webex_tokens.keeper.Keeper`) plus
one :class:`asyncio.Lock` per account and event loop, and ``asyncio.to_thread``. It takes
the constructor arguments of :class:`~webex_tokens.client.WebexClient` with the same
meaning; where async must differ (awaited tokens, ``auto_auth``'s default), the
differences are listed in ``docs/async.md``. Single-flight has two levels:

- within the event loop, the per-account :class:`asyncio.Lock`: of many coroutines that
  find the same token due, one goes to the worker thread and the others wait for its
  answer, so the store sees one update;
- across threads, processes and hosts, the keeper and ``store.update``: a process that
  finds the token already refreshed by another one adopts it.

The refresh runs in a worker thread, where it holds the store's lock and calls the token
endpoint, while the event loop keeps serving other tasks. Only standard asyncio is used
(not trio). :meth:`AsyncWebexClient.create` builds the client in a worker thread too
(building reads the settings and opens the store).
"""

from __future__ import annotations

import asyncio
import functools
import warnings
import weakref
import webbrowser
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ReauthorizationRequired
from .keeper import Keeper, legacy_token_dict
from .refresh import DEFAULT_LEEWAY
from .store import TokenStore, redact_url, validate_name
from .token import Token

if TYPE_CHECKING:
    from .auth import WebexAuth
    from .oauth import WebexOAuth
    from .settings import Settings

__all__ = ["AsyncWebexClient"]


class AsyncWebexClient:
    """A Webex client for asyncio whose tokens are always valid, for one or many accounts.

    The arguments are those of :class:`~webex_tokens.client.WebexClient`, with the same
    meaning; every method that may touch the store or the network is a coroutine, and one
    client serves any number of accounts (pass the account to each call, or rely on the
    default account).

    Args:
        auto_auth: when no usable token is stored, log in (browser and loopback
            callback). ``__init__`` cannot await, so a client built directly logs in on
            first use (the first :meth:`get_token` that finds no usable token), and
            ``await AsyncWebexClient.create(auto_auth=True)`` logs in before it returns.
            Default False, unlike ``WebexClient``: an async program is usually a server,
            where a browser opened by the first request would be wrong.
        store: a :class:`~webex_tokens.store.TokenStore`, a store URL or the name of a
            configured store; default: the default store of the settings. A store
            opened here is closed by :meth:`aclose`.
        name: the default account; default: ``WEBEX_TOKENS_ACCOUNT``, else
            ``[integration] account``, else the only account in the store, else
            ``default`` if stored. With several accounts and none of these, pass the
            account to each call.
        oauth: the OAuth client; default: built from ``WEBEX_CLIENT_ID`` and friends
            when a refresh or login first needs it.
        leeway: seconds before expiry from which a token is refreshed.
        open_browser: how :meth:`login` opens the authorization URL (None: print it and
            read the pasted redirect URL).
        settings: the settings to use instead of loading them.

    ``WEBEX_ACCESS_TOKEN`` without an explicit ``store`` or ``oauth`` selects a direct
    token: used as is for every account, never refreshed, with a
    :class:`~webex_tokens.keeper.DirectTokenWarning`.

    Passing the store as the first positional argument (``AsyncWebexClient(store)``, the
    signature of 0.1) still works, with a ``DeprecationWarning``: write ``store=``.

    Raises:
        StoreError: the store cannot be opened.
        ConfigError: the settings are invalid.
        InvalidName: ``name`` is not a valid account name.
    """

    def __init__(
        self,
        auto_auth: bool = False,
        store: TokenStore | str | None = None,
        name: str | None = None,
        oauth: WebexOAuth | None = None,
        *,
        leeway: float = DEFAULT_LEEWAY,
        open_browser: Callable[[str], bool] | None = webbrowser.open,
        settings: Settings | None = None,
    ) -> None:
        if not isinstance(auto_auth, bool):  # the 0.1 signature: (store, name, oauth)
            warnings.warn(
                "AsyncWebexClient(store, name, oauth) is deprecated: the arguments are now "
                "those of WebexClient (auto_auth, store, name, oauth); pass store=... and "
                "name=... by keyword",
                DeprecationWarning,
                stacklevel=2,
            )
            if name is not None:  # the third positional argument was the OAuth client
                oauth = name
            auto_auth, store, name = False, auto_auth, store
        if name is not None:
            validate_name(name)
        self._keeper = Keeper(
            store, oauth=oauth, settings=settings, leeway=leeway, direct_token=True
        )
        self._auto_auth = bool(auto_auth)
        self._open_browser = open_browser
        self._name = name
        # asyncio locks belong to one event loop: keep one set per loop.
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()
        self._session: Any = None

    @classmethod
    async def create(
        cls,
        auto_auth: bool = False,
        store: TokenStore | str | None = None,
        name: str | None = None,
        oauth: WebexOAuth | None = None,
        **options: Any,
    ) -> AsyncWebexClient:
        """Build a client in a worker thread, so reading the settings and opening the
        store do not block the event loop; with ``auto_auth``, log in now when no usable
        token is stored. Takes the arguments of the constructor."""
        client = await asyncio.to_thread(
            functools.partial(cls, auto_auth, store, name, oauth, **options)
        )
        if client._auto_auth:
            try:
                await client.get_token()
            except BaseException:
                await client.aclose()
                raise
        return client

    # -- configuration ----------------------------------------------------------------

    @property
    def keeper(self) -> Keeper:
        """The account engine this client drives."""
        return self._keeper

    @property
    def store(self) -> TokenStore:
        """The token store in use."""
        return self._keeper.store

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
        return self._keeper.oauth

    @property
    def base_url(self) -> str:
        """The Webex API base URL (``https://webexapis.com/v1``), without a trailing slash."""
        return self._keeper.base_url

    @property
    def using_oauth(self) -> bool:
        """True when tokens come from OAuth2 (and are refreshed)."""
        return self._keeper.direct_token is None

    @property
    def using_direct_token(self) -> bool:
        """True when ``WEBEX_ACCESS_TOKEN`` is used as is (no refresh)."""
        return self._keeper.direct_token is not None

    async def default_account(self) -> str | None:
        """The default account (see the ``name`` argument), read from the store if needed.

        Raises:
            ConfigError: the store holds several accounts and none is chosen.
            StoreError: the store cannot be read.
        """
        if self._name is None:
            self._name = await asyncio.to_thread(self._keeper.default_account)
        return self._name

    async def _account(self, account: str | None) -> str:
        if account is not None:
            return validate_name(account)
        name = await self.default_account()
        if name is None:
            raise self._keeper.missing(None)
        return name

    # -- tokens -----------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        lock = locks.get(name)
        if lock is None:
            lock = locks[name] = asyncio.Lock()
        return lock

    async def get_access_token(self, account: str | None = None) -> str:
        """A valid access token for ``account`` (default: the default account).

        See :meth:`get_token`.
        """
        return (await self.get_token(account)).access_token

    async def get_token(self, account: str | None = None) -> Token:
        """A valid :class:`~webex_tokens.token.Token`, refreshed single-flight when due.

        A cached token that is not due is returned at once. Otherwise one coroutine per
        account reads the store (and refreshes through ``store.update`` if the token is
        due) in a worker thread while the others wait for its answer. With ``auto_auth``,
        an account with no usable token logs in instead.

        Raises:
            ReauthorizationRequired: no token is stored for the account, or it can no
                longer be refreshed; the message gives the command that logs in again.
            TokenEndpointError: the refresh failed for another reason.
            ConfigError: a refresh is due but the OAuth credentials are missing, or no
                account is given and there is no default one.
            InvalidName: ``account`` is not a valid account name.
        """
        direct = self._keeper.direct_token
        if direct is not None:
            return direct
        try:
            name = await self._account(account)
        except ReauthorizationRequired:
            if not self._auto_auth:
                raise
            return await self._login(None, 300, None, None)
        cached = self._keeper.cached(name)
        if cached is not None:
            return cached
        async with self._lock(name):
            try:
                return await asyncio.to_thread(self._keeper.current, name)
            except ReauthorizationRequired:
                if not self._auto_auth:
                    raise
            return await self._login(name, 300, None, None)

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
        self._keeper.refuse_direct("refresh the access token")
        name = await self._account(account)
        async with self._lock(name):
            return await asyncio.to_thread(functools.partial(self._keeper.refresh, name, seen=seen))

    async def refresh_access_token(self, account: str | None = None) -> dict[str, Any]:
        """Refresh now and return the token dict of the legacy client (``expires_in``...).

        Raises:
            ConfigError, ReauthorizationRequired, TokenEndpointError: as :meth:`refresh`.
        """
        return legacy_token_dict(await self.refresh(account))

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
        of the person who logged in (see :func:`~webex_tokens.keeper.login_name`).

        Raises:
            ConfigError: the OAuth credentials are missing, or a direct token is in use.
            OAuthError: the login failed.
        """
        return await self._login(account, timeout, port, prompt)

    async def _login(
        self,
        account: str | None,
        timeout: float,
        port: int | None,
        prompt: Callable[[str], str] | None,
    ) -> Token:
        self._keeper.refuse_direct("log in")
        current = await self.default_account() if account is None else None
        name, token = await asyncio.to_thread(
            functools.partial(
                self._keeper.login,
                name=account,
                current=current,
                open_browser=self._open_browser,
                timeout=timeout,
                port=port,
                prompt=prompt,
            )
        )
        if self._name is None:
            self._name = name
        return token

    # -- a token source for the HTTP auth adapters -----------------------------------

    def serves(self, account: str | None) -> str | None:
        """The account an auth adapter built for ``account`` sends tokens of (None: the
        default account, not known yet)."""
        return account if account is not None else self._name

    def token_for(self, account: str | None = None, refused: Token | None = None) -> Token:
        """Blocking: :meth:`get_token` (or, with ``refused``, :meth:`refresh` with
        ``seen``) for synchronous callers: the ``httpx.Client`` and ``requests`` adapters.

        Raises:
            ConfigError: no account is given and there is no default account, or a
                direct token was refused.
            ReauthorizationRequired, TokenEndpointError: as :meth:`get_token`.
        """
        direct = self._keeper.direct_token
        if direct is not None:
            if refused is not None:
                self._keeper.refuse_direct("refresh the access token")
            return direct
        if account is None:
            if self._name is None:
                self._name = self._keeper.default_account()
            account = self._name
        if account is None:
            raise ConfigError(
                f"no account given and no default account in "
                f"{redact_url(self._keeper.store.url)}; pass the account to "
                "WebexAuth(client, account) or set AsyncWebexClient(name=...)"
            )
        return self._keeper.token_for(validate_name(account), refused)

    async def atoken_for(self, account: str | None = None, refused: Token | None = None) -> Token:
        """Async: :meth:`get_token`, or with ``refused``, :meth:`refresh` with ``seen``."""
        if refused is None:
            return await self.get_token(account)
        return await self.refresh(account, seen=refused)

    # -- HTTP -------------------------------------------------------------------------

    def auth(self, account: str | None = None) -> WebexAuth:
        """An ``httpx.Auth`` sending ``account``'s token, refreshing once on a 401.

        Raises:
            ImportError: httpx is not installed (``pip install 'webex-tokens[async]'``).
        """
        from .auth import WebexAuth

        return WebexAuth(self, account)

    @property
    def session(self) -> Any:
        """An Authlib ``AsyncOAuth2Client`` (an ``httpx.AsyncClient``) for the default
        account, kept by the client (a new one once it is closed), as
        ``WebexClient.session`` is: ``await client.session.get("people/me")``.

        Each request carries the account's current token (refreshed single-flight
        through the store when due, and once more on a 401, see
        :class:`~webex_tokens.auth.WebexAuth`). Relative URLs are taken from the API base.
        Calling it, ``client.session(account)``, is the deprecated form of
        :meth:`session_for`.

        Raises:
            ImportError: httpx is not installed (``pip install 'webex-tokens[async]'``).
        """
        session = self._session
        if session is None or session.is_closed:
            session = self._session = self.session_for()
        return session

    def session_for(self, account: str | None = None, **options: Any) -> Any:
        """A new Authlib ``AsyncOAuth2Client`` for ``account``; use it as ``async with``.

        Args:
            account: the account (default: the default account).
            options: more ``httpx.AsyncClient`` options (``timeout``, ``transport``...).

        Raises:
            ImportError: httpx is not installed (``pip install 'webex-tokens[async]'``).
        """
        return _session_class()(self, account, base_url=self.base_url + "/", **options)

    # -- lifecycle --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the session, and the store if this client opened it (in a worker thread)."""
        if self._session is not None and not self._session.is_closed:
            await self._session.aclose()
        await asyncio.to_thread(self._keeper.close)

    def close(self) -> None:
        """Close the store if this client opened it (blocking)."""
        self._keeper.close()

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
        mode = "oauth" if self.using_oauth else "direct token"
        return (
            f"AsyncWebexClient(mode={mode!r}, store={redact_url(self.store.url)!r}, "
            f"name={self._name!r})"
        )


@functools.lru_cache(maxsize=1)
def _session_class() -> type[Any]:
    """Authlib's ``AsyncOAuth2Client`` taking its token from an :class:`AsyncWebexClient`
    (built on first use: httpx is an optional dependency)."""
    try:
        from authlib.integrations.httpx_client import AsyncOAuth2Client
        from authlib.integrations.httpx_client.oauth2_client import USE_CLIENT_DEFAULT
    except ImportError:
        raise ImportError(
            "AsyncWebexClient.session needs httpx2 (or httpx), which is not installed; run: "
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

        def __call__(self, account: str | None = None, **options: Any) -> Any:
            warnings.warn(
                "client.session(account) is deprecated: client.session is now the default "
                "account's session, as on WebexClient; use client.session_for(account) for "
                "another account or other options",
                DeprecationWarning,
                stacklevel=2,
            )
            return self._webex_client.session_for(account, **options)

        def _auth_for(self, kwargs: dict[str, Any]) -> None:
            withhold = kwargs.pop("withhold_token", False)
            if not withhold and kwargs.get("auth", USE_CLIENT_DEFAULT) is USE_CLIENT_DEFAULT:
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
