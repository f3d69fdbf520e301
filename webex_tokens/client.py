"""WebexClient: the friendly facade, compatible with the legacy guide's ``WebexClient``.

::

    client = WebexClient(auto_auth=True)     # logs in through the browser when needed
    requests.get(url, headers={"Authorization": f"Bearer {client.access_token}"})
    client.session.get("people/me")          # Authlib session, refreshing through the store
    api = client.webex_api()                 # webexpythonsdk.WebexAPI

Configuration comes from the environment and ``.env`` like the legacy client:
``WEBEX_CLIENT_ID``, ``WEBEX_CLIENT_SECRET``, ``WEBEX_REDIRECT_URI``, ``WEBEX_SCOPES``,
``WEBEX_BASE_URL``; ``WEBEX_ACCESS_TOKEN`` selects a direct token (no refresh) and
``WEBEX_TOKEN_FILE`` a ``.webex_token.json``-style file store. Tokens live in any
:class:`~webex_tokens.store.TokenStore`; refreshes are single-flight through
:func:`~webex_tokens.refresh.ensure_fresh`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
import webbrowser
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from authlib.integrations.requests_client import OAuth2Session

from .callback import parse_callback_url
from .errors import CallbackError, ConfigError, ReauthorizationRequired
from .oauth import AuthorizationRequest, WebexOAuth, login_command
from .refresh import DEFAULT_LEEWAY, ensure_fresh
from .store import TokenStore, redact_url
from .token import Token

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["DEFAULT_ACCOUNT", "LEGACY_TOKEN_FILE", "DirectTokenWarning", "WebexClient"]

log = logging.getLogger(__name__)

#: The account used when nothing else names one (also the legacy file's only account).
DEFAULT_ACCOUNT: Final = "default"
#: The token file the legacy ``WebexClient`` kept in the current directory.
LEGACY_TOKEN_FILE: Final = ".webex_token.json"  # noqa: S105 - a file name
#: The environment variable naming the account a :class:`WebexClient` uses.
ACCOUNT_VARIABLE: Final = "WEBEX_TOKENS_ACCOUNT"

_DIRECT_MODE_WARNING: Final = (
    "Using direct access token (no refresh support): WEBEX_ACCESS_TOKEN is set, and direct "
    "tokens expire after 12 hours; for long-term use, switch to OAuth2 with "
    "WEBEX_CLIENT_ID/SECRET (and unset WEBEX_ACCESS_TOKEN)"
)


class DirectTokenWarning(UserWarning):
    """A direct access token (``WEBEX_ACCESS_TOKEN``) is in use: it cannot be refreshed."""


class WebexClient:
    """A Webex client whose access token is always valid, kept in a token store.

    Args:
        auto_auth: when no usable token is stored, log in at once (browser and loopback
            callback, see :meth:`WebexOAuth.login`); False leaves that to :meth:`login`
            or :meth:`build_authorization_url` and :meth:`exchange_code_for_token`.
        store: a :class:`~webex_tokens.store.TokenStore`, a store URL or the name of a
            configured store; default: the ``WEBEX_TOKEN_FILE`` file if set, else the
            default store of the settings. A store opened here is closed by :meth:`close`.
        name: the account; default: the only account in the store, else
            ``WEBEX_TOKENS_ACCOUNT``, else ``default`` if stored; after a first login,
            the email of the person who logged in.
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
        if settings is None:
            from .settings import load_settings

            settings = load_settings()
        self._settings = settings
        integration = settings.integration
        self._oauth = oauth
        self._leeway = float(leeway)
        self._open_browser = open_browser
        self._explicit_name = name
        self._lock = threading.RLock()
        self._cached: tuple[Token, float] | None = None
        self._pending: AuthorizationRequest | None = None
        self._session: _StoreSession | None = None
        self._direct = bool(integration.access_token) and store is None and oauth is None
        self._store, self._owns_store = self._open(store, integration.token_file)
        self._name: str | None = name
        if self._direct:
            assert integration.access_token is not None
            self._name = name or DEFAULT_ACCOUNT
            self._remember(Token(access_token=integration.access_token, account=name))
            if integration.client_id:
                message = _DIRECT_MODE_WARNING + " (WEBEX_CLIENT_ID is ignored meanwhile)"
            else:
                message = _DIRECT_MODE_WARNING
            log.warning("%s", message)
            warnings.warn(message, DirectTokenWarning, stacklevel=2)
            return
        try:
            self._name = self._resolve_name()
            if self._name is None and store is None and not integration.token_file:
                self._warn_about_legacy_file()
            if auto_auth:
                try:
                    self._fresh_token()
                except ReauthorizationRequired:
                    self.login()
        except BaseException:
            self.close()
            raise

    # -- store and account ------------------------------------------------------------

    @staticmethod
    def _open(store: TokenStore | str | None, token_file: str | None) -> tuple[TokenStore, bool]:
        if store is None and token_file:
            from .backends.file import FileStore

            return FileStore(token_file), True
        if isinstance(store, str) or store is None:
            from .registry import open_store

            return open_store(store), True
        return store, False

    def _resolve_name(self) -> str | None:
        if self._explicit_name is not None:
            return self._explicit_name
        names = self._store.names()
        if len(names) == 1:
            return names[0]
        chosen = os.environ.get(ACCOUNT_VARIABLE) or getattr(
            self._settings, "default_account", None
        )
        if chosen:
            return str(chosen)
        if not names:
            return None  # the first login names it
        if DEFAULT_ACCOUNT in names:
            return DEFAULT_ACCOUNT
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        raise ConfigError(
            f"the store {redact_url(self._store.url)} holds {len(names)} accounts ({shown}); "
            f"choose one with WebexClient(name=...) or the {ACCOUNT_VARIABLE} variable"
        )

    def _warn_about_legacy_file(self) -> None:
        if os.environ.get("WEBEX_TOKENS_STORE") or not Path(LEGACY_TOKEN_FILE).is_file():
            return
        message = (
            f"found {LEGACY_TOKEN_FILE} from the legacy WebexClient, which is not read by "
            f"default; keep using it with WEBEX_TOKEN_FILE={LEGACY_TOKEN_FILE}, or copy it "
            f"into the store with: webex-tokens import {LEGACY_TOKEN_FILE}"
        )
        log.warning("%s", message)
        warnings.warn(message, UserWarning, stacklevel=3)

    @property
    def store(self) -> TokenStore:
        """The token store in use."""
        return self._store

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
        return not self._direct

    @property
    def using_direct_token(self) -> bool:
        """True when ``WEBEX_ACCESS_TOKEN`` is used as is (no refresh)."""
        return self._direct

    @property
    def token_file(self) -> Path | None:
        """The token file when the store is a file store, else None.

        Setting it switches to a file store at that path (legacy ``.webex_token.json``
        files are read as the account ``default``); the token is read from it on next use.
        """
        path = getattr(self._store, "path", None)
        from .backends.file import FileStore

        return Path(path) if isinstance(self._store, FileStore) and path is not None else None

    @token_file.setter
    def token_file(self, path: str | os.PathLike[str]) -> None:
        from .backends.file import FileStore

        new = FileStore(path)
        with self._lock:
            if self._owns_store:
                self._store.close()
            self._store, self._owns_store = new, True
            if not self._direct:
                self._cached = None
                self._session = None
                self._name = self._resolve_name()

    # -- tokens -----------------------------------------------------------------------

    def _remember(self, token: Token) -> Token:
        deadline = (
            token.expires_at.timestamp() - self._leeway
            if token.expires_at is not None
            else math.inf
        )
        self._cached = (token, deadline)  # one assignment: readers never see half of it
        return token

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
        cached = self._cached
        if cached is not None and time.time() < cached[1]:
            return cached[0].access_token
        return self._fresh_token().access_token

    @property
    def token(self) -> Token:
        """The current :class:`~webex_tokens.token.Token` (valid; refreshed when due)."""
        cached = self._cached
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        return self._fresh_token()

    def _fresh_token(self) -> Token:
        with self._lock:
            cached = self._cached
            if cached is not None and time.time() < cached[1]:
                return cached[0]
            if self._name is None:
                raise ReauthorizationRequired(
                    f"no token is stored in {redact_url(self._store.url)} yet; log in with "
                    f"client.login() or: {login_command(None)}"
                )
            stored = self._store.get(self._name)
            if stored is not None and not stored.is_expired(leeway=self._leeway):
                return self._remember(stored)
            if stored is None:
                raise ReauthorizationRequired(
                    f"no token is stored for {self._name!r} in {redact_url(self._store.url)}; "
                    f"log in with client.login() or: {login_command(self._name)}",
                    account=self._name,
                )
            token = ensure_fresh(
                self._store, self._name, self.oauth, leeway=self._leeway, seen=stored
            )
            return self._remember(token)

    def login(
        self,
        *,
        timeout: float = 300,
        port: int | None = None,
        prompt: Callable[[str], str] | None = None,
    ) -> Token:
        """Log in through the browser (see :meth:`WebexOAuth.login`) and store the token.

        The token is stored under the client's account name, or (on a first login into
        an empty store) under the email of the person who logged in.

        Raises:
            ConfigError: the OAuth credentials are missing, or a direct token is in use.
            OAuthError: the login failed (see :meth:`WebexOAuth.login`).
        """
        self._refuse_direct("log in")
        token = self.oauth.login(
            open_browser=self._open_browser,
            timeout=timeout,
            account=self._explicit_name,
            port=port,
            prompt=prompt,
        )
        return self._save(token)

    def _save(self, token: Token) -> Token:
        with self._lock:
            # A login again for a known account keeps its name (a legacy file's
            # "default" stays "default"); a first login is named after the person.
            name = self._name or token.account or DEFAULT_ACCOUNT
            self._store.put(name, token)
            self._name = name
            return self._remember(token)

    def _refuse_direct(self, what: str) -> None:
        if self._direct:
            raise ConfigError(
                f"cannot {what}: a direct access token (WEBEX_ACCESS_TOKEN) is in use and has "
                "no refresh support; switch to OAuth2: unset WEBEX_ACCESS_TOKEN, set "
                "WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET, and log in"
            )

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
        return _token_dict(self._save(token))

    def refresh_access_token(self) -> dict[str, Any]:
        """Refresh the token now (single-flight: another process's fresh token is reused).

        Returns:
            The new token as a dict with ``expires_in``, like the legacy client.

        Raises:
            ConfigError: a direct access token is in use (it cannot be refreshed).
            ReauthorizationRequired: the refresh token expired or was revoked.
            TokenEndpointError: the refresh failed for another reason.
        """
        self._refuse_direct("refresh the access token")
        with self._lock:
            if self._name is None:
                raise ReauthorizationRequired(
                    f"no token is stored yet; log in with client.login() or: {login_command(None)}"
                )
            cached = self._cached
            token = ensure_fresh(
                self._store,
                self._name,
                self.oauth,
                force=True,
                leeway=self._leeway,
                seen=cached[0] if cached else None,
            )
            return _token_dict(self._remember(token))

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
        """Close the store if this client opened it."""
        if self._owns_store:
            self._store.close()

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
        mode = "direct token" if self._direct else "oauth"
        return (
            f"WebexClient(mode={mode!r}, store={redact_url(self._store.url)!r}, "
            f"name={self._name!r})"
        )


def _token_dict(token: Token) -> dict[str, Any]:
    """The legacy client's token dict (the token endpoint's answer, plus ``saved_at``)."""
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
