"""Webex OAuth2 on Authlib: authorization URLs with PKCE, code exchange, refresh, whoami.

:class:`WebexOAuth` wraps Authlib's requests ``OAuth2Session`` with what Webex needs and
what Authlib leaves to the caller:

- a fresh ``state`` and PKCE ``code_verifier`` (S256) for every authorization request,
  and a check at code exchange that the request was not swapped or altered;
- every request to Webex sent through :class:`~webex_tokens.token_endpoint.TokenEndpoint`,
  which decides what is retried and turns each answer into a token or the library's own
  error (:mod:`webex_tokens.token_endpoint`);
- :meth:`WebexOAuth.login`: the whole flow on this machine through a loopback callback
  server (:mod:`webex_tokens.login`).

Nothing here logs or puts in a message an access token, a refresh token, the client
secret, an authorization code or a PKCE verifier. Requests' and urllib3's own DEBUG
logging shows request lines only: the token endpoint is called with ``POST`` and a form
body, so no secret is ever in a logged URL.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .errors import (
    CallbackError,
    ConfigError,
    OAuthError,
    ReauthorizationRequired,
)
from .login import login_command
from .oidc import OpenIDProvider, asks_openid
from .scrubbing import Scrubber, printable
from .sessions import SessionPerThread
from .settings import DEFAULT_BASE_URL, DEFAULT_REDIRECT_URI, DEFAULT_SCOPES
from .token import Token
from .token_answer import token_from_answer
from .token_endpoint import (
    AUTHORIZATION_CODE,
    DEFAULT_BACKOFF,
    DEFAULT_MAX_RETRY_AFTER,
    PEOPLE_ME,
    PORTAL,
    REFRESH,
    RetryPolicy,
    TokenEndpoint,
    redirect_uri_mismatch_message,
)

if TYPE_CHECKING:
    from .device import DeviceAuthorization, DeviceGrant
    from .login import Notify
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

_MAX_CODE_LENGTH: Final = 4096
_MIN_STATE_LENGTH: Final = 22  # 128 bits in URL-safe base64


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
        nonce: the OpenID Connect ``nonce`` the ID token must carry back (a request
            for the ``openid`` scope has one), else None.
    """

    url: str
    state: str
    code_verifier: str
    redirect_uri: str
    nonce: str | None = None

    def __repr__(self) -> str:
        return f"AuthorizationRequest(redirect_uri={self.redirect_uri!r})"


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
        max_retries: how many times a failure worth retrying is retried (see
            :mod:`webex_tokens.token_endpoint` for which ones are).
        max_retry_after: the longest ``Retry-After`` waited for; a longer one ends the
            retries with :class:`~webex_tokens.errors.TokenEndpointError`.
        backoff: seconds before the first retry without a ``Retry-After``; doubled for
            each further retry, at most 8 seconds.

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
                f"integration (see {PORTAL})"
            )
        if not isinstance(client_secret, str) or not client_secret.strip():
            raise ConfigError(
                "the client secret is empty; set WEBEX_CLIENT_SECRET to the client secret "
                f"of your integration (see {PORTAL})"
            )
        _check_url(redirect_uri, "redirect URI", "WEBEX_REDIRECT_URI")
        _check_url(base_url, "base URL", "WEBEX_BASE_URL")
        if isinstance(scopes, str):
            scopes = scopes.split()
        scope_list = tuple(s for scope in scopes for s in str(scope).split())
        if not scope_list:
            raise ConfigError("no scopes given; set WEBEX_SCOPES, e.g. to spark:all")
        policy = RetryPolicy(
            timeout=float(timeout),
            max_retries=int(max_retries),
            max_retry_after=float(max_retry_after),
            backoff=float(backoff),
        )
        self.client_id = client_id.strip()
        self._client_secret = client_secret.strip()
        self.redirect_uri = redirect_uri
        self.scopes = scope_list
        self.base_url = base_url.rstrip("/")
        self.timeout = policy.timeout
        self.max_retries = policy.max_retries
        self.max_retry_after = policy.max_retry_after
        self.backoff = policy.backoff
        self._endpoint = TokenEndpoint(self.base_url, policy, secrets=(self._client_secret,))
        self._sessions = SessionPerThread(self.client_id, self._client_secret, self.base_url)
        self._issued_redirect_uris = {redirect_uri}
        self._openid = OpenIDProvider(
            self._endpoint, self._session, base_url=self.base_url, client_id=self.client_id
        )

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
                f"create an integration at {PORTAL} and put its client ID and secret in "
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
        """This thread's Authlib session (:class:`~webex_tokens.sessions.SessionPerThread`)."""
        return self._sessions.get()

    # -- authorization ---------------------------------------------------------------

    def authorization_request(
        self, *, redirect_uri: str | None = None, state: str | None = None
    ) -> AuthorizationRequest:
        """Start an authorization: a URL with a fresh ``state`` and PKCE challenge.

        Args:
            redirect_uri: a redirect URI other than the configured one (it must be
                registered with the integration too).
            state: the ``state`` to send, when the caller made one already (a loopback
                server must know it before the URL exists); at least 22 characters of
                URL-safe randomness, such as ``secrets.token_urlsafe(32)``. Default: a
                fresh one.

        Raises:
            ConfigError: the redirect URI is not an http(s) URL, or ``state`` is too short.
        """
        if state is None:
            state = secrets.token_urlsafe(32)
        elif not isinstance(state, str) or len(state) < _MIN_STATE_LENGTH:
            raise ConfigError(
                "the state of an authorization request must be at least "
                f"{_MIN_STATE_LENGTH} characters of randomness; make it with "
                "secrets.token_urlsafe(32), or leave it out"
            )
        nonce = secrets.token_urlsafe(24) if asks_openid(self.scopes) else None
        return self._request(
            redirect_uri or self.redirect_uri, state, secrets.token_urlsafe(48), nonce=nonce
        )

    def resume_authorization(
        self, state: str, code_verifier: str, *, nonce: str | None = None
    ) -> AuthorizationRequest:
        """The authorization request that ``state`` and ``code_verifier`` were made for,
        rebuilt for the configured redirect URI: a web app worker that did not start a
        login (the login's secrets travel in the browser's sealed cookie) finishes it
        with :meth:`exchange_code` like the worker that did.

        Args:
            state: the login's ``state``.
            code_verifier: the login's PKCE verifier.
            nonce: the OpenID Connect ``nonce`` the login sent, if any.

        Raises:
            ConfigError: ``state`` or ``code_verifier`` is too short to be one of ours.
        """
        if not isinstance(state, str) or len(state) < _MIN_STATE_LENGTH:
            raise ConfigError("the state of the login to resume is not one this library made")
        if not isinstance(code_verifier, str) or not 43 <= len(code_verifier) <= 128:
            raise ConfigError("the PKCE verifier of the login to resume is not a valid one")
        return self._request(self.redirect_uri, state, code_verifier, nonce=nonce)

    def _request(
        self, redirect_uri: str, state: str, verifier: str, *, nonce: str | None = None
    ) -> AuthorizationRequest:
        _check_url(redirect_uri, "redirect URI", "WEBEX_REDIRECT_URI")
        extra = {"nonce": nonce} if nonce is not None else {}
        url, state = self._session().create_authorization_url(
            self.authorize_url,
            state=state,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
            scope=" ".join(self.scopes),
            **extra,
        )
        self._issued_redirect_uris.add(redirect_uri)
        return AuthorizationRequest(
            url=url, state=state, code_verifier=verifier, redirect_uri=redirect_uri, nonce=nonce
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
        if request.nonce is not None or "nonce" in params:
            expected["nonce"] = request.nonce or ""
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

        The code is sent once: a code works only once, so an exchange whose answer is
        lost is not repeated (see :mod:`webex_tokens.token_endpoint`).

        Args:
            code: the code the callback received.
            request: the :class:`AuthorizationRequest` the code answers.
            account: the label to give the token when the person's email is not known;
                the email comes from the verified ID token (``openid``) or
                ``{base_url}/people/me`` (left ``account`` if that call fails).

        Raises:
            OAuthError: ``request`` was not made by this integration or was altered.
            CallbackError: ``code`` is empty or malformed.
            TokenEndpointError: Webex refused the code (expired or already used:
                run the login again), the credentials, or kept failing.
            RedirectURIMismatch: Webex refused the redirect URI.
            IDTokenInvalid: ``openid`` was asked and the ID token failed verification.
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
        answer = self._endpoint.call(
            AUTHORIZATION_CODE,
            lambda: self._session().fetch_token(
                self.token_url,
                grant_type="authorization_code",
                code=code.strip(),
                code_verifier=request.code_verifier,
                redirect_uri=request.redirect_uri,
                **self._request_options(),
            ),
            url=self.token_url,
            redirect_uri=request.redirect_uri,
        )
        token = self._finish(answer, account=account, nonce=request.nonce)
        log.info("authorization code exchanged: token %s for %s", token.fingerprint, token.account)
        return token

    def _finish(
        self, answer: Mapping[str, Any], *, account: str | None, nonce: str | None
    ) -> Token:
        """A login's token: its ID token verified, then labelled with the person's email
        (from the ID token or ``/people/me``) even when the caller names the account."""
        token = token_from_answer(answer, client_id=self.client_id, account=account)
        openid = asks_openid(self.scopes)
        email = self._openid.login_email(token.id_token, asked=openid, nonce=nonce)
        if email is None:
            try:
                email = self.whoami(token)
            except OAuthError as exc:
                level = logging.INFO if account is not None else logging.WARNING
                log.log(level, "the token is not labelled with the person's email: %s", exc)
        return token.replace(account=email or account)

    def refresh(self, token: Token) -> Token:
        """Get a new access token with ``token``'s refresh token.

        The new token keeps ``token``'s account and client ID, and its refresh token (and
        that token's expiry) when Webex sends none back (the one merge rule,
        :func:`webex_tokens.refresh.merge_refreshed`).

        Raises:
            ReauthorizationRequired: there is no refresh token, or Webex refused it
                (``invalid_grant``: expired or revoked).
            TokenEndpointError: the credentials were refused, or Webex kept failing;
                ``delivered`` is None when Webex may have used the refresh token.
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
            answer = self._endpoint.call(
                REFRESH,
                lambda: self._session().refresh_token(
                    self.token_url, refresh_token=refresh_token, **self._request_options()
                ),
                url=self.token_url,
                redirect_uri=self.redirect_uri,
            )
        except ReauthorizationRequired as exc:
            raise ReauthorizationRequired(
                f"Webex refused the refresh token of {token.account or 'this account'} "
                f"({exc}); log in again: {login_command(token.account)}",
                account=token.account,
            ) from None
        from .refresh import merge_refreshed

        new = merge_refreshed(
            token,
            token_from_answer(
                answer, client_id=token.client_id or self.client_id, account=token.account
            ),
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
        person = self._endpoint.call(
            PEOPLE_ME,
            lambda: self._session().get(
                self.people_me_url, headers=headers, withhold_token=True, **self._request_options()
            ),
            url=self.people_me_url,
        )
        emails = person.get("emails") if isinstance(person, Mapping) else None
        email = emails[0] if isinstance(emails, list) and emails else None
        if (
            not isinstance(email, str)
            or not 0 < len(email) <= 320
            or not email.isprintable()
            or any(c.isspace() for c in email)
            or Scrubber([token.access_token]).reveals(email)
        ):
            raise OAuthError(
                f"{self.people_me_url} answered without a usable email address; pass account= "
                "(or --name) to label the token yourself"
            )
        return email

    # -- OpenID Connect and the device grant ----------------------------------------

    def verify_id_token(self, id_token: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of an ID token of this integration once verified: signature, issuer,
        audience, expiry and, when given, ``nonce`` (:mod:`webex_tokens.oidc`).

        Raises:
            IDTokenInvalid: a check failed; the message says which.
            TokenEndpointError: the discovery document or the keys cannot be fetched.
        """
        return self._openid.verify(id_token, nonce=nonce)

    def userinfo(self, token: Token) -> dict[str, Any]:
        """The claims of ``token``'s person (``{base_url}/userinfo``; needs ``openid``).

        Raises:
            OAuthError: Webex refused the token, or could not be reached.
        """
        return self._openid.userinfo(token.access_token)

    def _device_grant(
        self, clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None
    ) -> DeviceGrant:
        from .device import DeviceGrant

        return DeviceGrant(
            self._endpoint,
            self._session(),
            base_url=self.base_url,
            client_id=self.client_id,
            client_secret=self._client_secret,
            clock=clock,
            sleep=sleep,
        )

    def device_authorization(self) -> DeviceAuthorization:
        """Start a device-grant login at ``{base_url}/device/authorize``: the code the
        person types and where (:meth:`DeviceGrant.authorize
        <webex_tokens.device.DeviceGrant.authorize>`, which lists what it raises)."""
        return self._device_grant().authorize(self.scopes)

    def poll_device(
        self,
        flow: DeviceAuthorization,
        *,
        timeout: float | None = None,
        account: str | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> Token:
        """Wait for the approval of ``flow`` and return the token, labelled as by
        :meth:`exchange_code` (:meth:`DeviceGrant.poll <webex_tokens.device.DeviceGrant.poll>`
        polls, with ``timeout``, ``clock`` and ``sleep``).

        Raises:
            DeviceCodeExpired: the code expired, or ``timeout`` passed, first.
            AuthorizationDenied: the person declined.
            IDTokenInvalid: ``openid`` was asked and the ID token failed verification.
            TokenEndpointError: Webex refused the poll otherwise, or kept failing.
        """
        answer = self._device_grant(clock, sleep).poll(flow, timeout)
        token = self._finish(answer, account=account, nonce=None)
        log.info("device login approved: token %s for %s", token.fingerprint, token.account)
        return token

    def device_login(
        self, notify: Notify | None = None, timeout: float = 300, *, account: str | None = None
    ) -> Token:
        """The whole device-grant login, telling the person the code and the link through
        ``notify`` (:func:`webex_tokens.login.device_login`, which lists what it raises)."""
        from .login import device_login

        return device_login(self, notify=notify, timeout=timeout, account=account)

    def _request_options(self) -> dict[str, Any]:
        return self._endpoint.request_options()

    # -- the whole flow --------------------------------------------------------------

    def login(
        self,
        open_browser: Callable[[str], bool] | None = webbrowser.open,
        timeout: float = 300,
        *,
        account: str | None = None,
        port: int | None = None,
        prompt: Callable[[str], str] | None = None,
        notify: Notify | None = None,
    ) -> Token:
        """Run the whole authorization on this machine and return the token.

        The authorization URL is opened with ``open_browser`` and a loopback callback
        server receives the code; when no browser opens (None, False or an exception)
        the person is told to open the URL and paste the redirect URL back, read with
        ``prompt``. ``notify`` receives each :class:`~webex_tokens.login.Notice` of what
        to do (default: :func:`~webex_tokens.login.stderr_notify`, standard error).
        Every argument is that of :func:`webex_tokens.login.browser_login`.

        Raises:
            CallbackError: the port is taken, the callback was wrong, or none came in time.
            AuthorizationDenied: the user declined.
            RedirectURIMismatch: Webex refused the redirect URI.
            TokenEndpointError: the code exchange failed.
        """
        from .login import browser_login

        return browser_login(
            self,
            open_browser=open_browser,
            timeout=timeout,
            account=account,
            port=port,
            prompt=prompt,
            notify=notify,
        )


def _check_url(url: object, what: str, variable: str) -> None:
    if not isinstance(url, str):
        raise ConfigError(f"the {what} must be text, not {type(url).__name__}; set {variable}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"the {what} {printable(url)!r} is not an http:// or https:// URL; set {variable} "
            "to a full URL such as "
            + (DEFAULT_REDIRECT_URI if variable == "WEBEX_REDIRECT_URI" else DEFAULT_BASE_URL)
        )
