"""The boundary with Webex's OAuth endpoints: retries, answers and the errors they become.

Every request the library makes to Webex's OAuth endpoints goes through
:meth:`TokenEndpoint.call`: the code exchange and the refresh at ``/access_token``, the
``/people/me`` lookup that names an account, and any further kind of request (a
device-token poll, a Service App mint) described by its own :class:`RequestKind`.
``call`` sends the request, reads the answer and decides, in this one place:

- whether a failure is worth another attempt (:class:`RetryPolicy`): how long to wait
  (``Retry-After``, or a backoff that doubles) and how many times;
- what the answer means: the JSON object the caller asked for, or the library's own
  error saying what to do (:class:`~webex_tokens.errors.TokenEndpointError`,
  :class:`~webex_tokens.errors.RedirectURIMismatch`,
  :class:`~webex_tokens.errors.ReauthorizationRequired`).

Authlib prepares and sends the token requests (client authentication, PKCE); its
compliance hooks hand each answer over (:func:`hand_over`) before Authlib parses it, so
only this module reads what Webex sent.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timezone
from typing import Any, Final, NoReturn

import requests
from urllib3.exceptions import NewConnectionError, ReadTimeoutError

from .errors import (
    ConfigError,
    OAuthError,
    ReauthorizationRequired,
    RedirectURIMismatch,
    TokenEndpointError,
)
from .scrubbing import Scrubber, printable
from .token_answer import token_answer_fields

__all__ = [
    "AUTHORIZATION_CODE",
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_RETRY_AFTER",
    "PEOPLE_ME",
    "PORTAL",
    "REFRESH",
    "RequestKind",
    "RetryPolicy",
    "TokenEndpoint",
    "hand_over",
    "redirect_uri_mismatch_message",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

#: Longest ``Retry-After`` honoured by default; a longer one ends the retries at once.
DEFAULT_MAX_RETRY_AFTER: Final = 60.0
#: Backoff before the first retry (doubles with each further one).
DEFAULT_BACKOFF: Final = 0.5
#: Where integrations are created and edited.
PORTAL: Final = "https://developer.webex.com/my-apps"
_MAX_BACKOFF: Final = 8.0
_MAX_SHOWN: Final = 200
_MAX_ANSWER: Final = 64 * 1024


def redirect_uri_mismatch_message(redirect_uri: str, detail: str | None = None) -> str:
    """The explanation of ``redirect_uri_mismatch`` with both ways to fix it."""
    return (
        "Webex refused the redirect URI (redirect_uri_mismatch"
        + (f": {printable(detail)}" if detail else "")
        + f"): {redirect_uri} must match a redirect URI registered for the integration "
        "exactly, including http/https, host, port and path; fix it either way: edit the "
        f"integration at {PORTAL} and set its redirect URI to {redirect_uri}, or set "
        "WEBEX_REDIRECT_URI to the redirect URI registered there (and restart)"
    )


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None when
    absent or unreadable."""
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


@dataclasses.dataclass(frozen=True)
class RequestKind:
    """What a request to Webex is, and so what may be done again after a failure.

    A request that presents a single-use credential (a refresh token that Webex may
    rotate, an authorization code, a device code once approved) is sent again only
    when Webex provably did not act on it: the connection could not be made, or a 429
    or 503 came with ``Retry-After``. After a timeout, a connection dropped once the
    request was sent, or another server error, nobody can tell whether Webex used the
    credential, so the request is not repeated: the error says so
    (:attr:`~webex_tokens.errors.TokenEndpointError.delivered` is None) and
    :attr:`if_unknown` says what happens next.

    Attributes:
        name: what the request does, for messages (``"refresh"``, ``"code exchange"``).
        endpoint: the endpoint it goes to, for messages (``"token endpoint"``).
        grant: the OAuth grant it presents (``"refresh_token"``, ``"authorization_code"``),
            or None; an ``invalid_grant`` answer is explained for that grant.
        token_answer: True when a success is a token answer (``access_token``, ...).
        oauth_errors: True when a refusal (HTTP 4xx, or an ``error`` field) is an OAuth
            error answer even though a success is no token answer (the device
            authorization); always so for a token answer.
        resend_when_unknown: whether the same request may be sent again when nobody
            can tell if Webex acted on it (True for idempotent requests only).
        if_unknown: for a request that is not sent again: the sentence saying what
            Webex may have done and what happens next.
    """

    name: str
    endpoint: str
    grant: str | None = None
    token_answer: bool = True
    oauth_errors: bool = False
    resend_when_unknown: bool = False
    if_unknown: str = "Webex may have carried it out, so it was not sent again"


