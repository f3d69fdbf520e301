"""The integration's OAuth2: ``GET /v1/authorize``, its consent page, ``POST /v1/access_token``.

``/authorize`` checks the request as Webex does (client ID, the exact redirect URI,
``response_type=code``, a scope, PKCE S256) and then approves at once as
``FakeWebex.user``, or, with ``FakeWebex.consent_page`` on, shows a page where a person
types an email and approves or denies (what ``run_emulator`` shows a browser).

``/access_token`` runs the ``authorization_code`` grant (PKCE checked, a code used up the
first time it is presented) and the ``refresh_token`` grant for every registered client
(the integration and the Service Apps), with an ``id_token`` in the code exchange when
``openid`` was asked for. :func:`authenticate_client` is the one client authentication
of the emulator, shared with the device grant.
"""

from __future__ import annotations

import dataclasses
import html
import re
import secrets
import time
from collections.abc import Callable

from .answers import (
    Answer,
    basic_credentials,
    error_page,
    form_fields,
    html_page,
    is_form,
    json_answer,
    oauth_error,
    s256,
    same,
    single_values,
    tracking_id,
    with_query,
)
from .oidc import OpenIDConnect
from .people import presented
from .state import Core, Failure, Refusal

__all__ = [
    "CONSENT_HEADER",
    "MISMATCH_TEXT",
    "AuthorizationEndpoints",
    "authenticate_client",
    "failure_answer",
    "valid_email",
]

# RFC 7636: verifiers and S256 challenges use the unreserved characters only.
_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE_RE = re.compile(r"[A-Za-z0-9\-_]{43}")
_EMAIL_RE = re.compile(r"[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,63}")
_GRANTS = ("authorization_code", "refresh_token")

#: What Webex's page says when the redirect URI is not registered.
MISMATCH_TEXT = "The redirection URI provided does not match a pre-registered value."
#: The header of the consent page naming its request, for ``FakeWebex.approve``.
CONSENT_HEADER = "X-Fake-Webex-Consent"
_PENDING_TTL = 600.0


def valid_email(text: str) -> bool:
    """Whether ``text`` looks like an email the emulator can log in as."""
    return _EMAIL_RE.fullmatch(text) is not None


def failure_answer(failure: Failure) -> Answer:
    """The answer of an injected failure (``FakeWebex.fail_next``)."""
    headers: dict[str, str] = {}
    if failure.retry_after is not None:
        seconds = failure.retry_after
        headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    if failure.body is not None:
        answer = Answer(failure.status, failure.body, {"Content-Type": "text/html", **headers})
        return answer.noting(error="injected")
    message = {
        429: "Too many requests have been made.",
        503: "Service Unavailable.",
    }.get(failure.status, "Server error.")
    body = {"message": message, "errors": [{"description": message}], "trackingId": tracking_id()}
    return json_answer(failure.status, body, **headers).noting(error="injected")


def authenticate_client(
    core: Core, authorization: str | None, form: dict[str, str]
) -> Answer | str:
    """The authenticated client ID, or the error answer. Caller holds the lock.

    The client sends ``client_id`` and ``client_secret`` in the form **or** HTTP Basic,
    not both; any registered client (the integration, a Service App) may authenticate.
    """
    basic = basic_credentials(authorization)
    if basic is False:
        return oauth_error(
            401,
            "invalid_client",
            "Malformed client authentication.",
            **{"WWW-Authenticate": 'Basic realm="webex"'},
        )
    if isinstance(basic, tuple):
        if "client_secret" in form:
            return oauth_error(
                400, "invalid_request", "Use one client authentication method, not two."
            )
        client_id, secret = basic
        if form.get("client_id", client_id) != client_id:
            return oauth_error(401, "invalid_client", "Client authentication failed.")
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    expected = core.client_secret_of(client_id)
    if expected is None or not same(secret, expected):
        return oauth_error(
            401,
            "invalid_client",
            "Client authentication failed: unknown client_id or wrong client_secret.",
            **({"WWW-Authenticate": 'Basic realm="webex"'} if basic else {}),
        ).noting(client_id=None if expected is None else client_id)  # a registered one only
    return client_id


