"""The web login flow shared by the Starlette/FastAPI routes and the Flask blueprint.

One implementation of ``/oauth/webex/login``, ``/oauth/webex/callback``,
``/oauth/webex/logout`` and ``/health``, framework-neutral: :class:`LoginFlow` takes the
query string and the cookies of a request and returns a :class:`WebResponse` (status,
body, headers, cookies) that each framework turns into its own response.

Nothing of a login in progress is kept in the server, so nothing there can be flooded,
and any worker or host holding the same secret key can finish a login another started:

- ``/login`` makes an :class:`~webex_tokens.oauth.AuthorizationRequest` (fresh ``state``
  and PKCE verifier) and a fresh random session id, and seals them with the time into a
  cookie of that login's own, named for its state (:meth:`LoginFlow.login_cookie_name`),
  encrypted and authenticated under a key derived from the secret key
  (:mod:`webex_tokens.web.cookies`). Several tabs each have theirs; a browser keeps at
  most ``max_logins_per_browser``, the oldest cleared first.
- ``/callback`` reads only the cookie named for the ``state`` in its query, opens it,
  checks its age, compares its state with the query's in constant time and clears it,
  whatever happens next: each login cookie is used once. The browser that started the
  login is the one holding that cookie; it is ``HttpOnly``, ``SameSite=Lax`` and, on
  https, ``__Host-`` prefixed, so no other site, sibling domain or plain-HTTP answer can
  plant one. Then the request is rebuilt and the code exchanged (with the verifier only
  this cookie held).
- A successful callback stores the token under the account name and gives the browser
  an account cookie, sealed under another derived key, naming the account and the
  login's session id. :meth:`LoginFlow.current_account` opens it, checks its age and
  asks the session store whether ``/logout`` ended that session
  (:mod:`webex_tokens.web.sessions`): a store every worker and host shares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from ..callback import PAGE_HEADERS, handle_callback_query, render_page
from ..errors import ConfigError, OAuthError, StoreError, TokenEndpointError, WebexTokensError
from ..journal import default_journal
from ..keeper import login_name
from ..oauth import AuthorizationRequest, WebexOAuth
from ..store import TokenStore
from ..token import Token
from .cookies import Cookie, CookieSealer, LoginTicket, SessionTicket, identity_of
from .failures import describe_failure
from .pending import PendingLogins
from .request_logs import redact_request_logs
from .sessions import SessionRevocations

__all__ = [
    "ACCOUNT_COOKIE",
    "DEFAULT_PREFIX",
    "LOGIN_COOKIE",
    "SECRET_KEY_ENV",
    "Cookie",
    "Cookies",
    "LoginFlow",
    "PendingLogins",
    "WebResponse",
]

log = logging.getLogger(__name__)

#: Where the routes live by default: ``/oauth/webex/login`` and ``/oauth/webex/callback``.
DEFAULT_PREFIX: Final = "/oauth/webex"
#: The start of the name of each login cookie (``webex_tokens_login_<16 hex digits>``;
#: ``__Host-`` before it when the cookies are secure).
LOGIN_COOKIE: Final = "webex_tokens_login"
#: The name of the account cookie (``__Host-webex_tokens_account`` when secure).
ACCOUNT_COOKIE: Final = "webex_tokens_account"
#: The variable read for the secret key when none is passed.
SECRET_KEY_ENV: Final = "WEBEX_TOKENS_SECRET_KEY"  # noqa: S105 - a variable's name

#: What the routes take as a request's cookies: all of them (name -> value); a single
#: cookie's value (the form of earlier releases); or None.
Cookies = Mapping[str, str] | str | None

_MIN_SECRET_LENGTH: Final = 16
_HOST_PREFIX: Final = "__Host-"
#: Seconds a cookie's time may lie in the future: clocks of hosts differ a little.
_CLOCK_SKEW: Final = 60
#: Login cookies of one request looked at, at most (the rest are cleared unread).
_MAX_EXAMINED: Final = 32
_MAX_LOGINS_LIMIT: Final = 10


@dataclasses.dataclass(frozen=True)
class WebResponse:
    """A framework-neutral answer: turn it into a Starlette or Flask response.

    Attributes:
        status: the HTTP status.
        body: the body (UTF-8 HTML or JSON).
        headers: headers to send, ``Location`` included for a redirect.
        cookies: cookies to set or clear.
        account: the account a successful callback stored the token under.
        identity: the verified identity of the person a successful OpenID Connect
            callback signed in (claims ``sub``, ``email``, ``name``...), else None.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    cookies: tuple[Cookie, ...] = ()
    account: str | None = None
    identity: Mapping[str, Any] | None = None