#: The refresh grant: a new access token for a refresh token (single use under rotation).
REFRESH: Final = RequestKind(
    "refresh",
    "token endpoint",
    grant="refresh_token",
    if_unknown=(
        "Webex may have used the refresh token, so it was not sent again: the stored token "
        "is kept and the next refresh tries it once more (should Webex have replaced it, "
        "that refresh is refused and the account must log in again)"
    ),
)
#: The authorization-code grant: the code of a login (and its PKCE verifier) for a token.
AUTHORIZATION_CODE: Final = RequestKind(
    "code exchange",
    "token endpoint",
    grant="authorization_code",
    if_unknown=(
        "Webex may have used the authorization code, which works only once, so it was "
        "not sent again: run the login again"
    ),
)
#: ``GET /people/me``: who an access token belongs to (idempotent: always retried).
PEOPLE_ME: Final = RequestKind(
    "people lookup", "people endpoint", token_answer=False, resend_when_unknown=True
)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for Webex and how often to try again.

    Attributes:
        timeout: seconds to wait for each answer.
        max_retries: how many times a failure worth retrying is retried.
        max_retry_after: the longest ``Retry-After`` waited for; a longer one ends the
            retries at once.
        backoff: seconds before the first retry without a ``Retry-After``; doubled for
            each further retry, at most 8 seconds, with a little jitter.

    Raises:
        ConfigError: a number is out of range.
    """

    timeout: float = 10.0
    max_retries: int = 3
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    backoff: float = DEFAULT_BACKOFF

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, not {self.max_retries!r}")
        if not self.max_retry_after >= 0 or not self.backoff >= 0:
            raise ConfigError("max_retry_after and backoff must be 0 or more seconds")

    def backoff_before(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        wait: float = min(_MAX_BACKOFF, self.backoff * 2.0 ** (retry - 1))
        return wait * (1 + random.random() / 4)  # noqa: S311 - jitter, not a secret


class _Answered(Exception):
    """Carries an answer out of Authlib before Authlib parses it."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def hand_over(response: requests.Response) -> NoReturn:
    """Authlib compliance hook: hand the token endpoint's answer to :class:`TokenEndpoint`.

    Register it for ``access_token_response`` and ``refresh_token_response`` on the
    ``OAuth2Session`` whose requests :meth:`TokenEndpoint.call` sends: the answer then
    reaches the library's checks before Authlib parses anything.
    """
    raise _Answered(response)


class _Retry(Exception):
    """An answer worth another attempt (429 or 5xx)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class _Failure:
    """One failed attempt: the error to raise, and whether the request may go again."""

    error: TokenEndpointError
    resend: bool
    wait: float | None = None  # what Webex asked for; None: the policy's backoff


def _said(value: object, scrub: Scrubber, limit: int = _MAX_SHOWN) -> str | None:
    """What Webex said in one field, made safe for a message: text only, every secret of
    the request scrubbed out, then made printable and capped."""
    if not isinstance(value, str) or not value:
        return None
    return printable(scrub(printable(value, limit=len(value) + 1)), limit) or None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (requests wraps urllib3, which wraps the socket error)."""
    seen: list[BaseException] = []
    pending: list[object] = [exc]
    while pending and len(seen) < 10:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or current in seen:
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__, *current.args]
        pending.append(getattr(current, "reason", None))
    return seen


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request provably never reached the server: the connection (or the
    proxy's tunnel) could not be made, or the request could not even be built."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.InvalidSchema
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidHeader,
    ):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return False  # a handshake failure looks the same as one in mid-answer
    if isinstance(exc, requests.ConnectionError):
        return any(isinstance(cause, NewConnectionError) for cause in _causes(exc))
    return False


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(cause, ReadTimeoutError | TimeoutError) for cause in _causes(exc))


