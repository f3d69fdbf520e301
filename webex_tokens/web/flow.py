"""The web login flow shared by the Starlette/FastAPI routes and the Flask blueprint.

One implementation of ``/oauth/webex/login``, ``/oauth/webex/callback``,
``/oauth/webex/logout`` and ``/health``, framework-neutral: :class:`LoginFlow` takes the
query string and the cookies of a request and returns a :class:`WebResponse` (status,
body, headers, cookies) that each framework turns into its own response.

How a browser is bound to its login:

- ``/login`` makes an :class:`~webex_tokens.oauth.AuthorizationRequest` (fresh ``state``
  and PKCE verifier) and keeps it **server-side**, in :class:`PendingLogins` keyed by
  ``state`` (bounded in size, expiring), together with the browser's session id;
- the browser gets a cookie signed with the app's secret key (itsdangerous) that holds
  only that random session id: never the verifier, the state or a token;
- ``/callback`` accepts a ``state`` only from the browser that started that login, and
  only once: the pending request is taken out before the code is exchanged, so a
  replayed callback finds nothing.

After a successful callback the token is stored under the account name (the email from
``/people/me``, or what the app's hook returns), and the browser gets a second signed
cookie naming that account, read back by ``current_account``.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

try:
    from itsdangerous import BadSignature, URLSafeTimedSerializer
except ImportError:  # pragma: no cover - exercised without the extras
    raise ImportError(
        "webex_tokens.web needs itsdangerous, which is not installed; run: "
        "pip install 'webex-tokens[fastapi]' (or 'webex-tokens[flask]')"
    ) from None

from ..callback import PAGE_HEADERS, handle_callback_query, render_page
from ..errors import (
    ConfigError,
    OAuthError,
    TokenEndpointError,
    WebexTokensError,
)
from ..oauth import AuthorizationRequest, WebexOAuth
from ..store import TokenStore, validate_name
from ..token import Token

__all__ = [
    "ACCOUNT_COOKIE",
    "DEFAULT_PREFIX",
    "LOGIN_COOKIE",
    "SECRET_KEY_ENV",
    "Cookie",
    "LoginFlow",
    "PendingLogins",
    "WebResponse",
]

log = logging.getLogger(__name__)

#: Where the routes live by default: ``/oauth/webex/login`` and ``/oauth/webex/callback``.
DEFAULT_PREFIX: Final = "/oauth/webex"
#: The cookie binding a browser to its logins in progress (a signed random id).
LOGIN_COOKIE: Final = "webex_tokens_login"
#: The cookie naming the account a browser logged in as (signed).
ACCOUNT_COOKIE: Final = "webex_tokens_account"
#: The variable read for the cookie-signing key when none is passed.
SECRET_KEY_ENV: Final = "WEBEX_TOKENS_SECRET_KEY"  # noqa: S105 - a variable's name

_MIN_SECRET_LENGTH: Final = 16
_LOGIN_SALT: Final = "webex-tokens.login"
_ACCOUNT_SALT: Final = "webex-tokens.account"


@dataclasses.dataclass(frozen=True)
class Cookie:
    """A cookie to set (``value`` not None) or to clear (``value`` None)."""

    name: str
    value: str | None
    path: str
    max_age: int
    secure: bool
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] = "lax"


@dataclasses.dataclass(frozen=True)
class WebResponse:
    """A framework-neutral answer: turn it into a Starlette or Flask response.

    Attributes:
        status: the HTTP status.
        body: the body (UTF-8 HTML or JSON).
        headers: headers to send, ``Location`` included for a redirect.
        cookies: cookies to set or clear.
        account: the account a successful callback stored the token under.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    cookies: tuple[Cookie, ...] = ()
    account: str | None = None


@dataclasses.dataclass
class _Pending:
    request: AuthorizationRequest
    browser: str
    expires: float