@dataclasses.dataclass
class _Request:
    """A checked authorization request, waiting for the user (or approved at once)."""

    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    state: str | None
    nonce: str | None
    expires_at: float = 0.0


@dataclasses.dataclass
class _Code:
    request: _Request
    user: str
    expires_at: float


class AuthorizationEndpoints:
    """``/authorize`` (and its consent page) and ``/access_token`` of the integration."""

    def __init__(self, core: Core, oidc: OpenIDConnect, redirect_uris: Callable[[], list[str]]):
        self._core = core
        self._oidc = oidc
        self._redirect_uris = redirect_uris
        self._codes: dict[str, _Code] = {}
        self._pending: dict[str, _Request] = {}
        self.deny_next = False

    # -- GET /authorize -------------------------------------------------------------------

    def authorize(self, query: str) -> Answer:
        """``GET /v1/authorize``: check the request, then approve, deny or ask the user."""
        params = single_values(query)
        core = self._core
        with core.lock:
            core.calls["authorize"] += 1
            if params is None:
                return error_page(400, "invalid_request", "A parameter was sent more than once.")
            if params.get("client_id") != core.client_id:
                return error_page(
                    400, "invalid_client", "The client_id provided is not a registered client."
                )
            redirect_uri = params.get("redirect_uri", "")
            if redirect_uri not in self._redirect_uris():
                return error_page(400, "redirect_uri_mismatch", MISMATCH_TEXT)
            request = _Request(
                client_id=core.client_id,
                redirect_uri=redirect_uri,
                challenge=params.get("code_challenge", ""),
                scope=" ".join(params.get("scope", "").split()),
                state=params.get("state"),
                nonce=params.get("nonce"),
            )
            if params.get("response_type") != "code":
                return self._redirect(
                    request,
                    error="unsupported_response_type",
                    error_description="response_type must be code.",
                )
            if not request.scope:
                return self._redirect(
                    request, error="invalid_scope", error_description="scope is required."
                )
            if params.get("code_challenge_method") != "S256" or not _CHALLENGE_RE.fullmatch(
                request.challenge
            ):
                return self._redirect(
                    request,
                    error="invalid_request",
                    error_description="PKCE is required: send code_challenge with "
                    "code_challenge_method=S256.",
                )
            if self.deny_next:
                self.deny_next = False
                return self._denied(request)
            if core.consent_page:
                return self._consent_page(request)
            return self._approved(request, core.user)

    def _redirect(self, request: _Request, **fields: str) -> Answer:
        back = {} if request.state is None else {"state": request.state}
        location = with_query(request.redirect_uri, {**fields, **back})
        answer = Answer(302, b"", {"Location": location, "Cache-Control": "no-store"})
        return answer.noting(client_id=request.client_id, error=fields.get("error"))

    def _denied(self, request: _Request) -> Answer:
        return self._redirect(
            request,
            error="access_denied",
            error_description="The user declined the authorization request.",
        )

    def _approved(self, request: _Request, user: str) -> Answer:
        """Caller holds the lock."""
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Code(request, user, time.monotonic() + self._core.code_ttl)
        return self._redirect(request, code=code).noting(user=user)

    def _consent_page(self, request: _Request) -> Answer:
        """Caller holds the lock."""
        now = time.monotonic()
        for key in [key for key, old in self._pending.items() if old.expires_at < now]:
            del self._pending[key]
        request_id = secrets.token_urlsafe(24)
        request.expires_at = now + _PENDING_TTL
        self._pending[request_id] = request
        body = (
            "<h1>Webex (emulated): sign in</h1>"
            f"<p>An application asks for: <code>{html.escape(request.scope)}</code></p>"
            "<form method='post' action='/v1/authorize'>"
            f"<input type='hidden' name='request' value='{html.escape(request_id)}'>"
            "<label>Email <input name='email' type='email' required "
            f"value='{html.escape(self._core.user)}'></label> "
            "<button name='decision' value='approve'>Accept</button> "
            "<button name='decision' value='deny'>Decline</button></form>"
        )
        page = html_page(200, "Webex (emulated)", body, **{CONSENT_HEADER: request_id})
        return page.noting(client_id=request.client_id)

    # -- POST /authorize (the consent form) -------------------------------------------------

    def consent(self, content_type: str | None, body: bytes) -> Answer:
        """``POST /v1/authorize``: the consent form's answer; redirects like ``GET`` would."""
        form = form_fields(content_type, body)
        with self._core.lock:
            self._core.calls["authorize_consent"] += 1
            if form is None:
                return error_page(400, "invalid_request", "Send the consent form, form-encoded.")
            request = self._pending.pop(form.get("request", ""), None)
            if request is None or request.expires_at < time.monotonic():
                return error_page(
                    400, "invalid_request", "This sign-in was already answered or has expired."
                )
            if form.get("decision") == "deny":
                return self._denied(request)
            email = form.get("email", "").strip()
            if form.get("decision") != "approve" or not valid_email(email):
                return error_page(400, "invalid_request", "Type an email address and Accept.")
            return self._approved(request, email)

    # -- POST /access_token -----------------------------------------------------------------

    def token(self, authorization: str | None, content_type: str | None, body: bytes) -> Answer:
        """``POST /v1/access_token``: the ``authorization_code`` and ``refresh_token`` grants."""
        core = self._core
        try:
            form = single_values(body.decode("utf-8"))
        except UnicodeDecodeError:
            form = None
        grant_type = (form or {}).get("grant_type", "")
        with core.lock:
            core.calls["access_token"] += 1
            if grant_type in _GRANTS:
                core.calls[grant_type] += 1
            failure = core.next_failure("access_token")
            delay = core.delay
        if delay > 0:
            time.sleep(delay)  # outside the lock: other requests go on meanwhile
        answer = self._token(authorization, content_type, form, failure, grant_type)
        field = "code" if grant_type == "authorization_code" else "refresh_token"
        credential = (form or {}).get(field)
        return answer.noting(
            grant_type=grant_type if grant_type in _GRANTS else None,
            credential=presented(credential),
        )

    def _token(
        self,
        authorization: str | None,
        content_type: str | None,
        form: dict[str, str] | None,
        failure: Failure | None,
        grant_type: str,
    ) -> Answer:
        if failure is not None:
            return failure_answer(failure)
        if not is_form(content_type) or form is None:
            return oauth_error(
                400,
                "invalid_request",
                "Send one of each parameter as application/x-www-form-urlencoded.",
            )
        with self._core.lock:
            client = authenticate_client(self._core, authorization, form)
            if isinstance(client, Answer):
                return client
            if grant_type == "authorization_code":
                answer = self._exchange_code(client, form)
            elif grant_type == "refresh_token":
                refreshed = self._core.refresh(form.get("refresh_token", ""), client)
                if isinstance(refreshed, Refusal):
                    answer = oauth_error(400, "invalid_grant", refreshed.description)
                else:
                    answer = json_answer(200, refreshed, **{"Cache-Control": "no-store"})
            else:
                answer = oauth_error(
                    400,
                    "unsupported_grant_type",
                    "grant_type must be authorization_code or refresh_token.",
                )
            return answer.noting(client_id=client)

    def _exchange_code(self, client_id: str, form: dict[str, str]) -> Answer:
        """Caller holds the lock. A presented code is used up, whatever the outcome."""
        entry = self._codes.pop(form.get("code", ""), None)
        if entry is None or entry.request.client_id != client_id:
            return oauth_error(
                400, "invalid_grant", "The authorization code is invalid or was already used."
            )
        request = entry.request
        if time.monotonic() > entry.expires_at:
            return oauth_error(400, "invalid_grant", "The authorization code has expired.")
        if form.get("redirect_uri") != request.redirect_uri:
            return oauth_error(
                400,
                "invalid_grant",
                "redirect_uri does not match the one of the authorization request.",
            )
        verifier = form.get("code_verifier", "")
        if not _VERIFIER_RE.fullmatch(verifier) or not same(s256(verifier), request.challenge):
            return oauth_error(
                400, "invalid_grant", "code_verifier does not match the code_challenge."
            )
        family_id = self._core.new_family(client_id, entry.user, request.scope)
        answer = self._core.grant(family_id)
        if "openid" in request.scope.split():
            answer["id_token"] = self._oidc.id_token(
                self._core.family(family_id), nonce=request.nonce
            )
        return json_answer(200, answer, **{"Cache-Control": "no-store"}).noting(user=entry.user)
