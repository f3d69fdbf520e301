"""Webex OAuth2 on Authlib: authorization URLs with PKCE, code exchange, refresh, login.

:class:`WebexOAuth` wraps Authlib's requests ``OAuth2Session`` with what Webex needs and
what Authlib leaves to the caller:

- a fresh ``state`` and PKCE ``code_verifier`` (S256) for every authorization request,
  and a check at code exchange that the request was not swapped or altered;
- retries: ``429`` waits for ``Retry-After`` (up to ``max_retry_after``), ``5xx``,
  timeouts and connection errors back off exponentially, ``max_retries`` times;
- token-endpoint errors turned into the library's own errors, each saying what to do
  (:class:`~webex_tokens.errors.TokenEndpointError`,
  :class:`~webex_tokens.errors.RedirectURIMismatch`,
  :class:`~webex_tokens.errors.ReauthorizationRequired`);
- :meth:`WebexOAuth.login`: the whole flow on this machine through a loopback
  :class:`~webex_tokens.callback.CallbackServer`, with a paste-the-URL fallback when no
  browser opens.

Nothing here logs or puts in a message an access token, a refresh token, the client
secret, an authorization code or a PKCE verifier. Requests' and urllib3's own DEBUG
logging shows request lines only: the token endpoint is called with ``POST`` and a form
body, so no secret is ever in a logged URL.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hmac
import logging
import math
import os
import random
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from datetime import timezone
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .callback import CallbackResult, CallbackServer, parse_callback_url
from .errors import (
    CallbackError,
    ConfigError,
    InvalidToken,
    OAuthError,
    ReauthorizationRequired,
    RedirectURIMismatch,
    TokenEndpointError,
)
from .settings import DEFAULT_BASE_URL, DEFAULT_REDIRECT_URI, DEFAULT_SCOPES
from .token import Token

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPES",
    "AuthorizationRequest",
    "WebexOAuth",
    "login_command",
    "redirect_uri_mismatch_message",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Longest ``Retry-After`` honoured by default; a longer one ends the retries at once.
DEFAULT_MAX_RETRY_AFTER: Final = 60.0
#: Backoff before the first retry of a 5xx, a timeout or a connection error (doubles).
DEFAULT_BACKOFF: Final = 0.5
_MAX_BACKOFF: Final = 8.0
_MAX_SHOWN: Final = 200
_PASTE_ATTEMPTS: Final = 5
_MAX_CODE_LENGTH: Final = 4096
_PORTAL = "https://developer.webex.com/my-apps"


def login_command(name: str | None) -> str:
    """The command that logs an account in again (``webex-tokens login --name NAME``)."""
    import shlex

    return "webex-tokens login" + (f" --name {shlex.quote(name)}" if name else "")


def redirect_uri_mismatch_message(redirect_uri: str, detail: str | None = None) -> str:
    """The explanation of ``redirect_uri_mismatch`` with both ways to fix it."""
    return (
        "Webex refused the redirect URI (redirect_uri_mismatch"
        + (f": {_printable(detail)}" if detail else "")
        + f"): {redirect_uri} must match a redirect URI registered for the integration "
        "exactly, including http/https, host, port and path; fix it either way: edit the "
        f"integration at {_PORTAL} and set its redirect URI to {redirect_uri}, or set "
        "WEBEX_REDIRECT_URI to the redirect URI registered there (and restart)"
    )


def _printable(text: object) -> str:
    """Outside text made safe for a message: control characters dropped, length capped."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return cleaned if len(cleaned) <= _MAX_SHOWN else cleaned[: _MAX_SHOWN - 3] + "..."


@dataclasses.dataclass(frozen=True, repr=False)
class AuthorizationRequest:
    """One authorization request: the URL to open and the secrets to finish it with.

    Keep it until the code comes back, then pass it to :meth:`WebexOAuth.exchange_code`.
    ``repr()`` hides ``state`` and ``code_verifier``.

    Attributes:
        url: the Webex authorization URL to open in a browser.
        state: the anti-CSRF value the callback must carry back.
        code_verifier: the PKCE secret whose S256 challenge is in ``url``.
        redirect_uri: where Webex sends the browser back with the code.
    """

    url: str
    state: str
    code_verifier: str
    redirect_uri: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(redirect_uri={self.redirect_uri!r})"