class PendingLogins:
    """Authorization requests waiting for their callback, keyed by ``state``.

    Thread-safe, at most ``max_size`` entries (the oldest is dropped to make room) and
    each kept ``ttl`` seconds. They live in this process's memory: run the app as one
    process, or route a browser's requests to the same process (sticky sessions).

    Args:
        max_size: how many logins may be in progress at once.
        ttl: seconds a login may take from ``/login`` to the callback.
        clock: the monotonic clock (for tests).

    Raises:
        ConfigError: ``max_size`` or ``ttl`` is not positive.
    """

    def __init__(
        self,
        max_size: int = 1000,
        ttl: float = 600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not max_size >= 1 or not ttl > 0:
            raise ConfigError(
                f"max_pending must be 1 or more and pending_ttl a positive number of seconds, "
                f"not {max_size!r} and {ttl!r}"
            )
        self.max_size = int(max_size)
        self.ttl = float(ttl)
        self._clock = clock
        self._entries: collections.OrderedDict[str, _Pending] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._entries)

    def _purge(self) -> None:
        now = self._clock()
        while self._entries:
            state, oldest = next(iter(self._entries.items()))
            if oldest.expires > now:
                break
            del self._entries[state]

    def add(self, request: AuthorizationRequest, browser: str) -> None:
        """Keep ``request`` for the browser whose session id is ``browser``."""
        with self._lock:
            self._purge()
            while len(self._entries) >= self.max_size:
                self._entries.popitem(last=False)
                log.info("too many logins in progress: the oldest one was dropped")
            self._entries[request.state] = _Pending(request, browser, self._clock() + self.ttl)

    def take(self, state: str, browser: str | None) -> AuthorizationRequest | str:
        """Remove and return the request for ``state`` if ``browser`` started it.

        Returns:
            The request, or why not: ``"unknown"`` (never issued, expired, dropped or
            already used) or ``"other-browser"`` (then it stays, for its own browser).
        """
        with self._lock:
            self._purge()
            entry = self._entries.get(state)
            if entry is None:
                return "unknown"
            if browser is None or not hmac.compare_digest(browser.encode(), entry.browser.encode()):
                return "other-browser"
            del self._entries[state]
            return entry.request


