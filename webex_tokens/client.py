"""WebexClient: the friendly facade, compatible with the legacy guide's ``WebexClient``.

::

    client = WebexClient(auto_auth=True)     # logs in through the browser when needed
    requests.get(url, headers={"Authorization": f"Bearer {client.access_token}"})
    client.session.get("people/me")          # Authlib session, refreshing through the store
    api = client.webex_api()                 # webexpythonsdk.WebexAPI

A ``WebexClient`` is the account engine (:class:`~webex_tokens.keeper.Keeper`) bound to
one account, plus the legacy guide's API and an Authlib session. Configuration comes
from the environment and ``.env`` like the legacy client: ``WEBEX_CLIENT_ID``,
``WEBEX_CLIENT_SECRET``, ``WEBEX_REDIRECT_URI``, ``WEBEX_SCOPES``, ``WEBEX_BASE_URL``;
``WEBEX_ACCESS_TOKEN`` selects a direct token (no refresh) and ``WEBEX_TOKEN_FILE`` a
``.webex_token.json``-style file store.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
import webbrowser
from collections.abc import Callable
from pathlib import Path
from time import time as _now  # one global lookup on the cached path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from authlib.integrations.requests_client import OAuth2Session

from .callback import parse_callback_url
from .errors import CallbackError, ConfigError, ReauthorizationRequired
from .keeper import CacheSlot, DirectTokenWarning, Keeper, legacy_token_dict
from .oauth import AuthorizationRequest, WebexOAuth
from .refresh import DEFAULT_LEEWAY
from .settings import ACCOUNT_ENV, DEFAULT_ACCOUNT, StoreSource
from .store import TokenStore, redact_url
from .token import Token

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["DEFAULT_ACCOUNT", "LEGACY_TOKEN_FILE", "DirectTokenWarning", "WebexClient"]

log = logging.getLogger(__name__)

#: The environment variable naming the account a :class:`WebexClient` uses.
ACCOUNT_VARIABLE: Final = ACCOUNT_ENV
#: The token file the legacy ``WebexClient`` kept in the current directory.
LEGACY_TOKEN_FILE: Final = ".webex_token.json"  # noqa: S105 - a file name


class WebexClient:
    """A Webex client whose access token is always valid, kept in a token store.

    Args:
        auto_auth: when no usable token is stored, log in at once (browser and loopback
            callback, see :meth:`WebexOAuth.login`); False leaves that to :meth:`login`
            or :meth:`build_authorization_url` and :meth:`exchange_code_for_token`.
        store: a :class:`~webex_tokens.store.TokenStore`, a store URL or the name of a
            configured store; default: the default store of the settings
            (``WEBEX_TOKENS_STORE``, else ``WEBEX_TOKEN_FILE``, else ``default_store``,
            else the embedded SQLite store). A store opened here is closed by :meth:`close`.
        name: the account; default: ``WEBEX_TOKENS_ACCOUNT``, else ``[integration]
            account``, else the only account in the store, else ``default`` if stored;
            after a first login into an empty store, the email of the person who logged in.
        oauth: the OAuth client; default: built from ``WEBEX_CLIENT_ID`` and friends
            when first needed.
        leeway: seconds before expiry from which the token is refreshed.
        open_browser: how :meth:`login` opens the authorization URL (None: print it
            and read the pasted redirect URL).
        settings: the settings to use instead of loading them.

    ``WEBEX_ACCESS_TOKEN`` without an explicit ``store`` or ``oauth`` selects a direct
    token: used as is, never refreshed, with a :class:`DirectTokenWarning`.

    Raises:
        ConfigError: several accounts are stored and none is named, or the OAuth
            credentials are missing when a login is needed.
        OAuthError: the automatic login failed.
        StoreError: the store cannot be opened or read.
    """

    def __init__(
        self,
        auto_auth: bool = True,
        store: TokenStore | str | None = None,
        name: str | None = None,
        oauth: WebexOAuth | None = None,
        *,
        leeway: float = DEFAULT_LEEWAY,
        open_browser: Callable[[str], bool] | None = webbrowser.open,
        settings: Settings | None = None,
    ) -> None:
        self._keeper = Keeper(
            store, oauth=oauth, settings=settings, leeway=leeway, direct_token=True
        )
        self._explicit_name = name
        self._open_browser = open_browser
        self._lock = threading.RLock()
        self._pending: AuthorizationRequest | None = None
        self._session: _StoreSession | None = None
        self._name: str | None = None
        self._slot = CacheSlot()
        try:
            direct = self._keeper.direct_token
            if direct is not None:
                self._bind(name or DEFAULT_ACCOUNT)
                self._keeper.remember(name or DEFAULT_ACCOUNT, direct)
                return
            self._bind(self._keeper.default_account(name))
            if self._name is None:
                self._warn_if_legacy_file_ignored()
            if auto_auth:
                try:
                    self._token()
                except ReauthorizationRequired:
                    self.login()
        except BaseException:
            self.close()
            raise

    def _warn_if_legacy_file_ignored(self) -> None:
        """The default store is empty while the legacy token file sits, unread, here."""
        choice = self._keeper.choice
        if choice is None or choice.source not in (StoreSource.DEFAULT_STORE, StoreSource.EMBEDDED):
            return
        if not Path(LEGACY_TOKEN_FILE).is_file():
            return
        message = (
            f"found {LEGACY_TOKEN_FILE} from the legacy WebexClient, which is not read by "
            f"default; keep using it with WEBEX_TOKEN_FILE={LEGACY_TOKEN_FILE}, or copy it "
            f"into the store with: webex-tokens import {LEGACY_TOKEN_FILE}"
        )
        log.warning("%s", message)
        warnings.warn(message, UserWarning, stacklevel=3)

    def _bind(self, name: str | None) -> None:
        self._name = name
        self._slot = self._keeper.slot(name) if name is not None else CacheSlot()

    # -- store and account ------------------------------------------------------------

    @property
    def keeper(self) -> Keeper:
        """The account engine this client is bound to."""
        return self._keeper

    @property
    def store(self) -> TokenStore:
        """The token store in use."""
        return self._keeper.store

    @property
    def name(self) -> str | None:
        """The account in use (None until the first login when the store was empty)."""
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

    @property
    def token_file(self) -> Path | None:
        """The token file when the store is a file store, else None.

        Setting it switches to a file store at that path (legacy ``.webex_token.json``
        files are read as the account ``default``); the token is read from it on next use.
        """
        from .backends.file import FileStore

        store = self._keeper.store
        return Path(store.path) if isinstance(store, FileStore) else None

    @token_file.setter
    def token_file(self, path: str | os.PathLike[str]) -> None:
        from .backends.file import FileStore

        with self._lock:
            self._keeper.use_store(FileStore(path))
            self._session = None
            if self._keeper.direct_token is None:
                self._bind(self._keeper.default_account(self._explicit_name))
            else:
                self._bind(self._name)

    # -- tokens -----------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        """A valid access token, refreshed single-flight through the store when due.

        A cached token that is not due is returned without touching the store or the
        network.

        Raises:
            ReauthorizationRequired: no token is stored, or it can no longer be
                refreshed; the message gives the command that logs in again.
            TokenEndpointError: the refresh failed for another reason.
            ConfigError: a refresh is due but the OAuth credentials are missing.
        """
        entry = self._slot.entry
        if entry is not None and _now() < entry[1]:
            return entry[0].access_token
        return self._token().access_token

    @property
    def token(self) -> Token:
        """The current :class:`~webex_tokens.token.Token` (valid; refreshed when due)."""
        entry = self._slot.entry
        if entry is not None and _now() < entry[1]:
            return entry[0]
        return self._token()

    def _token(self) -> Token:
        name = self._name
        if name is None:
            raise self._keeper.missing(None)
        return self._keeper.current(name)

    def login(
        self,
        *,
        timeout: float = 300,
        port: int | None = None,
        prompt: Callable[[str], str] | None = None,
    ) -> Token:
        """Log in through the browser (see :meth:`WebexOAuth.login`) and store the token.

        The token is stored under the client's account name, or (on a first login into
        an empty store) under the email of the person who logged in (see
        :func:`~webex_tokens.keeper.login_name`).

        Raises:
            ConfigError: the OAuth credentials are missing, or a direct token is in use.
            OAuthError: the login failed (see :meth:`WebexOAuth.login`).
        """
        name, token = self._keeper.login(
            name=self._explicit_name,
            current=self._name,
            open_browser=self._open_browser,
            timeout=timeout,
            port=port,
            prompt=prompt,
        )
        with self._lock:
            self._bind(name)
        return token

    # -- the legacy API ---------------------------------------------------------------

    def build_authorization_url(self) -> str:
        """Start a login by hand: the URL to open in a browser.

        Pass the code Webex sends back to :meth:`exchange_code_for_token`; the state and
        PKCE verifier of this request are kept for that.

        Raises:
            ConfigError: the OAuth credentials are missing.
        """
        self._pending = self.oauth.authorization_request()
        return self._pending.url

    _build_authorization_url = build_authorization_url

    def exchange_code_for_token(self, code: str) -> dict[str, Any]:
        """Finish a login started with :meth:`build_authorization_url`; store the token.

        Args:
            code: the ``code`` parameter of the redirect (the whole redirect URL is
                accepted too, and its state checked).

        Returns:
            The token as a dict, like the legacy client: ``access_token``,
            ``refresh_token``, ``expires_in``, ``refresh_token_expires_in``,
            ``token_type``, ``scope``.

        Raises:
            CallbackError: :meth:`build_authorization_url` was not called first, or the
                pasted URL does not answer it.
            TokenEndpointError: the code expired or was already used (run the login
                again), or the credentials were refused.
        """
        request = self._pending
        if request is None:
            raise CallbackError(
                "exchange_code_for_token() needs the authorization request it answers: call "
                "build_authorization_url() first, open that URL, then pass the code it yields"
            )
        text = code.strip() if isinstance(code, str) else code
        if isinstance(text, str) and "://" in text and "code=" in text:
            text = parse_callback_url(text, request.state).code
        token = self.oauth.exchange_code(text, request, account=self._explicit_name)
        self._pending = None
        with self._lock:
            self._bind(self._keeper.save_login(token, name=self._explicit_name, current=self._name))
        return legacy_token_dict(token)

    def refresh_access_token(self) -> dict[str, Any]:
        """Refresh the token now (single-flight: another process's fresh token is reused).

        Returns:
            The new token as a dict with ``expires_in``, like the legacy client.

        Raises:
            ConfigError: a direct access token is in use (it cannot be refreshed).
            ReauthorizationRequired: the refresh token expired or was revoked.
            TokenEndpointError: the refresh failed for another reason.
        """
        self._keeper.refuse_direct("refresh the access token")
        if self._name is None:
            raise self._keeper.missing(None)
        return legacy_token_dict(self._keeper.refresh(self._name))

    # -- a token source for the HTTP auth adapters -----------------------------------

    def serves(self, account: str | None) -> str | None:
        """The account an auth adapter built for ``account`` sends tokens of.

        Raises:
            ConfigError: ``account`` is not this client's account (a ``WebexClient``
                serves one account).
        """
        if account is not None and account != self._name:
            raise ConfigError(
                f"a WebexClient serves one account ({self._name!r}), not {account!r}; "
                "use WebexClient(name=...) for that account, or an AsyncWebexClient, "
                "which serves many"
            )
        return self._name

    def token_for(self, account: str | None = None, refused: Token | None = None) -> Token:
        """Blocking: the current token, or (``refused``: a token Webex answered 401 to)
        its replacement, refreshed single-flight unless another process stored one.

        Raises:
            ConfigError: ``account`` is not this client's account, or a direct token was
                refused.
            ReauthorizationRequired, TokenEndpointError: as :attr:`access_token`.
        """
        self.serves(account)
        if refused is None:
            return self.token
        if self._name is None:
            raise self._keeper.missing(None)
        return self._keeper.token_for(self._name, refused)

    # -- HTTP -------------------------------------------------------------------------

    @property
    def session(self) -> OAuth2Session:
        """An Authlib ``OAuth2Session`` sending the current token, refreshed through the store.

        Relative URLs are taken from the API base: ``client.session.get("people/me")``.
        """
        with self._lock:
            if self._session is None:
                self._session = _StoreSession(self)
            return self._session

    def webex_api(self) -> Any:
        """A ``webexpythonsdk.WebexAPI`` using the current access token.

        The SDK keeps the token it was given: call this again for a refreshed one.

        Raises:
            ImportError: webexpythonsdk is not installed (``pip install 'webex-tokens[sdk]'``).
        """
        try:
            from webexpythonsdk import WebexAPI
        except ImportError:
            raise ImportError(
                "WebexClient.webex_api() needs webexpythonsdk, which is not installed; run: "
                "pip install 'webex-tokens[sdk]'"
            ) from None
        return WebexAPI(access_token=self.access_token, base_url=self.base_url + "/")

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Close the session, and the store if this client opened it."""
        if self._session is not None:
            self._session.close()
        self._keeper.close()

    def __enter__(self) -> WebexClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "oauth" if self.using_oauth else "direct token"
        return (
            f"WebexClient(mode={mode!r}, store={redact_url(self.store.url)!r}, name={self._name!r})"
        )


class _StoreSession(OAuth2Session):  # type: ignore[misc] # Authlib ships no type hints
    """An Authlib session whose token comes from a :class:`WebexClient` before each request,
    so refreshes go through the store (single-flight) instead of Authlib's own refresh."""

    def __init__(self, client: WebexClient) -> None:
        super().__init__(client_id=None, token=None)
        self._webex_client = client

    def ensure_active_token(self, token: Any = None) -> bool:
        fresh = self._webex_client.token
        current: Any = getattr(self, "token", None)
        if current is None or current.get("access_token") != fresh.access_token:
            self.token = fresh.to_authlib()
        return True

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if not urlsplit(url).scheme:
            url = self._webex_client.base_url + "/" + url.lstrip("/")
        if not kwargs.get("withhold_token") and kwargs.get("auth") is None:
            self.ensure_active_token()
        return super().request(method, url, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<webex-tokens session for {self._webex_client!r}>"