class _Retry(Exception):
    """A token-endpoint answer worth retrying (429 or 5xx)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


def _read_environment_once(session: requests.Session, base_url: str) -> None:
    """Apply the proxy (``HTTPS_PROXY``, ``NO_PROXY``...) and CA bundle
    (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) settings of the environment to
    ``session`` once, as requests would, instead of on every request: requests reads
    them (and ``~/.netrc``) again for each one, about a tenth of a millisecond a time.
    Every request of the session goes to ``base_url``'s host, so the answer is the same.
    """
    proxies = requests.utils.get_environ_proxies(base_url)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    session.trust_env = False
    session.proxies.update(proxies)
    if bundle:
        session.verify = bundle


def _retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (now if now is not None else time.time())
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class WebexOAuth:
    """The OAuth2 client of one Webex integration.

    Args:
        client_id: the integration's client ID.
        client_secret: the integration's client secret.
        redirect_uri: the redirect URI registered with the integration (exact match).
        scopes: the scopes to ask for.
        base_url: the Webex API base (``https://webexapis.com/v1``); endpoints are
            ``{base_url}/authorize``, ``{base_url}/access_token``, ``{base_url}/people/me``.
        timeout: seconds to wait for each HTTP answer.
        max_retries: how many times a 429, 5xx, timeout or connection error is retried.
        max_retry_after: the longest ``Retry-After`` waited for; a longer one ends the
            retries with :class:`~webex_tokens.errors.TokenEndpointError`.
        backoff: seconds before the first retry of a 5xx, timeout or connection error;
            doubled for each further retry, at most 8 seconds.

    Raises:
        ConfigError: a credential is empty, or a URL or number is invalid.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigError(
                "the client ID is empty; set WEBEX_CLIENT_ID to the client ID of your "
                f"integration (see {_PORTAL})"
            )
        if not isinstance(client_secret, str) or not client_secret.strip():
            raise ConfigError(
                "the client secret is empty; set WEBEX_CLIENT_SECRET to the client secret "
                f"of your integration (see {_PORTAL})"
            )
        _check_url(redirect_uri, "redirect URI", "WEBEX_REDIRECT_URI")
        _check_url(base_url, "base URL", "WEBEX_BASE_URL")
        if isinstance(scopes, str):
            scopes = scopes.split()
        scope_list = tuple(s for scope in scopes for s in str(scope).split())
        if not scope_list:
            raise ConfigError("no scopes given; set WEBEX_SCOPES, e.g. to spark:all")
        if not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, not {max_retries!r}")
        if not max_retry_after >= 0 or not backoff >= 0:
            raise ConfigError("max_retry_after and backoff must be 0 or more seconds")
        self.client_id = client_id.strip()
        self._client_secret = client_secret.strip()
        self.redirect_uri = redirect_uri
        self.scopes = scope_list
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_retry_after = float(max_retry_after)
        self.backoff = float(backoff)
        self._local = threading.local()
        self._issued_redirect_uris = {redirect_uri}

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> WebexOAuth:
        """Build the client from the settings (``WEBEX_CLIENT_ID`` and friends, ``.env``).

        Raises:
            ConfigError: ``WEBEX_CLIENT_ID`` or ``WEBEX_CLIENT_SECRET`` is not set.
        """
        if settings is None:
            from .settings import load_settings

            settings = load_settings()
        integration = settings.integration
        missing = [
            variable
            for variable, value in (
                ("WEBEX_CLIENT_ID", integration.client_id),
                ("WEBEX_CLIENT_SECRET", integration.client_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
                f"create an integration at {_PORTAL} and put its client ID and secret in "
                "WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET (in the environment or a .env file)"
            )
        assert integration.client_id is not None and integration.client_secret is not None
        return cls(
            integration.client_id,
            integration.client_secret,
            redirect_uri=integration.redirect_uri,
            scopes=integration.scopes,
            base_url=integration.base_url,
        )

    def __repr__(self) -> str:
        return (
            f"WebexOAuth(client_id={self.client_id!r}, redirect_uri={self.redirect_uri!r}, "
            f"base_url={self.base_url!r})"
        )

    # -- endpoints -------------------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        """``{base_url}/authorize``."""
        return self.base_url + "/authorize"

    @property
    def token_url(self) -> str:
        """``{base_url}/access_token``."""
        return self.base_url + "/access_token"

    @property
    def people_me_url(self) -> str:
        """``{base_url}/people/me``."""
        return self.base_url + "/people/me"

    def _session(self) -> Any:
        """This thread's Authlib session: Authlib keeps the last token on the session,
        so threads sharing one would read each other's answers."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = OAuth2Session(
                self.client_id,
                self._client_secret,
                token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
                code_challenge_method="S256",
            )
            session.register_compliance_hook(
                "access_token_response", lambda r: self._check_answer(r, "authorization_code")
            )
            session.register_compliance_hook(
                "refresh_token_response", lambda r: self._check_answer(r, "refresh_token")
            )
            _read_environment_once(session, self.base_url)
            self._local.session = session
        return session

    # -- authorization ---------------------------------------------------------------

    def authorization_request(self, *, redirect_uri: str | None = None) -> AuthorizationRequest:
        """Start an authorization: a URL with a fresh ``state`` and PKCE challenge.

        Args:
            redirect_uri: a redirect URI other than the configured one (it must be
                registered with the integration too).
        """
        return self._authorization_request(redirect_uri, secrets.token_urlsafe(32))

    def _authorization_request(self, redirect_uri: str | None, state: str) -> AuthorizationRequest:
        redirect_uri = redirect_uri or self.redirect_uri
        _check_url(redirect_uri, "redirect URI", "WEBEX_REDIRECT_URI")
        verifier = secrets.token_urlsafe(48)
        url, state = self._session().create_authorization_url(
            self.authorize_url,
            state=state,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
            scope=" ".join(self.scopes),
        )
        self._issued_redirect_uris.add(redirect_uri)
        return AuthorizationRequest(
            url=url, state=state, code_verifier=verifier, redirect_uri=redirect_uri
        )

    def _check_request(self, request: AuthorizationRequest) -> None:
        """Refuse a request this integration did not make, or one altered since."""
        if not isinstance(request, AuthorizationRequest):
            raise TypeError(
                f"exchange_code() takes the AuthorizationRequest from authorization_request(), "
                f"not {type(request).__name__}"
            )
        parts = urlsplit(request.url)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        expected = {
            "client_id": self.client_id,
            "redirect_uri": request.redirect_uri,
            "state": request.state,
            "code_challenge": create_s256_code_challenge(request.code_verifier),
            "code_challenge_method": "S256",
            "response_type": "code",
        }
        wrong = [
            field
            for field, value in expected.items()
            if not hmac.compare_digest(params.get(field, "").encode(), value.encode())
        ]
        if urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) != self.authorize_url:
            wrong.insert(0, "authorization endpoint")
        if request.redirect_uri not in self._issued_redirect_uris:
            wrong.append("redirect URI (not the configured one)")
        if wrong:
            raise OAuthError(
                "the authorization request does not belong to this integration or was "
                f"altered ({', '.join(wrong)} differ); start a new login with "
                "authorization_request() of this WebexOAuth"
            )

    def exchange_code(
        self, code: str, request: AuthorizationRequest, *, account: str | None = None
    ) -> Token:
        """Exchange an authorization code for a token.

        Args:
            code: the code the callback received.
            request: the :class:`AuthorizationRequest` the code answers.
            account: the label to give the token; by default the email from
                ``{base_url}/people/me`` (left None if that call fails).

        Raises:
            OAuthError: ``request`` was not made by this integration or was altered.
            CallbackError: ``code`` is empty or malformed.
            TokenEndpointError: Webex refused the code (expired or already used:
                run the login again), the credentials, or kept failing.
            RedirectURIMismatch: Webex refused the redirect URI.
        """
        self._check_request(request)
        if not isinstance(code, str) or not code.strip() or len(code) > _MAX_CODE_LENGTH:
            raise CallbackError(
                "the authorization code is empty or malformed; copy the code parameter of "
                "the redirect URL, or run the login again"
            )
        if not code.isprintable():
            raise CallbackError("the authorization code is malformed; run the login again")
        log.debug("exchanging an authorization code at %s", self.token_url)
        answer = self._with_retries(
            "token endpoint",
            lambda: self._session().fetch_token(
                self.token_url,
                grant_type="authorization_code",
                code=code.strip(),
                code_verifier=request.code_verifier,
                redirect_uri=request.redirect_uri,
                timeout=self.timeout,
            ),
            grant="authorization_code",
        )
        token = self._token_from(answer, account=account)
        if account is None:
            try:
                token = token.replace(account=self.whoami(token))
            except OAuthError as exc:
                log.warning("the token is not labelled with an account: %s", exc)
        log.info("authorization code exchanged: token %s for %s", token.fingerprint, token.account)
        return token

    def refresh(self, token: Token) -> Token:
        """Get a new access token with ``token``'s refresh token.

        The new token keeps ``token``'s account and client ID, and its refresh token (and
        that token's expiry) when Webex sends none back.

        Raises:
            ReauthorizationRequired: there is no refresh token, or Webex refused it
                (``invalid_grant``: expired or revoked).
            TokenEndpointError: the credentials were refused, or Webex kept failing.
        """
        if token.refresh_token is None:
            raise ReauthorizationRequired(
                f"the token of {token.account or 'this account'} has no refresh token, so it "
                f"cannot be refreshed; log in again: {login_command(token.account)}",
                account=token.account,
            )
        refresh_token = token.refresh_token
        log.debug("refreshing token %s at %s", token.fingerprint, self.token_url)
        try:
            answer = self._with_retries(
                "token endpoint",
                lambda: self._session().refresh_token(
                    self.token_url, refresh_token=refresh_token, timeout=self.timeout
                ),
                grant="refresh_token",
            )
        except ReauthorizationRequired as exc:
            raise ReauthorizationRequired(
                f"Webex refused the refresh token of {token.account or 'this account'} "
                f"({exc}); log in again: {login_command(token.account)}",
                account=token.account,
            ) from None
        from .refresh import merge_refreshed

        new = merge_refreshed(
            token, self._token_from(answer, account=token.account, client_id=token.client_id)
        )
        log.info("refreshed token %s into %s", token.fingerprint, new.fingerprint)
        return new

    def whoami(self, token: Token) -> str:
        """The email of the person ``token`` belongs to (``{base_url}/people/me``).

        Raises:
            OAuthError: Webex refused the token or answered without an email.
            TokenEndpointError: Webex could not be reached or kept failing.
        """
        headers = {"Authorization": f"Bearer {token.access_token}", "Accept": "application/json"}

        def call() -> Any:
            response = self._session().get(
                self.people_me_url, headers=headers, timeout=self.timeout, withhold_token=True
            )
            if response.status_code == 429 or response.status_code >= 500:
                raise _Retry(
                    response.status_code, _retry_after(response.headers.get("Retry-After"))
                )
            if response.status_code in (401, 403):
                raise OAuthError(
                    f"Webex refused the access token at {self.people_me_url} "
                    f"(HTTP {response.status_code}); the token may be expired or lack the "
                    "spark:people_read scope: refresh it, or log in again"
                )
            try:
                return response.json()
            except ValueError:
                return None

        person = self._with_retries("people endpoint", call, grant=None)
        emails = person.get("emails") if isinstance(person, Mapping) else None
        if not isinstance(emails, list) or not emails or not isinstance(emails[0], str):
            raise OAuthError(
                f"{self.people_me_url} answered without an email address; pass account= "
                "(or --name) to label the token yourself"
            )
        return emails[0]

    # -- answers, errors and retries -------------------------------------------------

    def _check_answer(self, response: requests.Response, grant: str) -> requests.Response:
        """Authlib's compliance hook: raise our errors before Authlib parses the answer."""
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(status, _retry_after(response.headers.get("Retry-After")))
        content_type = response.headers.get("Content-Type", "none")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # Never echo the body: a proxy's page might quote the request back.
            raise TokenEndpointError(
                f"the Webex token endpoint {self.token_url} answered HTTP {status} with "
                f"{_printable(content_type)} that is not a JSON object; check WEBEX_BASE_URL "
                "(it should be https://webexapis.com/v1) and any proxy in between",
                status=status,
            )
        error = body.get("error")
        if status >= 400 or error is not None:
            raise self._error_for(status, body, grant)
        return response

    def _error_for(self, status: int, body: Mapping[str, Any], grant: str) -> OAuthError:
        error = _printable(body.get("error") or "") or None
        description = _printable(body.get("error_description") or body.get("message") or "") or None
        reported = f"{error}: {description}" if error and description else error or description
        said = f" ({reported}, HTTP {status})" if reported else f" (HTTP {status})"
        if error == "invalid_client":
            return TokenEndpointError(
                f"Webex rejected the integration's credentials{said}; check WEBEX_CLIENT_ID "
                f"and WEBEX_CLIENT_SECRET against the integration at {_PORTAL}",
                status=status,
                error=error,
                description=description,
            )
        if error == "redirect_uri_mismatch" or (
            error == "invalid_request" and description and "redirect" in description.lower()
        ):
            return RedirectURIMismatch(redirect_uri_mismatch_message(self.redirect_uri, said))
        if error == "invalid_grant":
            if grant == "refresh_token":
                return ReauthorizationRequired(
                    f"invalid_grant: the refresh token is expired or revoked{said}"
                )
            return TokenEndpointError(
                f"Webex refused the authorization code{said}: the authorization code expired "
                "or was already used: codes last a minute or two; run the login again",
                status=status,
                error=error,
                description=description,
            )
        return TokenEndpointError(
            f"the Webex token endpoint refused the request{said}; check the integration's "
            f"settings at {_PORTAL} and run the login again",
            status=status,
            error=error,
            description=description,
        )

    def _token_from(
        self, answer: Any, *, account: str | None, client_id: str | None = None
    ) -> Token:
        try:
            return Token.from_response(
                dict(answer), client_id=client_id or self.client_id, account=account
            )
        except (InvalidToken, TypeError, ValueError) as exc:
            raise TokenEndpointError(
                f"the Webex token endpoint answered with something that is not a usable "
                f"token ({exc}); check WEBEX_BASE_URL and try again",
                status=200,
            ) from None

    def _with_retries(self, what: str, call: Callable[[], _T], *, grant: str | None) -> _T:
        """Run ``call``, retrying 429s, 5xx answers, timeouts and connection errors."""
        attempts = self.max_retries + 1
        timed_out = False
        for attempt in range(1, attempts + 1):
            backoff = min(_MAX_BACKOFF, self.backoff * 2 ** (attempt - 1))
            backoff *= 1 + random.random() / 4  # noqa: S311 - jitter, not a secret
            try:
                return call()
            except TokenEndpointError as exc:
                if timed_out and grant == "authorization_code" and exc.error == "invalid_grant":
                    raise TokenEndpointError(
                        f"{exc}; an earlier attempt timed out and may have used the code",
                        status=exc.status,
                        error=exc.error,
                        description=exc.description,
                    ) from None
                raise
            except _Retry as retry:
                failure = self._retry_failure(what, retry, attempt)
                if retry.retry_after is not None:
                    if retry.retry_after > self.max_retry_after:
                        raise TokenEndpointError(
                            f"Webex asked to wait {retry.retry_after:g} seconds before trying "
                            f"again (HTTP {retry.status}), more than the "
                            f"{self.max_retry_after:g} allowed; try again later",
                            status=retry.status,
                        ) from None
                    wait = retry.retry_after
                else:
                    wait = backoff
            except requests.Timeout:
                timed_out = True
                failure = TokenEndpointError(
                    f"the Webex {what} at {self.base_url} did not answer within "
                    f"{self.timeout:g} seconds ({attempt} attempt(s)); check the network "
                    "and WEBEX_BASE_URL, or try again later"
                )
                wait = backoff
            except requests.ConnectionError as exc:
                failure = TokenEndpointError(
                    f"cannot connect to the Webex {what} at {self.base_url} "
                    f"({type(exc).__name__}, {attempt} attempt(s)); check the network "
                    "and WEBEX_BASE_URL"
                )
                wait = backoff
            except requests.RequestException as exc:
                raise TokenEndpointError(
                    f"the request to the Webex {what} at {self.base_url} failed "
                    f"({type(exc).__name__}); check WEBEX_BASE_URL"
                ) from None
            if attempt == attempts:
                raise failure
            log.info("%s; retrying in %.2f s", failure, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_failure(self, what: str, retry: _Retry, attempt: int) -> TokenEndpointError:
        if retry.status == 429:
            return TokenEndpointError(
                f"Webex kept answering 429 Too Many Requests at the {what} ({attempt} "
                "attempt(s)); wait a minute and try again",
                status=429,
                error="rate_limited",
            )
        return TokenEndpointError(
            f"the Webex {what} kept failing with HTTP {retry.status} ({attempt} attempt(s)); "
            "Webex may be having trouble: try again later",
            status=retry.status,
        )

    # -- the whole flow --------------------------------------------------------------

    def login(
        self,
        open_browser: Callable[[str], bool] | None = webbrowser.open,
        timeout: float = 300,
        *,
        account: str | None = None,
        port: int | None = None,
        prompt: Callable[[str], str] | None = None,
    ) -> Token:
        """Run the whole authorization on this machine and return the token.

        A :class:`~webex_tokens.callback.CallbackServer` listens on the redirect URI's
        port (or ``port``) and the authorization URL is opened with ``open_browser``.
        When no browser opens (``open_browser`` is None, returns False or raises), the
        URL is printed on stderr and the redirect URL may be pasted back through
        ``prompt``; whichever of the pasted URL and the browser's callback comes first
        finishes the login. A redirect URI that is not on this machine (``https://``
        to a server) leaves only the paste route.

        Args:
            open_browser: opens a URL, returning False when it could not.
            timeout: seconds to wait for the callback.
            account: the label to give the token; by default the email from
                ``/people/me``.
            port: listen on this port instead of the redirect URI's (then the redirect
                URI with this port must be registered too).
            prompt: reads the pasted redirect URL (default: :func:`input`).

        Raises:
            CallbackError: the port is taken, the callback was wrong, or none came in time.
            AuthorizationDenied: the user declined.
            RedirectURIMismatch: Webex refused the redirect URI.
            TokenEndpointError: the code exchange failed.
        """
        state = secrets.token_urlsafe(32)
        server: CallbackServer | None = None
        if _is_loopback_http(self.redirect_uri):
            server = CallbackServer(self.redirect_uri, state, port=port, timeout=timeout)
            redirect_uri = server.redirect_uri
        elif port is not None:
            raise CallbackError(
                f"--port only applies to a redirect URI on this machine, and "
                f"{self.redirect_uri} is not one; drop --port, or set WEBEX_REDIRECT_URI to "
                "an http://localhost:PORT/... URI registered with the integration"
            )
        else:
            redirect_uri = self.redirect_uri
        try:
            request = self._authorization_request(redirect_uri, state)
            if server is not None:
                server.start()
            opened = self._open(open_browser, request)
            if opened and server is not None:
                print(
                    "Log in to Webex in the browser window that opened; if none did, open:\n"
                    f"  {request.url}",
                    file=sys.stderr,
                )
                result = server.wait()
            else:
                print(
                    "Open this URL in a browser and approve the access:\n"
                    f"  {request.url}\n"
                    "Then paste here the whole address the browser was sent to "
                    f"(it starts with {request.redirect_uri}).",
                    file=sys.stderr,
                )
                result = self._wait_for_paste(server, request, prompt or input)
        finally:
            if server is not None:
                server.stop()
        return self.exchange_code(result.code, request, account=account)

    def _open(
        self, open_browser: Callable[[str], bool] | None, request: AuthorizationRequest
    ) -> bool:
        if open_browser is None:
            return False
        try:
            return bool(open_browser(request.url))
        except RedirectURIMismatch:
            raise RedirectURIMismatch(redirect_uri_mismatch_message(request.redirect_uri)) from None
        except OAuthError:
            raise
        except Exception as exc:  # any failure of the opener means "no browser"
            log.info("could not open a browser: %s", type(exc).__name__)
            return False

    def _wait_for_paste(
        self,
        server: CallbackServer | None,
        request: AuthorizationRequest,
        prompt: Callable[[str], str],
    ) -> CallbackResult:
        """The pasted redirect URL or the browser's callback, whichever comes first."""
        if server is None:
            pasted = self._read_pasted(request, prompt)
            if pasted is None:
                raise CallbackError(
                    "no redirect URL was pasted; run the login again and paste the address "
                    "the browser was sent to after approving"
                )
            if isinstance(pasted[1], OAuthError):
                raise pasted[1]
            return pasted[1]

        def paste_then_deliver() -> None:
            pasted = self._read_pasted(request, prompt)
            if pasted is not None and pasted[0]:
                # Hand the pasted answer to the callback server, which judges it like a
                # browser's and ends its wait: one place decides how the login ends.
                _deliver(server.redirect_uri, pasted[0])

        threading.Thread(target=paste_then_deliver, name="webex-tokens-paste", daemon=True).start()
        return server.wait()

    def _read_pasted(
        self, request: AuthorizationRequest, prompt: Callable[[str], str]
    ) -> tuple[str, CallbackResult | OAuthError] | None:
        """Prompt until a redirect URL parses: (its query, the result or the error to
        raise), or None when nothing was pasted."""
        for attempt in range(1, _PASTE_ATTEMPTS + 1):
            try:
                text = prompt("Redirect URL: ")
            except (EOFError, KeyboardInterrupt, OSError):
                return None
            try:
                result = parse_callback_url(text, request.state, redirect_uri=request.redirect_uri)
            except CallbackError as exc:
                if attempt == _PASTE_ATTEMPTS:
                    return "", exc
                print(f"error: {exc}", file=sys.stderr)
                continue
            except OAuthError as exc:  # the user declined: the server reports it too
                return urlsplit(text.strip()).query, exc
            return urlsplit(text.strip()).query, result
        return None


def _deliver(redirect_uri: str, query: str) -> None:
    """GET the callback server with a pasted query (urllib: nothing logs the URL)."""
    parts = urlsplit(redirect_uri)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    try:
        with urllib.request.urlopen(url, timeout=10):  # noqa: S310 - our own loopback URL
            pass
    except (urllib.error.URLError, OSError):
        pass  # a refused answer (4xx) or a server already stopped: the wait decides


def _is_loopback_http(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and (parts.hostname or "").lower() in (
        "localhost",
        "127.0.0.1",
        "::1",
    )


def _check_url(url: object, what: str, variable: str) -> None:
    if not isinstance(url, str):
        raise ConfigError(f"the {what} must be text, not {type(url).__name__}; set {variable}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"the {what} {_printable(url)!r} is not an http:// or https:// URL; set {variable} "
            "to a full URL such as "
            + (DEFAULT_REDIRECT_URI if variable == "WEBEX_REDIRECT_URI" else DEFAULT_BASE_URL)
        )