class LoginFlow:
    """Log users of a web app in with Webex and keep each one's token in a store.

    Args:
        store: where tokens are stored (a :class:`~webex_tokens.store.TokenStore`, a store
            URL or a configured store name; default: the default store of the settings).
        oauth: the integration (default: from ``WEBEX_CLIENT_ID`` and friends). Its
            redirect URI must point at this app's callback route.
        secret_key: the key signing the cookies (at least 16 characters); default:
            ``WEBEX_TOKENS_SECRET_KEY``, else a key generated for this process (with a
            warning: logins then do not survive a restart).
        prefix: the path under which the routes live (``/oauth/webex``).
        success_url: where to send the browser after a successful login (default: a page
            saying who logged in).
        max_pending: how many logins may be in progress at once.
        pending_ttl: seconds a login may take.
        account_max_age: seconds the browser stays signed in as its account (the
            account cookie's lifetime).
        cookie_secure: mark cookies ``Secure`` (default: when the redirect URI is https).

    Raises:
        ConfigError: a setting is invalid, the credentials are missing, or the redirect
            URI's path is not ``{prefix}/callback``.
    """

    def __init__(
        self,
        store: TokenStore | str | None = None,
        oauth: WebexOAuth | None = None,
        *,
        secret_key: str | bytes | None = None,
        prefix: str = DEFAULT_PREFIX,
        success_url: str | None = None,
        max_pending: int = 1000,
        pending_ttl: float = 600.0,
        account_max_age: int = 7 * 24 * 3600,
        cookie_secure: bool | None = None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.endswith("/"):
            raise ConfigError(
                f"prefix must be a path starting with / and not ending with /, such as "
                f"{DEFAULT_PREFIX}, not {prefix!r}"
            )
        if isinstance(store, str) or store is None:
            from ..registry import open_store

            store = open_store(store)
        self.store: TokenStore = store
        self.oauth = oauth if oauth is not None else WebexOAuth.from_settings()
        self.prefix = prefix
        self.login_path = prefix + "/login"
        self.callback_path = prefix + "/callback"
        self.logout_path = prefix + "/logout"
        self.success_url = success_url
        self.account_max_age = int(account_max_age)
        redirect = urlsplit(self.oauth.redirect_uri)
        if redirect.path != self.callback_path:
            raise ConfigError(
                f"the redirect URI {self.oauth.redirect_uri} does not end in the callback "
                f"route {self.callback_path}; set WEBEX_REDIRECT_URI to this app's "
                f"http(s)://HOST:PORT{self.callback_path} (registered with the integration), "
                "or change the prefix"
            )
        self.cookie_secure = redirect.scheme == "https" if cookie_secure is None else cookie_secure
        self.pending = PendingLogins(max_pending, pending_ttl)
        key = _secret_key(secret_key)
        self._login_signer = URLSafeTimedSerializer(key, salt=_LOGIN_SALT)
        self._account_signer = URLSafeTimedSerializer(key, salt=_ACCOUNT_SALT)
        _redact_request_logs(self.callback_path)

    # -- routes -----------------------------------------------------------------------

    def login(self, login_cookie: str | None) -> WebResponse:
        """``GET {prefix}/login``: redirect to Webex; keep the request server-side.

        Args:
            login_cookie: the value of the :data:`LOGIN_COOKIE` cookie, if any (a browser
                with a valid one keeps its session id, so several tabs can log in).
        """
        browser = self._browser(login_cookie) or secrets.token_urlsafe(32)
        request = self.oauth.authorization_request()
        self.pending.add(request, browser)
        cookie = Cookie(
            LOGIN_COOKIE,
            self._login_signer.dumps(browser),
            path=self.prefix,  # sent to the login and callback routes only
            max_age=int(self.pending.ttl),
            secure=self.cookie_secure,
        )
        headers = (("Location", request.url), ("Cache-Control", "no-store"))
        return WebResponse(302, b"", headers, (cookie,))

    def callback(
        self,
        query: str,
        login_cookie: str | None,
        account_name: Callable[[Token], str] | None = None,
    ) -> WebResponse:
        """``GET {prefix}/callback``: check, exchange the code, store the token.

        Blocking (the code exchange and the store): async frameworks run it in a worker
        thread.

        Args:
            query: the raw query string of the request.
            login_cookie: the value of the :data:`LOGIN_COOKIE` cookie, if any.
            account_name: the app's hook naming the account from the new token (it has
                ``account``, the email from ``/people/me``); default: that email.

        Returns:
            200 (or 303 to ``success_url``) with the account cookie on success; 400 when
            the callback is unknown, used, expired, from another browser, declined or
            malformed; 502 when Webex refused the exchange; 500 when the store failed.
        """
        state = _single(query, "state")
        browser = self._browser(login_cookie)
        taken = self.pending.take(state, browser) if state else "unknown"
        if taken == "unknown":
            log.info("callback refused: its state is unknown, expired or already used")
            return self._page(
                400,
                "Sign-in link expired",
                "This sign-in response is unknown, expired or was already used. "
                "Start the sign-in again.",
            )
        if taken == "other-browser" and browser is None:
            origin = urlsplit(self.oauth.redirect_uri)
            log.warning(
                "callback refused: no valid login cookie came with it; if the login was "
                "opened at another host name than the redirect URI's (%s), open it at %s://%s",
                origin.hostname,
                origin.scheme,
                origin.netloc,
            )
            return self._page(
                400,
                "Sign-in cookie missing",
                "This sign-in response came without the cookie of the browser that started "
                f"it. Start the sign-in again from this browser, at {origin.scheme}://"
                f"{origin.netloc}{self.login_path}.",
            )
        if taken == "other-browser":
            log.warning("callback refused: its state belongs to a login of another browser")
            return self._page(
                400,
                "Sign-in link not recognised",
                "This sign-in response belongs to a sign-in started in another browser. "
                "Start the sign-in again from this browser.",
            )
        assert isinstance(taken, AuthorizationRequest)
        outcome = handle_callback_query(query, taken.state)
        if outcome.error is not None:
            log.info("callback refused: %s", outcome.error)
            return WebResponse(outcome.status, outcome.page, PAGE_HEADERS)
        assert outcome.result is not None
        try:
            token = self.oauth.exchange_code(outcome.result.code, taken)
            name = validate_name(account_name(token) if account_name is not None else token.account)
            self.store.put(name, token.replace(account=token.account or name))
        except TokenEndpointError as exc:
            log.warning("login failed at the token endpoint: %s", exc)
            return self._page(502, "Sign-in failed", f"{exc}.")
        except OAuthError as exc:
            log.warning("login failed: %s", exc)
            return self._page(400, "Sign-in failed", f"{exc}.")
        except WebexTokensError as exc:  # the store, or the name the app's hook chose
            log.error("login failed: the token could not be stored: %s", exc)
            return self._page(500, "Sign-in failed", "The token could not be stored.")
        log.info("logged in %r: token %s stored", name, token.fingerprint)
        cookie = Cookie(
            ACCOUNT_COOKIE,
            self._account_signer.dumps(name),
            path="/",
            max_age=self.account_max_age,
            secure=self.cookie_secure,
        )
        if self.success_url:
            headers = (("Location", self.success_url), ("Cache-Control", "no-store"))
            return WebResponse(303, b"", headers, (cookie,), account=name)
        page = render_page(
            "Webex sign-in complete",
            f"You are signed in as {name}. You can close this tab and return to the app.",
        )
        return WebResponse(200, page, PAGE_HEADERS, (cookie,), account=name)

    def logout(self) -> WebResponse:
        """``GET {prefix}/logout``: forget the browser's account (the token stays stored)."""
        response = self._page(200, "Signed out", "This browser is no longer signed in.")
        cleared = Cookie(ACCOUNT_COOKIE, None, path="/", max_age=0, secure=self.cookie_secure)
        return dataclasses.replace(response, cookies=(cleared,))

    def health(self) -> WebResponse:
        """``GET /health``: ``{"status": "ok"}``."""
        headers = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))
        return WebResponse(200, b'{"status": "ok"}', headers)

    def current_account(self, account_cookie: str | None) -> str | None:
        """The account the browser logged in as, from its :data:`ACCOUNT_COOKIE`, or None
        (no cookie, a forged one, or one older than ``account_max_age``)."""
        return self._unsign(self._account_signer, account_cookie, self.account_max_age)

    # -- helpers ----------------------------------------------------------------------

    def _browser(self, login_cookie: str | None) -> str | None:
        return self._unsign(self._login_signer, login_cookie, int(self.pending.ttl))

    @staticmethod
    def _unsign(signer: URLSafeTimedSerializer, value: str | None, max_age: int) -> str | None:
        if not value:
            return None
        try:
            loaded: Any = signer.loads(value, max_age=max_age)
        except BadSignature:  # also SignatureExpired
            return None
        return loaded if isinstance(loaded, str) else None

    def _page(self, status: int, title: str, message: str) -> WebResponse:
        if status >= 400:
            message += f" Sign in again: {self.login_path}"
        return WebResponse(status, render_page(title, message), PAGE_HEADERS)


