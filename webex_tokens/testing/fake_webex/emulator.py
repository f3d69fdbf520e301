"""FakeWebex itself: its lifecycle, its routes, and the controls of the integration's flow.

:class:`FakeWebex` is the shared :class:`~.state.Core` plus an HTTP server and one part
per concern, each owning its endpoints and controls: ``fake.device``
(:class:`~.device.DeviceGrant`), ``fake.service_apps`` (:class:`~.service_apps.ServiceApps`)
and ``fake.oidc`` (:class:`~.oidc.OpenIDConnect`). The authorization-code flow, bots,
personal tokens and people are controlled on ``fake`` directly.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import requests

from ...errors import OAuthError, RedirectURIMismatch
from .answers import ERROR_HEADER, Answer, json_answer, tracking_id
from .device import DeviceGrant
from .oauth import CONSENT_HEADER, MISMATCH_TEXT, AuthorizationEndpoints
from .oidc import OpenIDConnect
from .people import BOT_DOMAIN, org_id_of, people_me
from .server import EmulatorServer, Endpoint, Request, RequestRecord, log
from .service_apps import ServiceApps
from .state import Core, Failure

__all__ = ["DEFAULT_REDIRECT_URI", "FAILING_ENDPOINTS", "PERSONAL_TOKEN_SCOPES", "FakeWebex"]

#: The redirect URI the legacy guide registers, and FakeWebex's default.
DEFAULT_REDIRECT_URI = "http://localhost:8000/oauth/webex/callback"
#: The scopes of a personal access token by default: a developer's token can do what
#: its owner can, including minting Service App tokens.
PERSONAL_TOKEN_SCOPES = "spark:all spark:applications_token"
#: The endpoints :meth:`FakeWebex.fail_next` can make fail.
FAILING_ENDPOINTS = ("access_token", "device_authorize", "device_token", "service_app_token")


_T = TypeVar("_T")


class _Shared(Generic[_T]):
    """An attribute of FakeWebex that lives in its Core, where every part reads it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type) -> _Shared[_T]: ...
    @overload
    def __get__(self, instance: FakeWebex, owner: type) -> _T: ...
    def __get__(self, instance: FakeWebex | None, owner: type) -> _Shared[_T] | _T:
        if instance is None:
            return self
        value: _T = getattr(instance._core, self._name)
        return value

    def __set__(self, instance: FakeWebex, value: _T) -> None:
        setattr(instance._core, self._name, value)


def _method_not_allowed(allowed: str) -> Endpoint:
    def answer(request: Request) -> Answer:
        body = {"message": f"Use {allowed}.", "trackingId": tracking_id()}
        return json_answer(405, body, Allow=allowed)

    return answer


