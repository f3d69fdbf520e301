"""The OAuth device grant (RFC 8628) as Webex runs it for integrations.

``POST /v1/device/authorize`` (form: ``client_id``, ``scope``) answers a device code, a
user code and where to type it; the device then polls ``POST /v1/device/token``
(``grant_type=urn:ietf:params:oauth:grant-type:device_code``, ``device_code`` and the
client's credentials) until someone approves the user code on the verification page
(``GET /verify``, outside ``/v1`` as Webex's is on another host), or a test approves it
through :meth:`DeviceGrant.approve`.

While the code waits, the token endpoint answers Webex's ``428 Precondition Required``
(:attr:`DeviceGrant.pending_style` ``"webex"``, the default) or RFC 8628's
``400 authorization_pending`` (``"rfc8628"``). A poll sooner than ``interval`` after the
previous one answers ``400 slow_down`` and the interval grows by 5 seconds for every
later poll; after expiry ``400 expired_token``; after a denial ``400 access_denied``; on
approval the token pair, once: the device code is then used up. Every poll is recorded
(:attr:`DeviceFlow.polls`), so a client's test can count them.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import secrets
import time
from typing import Any

from .answers import (
    Answer,
    api_error,
    error_page,
    form_fields,
    html_page,
    json_answer,
    oauth_error,
    single_values,
)
from .oauth import authenticate_client, failure_answer, valid_email
from .oidc import OpenIDConnect
from .people import presented
from .state import Core

__all__ = ["DEVICE_GRANT_TYPE", "PENDING_STYLES", "DeviceFlow", "DeviceGrant", "DevicePoll"]

#: The ``grant_type`` of a device-code poll.
DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
#: How a pending device code is answered: Webex's 428, or RFC 8628's 400.
PENDING_STYLES = ("webex", "rfc8628")
# RFC 8628 section 6.1: no vowels (no words), no look-alike digits.
_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_PENDING_TEXT = "The user has not yet approved the device."


def _seconds(value: float) -> float | int:
    """Whole seconds as an integer (what Webex sends), fractions as they are."""
    return int(value) if value == int(value) else value


def _normal_user_code(text: str) -> str:
    return "".join(text.split()).replace("-", "").upper()


@dataclasses.dataclass(frozen=True)
class DevicePoll:
    """One request to ``/device/token`` naming a known device code.

    Attributes:
        at: when it arrived, on :func:`time.monotonic` of this process.
        status: the HTTP status answered.
        outcome: ``authorization_pending``, ``slow_down``, ``expired_token``,
            ``access_denied``, ``invalid_grant`` (used up), ``invalid_client``,
            ``injected`` (a :meth:`FakeWebex.fail_next` failure) or ``issued``.
    """

    at: float
    status: int
    outcome: str


@dataclasses.dataclass(frozen=True)
class DeviceFlow:
    """What the emulator knows of one device authorization (a snapshot).

    Attributes:
        user_code: the code the user types, as issued (``BCDF-GHJK``).
        client_id: the integration that asked.
        scope: the scopes asked for.
        issued_at, expires_at: on :func:`time.monotonic`.
        interval: the poll interval now required (grown by each ``slow_down``); 5 when
            the answer left it out.
        status: ``pending``, ``approved`` (not yet collected), ``denied``, ``expired``
            or ``used`` (the tokens were issued).
        user: who approved it.
        polls: every poll, in order.
        device_code: the device code (not shown by ``repr``).
    """

    user_code: str
    client_id: str
    scope: str
    issued_at: float
    expires_at: float
    interval: float
    status: str
    user: str | None
    polls: tuple[DevicePoll, ...]
    device_code: str = dataclasses.field(repr=False)

    @property
    def gaps(self) -> tuple[float, ...]:
        """Seconds between consecutive polls."""
        times = [poll.at for poll in self.polls]
        return tuple(later - earlier for earlier, later in itertools.pairwise(times))

    @property
    def polls_after_expiry(self) -> int:
        """How many polls arrived once the device code had expired."""
        return sum(poll.at >= self.expires_at for poll in self.polls)


@dataclasses.dataclass
class _Flow:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    issued_at: float
    expires_at: float
    interval: float
    status: str = "pending"
    user: str | None = None
    last_poll: float | None = None
    polls: list[DevicePoll] = dataclasses.field(default_factory=list)

    def snapshot(self, now: float) -> DeviceFlow:
        status = self.status
        if status in ("pending", "approved") and now >= self.expires_at:
            status = "expired"
        return DeviceFlow(
            user_code=self.user_code,
            client_id=self.client_id,
            scope=self.scope,
            issued_at=self.issued_at,
            expires_at=self.expires_at,
            interval=self.interval,
            status=status,
            user=self.user,
            polls=tuple(self.polls),
            device_code=self.device_code,
        )


class DeviceGrant:
    """The device grant of the emulator, reached as ``fake.device``.

    Attributes:
        interval: seconds between polls, sent as ``interval`` (default 5; fractions are
            sent as decimals, for fast tests); None leaves ``interval`` out of the answer,
            and the 5 seconds RFC 8628 prescribes then apply.
        expires_in: seconds a device code lives (default 300).
        slow_down_step: seconds each ``slow_down`` adds to the interval (default 5).
        first_poll_waits: when True, the first poll must also come ``interval`` after
            the authorization answer (default False: the first poll may come at once).
        auto_approve_as: when set, every pending device code is approved as this email
            once it has been polled ``auto_approve_after_polls`` times.
        auto_approve_after_polls: polls answered "pending" before auto-approval (default
            0: the first poll gets the tokens).
    """

    def __init__(self, core: Core, oidc: OpenIDConnect) -> None:
        self._core = core
        self._oidc = oidc
        self._pending_style = "webex"
        self.interval: float | None = 5
        self.expires_in: float = 300
        self.slow_down_step: float = 5
        self.first_poll_waits = False
        self.auto_approve_as: str | None = None
        self.auto_approve_after_polls = 0
        self._flows: dict[str, _Flow] = {}  # by device code, in issue order

    @property
    def pending_style(self) -> str:
        """``"webex"`` (default): a pending code answers ``428`` with Webex's error body
        (``message``, ``errors``, ``trackingId``; no ``error`` field). ``"rfc8628"``:
        ``400 {"error": "authorization_pending"}``.

        Raises:
            ValueError: set to anything else.
        """
        return self._pending_style

    @pending_style.setter
    def pending_style(self, value: str) -> None:
        if value not in PENDING_STYLES:
            raise ValueError(f"pending_style must be one of {PENDING_STYLES}, not {value!r}")
        self._pending_style = value

    @property
    def authorize_url(self) -> str:
        """``{base_url}/device/authorize``."""
        return self._core.origin + "/v1/device/authorize"

    @property
    def token_url(self) -> str:
        """``{base_url}/device/token``."""
        return self._core.origin + "/v1/device/token"

    @property
    def verification_uri(self) -> str:
        """The page where the user types the code: ``http://HOST:PORT/verify``."""
        return self._core.origin + "/verify"

    # -- controls -------------------------------------------------------------------------

    @property
    def flows(self) -> list[DeviceFlow]:
        """Every device authorization so far, oldest first."""
        with self._core.lock:
            now = time.monotonic()
            return [flow.snapshot(now) for flow in self._flows.values()]

    @property
    def latest(self) -> DeviceFlow:
        """The most recent device authorization.

        Raises:
            LookupError: there has been none.
        """
        flows = self.flows
        if not flows:
            raise LookupError("no device authorization yet: POST /device/authorize first")
        return flows[-1]

    def flow(self, code: str) -> DeviceFlow:
        """One device authorization, by its user code or its device code.

        Raises:
            LookupError: no device authorization has that code.
        """
        with self._core.lock:
            return self._find(code).snapshot(time.monotonic())

    def approve(self, user_code: str, user: str | None = None) -> None:
        """Approve a user code as ``user`` (default ``fake.user``), as if typed on the page.

        Raises:
            LookupError: no device authorization has that code.
            ValueError: it is no longer pending (approved, denied, used or expired).
        """
        with self._core.lock:
            problem = self._decide(self._find(user_code), user or self._core.user)
        if problem:
            raise ValueError(problem)

    def deny(self, user_code: str) -> None:
        """Deny a user code: its next poll answers ``access_denied``.

        Raises:
            LookupError: no device authorization has that code.
            ValueError: it is no longer pending.
        """
        with self._core.lock:
            problem = self._decide(self._find(user_code), None)
        if problem:
            raise ValueError(problem)

    def expire(self, user_code: str | None = None) -> None:
        """Make one device code (or every one) expire now: polls answer ``expired_token``.

        Raises:
            LookupError: no device authorization has that code.
        """
        with self._core.lock:
            now = time.monotonic()
            chosen = self._flows.values() if user_code is None else [self._find(user_code)]
            for flow in chosen:
                flow.expires_at = min(flow.expires_at, now)

    def _find(self, code: str) -> _Flow:
        """Caller holds the lock."""
        flow = self._flows.get(code)
        wanted = _normal_user_code(code)
        for candidate in self._flows.values() if flow is None else ():
            if _normal_user_code(candidate.user_code) == wanted:
                flow = candidate
        if flow is None:
            raise LookupError("no device authorization has that code")
        return flow

    def _decide(self, flow: _Flow, user: str | None) -> str | None:
        """Approve (a user given) or deny a pending flow; returns the problem, if any.

        Caller holds the lock.
        """
        if time.monotonic() >= flow.expires_at:
            return "the code has expired; start again on the device"
        if flow.status != "pending":
            return f"the code was already {flow.status}"
        flow.status, flow.user = ("approved", user) if user else ("denied", None)
        return None

    # -- POST /device/authorize ---------------------------------------------------------------

    def authorize(self, authorization: str | None, content_type: str | None, body: bytes) -> Answer:
        """``POST /v1/device/authorize``: a device code and a user code for the integration."""
        form = form_fields(content_type, body)
        core = self._core
        with core.lock:
            core.calls["device_authorize"] += 1
            failure = core.next_failure("device_authorize")
            if failure is not None:
                return failure_answer(failure)
            if form is None:
                return oauth_error(
                    400,
                    "invalid_request",
                    "Send client_id and scope as application/x-www-form-urlencoded.",
                )
            if authorization or "client_secret" in form:
                client = authenticate_client(core, authorization, form)
                if isinstance(client, Answer):
                    return client
            else:
                client = form.get("client_id", "")
            if client != core.client_id:
                return oauth_error(
                    401,
                    "invalid_client",
                    "The client_id is not an integration registered for the device grant.",
                ).noting(client_id=client if core.is_client(client) else None)
            scope = " ".join(form.get("scope", "").split())
            if not scope:
                return oauth_error(400, "invalid_scope", "scope is required.").noting(
                    client_id=client
                )
            now = time.monotonic()
            user_code = self._new_user_code()
            flow = _Flow(
                device_code=secrets.token_urlsafe(32),
                user_code=user_code,
                client_id=client,
                scope=scope,
                issued_at=now,
                expires_at=now + self.expires_in,
                interval=5 if self.interval is None else self.interval,
            )
            self._flows[flow.device_code] = flow
            answer: dict[str, Any] = {
                "device_code": flow.device_code,
                "user_code": user_code,
                "verification_uri": self.verification_uri,
                "verification_uri_complete": f"{self.verification_uri}?userCode={user_code}",
                "expires_in": _seconds(self.expires_in),
            }
            if self.interval is not None:
                answer["interval"] = _seconds(self.interval)
        return json_answer(200, answer, **{"Cache-Control": "no-store"}).noting(client_id=client)

    def _new_user_code(self) -> str:
        taken = {flow.user_code for flow in self._flows.values()}
        while True:
            letters = "".join(secrets.choice(_ALPHABET) for _ in range(8))
            code = f"{letters[:4]}-{letters[4:]}"
            if code not in taken:
                return code

    # -- POST /device/token -------------------------------------------------------------------

    def token(self, authorization: str | None, content_type: str | None, body: bytes) -> Answer:
        """``POST /v1/device/token``: one poll of a device code."""
        form = form_fields(content_type, body)
        core = self._core
        with core.lock:
            core.calls["device_token"] += 1
            now = time.monotonic()
            device_code = (form or {}).get("device_code")
            flow = self._flows.get(device_code) if device_code else None
            answer = self._poll(authorization, form, flow, now)
            if flow is not None:
                outcome = "issued" if answer.status == 200 else answer.log.get("error", "")
                flow.polls.append(DevicePoll(now, answer.status, outcome))
        polled = form is not None and form.get("grant_type") == DEVICE_GRANT_TYPE
        return answer.noting(
            grant_type="device_code" if polled else None, credential=presented(device_code)
        )

    def _poll(
        self,
        authorization: str | None,
        form: dict[str, str] | None,
        flow: _Flow | None,
        now: float,
    ) -> Answer:
        """Caller holds the lock."""
        failure = self._core.next_failure("device_token")
        if failure is not None:
            return failure_answer(failure)
        if form is None:
            return oauth_error(
                400,
                "invalid_request",
                "Send one of each parameter as application/x-www-form-urlencoded.",
            )
        if form.get("grant_type") != DEVICE_GRANT_TYPE:
            return oauth_error(
                400, "unsupported_grant_type", f"grant_type must be {DEVICE_GRANT_TYPE}."
            )
        client = authenticate_client(self._core, authorization, form)
        if isinstance(client, Answer):
            return client
        if not form.get("device_code"):
            return oauth_error(400, "invalid_request", "device_code is required.").noting(
                client_id=client
            )
        if flow is None or flow.client_id != client:
            return oauth_error(400, "invalid_grant", "The device code is not valid.").noting(
                client_id=client
            )
        return self._answer(flow, now).noting(client_id=client)

    def _answer(self, flow: _Flow, now: float) -> Answer:
        """Caller holds the lock: the answer to a well-formed poll of ``flow``."""
        if flow.status == "used":
            return oauth_error(400, "invalid_grant", "The device code was already used.")
        if now >= flow.expires_at:
            return oauth_error(400, "expired_token", "The device code has expired.")
        if flow.status == "denied":
            return oauth_error(400, "access_denied", "The user denied the authorization.")
        previous = flow.last_poll
        if previous is None and self.first_poll_waits:
            previous = flow.issued_at
        flow.last_poll = now
        if previous is not None and now - previous < flow.interval:
            flow.interval += self.slow_down_step
            return oauth_error(
                400,
                "slow_down",
                f"Polling too fast: wait {_seconds(flow.interval)} seconds between requests.",
            )
        if (
            flow.status == "pending"
            and self.auto_approve_as
            and len(flow.polls) >= self.auto_approve_after_polls
        ):
            flow.status, flow.user = "approved", self.auto_approve_as
        if flow.status == "approved" and flow.user:
            flow.status = "used"
            family_id = self._core.new_family(flow.client_id, flow.user, flow.scope)
            answer = self._core.grant(family_id)
            if "openid" in flow.scope.split():
                answer["id_token"] = self._oidc.id_token(self._core.family(family_id), nonce=None)
            return json_answer(200, answer, **{"Cache-Control": "no-store"}).noting(user=flow.user)
        if self._pending_style == "rfc8628":
            return oauth_error(400, "authorization_pending", _PENDING_TEXT)
        # Webex's own shape: the status says "pending", the body has no OAuth error field.
        return api_error(428, _PENDING_TEXT, log_error="authorization_pending")

    # -- the verification page ------------------------------------------------------------------

    def page(self, query: str) -> Answer:
        """``GET /verify``: where a person types the user code (``?userCode=`` fills it in)."""
        params = single_values(query) or {}
        code = params.get("userCode") or params.get("user_code") or ""
        with self._core.lock:
            self._core.calls["verify"] += 1
            user = self._core.user
        body = (
            "<h1>Webex (emulated): connect a device</h1>"
            "<form method='post' action='/verify'>"
            "<label>Code <input name='user_code' required autocomplete='off' "
            f"value='{html.escape(code)}'></label> "
            f"<label>Email <input name='email' type='email' value='{html.escape(user)}'></label> "
            "<button name='decision' value='approve'>Allow</button> "
            "<button name='decision' value='deny'>Deny</button></form>"
        )
        return html_page(200, "Webex (emulated)", body)

    def submit(self, content_type: str | None, body: bytes) -> Answer:
        """``POST /verify``: the page's form (``user_code``, ``email``, ``decision``)."""
        form = form_fields(content_type, body)
        with self._core.lock:
            self._core.calls["verify"] += 1
            if form is None:
                return error_page(400, "invalid_request", "Send the form, form-encoded.")
            decision = form.get("decision")
            email = form.get("email", "").strip() or self._core.user
            if decision not in ("approve", "deny") or (
                decision == "approve" and not valid_email(email)
            ):
                return error_page(400, "invalid_request", "Type the code and an email, then Allow.")
            try:
                flow = self._find(form.get("user_code", ""))
            except LookupError:
                return error_page(400, "invalid_user_code", "That code is not valid.")
            problem = self._decide(flow, email if decision == "approve" else None)
            if problem:
                return error_page(400, "invalid_user_code", problem[0].upper() + problem[1:] + ".")
        done = "Allowed" if decision == "approve" else "Denied"
        page = html_page(200, "Webex (emulated)", f"<h1>{done}</h1><p>Return to your device.</p>")
        return page.noting(client_id=flow.client_id, user=email if decision == "approve" else None)