def _single(query: str, field: str) -> str | None:
    """The one value of ``field`` in ``query``, or None (missing or repeated)."""
    try:
        values = parse_qs(query, keep_blank_values=True, max_num_fields=100).get(field, [])
    except ValueError:
        return None
    return values[0] if len(values) == 1 and values[0] else None


def _secret_key(secret_key: str | bytes | None) -> str | bytes:
    if secret_key is None:
        secret_key = os.environ.get(SECRET_KEY_ENV) or None
        source = SECRET_KEY_ENV
    else:
        source = "secret_key"
    if secret_key is None:
        log.warning(
            "no secret key for signing the login cookies: using one generated for this "
            "process, so logins in progress and signed-in browsers are forgotten when it "
            "restarts; pass secret_key= or set %s",
            SECRET_KEY_ENV,
        )
        return secrets.token_urlsafe(32)
    if not isinstance(secret_key, (str, bytes)) or len(secret_key) < _MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{source} must be at least {_MIN_SECRET_LENGTH} characters of text; generate one "
            'with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return secret_key


class _RedactQueries(logging.Filter):
    """Replace the query of the callback paths in web servers' request logs: it holds
    the authorization code and the state."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, path: str) -> None:
        self.paths.add(path)
        alternatives = "|".join(re.escape(p) for p in sorted(self.paths, key=len, reverse=True))
        self._pattern = re.compile(rf"({alternatives})\?[^\s\"']*")

    def _redact(self, value: Any) -> Any:
        if isinstance(value, str) and self._pattern is not None:
            return self._pattern.sub(r"\1?[redacted]", value)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(arg) for arg in record.args)
        return True


_REDACT = _RedactQueries()
#: The request loggers of the servers the routes are tested with (others: see the docs).
_REQUEST_LOGGERS: Final = ("uvicorn.access", "werkzeug")


def _redact_request_logs(path: str) -> None:
    _REDACT.add(path)
    for name in _REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)