class FakeWebex:
    """A Webex OAuth2 server on loopback, with knobs for the awkward cases.

    Args:
        client_id: the integration's client ID.
        client_secret: its client secret.
        redirect_uris: the redirect URIs registered with the integration (exact match).
        user: email the next authorization logs in as (settable at any time).
        expires_in: access-token lifetime in seconds.
        refresh_token_expires_in: refresh-token lifetime in seconds, renewed on each use.
        rotate_refresh_tokens: issue a new refresh token on each refresh and detect reuse
            (Webex itself returns the same refresh token; settable at any time).
        code_ttl: seconds an authorization code stays valid.
        host: the address to bind (loopback).
        port: the port to bind; 0 picks a free one.
        consent_page: show a sign-in page at ``/authorize`` instead of approving at once.
        on_request: called with a :class:`RequestRecord` after each request is answered.

    Attributes:
        calls: requests counted by kind: ``authorize``, ``access_token``,
            ``authorization_code``, ``refresh_token`` (token requests by grant type, failed
            ones included) and ``people_me``; and, once used, ``authorize_consent``,
            ``device_authorize``, ``device_token``, ``verify``, ``service_app_token``,
            ``openid_configuration``, ``jwks`` and ``userinfo``.
        revoked_families: refresh-token families revoked because a rotated-away refresh
            token was presented again.
        delay: seconds the token endpoint waits before answering.
        consent_page: whether ``/authorize`` shows a sign-in page (settable at any time).
        on_request: the request callback (settable at any time); it must not raise.
        device: the device grant's endpoints and controls.
        service_apps: the Service Apps' endpoint and controls.
        oidc: OpenID Connect's endpoints and controls.
        last_callback_status, last_callback_page: what the callback answered the last time
            :meth:`open_browser` delivered a redirect.
    """

    path_prefix = "/v1"
    client_id = _Shared[str]()
    client_secret = _Shared[str]()
    user = _Shared[str]()
    expires_in = _Shared[int]()
    refresh_token_expires_in = _Shared[int]()
    rotate_refresh_tokens = _Shared[bool]()
    code_ttl = _Shared[float]()
    consent_page = _Shared[bool]()
    delay = _Shared[float]()
    calls = _Shared[collections.Counter[str]]()
    revoked_families = _Shared[int]()

    def __init__(
        self,
        *,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        redirect_uris: Iterable[str] = (DEFAULT_REDIRECT_URI,),
        user: str = "alice@example.com",
        expires_in: int = 1209600,
        refresh_token_expires_in: int = 7776000,
        rotate_refresh_tokens: bool = False,
        code_ttl: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
        consent_page: bool = False,
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self._core = core = Core(
            client_id=client_id,
            client_secret=client_secret,
            user=user,
            expires_in=expires_in,
            refresh_token_expires_in=refresh_token_expires_in,
            rotate_refresh_tokens=rotate_refresh_tokens,
            code_ttl=code_ttl,
        )
        self.host = host
        self.consent_page = consent_page
        self.on_request = on_request
        self.last_callback_status: int | None = None
        self.last_callback_page: str | None = None
        self._requested_port = port
        self._redirect_uris: list[str] = list(redirect_uris)
        self.oidc = OpenIDConnect(core)
        self.device = DeviceGrant(core, self.oidc)
        self.service_apps = ServiceApps(core)
        self._oauth = AuthorizationEndpoints(core, self.oidc, lambda: self._redirect_uris)
        self._routes = self._route_table()
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._server else "not started"
        return f"FakeWebex({where}, client_id={self.client_id!r}, user={self.user!r})"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeWebex:
        """Bind the port and serve in a daemon thread; returns self. Idempotent.

        Raises:
            OSError: the port cannot be bound (in use, or not allowed).
        """
        if self._server is None:
            server = EmulatorServer(
                (self.host, self._requested_port), self._resolve, self._answered
            )
            self._server = server
            self._core.serve_at(f"http://{self.host}:{server.server_address[1]}")
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"FakeWebex:{server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port. Safe to call more than once."""
        server, self._server = self._server, None
        self._core.serve_at(None)
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeWebex:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: the emulator has not been started.
        """
        if self._server is None:
            raise RuntimeError("FakeWebex is not running: call start() or use it as a context")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: pass it as ``base_url`` to the OAuth client."""
        return f"http://{self.host}:{self.port}{self.path_prefix}"

    @property
    def authorize_url(self) -> str:
        """The authorization endpoint."""
        return self.base_url + "/authorize"

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return self.base_url + "/access_token"

    @property
    def people_me_url(self) -> str:
        """The ``/people/me`` endpoint."""
        return self.base_url + "/people/me"

    @property
    def redirect_uris(self) -> tuple[str, ...]:
        """The registered redirect URIs."""
        with self._core.lock:
            return tuple(self._redirect_uris)

    def environment(self, redirect_uri: str | None = None) -> dict[str, str]:
        """The environment variables that point an app at this emulator.

        Args:
            redirect_uri: the ``WEBEX_REDIRECT_URI`` (default the first registered one).

        Returns:
            ``WEBEX_BASE_URL``, ``WEBEX_CLIENT_ID``, ``WEBEX_CLIENT_SECRET`` and, when a
            redirect URI is registered or given, ``WEBEX_REDIRECT_URI``. The secret is the
            emulator's own, worthless outside it.
        """
        environment = {
            "WEBEX_BASE_URL": self.base_url,
            "WEBEX_CLIENT_ID": self.client_id,
            "WEBEX_CLIENT_SECRET": self.client_secret,
        }
        uri = redirect_uri or next(iter(self.redirect_uris), None)
        if uri:
            environment["WEBEX_REDIRECT_URI"] = uri
        return environment

    # -- routing ------------------------------------------------------------------------

    def _route_table(self) -> dict[str, dict[str, Endpoint]]:
        v1 = self.path_prefix
        oauth, device, oidc = self._oauth, self.device, self.oidc

        def form_post(call: Callable[[str | None, str | None, bytes], Answer]) -> Endpoint:
            return lambda r: call(
                r.headers.get("Authorization"), r.headers.get("Content-Type"), r.body
            )

        discovery: Endpoint = lambda r: oidc.configuration()  # noqa: E731
        return {
            f"{v1}/authorize": {
                "GET": lambda r: oauth.authorize(r.query),
                "POST": lambda r: oauth.consent(r.headers.get("Content-Type"), r.body),
            },
            f"{v1}/access_token": {"POST": form_post(oauth.token)},
            f"{v1}/people/me": {
                "GET": lambda r: people_me(self._core, r.headers.get("Authorization"))
            },
            f"{v1}/device/authorize": {"POST": form_post(device.authorize)},
            f"{v1}/device/token": {"POST": form_post(device.token)},
            "/verify": {
                "GET": lambda r: device.page(r.query),
                "POST": lambda r: device.submit(r.headers.get("Content-Type"), r.body),
            },
            f"{v1}/.well-known/openid-configuration": {"GET": discovery},
            "/idb/.well-known/openid-configuration": {"GET": discovery},
            f"{v1}/verification": {"GET": lambda r: oidc.jwks()},
            f"{v1}/userinfo": {"GET": lambda r: oidc.userinfo(r.headers.get("Authorization"))},
        }

    def _resolve(self, method: str, path: str) -> Endpoint | None:
        methods = self._routes.get(path)
        if methods is None:
            parts = path.split("/")
            # /v1/applications/{appId}/token
            if len(parts) == 5 and parts[1:3] == ["v1", "applications"] and parts[4] == "token":
                app_id = parts[3]
                methods = {
                    "POST": lambda r: self.service_apps.mint(
                        app_id,
                        r.headers.get("Authorization"),
                        r.headers.get("Content-Type"),
                        r.body,
                    )
                }
            else:
                return None
        endpoint = methods.get(method)
        return endpoint or _method_not_allowed(", ".join(sorted(methods)))

    def _answered(self, record: RequestRecord) -> None:
        callback = self.on_request
        if callback is None:
            return
        try:
            callback(record)
        except Exception as error:  # the server must go on answering
            log.warning("FakeWebex on_request callback raised %s", type(error).__name__)

    # -- knobs -----------------------------------------------------------------------

    def add_redirect_uri(self, uri: str) -> None:
        """Register one more redirect URI (matched exactly, like Webex does)."""
        with self._core.lock:
            if uri not in self._redirect_uris:
                self._redirect_uris.append(uri)

    def deny_next_authorization(self) -> None:
        """Make the next valid ``/authorize`` redirect with ``error=access_denied``."""
        with self._core.lock:
            self._oauth.deny_next = True

    def fail_next(
        self,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: bytes | None = None,
        endpoint: str = "access_token",
    ) -> None:
        """Make the next ``times`` requests to an endpoint fail with ``status``.

        Args:
            status: the HTTP status to answer (429, 500, 503, ...).
            times: how many requests in a row fail.
            retry_after: seconds sent in a ``Retry-After`` header (whole seconds are sent
                as an integer, fractions as a decimal).
            body: the raw answer body (``b"garbage"`` for a non-JSON answer); by default a
                Webex-style JSON error.
            endpoint: which endpoint fails (one of :data:`FAILING_ENDPOINTS`): the token
                endpoint by default.

        Raises:
            ValueError: ``times`` is below 1, or the endpoint is not one of those.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if endpoint not in FAILING_ENDPOINTS:
            raise ValueError(f"endpoint must be one of {FAILING_ENDPOINTS}, not {endpoint!r}")
        self._core.add_failures(endpoint, Failure(status, retry_after, body), times)

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far stop working (``/people/me`` answers 401).

        Bot and personal tokens included: use it to test a revoked bot token too.
        """
        with self._core.lock:
            self._core.expire_access_records()

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token issued so far: refreshing answers ``invalid_grant``."""
        with self._core.lock:
            self._core.revoke_refresh_records()

    # -- tokens without a flow ---------------------------------------------------------

    def issue_token(self, user: str | None = None, *, scope: str = "spark:all") -> dict[str, Any]:
        """Mint a token answer directly, as if ``user`` (default :attr:`user`) had logged in.

        Returns:
            The JSON object the token endpoint would have answered (with an ``id_token``
            when ``scope`` includes ``openid``).
        """
        core = self._core
        with core.lock:
            family_id = core.new_family(core.client_id, user or core.user, scope)
            answer = core.grant(family_id)
            if "openid" in scope.split():
                answer["id_token"] = self.oidc.id_token(core.family(family_id), nonce=None)
            return answer

    def issue_bot_token(self, name: str = "fake-bot", *, email: str | None = None) -> str:
        """A bot's access token: it never expires, cannot be refreshed, and ``/people/me``
        answers ``"type": "bot"`` with the email ``NAME@webex.bot`` (or ``email``)."""
        core = self._core
        with core.lock:
            family_id = core.new_family(
                "", email or f"{name}@{BOT_DOMAIN}", "", kind="bot", org_id=org_id_of(core.user)
            )
            return core.issue_access(family_id, None)

    def issue_personal_token(
        self,
        user: str | None = None,
        *,
        scope: str = PERSONAL_TOKEN_SCOPES,
        expires_in: float = 12 * 3600,
    ) -> str:
        """A personal access token of ``user`` (default :attr:`user`): 12 hours, no refresh.

        Args:
            user: whose token it is.
            scope: its scopes (default :data:`PERSONAL_TOKEN_SCOPES`).
            expires_in: its lifetime in seconds (Webex: 12 hours).
        """
        core = self._core
        with core.lock:
            family_id = core.new_family("", user or core.user, scope, kind="personal")
            return core.issue_access(family_id, expires_in)

    @staticmethod
    def org_id(email_or_domain: str) -> str:
        """The Webex organization ID of an email's domain, or of a domain.

        Everyone whose email is at ``customer.example`` belongs to
        ``fake.org_id("customer.example")``.
        """
        return org_id_of(email_or_domain)

    # -- the simulated user ----------------------------------------------------------

    def approve(self, authorize_url: str) -> str:
        """Act as the user: GET ``authorize_url`` without following the redirect.

        With :attr:`consent_page` on, the user then accepts the page as :attr:`user`.

        Returns:
            The ``Location`` Webex redirects to: the redirect URI with ``code`` and
            ``state``, or with ``error`` and ``error_description``.

        Raises:
            RedirectURIMismatch: the redirect URI is not registered (Webex shows its
                ``redirect_uri_mismatch`` page instead of redirecting).
            OAuthError: any other error page (unknown client ID, malformed request).
        """
        response = requests.get(authorize_url, allow_redirects=False, timeout=10)
        consent = response.headers.get(CONSENT_HEADER)
        if response.status_code == 200 and consent:
            form = {"request": consent, "email": self.user, "decision": "approve"}
            response = requests.post(
                self.authorize_url, data=form, allow_redirects=False, timeout=10
            )
        location = response.headers.get("Location")
        if response.status_code in (301, 302, 303, 307, 308) and location:
            return location
        error = response.headers.get(ERROR_HEADER, "")
        if error == "redirect_uri_mismatch":
            raise RedirectURIMismatch(
                "redirect_uri_mismatch: " + MISMATCH_TEXT + " Register the exact redirect URI "
                "with the integration (FakeWebex.add_redirect_uri), or send one that is."
            )
        raise OAuthError(
            f"the authorization page answered {response.status_code} "
            f"{error or 'without a redirect'}; check the client ID and the request parameters"
        )

    def open_browser(self, authorize_url: str) -> bool:
        """Act as the user's browser: :meth:`approve`, then GET the redirect over HTTP.

        This delivers the code (or the error) to the loopback callback server, which must
        already be serving. Usable as ``WebexOAuth.login(open_browser=fake.open_browser)``.

        Returns:
            True, like :func:`webbrowser.open` when a browser opened.

        Raises:
            RedirectURIMismatch, OAuthError: as :meth:`approve`.
            requests.ConnectionError: nothing listens at the redirect URI.
        """
        location = self.approve(authorize_url)
        response = requests.get(location, allow_redirects=False, timeout=10)
        self.last_callback_status = response.status_code
        self.last_callback_page = response.text
        return True
