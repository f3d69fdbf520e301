"""FakeWebex: an emulator of Webex's OAuth2 and people endpoints, served over real HTTP.

It listens on 127.0.0.1 (an ephemeral port by default) and answers like
``https://webexapis.com/v1`` does for:

- ``GET  /v1/authorize``     the consent step; the simulated user approves at once
  (or denies after :meth:`FakeWebex.deny_next_authorization`) and the answer is a 302 to
  the registered redirect URI with ``code`` and ``state``;
- ``POST /v1/access_token``  ``authorization_code`` (PKCE S256 checked) and
  ``refresh_token`` grants, with optional refresh-token rotation and reuse detection;
- ``GET  /v1/people/me``     the signed-in person, for a valid bearer access token.

Use it as a context manager or through the ``fake_webex`` pytest fixture::

    with FakeWebex() as fake:
        oauth = WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url)

See ``docs/emulator.md`` for every knob and for what it does not emulate.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import requests

from ..errors import OAuthError, RedirectURIMismatch

__all__ = ["DEFAULT_REDIRECT_URI", "FakeWebex"]

_log = logging.getLogger(__name__)

#: The redirect URI the legacy guide registers, and FakeWebex's default.
DEFAULT_REDIRECT_URI = "http://localhost:8000/oauth/webex/callback"

_MAX_BODY = 64 * 1024
# RFC 7636: verifiers and S256 challenges use the unreserved characters only.
_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE_RE = re.compile(r"[A-Za-z0-9\-_]{43}")
_MISMATCH_TEXT = "The redirection URI provided does not match a pre-registered value."
_ERROR_HEADER = "X-Fake-Webex-Error"


@dataclasses.dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    user: str
    scope: str
    expires_at: float


@dataclasses.dataclass
class _Family:
    """Every token descended from one login."""

    client_id: str
    user: str
    scope: str
    revoked: bool = False


@dataclasses.dataclass
class _Refresh:
    family: int
    expires_at: float
    used: bool = False  # rotated away: presenting it again is reuse
    revoked: bool = False


@dataclasses.dataclass
class _Access:
    family: int
    expires_at: float


@dataclasses.dataclass
class _Failure:
    status: int
    retry_after: float | None
    body: bytes | None


@dataclasses.dataclass
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def _tracking_id() -> str:
    return "ROUTER_" + uuid.uuid4().hex.upper()


def _json(status: int, payload: dict[str, Any], **headers: str) -> _Answer:
    body = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json;charset=UTF-8", **headers}
    return _Answer(status, body, headers)


def _oauth_error(status: int, error: str, description: str, **headers: str) -> _Answer:
    """A token-endpoint error: the OAuth2 fields plus the ones Webex adds."""
    return _json(
        status,
        {
            "error": error,
            "error_description": description,
            "message": description,
            "errors": [{"description": description}],
            "trackingId": _tracking_id(),
        },
        **headers,
    )


def _page(status: int, error: str, description: str) -> _Answer:
    """An HTML error page, as Webex shows in the browser for a request it cannot redirect."""
    text = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Webex</title></head><body>"
        f"<h1>{html.escape(error)}</h1><p>{html.escape(description)}</p></body></html>"
    )
    return _Answer(
        status,
        text.encode("utf-8"),
        {"Content-Type": "text/html; charset=utf-8", _ERROR_HEADER: error},
    )


def _with_query(uri: str, fields: dict[str, str]) -> str:
    separator = "&" if urlsplit(uri).query else "?"
    return uri + separator + urlencode(fields)


def _single_values(query: str) -> dict[str, str] | None:
    """Query or form fields, one value each; None when a field is repeated."""
    parsed = parse_qs(query, keep_blank_values=True)
    if any(len(values) != 1 for values in parsed.values()):
        return None
    return {name: values[0] for name, values in parsed.items()}


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _basic_credentials(header: str | None) -> tuple[str, str] | bool | None:
    """(client_id, secret) from an HTTP Basic header; None if absent; False if malformed."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return False
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before encoding.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def _person(user: str) -> dict[str, Any]:
    """The /people/me answer for ``user``, in the shape of Webex's people API."""
    person_uuid = uuid.uuid5(uuid.NAMESPACE_URL, "person:" + user.lower())
    domain = user.rpartition("@")[2] or "example.com"
    org_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, domain.lower())
    local = user.partition("@")[0] or user
    first, _, last = local.replace("_", ".").partition(".")
    display = " ".join(part.capitalize() for part in (first, last) if part)

    def webex_id(kind: str, value: uuid.UUID) -> str:
        raw = f"ciscospark://us/{kind}/{value}".encode()
        return base64.b64encode(raw).decode("ascii").rstrip("=")

    return {
        "id": webex_id("PEOPLE", person_uuid),
        "emails": [user],
        "phoneNumbers": [],
        "displayName": display,
        "nickName": first.capitalize(),
        "firstName": first.capitalize(),
        "lastName": last.capitalize(),
        "orgId": webex_id("ORGANIZATION", org_uuid),
        "created": "2024-01-01T00:00:00.000Z",
        "lastModified": "2024-01-01T00:00:00.000Z",
        "status": "active",
        "type": "person",
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeWebex


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "FakeWebex/1"
    sys_version = ""
    timeout = 30
    # Keep connections open between requests, as Webex does: every answer has a
    # Content-Length, and a request whose body is left unread closes its connection.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the body must not wait for the headers' ACK

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry codes and states: log the method and path only.
        _log.debug("%s %s", self.command, urlsplit(self.path).path)

    def _send(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("TrackingID", _tracking_id())
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def _route(self) -> str:
        path = urlsplit(self.path).path
        prefix = self.server.fake.path_prefix
        return path[len(prefix) :] if path.startswith(prefix + "/") else path

    def do_GET(self) -> None:
        route = self._route()
        fake = self.server.fake
        if route == "/authorize":
            self._send(fake._authorize(urlsplit(self.path).query))
        elif route == "/people/me":
            self._send(fake._people_me(self.headers.get("Authorization")))
        elif route == "/access_token":
            self._send(_json(405, {"message": "Use POST.", "trackingId": _tracking_id()}))
        else:
            self._send(_json(404, {"message": "The requested resource could not be found."}))

    def do_POST(self) -> None:
        route = self._route()
        if route != "/access_token":
            self.close_connection = True  # the body is not read
            self._send(_json(404, {"message": "The requested resource could not be found."}))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._send(_oauth_error(400, "invalid_request", "Bad Content-Length."))
            return
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # a chunked body is not read
        body = self.rfile.read(length)
        self._send(
            self.server.fake._token(
                self.headers.get("Authorization"), self.headers.get("Content-Type"), body
            )
        )


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

    Attributes:
        calls: requests counted by kind: ``authorize``, ``access_token``,
            ``authorization_code``, ``refresh_token`` (token requests by grant type, failed
            ones included) and ``people_me``.
        revoked_families: refresh-token families revoked because a rotated-away refresh
            token was presented again.
        delay: seconds the token endpoint waits before answering.
        last_callback_status, last_callback_page: what the callback answered the last time
            :meth:`open_browser` delivered a redirect.
    """

    path_prefix = "/v1"

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
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.user = user
        self.expires_in = expires_in
        self.refresh_token_expires_in = refresh_token_expires_in
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.code_ttl = code_ttl
        self.host = host
        self.delay = 0.0
        self.calls: collections.Counter[str] = collections.Counter()
        self.revoked_families = 0
        self.last_callback_status: int | None = None
        self.last_callback_page: str | None = None
        self._requested_port = port
        self._lock = threading.Lock()
        self._redirect_uris: list[str] = list(redirect_uris)
        self._codes: dict[str, _Code] = {}
        self._families: dict[int, _Family] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._access: dict[str, _Access] = {}
        self._failures: collections.deque[_Failure] = collections.deque()
        self._deny_next = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._server else "not started"
        return f"FakeWebex({where}, client_id={self.client_id!r}, user={self.user!r})"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeWebex:
        """Bind the port and serve in a daemon thread; returns self. Idempotent."""
        if self._server is None:
            server = _Server((self.host, self._requested_port), _Handler)
            server.fake = self
            self._server = server
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
        with self._lock:
            return tuple(self._redirect_uris)

    # -- knobs -----------------------------------------------------------------------

    def add_redirect_uri(self, uri: str) -> None:
        """Register one more redirect URI (matched exactly, like Webex does)."""
        with self._lock:
            if uri not in self._redirect_uris:
                self._redirect_uris.append(uri)

    def deny_next_authorization(self) -> None:
        """Make the next valid ``/authorize`` redirect with ``error=access_denied``."""
        with self._lock:
            self._deny_next = True

    def fail_next(
        self,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: bytes | None = None,
    ) -> None:
        """Make the next ``times`` token-endpoint requests fail with ``status``.

        Args:
            status: the HTTP status to answer (429, 500, 503, ...).
            times: how many requests in a row fail.
            retry_after: seconds sent in a ``Retry-After`` header (whole seconds are sent
                as an integer, fractions as a decimal).
            body: the raw answer body (``b"garbage"`` for a non-JSON answer); by default a
                Webex-style JSON error.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            for _ in range(times):
                self._failures.append(_Failure(status, retry_after, body))

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far stop working (``/people/me`` answers 401)."""
        now = time.monotonic()
        with self._lock:
            for access in self._access.values():
                access.expires_at = min(access.expires_at, now - 1)

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token issued so far: refreshing answers ``invalid_grant``."""
        with self._lock:
            for refresh in self._refresh.values():
                refresh.revoked = True

    def issue_token(self, user: str | None = None, *, scope: str = "spark:all") -> dict[str, Any]:
        """Mint a token answer directly, as if ``user`` (default :attr:`user`) had logged in.

        Returns:
            The JSON object the token endpoint would have answered.
        """
        with self._lock:
            family = self._new_family(self.client_id, user or self.user, scope)
            return self._grant(family, refresh_token=None)

    # -- the simulated user ----------------------------------------------------------

    def approve(self, authorize_url: str) -> str:
        """Act as the user: GET ``authorize_url`` without following the redirect.

        Returns:
            The ``Location`` Webex redirects to: the redirect URI with ``code`` and
            ``state``, or with ``error`` and ``error_description``.

        Raises:
            RedirectURIMismatch: the redirect URI is not registered (Webex shows its
                ``redirect_uri_mismatch`` page instead of redirecting).
            OAuthError: any other error page (unknown client ID, malformed request).
        """
        response = requests.get(authorize_url, allow_redirects=False, timeout=10)
        location = response.headers.get("Location")
        if response.status_code in (301, 302, 303, 307, 308) and location:
            return location
        error = response.headers.get(_ERROR_HEADER, "")
        if error == "redirect_uri_mismatch":
            raise RedirectURIMismatch(
                "redirect_uri_mismatch: " + _MISMATCH_TEXT + " Register the exact redirect URI "
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

    # -- endpoints (called by the request handler) -------------------------------------

    def _authorize(self, query: str) -> _Answer:
        params = _single_values(query)
        with self._lock:
            self.calls["authorize"] += 1
            if params is None:
                return _page(400, "invalid_request", "A parameter was sent more than once.")
            if params.get("client_id") != self.client_id:
                return _page(
                    400, "invalid_client", "The client_id provided is not a registered client."
                )
            redirect_uri = params.get("redirect_uri", "")
            if redirect_uri not in self._redirect_uris:
                return _page(400, "redirect_uri_mismatch", _MISMATCH_TEXT)
            back: dict[str, str] = {}
            if "state" in params:
                back["state"] = params["state"]

            def redirect(**fields: str) -> _Answer:
                location = _with_query(redirect_uri, {**fields, **back})
                return _Answer(302, b"", {"Location": location, "Cache-Control": "no-store"})

            if params.get("response_type") != "code":
                return redirect(
                    error="unsupported_response_type",
                    error_description="response_type must be code.",
                )
            scope = " ".join(params.get("scope", "").split())
            if not scope:
                return redirect(error="invalid_scope", error_description="scope is required.")
            challenge = params.get("code_challenge", "")
            if params.get("code_challenge_method") != "S256" or not _CHALLENGE_RE.fullmatch(
                challenge
            ):
                return redirect(
                    error="invalid_request",
                    error_description="PKCE is required: send code_challenge with "
                    "code_challenge_method=S256.",
                )
            if self._deny_next:
                self._deny_next = False
                return redirect(
                    error="access_denied",
                    error_description="The user declined the authorization request.",
                )
            code = secrets.token_urlsafe(32)
            self._codes[code] = _Code(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                challenge=challenge,
                user=self.user,
                scope=scope,
                expires_at=time.monotonic() + self.code_ttl,
            )
            return redirect(code=code)

    def _token(self, authorization: str | None, content_type: str | None, body: bytes) -> _Answer:
        try:
            form = _single_values(body.decode("utf-8"))
        except UnicodeDecodeError:
            form = None
        grant_type = (form or {}).get("grant_type", "")
        with self._lock:
            self.calls["access_token"] += 1
            if grant_type in ("authorization_code", "refresh_token"):
                self.calls[grant_type] += 1
            failure = self._failures.popleft() if self._failures else None
            delay = self.delay
        if delay > 0:
            time.sleep(delay)  # outside the lock: other requests go on meanwhile
        if failure is not None:
            return self._failure_answer(failure)
        media_type = (content_type or "").partition(";")[0].strip().lower()
        if media_type != "application/x-www-form-urlencoded" or form is None:
            return _oauth_error(
                400,
                "invalid_request",
                "Send one of each parameter as application/x-www-form-urlencoded.",
            )
        with self._lock:
            client = self._authenticate_client(authorization, form)
            if isinstance(client, _Answer):
                return client
            if grant_type == "authorization_code":
                return self._exchange_code(form)
            if grant_type == "refresh_token":
                return self._refresh_grant(form)
        return _oauth_error(
            400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token."
        )

    @staticmethod
    def _failure_answer(failure: _Failure) -> _Answer:
        headers: dict[str, str] = {}
        if failure.retry_after is not None:
            seconds = failure.retry_after
            headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        if failure.body is not None:
            return _Answer(failure.status, failure.body, {"Content-Type": "text/html", **headers})
        message = {
            429: "Too many requests have been made.",
            503: "Service Unavailable.",
        }.get(failure.status, "Server error.")
        return _json(
            failure.status,
            {
                "message": message,
                "errors": [{"description": message}],
                "trackingId": _tracking_id(),
            },
            **headers,
        )

    def _authenticate_client(
        self, authorization: str | None, form: dict[str, str]
    ) -> _Answer | str:
        """The authenticated client ID, or the error answer. Caller holds the lock."""
        basic = _basic_credentials(authorization)
        if basic is False:
            return _oauth_error(
                401,
                "invalid_client",
                "Malformed client authentication.",
                **{"WWW-Authenticate": 'Basic realm="webex"'},
            )
        if isinstance(basic, tuple):
            if "client_secret" in form:
                return _oauth_error(
                    400, "invalid_request", "Use one client authentication method, not two."
                )
            client_id, secret = basic
            if form.get("client_id", client_id) != client_id:
                return _oauth_error(401, "invalid_client", "Client authentication failed.")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not (_same(client_id, self.client_id) and _same(secret, self.client_secret)):
            return _oauth_error(
                401,
                "invalid_client",
                "Client authentication failed: unknown client_id or wrong client_secret.",
                **({"WWW-Authenticate": 'Basic realm="webex"'} if basic else {}),
            )
        return client_id

    def _exchange_code(self, form: dict[str, str]) -> _Answer:
        """Caller holds the lock. A presented code is used up, whatever the outcome."""
        entry = self._codes.pop(form.get("code", ""), None)
        if entry is None or entry.client_id != self.client_id:
            return _oauth_error(
                400, "invalid_grant", "The authorization code is invalid or was already used."
            )
        if time.monotonic() > entry.expires_at:
            return _oauth_error(400, "invalid_grant", "The authorization code has expired.")
        if form.get("redirect_uri") != entry.redirect_uri:
            return _oauth_error(
                400,
                "invalid_grant",
                "redirect_uri does not match the one of the authorization request.",
            )
        verifier = form.get("code_verifier", "")
        if not _VERIFIER_RE.fullmatch(verifier) or not _same(_s256(verifier), entry.challenge):
            return _oauth_error(
                400, "invalid_grant", "code_verifier does not match the code_challenge."
            )
        family = self._new_family(entry.client_id, entry.user, entry.scope)
        return _json(200, self._grant(family, refresh_token=None), **{"Cache-Control": "no-store"})

    def _refresh_grant(self, form: dict[str, str]) -> _Answer:
        """Caller holds the lock."""
        presented = form.get("refresh_token", "")
        entry = self._refresh.get(presented)
        invalid = _oauth_error(
            400, "invalid_grant", "The refresh token is invalid, expired or revoked."
        )
        if entry is None:
            return invalid
        family = self._families[entry.family]
        if family.revoked or entry.revoked or family.client_id != self.client_id:
            return invalid
        if time.monotonic() > entry.expires_at:
            return invalid
        if entry.used:
            self._revoke_family(entry.family)
            self.revoked_families += 1
            return _oauth_error(
                400,
                "invalid_grant",
                "The refresh token was already used; every token of this login is revoked.",
            )
        if self.rotate_refresh_tokens:
            entry.used = True
            answer = self._grant(entry.family, refresh_token=None)
        else:
            entry.expires_at = time.monotonic() + self.refresh_token_expires_in
            answer = self._grant(entry.family, refresh_token=presented)
        return _json(200, answer, **{"Cache-Control": "no-store"})

    def _people_me(self, authorization: str | None) -> _Answer:
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            self.calls["people_me"] += 1
            access = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
            if access is not None:
                family = self._families[access.family]
                if not family.revoked and time.monotonic() <= access.expires_at:
                    return _json(200, _person(family.user))
        message = (
            "The request requires a valid access token set in the Authorization request header."
        )
        return _json(
            401,
            {
                "message": message,
                "errors": [{"description": message}],
                "trackingId": _tracking_id(),
            },
            **{"WWW-Authenticate": 'Bearer realm="webex"'},
        )

    # -- token bookkeeping (caller holds the lock) ------------------------------------

    def _new_family(self, client_id: str, user: str, scope: str) -> int:
        family_id = len(self._families)
        self._families[family_id] = _Family(client_id=client_id, user=user, scope=scope)
        return family_id

    def _grant(self, family_id: int, *, refresh_token: str | None) -> dict[str, Any]:
        """Issue an access token (and a refresh token unless one is kept) for a family."""
        now = time.monotonic()
        access_token = secrets.token_urlsafe(48)
        self._access[access_token] = _Access(family_id, now + self.expires_in)
        if refresh_token is None:
            refresh_token = secrets.token_urlsafe(48)
            self._refresh[refresh_token] = _Refresh(family_id, now + self.refresh_token_expires_in)
        refresh = self._refresh[refresh_token]
        return {
            "access_token": access_token,
            "expires_in": self.expires_in,
            "refresh_token": refresh_token,
            "refresh_token_expires_in": max(0, round(refresh.expires_at - now)),
            "token_type": "Bearer",
            "scope": self._families[family_id].scope,
        }

    def _revoke_family(self, family_id: int) -> None:
        self._families[family_id].revoked = True