class LoginFlow:
    """Log users of a web app in with Webex and keep each one's token in a store.

    Args:
        store: where tokens are stored (a :class:`~webex_tokens.store.TokenStore`, a store
            URL or a configured store name; default: the default store of the settings).
        oauth: the integration (default: from ``WEBEX_CLIENT_ID`` and friends). Its
            redirect URI must point at this app's callback route.
        secret_key: the key the cookies are encrypted and authenticated under (at least
            16 characters), the same for every worker and host of the app; default:
            ``WEBEX_TOKENS_SECRET_KEY``, else a key generated for this process (with a
            warning: logins then finish only on the process that started them, and do
            not survive a restart).
        prefix: the path under which the routes live (``/oauth/webex``).
        success_url: where to send the browser after a successful login (default: a page
            saying who logged in).
        pending_ttl: seconds a login may take, from ``/login`` to the callback.
        account_max_age: seconds the browser stays signed in as its account (the
            account cookie's lifetime).
        cookie_secure: mark cookies ``Secure`` and give them ``__Host-`` names (default:
            when the redirect URI is https).
        session_store: where ``/logout`` records ended sessions, checked by
            :meth:`current_account`: a TokenStore, a store URL or a configured store
            name, the same for every worker and host of the app, and not the token
            store. Default: ``web-sessions.db`` (SQLite) in the user data directory,
            which the processes of one host share.
        max_logins_per_browser: how many logins one browser may have in progress (tabs);
            starting one more clears the oldest one's cookie.
        max_pending: deprecated and ignored: nothing is kept in the server for a login
            in progress any more.
        clock: the wall clock, seconds since the epoch (for tests).

    Attributes:
        account_cookie: the account cookie's name (``__Host-`` prefixed when secure).
        sessions: the ended sessions (:class:`~webex_tokens.web.sessions.SessionRevocations`).

    Raises:
        ConfigError: a setting is invalid, the credentials are missing, or the redirect
            URI's path is not ``{prefix}/callback``.
        StoreError: the token store or a named session store cannot be opened.
    """

    def __init__(
        self,
        store: TokenStore | str | None = None,
        oauth: WebexOAuth | None = None,
        *,
        secret_key: str | bytes | None = None,
        prefix: str = DEFAULT_PREFIX,
        success_url: str | None = None,
        pending_ttl: float = 600.0,
        account_max_age: int = 7 * 24 * 3600,
        cookie_secure: bool | None = None,
        session_store: TokenStore | str | None = None,
        max_logins_per_browser: int = 5,
        max_pending: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.endswith("/"):
            raise ConfigError(
                f"prefix must be a path starting with / and not ending with /, such as "
                f"{DEFAULT_PREFIX}, not {prefix!r}"
            )
        if max_pending is not None:
            warnings.warn(
                "max_pending is deprecated and ignored: logins in progress are kept in a "
                "sealed browser cookie, not in the server; max_logins_per_browser bounds "
                "the logins of one browser",
                DeprecationWarning,
                stacklevel=2,
            )
        _check_number(pending_ttl, "pending_ttl", "a number of seconds, e.g. 600", low=1)
        _check_number(account_max_age, "account_max_age", "a number of seconds, e.g. 604800", low=1)
        _check_number(
            max_logins_per_browser,
            "max_logins_per_browser",
            f"a whole number from 1 to {_MAX_LOGINS_LIMIT}",
            low=1,
            high=_MAX_LOGINS_LIMIT,
            whole=True,
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
        self.pending_ttl = int(pending_ttl)
        self.account_max_age = int(account_max_age)
        self.max_logins_per_browser = int(max_logins_per_browser)
        self._clock = clock
        redirect = urlsplit(self.oauth.redirect_uri)
        if redirect.path != self.callback_path:
            raise ConfigError(
                f"the redirect URI {self.oauth.redirect_uri} does not end in the callback "
                f"route {self.callback_path}; set WEBEX_REDIRECT_URI to this app's "
                f"http(s)://HOST:PORT{self.callback_path} (registered with the integration), "
                "or change the prefix"
            )
        self.cookie_secure = redirect.scheme == "https" if cookie_secure is None else cookie_secure
        # __Host- cookies: Secure, Path=/ and no Domain, so only this host over https can
        # set them; browsers refuse the prefix without Secure, so plain names over http.
        host_prefix = _HOST_PREFIX if self.cookie_secure else ""
        self.account_cookie = host_prefix + ACCOUNT_COOKIE
        self._login_prefix = host_prefix + LOGIN_COOKIE + "_"
        self._login_cookie_path = "/" if self.cookie_secure else prefix
        self.sessions = SessionRevocations.for_app(session_store, store, clock=clock)
        key = _secret_key(secret_key)
        client = self.oauth.client_id.encode()
        self._login_sealer = CookieSealer(
            key, "login", client + b"\0" + self.oauth.redirect_uri.encode()
        )
        self._account_sealer = CookieSealer(key, "account", client)
        self._legacy_pending: PendingLogins | None = None
        redact_request_logs(self.callback_path)

    @property
    def pending(self) -> PendingLogins:
        """Deprecated: always empty; logins in progress are in the browsers' cookies."""
        warnings.warn(
            "LoginFlow.pending is deprecated and always empty: logins in progress are kept "
            "in sealed browser cookies, not in the server",
            DeprecationWarning,
            stacklevel=2,
        )
        if self._legacy_pending is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self._legacy_pending = PendingLogins(ttl=self.pending_ttl)
        return self._legacy_pending

    def login_cookie_name(self, state: str) -> str:
        """The name of the cookie of the login whose ``state`` is given."""
        digest = hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()
        return self._login_prefix + digest[:16]

    # -- routes -----------------------------------------------------------------------

    def login(self, cookies: Cookies = None) -> WebResponse:
        """``GET {prefix}/login``: redirect to Webex with a fresh login sealed in a cookie.

        Args:
            cookies: the request's cookies (its other logins in progress, of which the
                oldest are cleared beyond ``max_logins_per_browser``). A single value, as
                earlier releases took, is ignored.
        """
        now = round(self._clock(), 3)
        request = self.oauth.authorization_request()
        nonce = getattr(request, "nonce", None)  # set by an OpenID Connect request
        ticket = LoginTicket(
            request.state,
            request.code_verifier,
            secrets.token_urlsafe(16),  # the new session's id: fresh at each login
            now,
            nonce if isinstance(nonce, str) else None,
        )
        cookie = self._login_cookie(
            self.login_cookie_name(request.state), self._login_sealer.seal(ticket.to_payload())
        )
        crowded_out = self._crowded_out(cookies if isinstance(cookies, Mapping) else {}, now)
        headers = (("Location", request.url), ("Cache-Control", "no-store"))
        return WebResponse(302, b"", headers, (*crowded_out, cookie))

    def callback(
        self,
        query: str,
        cookies: Cookies,
        account_name: Callable[[Token], str] | None = None,
    ) -> WebResponse:
        """``GET {prefix}/callback``: check, exchange the code, store the token.

        Blocking (the code exchange and the store): async frameworks run it in a worker
        thread.

        Args:
            query: the raw query string of the request.
            cookies: the request's cookies; or the value of this login's cookie alone.
            account_name: the app's hook naming the account from the new token (it has
                ``account``, the email from ``/people/me``); default: that email.

        Returns:
            200 (or 303 to ``success_url``) with the account cookie on success; 400 when
            the callback is unknown, used, expired, from another browser, declined or
            malformed; 502 when Webex refused the exchange; 500 when the store failed.
            Every answer to a callback that came with its login cookie clears it.
        """
        state = _single(query, "state")
        if state is None:
            log.info("callback refused: it carries no single state")
            return self._not_recognised()
        cookie_name = self.login_cookie_name(state)
        value = cookies.get(cookie_name) if isinstance(cookies, Mapping) else cookies
        if not value:
            origin = urlsplit(self.oauth.redirect_uri)
            log.info(
                "callback refused: the browser has no login cookie for its state (already "
                "used, another browser's, or the login opened at another host name than "
                "the redirect URI's %s)",
                origin.hostname,
            )
            return self._not_recognised()
        used = self._clear(cookie_name, self._login_cookie_path)
        login = self._open_login(value)
        if login is None:
            log.warning(
                "callback refused: its login cookie was not sealed by this app (forged, "
                "altered, truncated, or made with another secret key or integration)"
            )
            return self._not_recognised(used)
        if not self._fresh(login.started, self.pending_ttl):
            log.info("callback refused: its login is older than pending_ttl")
            page = self._page(
                400,
                "Sign-in link expired",
                "This sign-in took too long and has expired. Start the sign-in again.",
            )
            return dataclasses.replace(page, cookies=(used,))
        if not hmac.compare_digest(state.encode(), login.state.encode()):
            log.warning("callback refused: its state is not the one of its login cookie")
            return self._not_recognised(used)
        request = self._resume(login)
        outcome = handle_callback_query(query, request.state)
        if outcome.error is not None:
            log.info("callback refused: %s", outcome.error)
            return WebResponse(outcome.status, outcome.page, PAGE_HEADERS, (used,))
        assert outcome.result is not None
        identity = None
        try:
            token = self.oauth.exchange_code(outcome.result.code, request)
            if token.id_token is not None:  # verified by the exchange: read its claims
                identity = identity_of(self.oauth.verify_id_token(token.id_token))
            name = login_name(
                token,
                requested=account_name(token) if account_name is not None else None,
                fallback=None,
            )
            # A code is good for one exchange: the journal keeps the token until stored.
            default_journal().put(self.store, name, token.replace(account=token.account or name))
        except OAuthError as exc:
            log.warning("login failed: %s", describe_failure(exc, self.oauth.redirect_uri))
            return self._failed(502 if isinstance(exc, TokenEndpointError) else 400, used)
        except WebexTokensError as exc:  # the store, or the name the app's hook chose
            log.error("login failed: the token could not be stored: %s", exc)
            page = self._page(500, "Sign-in failed", "The token could not be stored.")
            return dataclasses.replace(page, cookies=(used,))
        log.info("logged in %r: token %s stored", name, token.fingerprint)
        session = SessionTicket(name, login.session, int(self._clock()), identity)
        signed_in = Cookie(
            self.account_cookie,
            self._account_sealer.seal(session.to_payload()),
            path="/",
            max_age=self.account_max_age,
            secure=self.cookie_secure,
        )
        cookies_out = (used, signed_in)
        if self.success_url:
            headers = (("Location", self.success_url), ("Cache-Control", "no-store"))
            return WebResponse(303, b"", headers, cookies_out, account=name, identity=identity)
        done = render_page(
            "Webex sign-in complete",
            f"You are signed in as {name}. You can close this tab and return to the app.",
        )
        return WebResponse(200, done, PAGE_HEADERS, cookies_out, account=name, identity=identity)

    def logout(self, cookies: Cookies = None) -> WebResponse:
        """``GET {prefix}/logout``: end the browser's session everywhere (the token stays).

        The session named by the account cookie is recorded as ended in the session
        store, so the cookie, even copied elsewhere, no longer signs anyone in on any
        worker or host sharing that store; the browser's cookies are cleared.

        Args:
            cookies: the request's cookies; or the value of the account cookie alone.

        Returns:
            200; 500 when the session could not be recorded as ended (the browser's
            cookies are cleared all the same).
        """
        jar = cookies if isinstance(cookies, Mapping) else {}
        value = jar.get(self.account_cookie) if isinstance(cookies, Mapping) else cookies
        cleared = [self._clear(self.account_cookie, "/")]
        cleared += [
            self._clear(name, self._login_cookie_path)
            for name in jar
            if name.startswith(self._login_prefix)
        ]
        session = self._open_session(value)
        if session is not None and self._fresh(session.issued, self.account_max_age):
            try:
                self.sessions.revoke(session.session, session.issued + self.account_max_age)
            except StoreError as exc:
                log.error("logout of %r not recorded: %s", session.account, exc)
                page = self._page(
                    500,
                    "Sign-out incomplete",
                    "This browser is signed out, but the app could not end the session "
                    "on its server. Sign in and out again, or tell the app's operator.",
                )
                return dataclasses.replace(page, cookies=tuple(cleared))
            log.info("logged out %r: session ended", session.account)
        response = self._page(200, "Signed out", "This browser is no longer signed in.")
        return dataclasses.replace(response, cookies=tuple(cleared))

    def health(self) -> WebResponse:
        """``GET /health``: ``{"status": "ok"}``."""
        headers = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))
        return WebResponse(200, b'{"status": "ok"}', headers)

    def current_identity(self, cookies: Cookies) -> dict[str, Any] | None:
        """Who the browser signed in as, verified ("Login with Webex"): the claims of the
        login's ID token (``sub``, ``email``, ``name``, ``given_name``, ``family_name``,
        ``email_verified``, ``iss``, as the scopes allowed) and ``account``, the name
        the token is stored under. None when :meth:`current_account` is None, or when the
        login asked for no ``openid`` scope. Blocking: one read of the session store.

        Args:
            cookies: the request's cookies; or the value of the account cookie alone.
        """
        value = cookies.get(self.account_cookie) if isinstance(cookies, Mapping) else cookies
        session = self._open_session(value)
        if session is None or session.identity is None or self.current_account(cookies) is None:
            return None
        return {**session.identity, "account": session.account}

    def current_account(self, cookies: Cookies) -> str | None:
        """The account the browser signed in as, or None.

        None when there is no account cookie, when it is forged, altered, truncated or
        sealed with another key, when it is older than ``account_max_age``, when its
        session was ended by ``/logout``, and when the session store cannot be read (so
        a failure never signs anyone in). Blocking: one read of the session store.

        Args:
            cookies: the request's cookies; or the value of the account cookie alone.
        """
        value = cookies.get(self.account_cookie) if isinstance(cookies, Mapping) else cookies
        session = self._open_session(value)
        if session is None or not self._fresh(session.issued, self.account_max_age):
            return None
        try:
            ended = self.sessions.is_revoked(session.session)
        except StoreError as exc:
            log.error(
                "could not check the session of %r, so it counts as signed out: %s",
                session.account,
                exc,
            )
            return None
        return None if ended else session.account

    # -- helpers ----------------------------------------------------------------------

    def _fresh(self, issued: float, max_age: int) -> bool:
        now = self._clock()
        return issued - _CLOCK_SKEW <= now <= issued + max_age

    def _open_login(self, value: object) -> LoginTicket | None:
        return LoginTicket.from_payload(self._login_sealer.open(value))

    def _open_session(self, value: object) -> SessionTicket | None:
        return SessionTicket.from_payload(self._account_sealer.open(value))

    def _resume(self, login: LoginTicket) -> AuthorizationRequest:
        """The authorization request ``login`` was made from, as ``/login`` made it
        (:meth:`WebexOAuth.resume_authorization
        <webex_tokens.oauth.WebexOAuth.resume_authorization>`)."""
        return self.oauth.resume_authorization(login.state, login.verifier, nonce=login.nonce)

    def _crowded_out(self, cookies: Mapping[str, str], now: float) -> list[Cookie]:
        """Clearing cookies for the browser's login cookies that are unreadable, expired,
        or the oldest beyond ``max_logins_per_browser - 1`` (the new one makes up the
        rest)."""
        names = [name for name in cookies if name.startswith(self._login_prefix)]
        kept: list[tuple[float, str]] = []
        dropped: list[str] = names[_MAX_EXAMINED:]
        for name in names[:_MAX_EXAMINED]:
            login = self._open_login(cookies[name])
            if login is None or not self._fresh(login.started, self.pending_ttl):
                dropped.append(name)
            else:
                kept.append((login.started, name))
        kept.sort(reverse=True)
        dropped += [name for _, name in kept[self.max_logins_per_browser - 1 :]]
        return [self._clear(name, self._login_cookie_path) for name in dropped]

    def _login_cookie(self, name: str, value: str) -> Cookie:
        return Cookie(
            name,
            value,
            path=self._login_cookie_path,
            max_age=self.pending_ttl,
            secure=self.cookie_secure,
        )

    def _clear(self, name: str, path: str) -> Cookie:
        return Cookie(name, None, path=path, max_age=0, secure=self.cookie_secure)

    def _not_recognised(self, *cleared: Cookie) -> WebResponse:
        origin = urlsplit(self.oauth.redirect_uri)
        page = self._page(
            400,
            "Sign-in not recognised",
            "This sign-in response does not belong to a sign-in in progress in this "
            "browser: it was already used, or it was started in another browser or at "
            f"another address than {origin.scheme}://{origin.netloc}. Start the sign-in "
            f"again from this browser, at {origin.scheme}://{origin.netloc}{self.login_path}.",
        )
        return dataclasses.replace(page, cookies=cleared)

    def _failed(self, status: int, used: Cookie) -> WebResponse:
        page = self._page(
            status,
            "Sign-in failed",
            "Webex did not complete the sign-in. Start the sign-in again; if it keeps "
            "failing, the app's log says why.",
        )
        return dataclasses.replace(page, cookies=(used,))

    def _page(self, status: int, title: str, message: str) -> WebResponse:
        if status >= 400 and self.login_path not in message:
            message += f" Sign in again: {self.login_path}"
        return WebResponse(status, render_page(title, message), PAGE_HEADERS)


def _check_number(
    value: object, name: str, hint: str, *, low: float, high: float = 1e12, whole: bool = False
) -> None:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise ConfigError(f"{name} must be {hint}, not {value!r}")


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
            "no secret key for the login cookies: using one generated for this process, so "
            "a login finishes only on the process that started it, and logins in progress "
            "and signed-in browsers are forgotten when it restarts; give every worker the "
            "same key with secret_key= or %s",
            SECRET_KEY_ENV,
        )
        return secrets.token_urlsafe(32)
    if not isinstance(secret_key, (str, bytes)) or len(secret_key) < _MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{source} must be at least {_MIN_SECRET_LENGTH} characters of text; generate one "
            'with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return secret_key