def _cause_name(exc: BaseException) -> str:
    """The name of the socket-level error under ``exc``, for a message (never its text)."""
    for cause in _causes(exc)[1:]:
        if not type(cause).__module__.startswith(("requests", "urllib3")):
            return type(cause).__name__
    return type(exc).__name__


class TokenEndpoint:
    """Sends requests to Webex's OAuth endpoints and judges their answers.

    Every text of an answer is passed through a :class:`Scrubber` of the secrets its
    request carried (and of ``secrets``) before it is used in a message, an attribute
    or a log line.

    Args:
        base_url: the Webex API base, for messages.
        policy: timeouts and retries.
        secrets: secrets that must never be shown, whatever the request (the client
            secret).
        sleep: waits between attempts (for tests).
    """

    def __init__(
        self,
        base_url: str,
        policy: RetryPolicy,
        *,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url
        self.policy = policy
        self._secrets = tuple(secrets)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"TokenEndpoint({self.base_url!r})"

    def call(
        self,
        kind: RequestKind,
        send: Callable[[], requests.Response],
        *,
        url: str,
        redirect_uri: str | None = None,
    ) -> dict[str, Any]:
        """Send a request of ``kind`` with ``send``, retrying as the policy allows.

        Args:
            kind: what the request is.
            send: makes the request with :meth:`request_options` and returns its
                response (or raises through :func:`hand_over`); it is called once per
                attempt.
            url: the URL the request goes to, for messages.
            redirect_uri: the redirect URI the request carries, named when Webex
                refuses it.

        Returns:
            The JSON object Webex answered.

        Raises:
            TokenEndpointError: Webex refused the request, answered something unusable,
                or kept failing.
            RedirectURIMismatch: Webex refused the redirect URI.
            ReauthorizationRequired: Webex refused a refresh token.
            OAuthError: Webex refused an access token (``/people/me``).
        """
        attempts = self.policy.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                try:
                    response = send()
                except _Answered as answered:
                    response = answered.response
                body = self._read_body(response)
                scrub = Scrubber.for_request(response.request, self._secrets)
                return self._judge(kind, response, body, scrub, url=url, redirect_uri=redirect_uri)
            except _Retry as retry:
                failure = self._answer_failure(kind, retry, attempt)
            except requests.RequestException as exc:
                failure = self._transport_failure(kind, exc, attempt)
            if not failure.resend or attempt == attempts:
                raise failure.error
            wait = failure.wait if failure.wait is not None else self.policy.backoff_before(attempt)
            log.info("%s; retrying in %.2f s", failure.error, wait)
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _transport_failure(
        self, kind: RequestKind, exc: requests.RequestException, attempt: int
    ) -> _Failure:
        """No answer: the request provably never left, or nobody can tell."""
        where = f"the Webex {kind.endpoint} at {self.base_url}"
        if _never_sent(exc):
            return _Failure(
                TokenEndpointError(
                    f"cannot connect to {where} ({type(exc).__name__}, {attempt} attempt(s)); "
                    "check the network and WEBEX_BASE_URL",
                    delivered=False,
                ),
                resend=isinstance(exc, requests.ConnectionError),
            )
        if isinstance(exc, requests.Timeout) or _timed_out(exc):
            what = f"{where} did not answer within {self.policy.timeout:g} seconds"
        else:
            what = f"the connection to {where} broke before the answer came ({_cause_name(exc)})"
        if kind.resend_when_unknown:
            return _Failure(
                TokenEndpointError(
                    f"{what} ({attempt} attempt(s)); check the network and WEBEX_BASE_URL, "
                    "or try again later",
                    delivered=None,
                ),
                resend=True,
            )
        return _Failure(
            TokenEndpointError(f"{what}, and {kind.if_unknown}", delivered=None), resend=False
        )

    def _answer_failure(self, kind: RequestKind, retry: _Retry, attempt: int) -> _Failure:
        """A 429 or 5xx answer: retried when Webex says it did not act (Retry-After), or
        when the request may be repeated anyway."""
        status = retry.status
        not_processed = retry.retry_after is not None and status in (429, 503)
        if not_processed:
            assert retry.retry_after is not None
            if retry.retry_after > self.policy.max_retry_after:
                error = TokenEndpointError(
                    f"Webex asked to wait {retry.retry_after:g} seconds before trying again "
                    f"(HTTP {status}), more than the {self.policy.max_retry_after:g} allowed; "
                    "try again later",
                    status=status,
                )
                return _Failure(error, resend=False)
        if status == 429 and (not_processed or kind.resend_when_unknown):
            error = TokenEndpointError(
                f"Webex kept answering 429 Too Many Requests at the {kind.endpoint} "
                f"({attempt} attempt(s)); wait a minute and try again",
                status=429,
                error="rate_limited",
            )
            return _Failure(error, resend=True, wait=retry.retry_after)
        if status == 429:
            error = TokenEndpointError(
                f"Webex answered the {kind.name} with 429 Too Many Requests without saying "
                "when to try again, so it was not sent again; wait a minute and try again",
                status=429,
                error="rate_limited",
            )
            return _Failure(error, resend=False)
        if not_processed or kind.resend_when_unknown:
            error = TokenEndpointError(
                f"the Webex {kind.endpoint} kept failing with HTTP {status} ({attempt} "
                "attempt(s)); Webex may be having trouble: try again later",
                status=status,
                delivered=True if not_processed else None,
            )
            return _Failure(error, resend=True, wait=retry.retry_after)
        error = TokenEndpointError(
            f"the Webex {kind.endpoint} failed with HTTP {status} at the {kind.name}, and "
            f"{kind.if_unknown}",
            status=status,
            delivered=None,
        )
        return _Failure(error, resend=False)

    # -- one answer -------------------------------------------------------------------

    def request_options(self) -> dict[str, Any]:
        """The keyword arguments every ``send`` passes to requests (or to Authlib, which
        passes them on): the timeout, a streamed body (read here, capped at 64 KiB and
        within the timeout), and no redirects (a request carrying secrets is never
        re-sent elsewhere)."""
        return {"timeout": self.policy.timeout, "stream": True, "allow_redirects": False}

    def _read_body(self, response: requests.Response) -> bytes | None:
        """The answer's body, at most 64 KiB (None when longer), read within the
        timeout however slowly it trickles in."""
        if getattr(response, "_content_consumed", False):  # sent without stream=True
            content = response.content
            return content if len(content) <= _MAX_ANSWER else None
        deadline = time.monotonic() + self.policy.timeout
        chunks: list[bytes] = []
        size = 0
        read1 = getattr(response.raw, "read1", None)  # urllib3 2: what has arrived
        if callable(read1):
            pieces: Iterable[bytes] = iter(lambda: read1(8192, decode_content=True), b"")
        else:  # older urllib3: small reads keep the deadline checks frequent
            pieces = response.iter_content(512)
        try:
            for chunk in pieces:
                size += len(chunk)
                if size > _MAX_ANSWER:
                    return None
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise requests.ReadTimeout("the answer took longer than the timeout")
        finally:
            response.close()
        return b"".join(chunks)

    def _judge(
        self,
        kind: RequestKind,
        response: requests.Response,
        content: bytes | None,
        scrub: Scrubber,
        *,
        url: str,
        redirect_uri: str | None,
    ) -> dict[str, Any]:
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(status, retry_after_seconds(response.headers.get("Retry-After")))
        # A success claimed but unreadable: Webex may have acted on the request.
        unreadable = None if 200 <= status < 300 and not kind.resend_when_unknown else True
        if 300 <= status < 400:
            raise TokenEndpointError(
                f"the Webex {kind.endpoint} {url} answered HTTP {status}, a redirect, which "
                "is not followed (the request carries secrets, and Webex's endpoints never "
                "redirect); check WEBEX_BASE_URL (it should be https://webexapis.com/v1) and "
                "any proxy in between",
                status=status,
            )
        if kind is PEOPLE_ME and status in (401, 403):
            raise OAuthError(
                f"Webex refused the access token at {url} (HTTP {status}); the token may be "
                "expired or lack the spark:people_read scope: refresh it, or log in again"
            )
        content_type = printable(scrub(response.headers.get("Content-Type", "none")), 60)
        body: object = None
        if content is not None:
            try:
                body = json.loads(content)
            except (ValueError, RecursionError):
                body = None
        if not isinstance(body, dict):
            # Never echo the body: a proxy's page might quote the request back.
            what = "more than 64 KiB" if content is None else f"{content_type} that is"
            raise TokenEndpointError(
                f"the Webex {kind.endpoint} {url} answered HTTP {status} with {what} not a "
                "JSON object; check WEBEX_BASE_URL (it should be https://webexapis.com/v1) "
                "and any proxy in between",
                status=status,
                delivered=unreadable,
            )
        refusable = kind.token_answer or kind.oauth_errors
        if refusable and (status >= 400 or body.get("error") is not None):
            raise self._error_for(kind, status, body, scrub, redirect_uri)
        if not kind.token_answer:
            return body
        try:
            return token_answer_fields(body)
        except ValueError as unusable:
            raise TokenEndpointError(
                f"the Webex {kind.endpoint} {url} answered HTTP {status} with a token that is "
                f"not usable ({unusable}); check WEBEX_BASE_URL (it should be "
                "https://webexapis.com/v1) and any proxy in between",
                status=status,
                delivered=unreadable,
            ) from None

    def _error_for(
        self,
        kind: RequestKind,
        status: int,
        body: Mapping[str, Any],
        scrub: Scrubber,
        redirect_uri: str | None,
    ) -> OAuthError:
        error = _said(body.get("error"), scrub, 60)
        description = _said(body.get("error_description") or body.get("message"), scrub)
        reported = f"{error}: {description}" if error and description else error or description
        said = f" ({reported}, HTTP {status})" if reported else f" (HTTP {status})"
        if error == "invalid_client":
            return TokenEndpointError(
                f"Webex rejected the integration's credentials{said}; check WEBEX_CLIENT_ID "
                f"and WEBEX_CLIENT_SECRET against the integration at {PORTAL}",
                status=status,
                error=error,
                description=description,
            )
        if error == "redirect_uri_mismatch" or (
            error == "invalid_request" and description and "redirect" in description.lower()
        ):
            return RedirectURIMismatch(
                redirect_uri_mismatch_message(redirect_uri or "the redirect URI", said)
            )
        if error == "invalid_grant" and kind.grant == "refresh_token":
            return ReauthorizationRequired(
                f"invalid_grant: the refresh token is expired or revoked{said}"
            )
        if error == "invalid_grant" and kind.grant == "authorization_code":
            return TokenEndpointError(
                f"Webex refused the authorization code{said}: the authorization code expired "
                "or was already used: codes last a minute or two; run the login again",
                status=status,
                error=error,
                description=description,
            )
        return TokenEndpointError(
            f"the Webex {kind.endpoint} refused the request{said}; check the integration's "
            f"settings at {PORTAL} and run the login again",
            status=status,
            error=error,
            description=description,
        )
