"""The OAuth device grant (RFC 8628) of a Webex integration: a login without a browser
or a callback on this machine.

A machine with no browser (a server, an SSH session, a container) asks
``{base_url}/device/authorize`` for a device code, shows the person the short user code
and where to type it (on a phone or any other device), and polls
``{base_url}/device/token`` until the person approves, declines, or the code runs out:

- **Pending** is Webex's HTTP 428, or RFC 8628's 400 ``authorization_pending``: poll again
  after ``interval`` seconds (5 when the answer has none).
- ``slow_down`` adds 5 seconds to the interval, for this poll and every later one; a 429
  waits for its ``Retry-After`` (at least the interval) before the next poll.
- ``expired_token`` raises :class:`~webex_tokens.errors.DeviceCodeExpired`, and so does
  the caller's timeout; ``access_denied`` raises
  :class:`~webex_tokens.errors.AuthorizationDenied`.

Each poll is one request through :class:`~webex_tokens.token_endpoint.TokenEndpoint`, at
least ``interval`` seconds after the previous one (and after the authorization), and no
request is sent once the code has expired: the poller sleeps until the deadline instead,
then says so. The clock and the sleep are injected, so tests count the requests.

:class:`~webex_tokens.oauth.WebexOAuth` drives this module
(:meth:`~webex_tokens.oauth.WebexOAuth.device_authorization`,
:meth:`~webex_tokens.oauth.WebexOAuth.poll_device`) through :class:`DeviceGrant`; what
the person is told lives in :func:`webex_tokens.login.device_login`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from .errors import AuthorizationDenied, DeviceCodeExpired, TokenEndpointError
from .scrubbing import printable
from .token_endpoint import PORTAL, RequestKind, TokenEndpoint, retry_after_seconds

__all__ = [
    "DEFAULT_INTERVAL",
    "DEVICE_AUTHORIZE",
    "DEVICE_GRANT_TYPE",
    "DEVICE_TOKEN",
    "SLOW_DOWN_STEP",
    "DeviceAuthorization",
    "DeviceGrant",
    "authorization_from_answer",
]

log = logging.getLogger(__name__)

#: The ``grant_type`` of a device-code poll (RFC 8628 section 3.4).
DEVICE_GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:device_code"
#: Seconds between polls when the authorization answer names no ``interval``.
DEFAULT_INTERVAL: Final = 5.0
#: Seconds each ``slow_down`` adds to the interval.
SLOW_DOWN_STEP: Final = 5.0
_MAX_INTERVAL: Final = 300.0
_MAX_LIFETIME: Final = 24 * 3600.0

#: ``POST {base_url}/device/authorize``: a new device code (asking again only makes
#: another one, so a request whose answer was lost may be sent again).
DEVICE_AUTHORIZE: Final = RequestKind(
    "device authorization",
    "device authorization endpoint",
    token_answer=False,
    oauth_errors=True,
    resend_when_unknown=True,
)
#: ``POST {base_url}/device/token``: one poll of a device code (used up once answered).
DEVICE_TOKEN: Final = RequestKind(
    "device-code poll",
    "device token endpoint",
    grant="device_code",
    if_unknown=(
        "Webex may have issued the token of the device code, which works only once, so it "
        "was not sent again: run the device login again"
    ),
)


@dataclasses.dataclass(frozen=True, repr=False)
class DeviceAuthorization:
    """One device authorization: what the person must type where, and for how long.

    Made by :meth:`WebexOAuth.device_authorization
    <webex_tokens.oauth.WebexOAuth.device_authorization>`; pass it to
    :meth:`WebexOAuth.poll_device <webex_tokens.oauth.WebexOAuth.poll_device>`.
    ``repr()`` hides the device code.

    Attributes:
        user_code: the short code the person types (``BCDF-GHJK``).
        verification_uri: the page where it is typed.
        verification_uri_complete: the same page with the code filled in (for a link
            or a QR code), or None when Webex sent none.
        expires_at: when the device code runs out (aware UTC).
        interval: seconds to wait between polls.
        device_code: the secret the device polls with; never show it.
    """

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: datetime
    interval: float
    device_code: str = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        return (
            f"DeviceAuthorization(user_code={self.user_code!r}, "
            f"verification_uri={self.verification_uri!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, interval={self.interval:g})"
        )

    @property
    def link(self) -> str:
        """The page to open: :attr:`verification_uri_complete` when there is one."""
        return self.verification_uri_complete or self.verification_uri

    def expires_in(self, now: datetime | None = None) -> float:
        """Seconds until the device code runs out (negative once it has)."""
        now = now or datetime.now(timezone.utc)
        return (self.expires_at - now).total_seconds()


def _unusable(url: str, what: str) -> TokenEndpointError:
    return TokenEndpointError(
        f"the Webex device authorization endpoint {url} answered without {what}; check "
        "WEBEX_BASE_URL (it should be https://webexapis.com/v1) and that the integration "
        f"may use the device grant (see {PORTAL})",
        status=200,
    )


def _text(answer: Mapping[str, Any], field: str, url: str, *, limit: int) -> str | None:
    value = answer.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise _unusable(url, f"a usable {field}")
    return value


def _link(answer: Mapping[str, Any], field: str, url: str) -> str | None:
    value = _text(answer, field, url, limit=2048)
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
            raise _unusable(url, f"an http(s) {field}")
    return value


def _seconds(answer: Mapping[str, Any], field: str, url: str, *, high: float) -> float | None:
    value = answer.get(field)
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _unusable(url, f"a number of seconds in {field}")
    if not math.isfinite(value) or not 0 < value <= high:
        raise _unusable(url, f"a {field} between 0 and {high:g} seconds")
    return float(value)


def authorization_from_answer(
    answer: Mapping[str, Any], *, url: str, now: datetime | None = None
) -> DeviceAuthorization:
    """The :class:`DeviceAuthorization` of an answer of ``/device/authorize``, checked.

    Raises:
        TokenEndpointError: a field is missing or unusable (never shown).
    """
    device_code = _text(answer, "device_code", url, limit=4096)
    user_code = _text(answer, "user_code", url, limit=64)
    verification_uri = _link(answer, "verification_uri", url)
    expires_in = _seconds(answer, "expires_in", url, high=_MAX_LIFETIME)
    if device_code is None or user_code is None or verification_uri is None:
        raise _unusable(url, "a device_code, a user_code and a verification_uri")
    if expires_in is None:
        raise _unusable(url, "expires_in")
    interval = _seconds(answer, "interval", url, high=_MAX_INTERVAL)
    now = now or datetime.now(timezone.utc)
    return DeviceAuthorization(
        user_code=user_code,
        verification_uri=verification_uri,
        verification_uri_complete=_link(answer, "verification_uri_complete", url),
        expires_at=now + timedelta(seconds=expires_in),
        interval=DEFAULT_INTERVAL if interval is None else interval,
        device_code=device_code,
    )


class _Throttled(Exception):
    """A 429 at a poll, with the seconds of its ``Retry-After`` (None without one)."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class DeviceGrant:
    """The device grant of one integration: a device authorization, then its polls.

    Args:
        endpoint: the integration's :class:`~webex_tokens.token_endpoint.TokenEndpoint`.
        session: the requests session to send with (Authlib's ``OAuth2Session``, which
            is untyped; sent ``withhold_token=True``).
        base_url: the Webex API base.
        client_id: the integration's client ID (in the form, and in HTTP Basic with the
            secret, as Webex's device-grant documentation shows).
        client_secret: the integration's client secret.
        clock: wall-clock seconds, compared with ``expires_at`` (default
            :func:`time.time`).
        sleep: waits between polls (default :func:`time.sleep`).
    """

    def __init__(
        self,
        endpoint: TokenEndpoint,
        session: Any,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._session = session
        self._authorize_url = base_url + "/device/authorize"
        self._url = base_url + "/device/token"
        self._client_id = client_id
        self._auth = requests.auth.HTTPBasicAuth(client_id, client_secret)
        self._clock = clock or time.time
        self._sleep = sleep or time.sleep

    def __repr__(self) -> str:
        return f"DeviceGrant({self._url!r})"

    def authorize(self, scopes: tuple[str, ...]) -> DeviceAuthorization:
        """Ask ``{base_url}/device/authorize`` for a device code for ``scopes``.

        Raises:
            TokenEndpointError: Webex refused (the integration may not use the device
                grant), or answered something unusable.
        """
        url = self._authorize_url
        form = {"client_id": self._client_id, "scope": " ".join(scopes)}
        answer = self._endpoint.call(
            DEVICE_AUTHORIZE,
            lambda: self._session.post(
                url, data=form, withhold_token=True, **self._endpoint.request_options()
            ),
            url=url,
        )
        return authorization_from_answer(answer, url=url)

    def poll(self, flow: DeviceAuthorization, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the person approves; return the checked token answer.

        Args:
            flow: the device authorization to poll for.
            timeout: seconds to poll at most (default: until the code expires).

        Raises:
            DeviceCodeExpired: the code expired, or ``timeout`` passed, before approval.
            AuthorizationDenied: the person declined.
            TokenEndpointError: Webex refused the poll otherwise, or kept failing.
        """
        start = self._clock()
        expires = flow.expires_at.timestamp()
        deadline = expires if timeout is None else min(expires, start + timeout)
        interval = flow.interval
        wait = interval
        polls = 0
        while True:
            if self._clock() + wait >= deadline:
                # No poll could come before the deadline: wait it out, send nothing.
                self._sleep(max(0.0, deadline - self._clock()))
                raise self._ran_out(flow, timeout, timed_out=deadline < expires, polls=polls)
            self._sleep(wait)
            polls += 1
            try:
                return self._endpoint.call(
                    DEVICE_TOKEN,
                    lambda: self._send(flow),
                    url=self._url,
                )
            except _Throttled as throttled:
                if throttled.retry_after is None:
                    interval += SLOW_DOWN_STEP
                wait = max(interval, throttled.retry_after or 0.0)
                log.info("device-code poll: 429, next poll in %.1f s", wait)
                continue
            except TokenEndpointError as exc:
                outcome = "authorization_pending" if exc.status == 428 else exc.error
                if outcome == "authorization_pending":
                    wait = interval
                    continue
                if outcome == "slow_down":
                    interval += SLOW_DOWN_STEP
                    wait = interval
                    log.info("device-code poll: slow_down, interval now %.1f s", interval)
                    continue
                if outcome == "expired_token":
                    raise self._ran_out(flow, None, timed_out=False, polls=polls) from None
                if outcome == "access_denied":
                    raise AuthorizationDenied(
                        "the device login was declined on the verification page "
                        f"({flow.verification_uri}); run the login again and allow the access there"
                    ) from None
                raise

    def _send(self, flow: DeviceAuthorization) -> requests.Response:
        response: requests.Response = self._session.post(
            self._url,
            data={
                "grant_type": DEVICE_GRANT_TYPE,
                "device_code": flow.device_code,
                "client_id": self._client_id,
            },
            auth=self._auth,
            withhold_token=True,
            **self._endpoint.request_options(),
        )
        if response.status_code == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            response.close()
            raise _Throttled(wait)
        return response

    def _ran_out(
        self, flow: DeviceAuthorization, timeout: float | None, *, timed_out: bool, polls: int
    ) -> DeviceCodeExpired:
        code = printable(flow.user_code, 64)
        if timed_out:
            return DeviceCodeExpired(
                f"nobody approved the code {code} at {flow.verification_uri} within "
                f"{timeout:g} seconds ({polls} poll(s)); run the login again (with a longer "
                "--timeout if the approval needs more time)"
            )
        return DeviceCodeExpired(
            f"the device code {code} expired before anyone approved it at "
            f"{flow.verification_uri} ({polls} poll(s)); run the login again and approve the "
            "new code within its lifetime"
        )
