"""The loopback callback server that receives the authorization code from the browser.

:class:`CallbackServer` listens on this machine only: for a ``localhost`` redirect URI on
every address ``localhost`` stands for (127.0.0.1 and ::1), so no other local program
can take the one left free, and for ``127.0.0.1`` or ``[::1]`` on that address
(:mod:`webex_tokens.loopback` does the sockets, with a time limit per connection and a
cap on connections). It serves exactly the redirect URI's path with ``GET``, checks
``state`` in constant time, and stops after one successful callback or the timeout. Every
answer is a small HTML page in bytes, never a redirect, with ``Cache-Control: no-store`` and
a strict Content-Security-Policy; error text from the query is escaped and no code, state or
secret appears in a page.

:class:`CallbackInbox` is where the one answer of a login arrives and is judged, from
the browser or from a redirect URL pasted in (delivered in-process, never over HTTP).
:func:`handle_callback_query` is the same validation as a pure function, for web-app
routes (FastAPI, Flask) that receive the callback themselves; :func:`parse_callback_url`
applies it to a redirect URL the user pasted (no-browser mode).
"""

from __future__ import annotations

import dataclasses
import errno
import hmac
import logging
import threading
import time
from types import TracebackType
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import (
    AuthorizationDenied,
    CallbackError,
    OAuthError,
    RedirectURIMismatch,
    TokenEndpointError,
)
from .loopback import PAGE_HEADERS, BindError, LoopbackServer, Reply, render_page
from .scrubbing import printable
from .token import fingerprint

__all__ = [
    "PAGE_HEADERS",
    "CallbackInbox",
    "CallbackOutcome",
    "CallbackResult",
    "CallbackServer",
    "browser_message",
    "handle_callback_query",
    "is_loopback_redirect_uri",
    "parse_callback_url",
    "pasted_query",
    "render_page",
]

_log = logging.getLogger(__name__)

_LOOPBACK_HOSTS = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::1": "::1"}
_MAX_CODE_LENGTH = 4096
_RETRY_HINT = "run the login again, or use --no-browser to paste the redirect URL instead"


@dataclasses.dataclass(frozen=True, repr=False)
class CallbackResult:
    """A successful callback: the authorization code and the (already checked) state.

    ``repr()`` shows a fingerprint of the code, never the code.
    """

    code: str
    state: str

    def __repr__(self) -> str:
        return f"CallbackResult(code={fingerprint(self.code)})"


@dataclasses.dataclass(frozen=True)
class CallbackOutcome:
    """What one callback request amounts to: the page to answer and its effect on the flow.

    Attributes:
        status: the HTTP status of the page (200 on success, 400 otherwise).
        page: the HTML page, UTF-8 bytes; send it with :data:`PAGE_HEADERS`.
        result: the code and state, on success.
        error: why the request failed, or None on success.
        final: True when the request ends the flow (success, denial, an error reported by
            Webex, a missing code); False for a request that is refused without ending it
            (wrong or missing state), so the real callback can still arrive.
    """

    status: int
    page: bytes
    result: CallbackResult | None = None
    error: OAuthError | None = None
    final: bool = True

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The headers to send with :attr:`page`."""
        return PAGE_HEADERS

    def raise_for_error(self) -> CallbackResult:
        """Return :attr:`result`, or raise :attr:`error`."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def browser_message(error: OAuthError) -> str:
    """What a browser is told when a sign-in failed after its callback: one generic
    sentence chosen by the kind of failure, with no text from Webex and no detail an
    attacker could use; the full message of ``error`` belongs in the server's log.

    For a web route that exchanges the code itself (the FastAPI and Flask login
    routes): render it with :func:`render_page` and log ``error``.
    """
    if isinstance(error, RedirectURIMismatch):
        return (
            "This site's Webex sign-in is not set up for this address; "
            "tell the site's administrator."
        )
    if isinstance(error, TokenEndpointError):
        if error.error == "invalid_grant":
            return "This sign-in expired or was already used. Start the sign-in again."
        if error.error == "invalid_client":
            return "This site's Webex sign-in is misconfigured; tell the site's administrator."
        if error.delivered is not True:
            return "Webex did not complete the sign-in in time. Start the sign-in again."
    if isinstance(error, AuthorizationDenied):
        return "Access was not granted. You can close this tab."
    return (
        "Webex could not complete the sign-in. Start the sign-in again; if it keeps "
        "failing, tell the site's administrator."
    )


def is_loopback_redirect_uri(uri: str) -> bool:
    """True when ``uri`` is an ``http://`` address on this machine (``localhost``,
    ``127.0.0.1`` or ``[::1]``): one a :class:`CallbackServer` can serve."""
    parts = urlsplit(uri)
    return parts.scheme == "http" and (parts.hostname or "").lower() in _LOOPBACK_HOSTS


def _state_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def handle_callback_query(
    query: str, expected_state: str, *, retry_hint: str = _RETRY_HINT
) -> CallbackOutcome:
    """Validate the query string of one callback request against the login's ``state``.

    Order of checks: ``state`` (constant-time; a wrong or missing one is refused without
    ending the flow), then ``error`` (``access_denied`` or another error reported by Webex),
    then ``code``. Unknown parameters are ignored. The function does no I/O.

    Args:
        query: the raw query string (``code=...&state=...``), without the ``?``.
        expected_state: the ``state`` sent in the authorization request.
        retry_hint: what the error messages tell the user to do next.

    Returns:
        A :class:`CallbackOutcome`; its ``error`` is an :class:`AuthorizationDenied` or a
        :class:`CallbackError` when the request failed.
    """
    try:
        params = parse_qs(query, keep_blank_values=True, max_num_fields=100)
    except ValueError:
        params = {}
    repeated = sorted(name for name, values in params.items() if len(values) > 1)
    values = {name: items[0] for name, items in params.items()}
    if repeated and ("state" in repeated or "code" in repeated or "error" in repeated):
        # Two codes or states in one request: refuse rather than guess which one is real.
        return CallbackOutcome(
            400,
            render_page("Sign-in failed", "The sign-in response repeated a parameter."),
            error=CallbackError(
                "the callback repeated a code, state or error parameter and was refused; "
                + retry_hint
            ),
            final=False,
        )
    state = values.get("state", "")
    if not state or not _state_matches(state, expected_state):
        return CallbackOutcome(
            400,
            render_page(
                "Sign-in link not recognised",
                "This response does not belong to the sign-in in progress (state mismatch): "
                "it may come from an older tab. Finish the sign-in from the newest tab, "
                "or start it again.",
            ),
            error=CallbackError(
                "the callback's state does not match this login (a stale tab or a forged "
                "request), so it was refused; " + retry_hint
            ),
            final=False,
        )
    error = values.get("error")
    if error is not None:
        code_shown = printable(error) or "(empty)"
        description = printable(values.get("error_description", ""))
        if error == "access_denied":
            return CallbackOutcome(
                400,
                render_page(
                    "Sign-in declined",
                    "Webex reports that access was not granted. You can close this tab.",
                ),
                error=AuthorizationDenied(
                    "Webex reports that the authorization was declined (access_denied"
                    + (f": {description}" if description else "")
                    + "); run the login again and choose Accept, or ask your Webex "
                    "administrator whether policy blocks this integration"
                ),
            )
        return CallbackOutcome(
            400,
            render_page(
                "Sign-in failed",
                f"Webex reported an error: {code_shown}"
                + (f": {description}" if description else "")
                + ". You can close this tab.",
            ),
            error=CallbackError(
                f"Webex reported an error at the callback: {code_shown}"
                + (f": {description}" if description else "")
                + "; check the integration's client ID, scopes and redirect URI, then "
                + retry_hint
            ),
        )
    code = values.get("code", "")
    if not code:
        received = ", ".join(sorted(values)) or "none"
        return CallbackOutcome(
            400,
            render_page(
                "Sign-in failed",
                "Insufficient parameters for OAuth2 callback: no authorization code. "
                "Start the sign-in again.",
            ),
            error=CallbackError(
                "Insufficient parameters for OAuth2 callback: the redirect carried no "
                f"code (parameters received: {printable(received)}); " + retry_hint
            ),
        )
    if len(code) > _MAX_CODE_LENGTH or not code.isprintable():
        return CallbackOutcome(
            400,
            render_page("Sign-in failed", "The authorization code is malformed."),
            error=CallbackError(
                "the authorization code in the callback is malformed; " + retry_hint
            ),
        )
    return CallbackOutcome(
        200,
        render_page(
            "Webex sign-in complete",
            "You are signed in. You can close this tab and return to the application.",
        ),
        result=CallbackResult(code=code, state=state),
    )


def parse_callback_url(
    url: str, expected_state: str, *, redirect_uri: str | None = None
) -> CallbackResult:
    """Read the code from a redirect URL the user pasted (no-browser mode).

    Applies the same rules as the callback server (constant-time state check).

    Args:
        url: the full address from the browser's address bar after approving.
        expected_state: the ``state`` sent in the authorization request.
        redirect_uri: when given, the pasted URL must point at this redirect URI
            (scheme, host, port and path).

    Raises:
        CallbackError: the text is not a redirect URL, points elsewhere, has the wrong
            state, carries no code, or reports an error from Webex.
        AuthorizationDenied: the user declined (``error=access_denied``).
    """
    query = pasted_query(url, redirect_uri=redirect_uri)
    return handle_callback_query(query, expected_state).raise_for_error()


def pasted_query(url: str, *, redirect_uri: str | None = None) -> str:
    """The query of a redirect URL the user pasted, once it is seen to be one.

    Args:
        url: the pasted text.
        redirect_uri: when given, the pasted URL must point at this redirect URI
            (scheme, host, port and path).

    Raises:
        CallbackError: the text is not a redirect URL, or points elsewhere.
    """
    text = url.strip()
    parts = urlsplit(text)
    if not parts.query or not parts.scheme or not parts.netloc:
        raise CallbackError(
            "the pasted text is not the redirect URL: paste the whole address from the "
            "browser's address bar after approving (it contains ?code=...&state=...)"
        )
    if redirect_uri is not None:
        expected = urlsplit(redirect_uri)
        if (parts.scheme.lower(), parts.netloc.lower(), parts.path or "/") != (
            expected.scheme.lower(),
            expected.netloc.lower(),
            expected.path or "/",
        ):
            shown = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
            raise CallbackError(
                f"the pasted URL goes to {printable(shown)}, not to the redirect URI "
                f"{redirect_uri}; paste the address Webex redirected to after approving"
            )
    return parts.query


class CallbackInbox:
    """Where the one answer of a login arrives: each is judged against the login's
    ``state``, the first final one is kept, and a waiter is woken.

    A browser's request is judged by the :class:`CallbackServer` and settled once the
    browser has its page; a pasted redirect URL is :meth:`deliver`-ed straight in.

    Args:
        expected_state: the ``state`` sent in the authorization request.
        retry_hint: what error messages tell the user to do next.

    Attributes:
        refused: how many answers were refused without ending the login (wrong state).
    """

    def __init__(self, expected_state: str, *, retry_hint: str = _RETRY_HINT) -> None:
        if not expected_state:
            raise CallbackError("the login has no state to check the callback against")
        self.expected_state = expected_state
        self.retry_hint = retry_hint
        self.refused = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._outcome: CallbackOutcome | None = None

    def __repr__(self) -> str:
        return f"CallbackInbox(done={self._done.is_set()})"

    def judge(self, query: str) -> CallbackOutcome:
        """Judge one callback query; the first final outcome is kept (the waiter is not
        woken yet: :meth:`settle`). After it, every answer is refused."""
        with self._lock:
            if self._outcome is not None:
                return CallbackOutcome(
                    400,
                    render_page(
                        "Sign-in already finished",
                        "This sign-in has already been completed; this request was ignored.",
                    ),
                    error=CallbackError("this login has already finished"),
                    final=False,
                )
            outcome = handle_callback_query(query, self.expected_state, retry_hint=self.retry_hint)
            if outcome.final:
                self._outcome = outcome
            else:
                self.refused += 1
            return outcome

    def settle(self) -> None:
        """Wake the waiter when a final outcome is kept."""
        with self._lock:
            if self._outcome is not None:
                self._done.set()

    def deliver(self, query: str) -> CallbackOutcome:
        """Judge ``query`` (a pasted redirect URL's) and, when final, end the wait."""
        outcome = self.judge(query)
        self.settle()
        return outcome

    def cancel(self, error: OAuthError) -> None:
        """End the wait with ``error``, unless an outcome came first."""
        with self._lock:
            if self._outcome is None:
                self._outcome = CallbackOutcome(400, b"", error=error)
            self._done.set()

    def wait(self, timeout: float | None) -> CallbackOutcome | None:
        """The final outcome, or None when ``timeout`` seconds passed without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # Short waits keep Ctrl-C responsive in the main thread.
        while not self._done.wait(
            0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
        ):
            if deadline is not None and time.monotonic() >= deadline:
                return None
        with self._lock:
            return self._outcome


class CallbackServer:
    """A one-shot HTTP server on loopback that waits for Webex's redirect to the redirect URI.

    The addresses are bound when the server is built, so a taken port is reported at once.

    Args:
        redirect_uri: the registered redirect URI (``http://localhost:8000/...``); its host
            must be ``localhost``, ``127.0.0.1`` or ``[::1]``.
        expected_state: the ``state`` sent in the authorization request.
        port: a port to use instead of the redirect URI's (0 picks a free one; the
            :attr:`redirect_uri` attribute then holds the actual port).
        timeout: seconds :meth:`wait` waits for the callback.
        connection_timeout: seconds each connection has to send its whole request.
        max_connections: connections served at once (the oldest idle one makes room).

    Attributes:
        port: the bound port.
        addresses: the addresses listened on (``localhost``: 127.0.0.1 and ::1).
        redirect_uri: the redirect URI with the bound port.
        path: the only path served.
        inbox: where the answer arrives (:class:`CallbackInbox`).

    Raises:
        CallbackError: the redirect URI is not an ``http`` loopback URI, or the port is
            taken or not permitted on one of the addresses.
    """

    def __init__(
        self,
        redirect_uri: str,
        expected_state: str,
        *,
        port: int | None = None,
        timeout: float = 300.0,
        connection_timeout: float = 10.0,
        max_connections: int = 16,
    ) -> None:
        parts = urlsplit(redirect_uri)
        try:
            uri_port = parts.port
        except ValueError:
            uri_port = -1
        host = (parts.hostname or "").lower()
        if parts.scheme != "http" or host not in _LOOPBACK_HOSTS or uri_port == -1:
            raise CallbackError(
                f"the redirect URI {redirect_uri!r} is not an http:// address on this "
                "machine, so no local server can receive the callback; register and use "
                "http://localhost:PORT/PATH, or use --no-browser to paste the redirect URL"
            )
        self.inbox = CallbackInbox(expected_state)
        self.expected_state = expected_state
        self.timeout = timeout
        self.path = parts.path or "/"
        bind_port = uri_port if port is None else port
        if bind_port is None:
            bind_port = 80
        try:
            self._listener = LoopbackServer(
                host,
                bind_port,
                self,
                connection_timeout=connection_timeout,
                max_connections=max_connections,
            )
        except BindError as exc:
            raise _bind_error(exc) from None
        self.port: int = self._listener.port
        self.addresses = self._listener.addresses
        netloc = f"[{parts.hostname}]" if host == "::1" else parts.hostname or host
        self.redirect_uri = urlunsplit(
            (parts.scheme, f"{netloc}:{self.port}", parts.path, parts.query, "")
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"CallbackServer({self.redirect_uri!r})"

    @property
    def refused(self) -> int:
        """How many requests were refused without ending the flow (wrong state)."""
        return self.inbox.refused

    def respond(self, method: str, target: str) -> Reply:
        """The page for one request (called by the listener's threads)."""
        parts = urlsplit(target)
        if method != "GET":
            return Reply(
                405,
                render_page("Method not allowed", "Only GET is served here."),
                (("Allow", "GET"),),
            )
        if parts.path != self.path:
            return Reply(404, render_page("Not found", "This address serves nothing."))
        outcome = self.inbox.judge(parts.query)
        # Settled only once the page is sent: a CLI that exits right after wait() still
        # delivers the page.
        return Reply(outcome.status, outcome.page, after=self.inbox.settle)

    def deliver(self, query: str) -> CallbackOutcome:
        """Judge a pasted redirect URL's query in-process, as if the browser had sent it."""
        return self.inbox.deliver(query)

    def start(self) -> CallbackServer:
        """Serve in a daemon thread; returns self.

        Raises:
            CallbackError: the server was already stopped.
        """
        if self._closed:
            raise CallbackError("this callback server was stopped; create a new one")
        self._listener.start()
        return self

    def outcome(self, timeout: float | None = None) -> CallbackOutcome | None:
        """Serve until a final outcome arrives (None after ``timeout`` seconds, default
        :attr:`timeout`); the server keeps serving."""
        self.start()
        return self.inbox.wait(self.timeout if timeout is None else timeout)

    def wait(self) -> CallbackResult:
        """Serve until one valid callback arrives or :attr:`timeout` passes, then stop.

        Returns:
            The authorization code and state.

        Raises:
            AuthorizationDenied: the user declined (``error=access_denied``).
            CallbackError: Webex reported another error, the code was missing, or no valid
                callback came in time.
        """
        try:
            outcome = self.outcome()
        finally:
            self.stop()
        if outcome is None:
            refused = (
                f" ({self.refused} callback(s) with a wrong state were refused)"
                if self.refused
                else ""
            )
            raise CallbackError(
                f"no sign-in callback reached {self.redirect_uri} within {self.timeout:g} "
                f"seconds{refused}; {_RETRY_HINT} (finish the sign-in in the browser sooner, "
                "or raise the timeout)"
            )
        return outcome.raise_for_error()

    def stop(self) -> None:
        """Stop serving and free the port. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._listener.stop()

    def __enter__(self) -> CallbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _bind_error(exc: BindError) -> CallbackError:
    where = f"{exc.address} port {exc.port}"
    port = exc.port
    if exc.errno == errno.EADDRINUSE:
        shared = (
            " (a browser going to localhost may reach that program instead of this login)"
            if exc.address not in ("127.0.0.1",)
            else ""
        )
        return CallbackError(
            f"{where} is already in use{shared}, so the login callback cannot be received "
            f"there; stop the program using port {port}, or pass --port with another port "
            "and register the matching redirect URI with your Webex integration"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return CallbackError(
            f"not permitted to listen on {where}; use a redirect URI with a port above "
            "1023 (register it with your Webex integration) or pass --port"
        )
    return CallbackError(
        f"cannot listen on {where} ({exc.strerror or exc}); pass --port with another "
        "port and register the matching redirect URI with your Webex integration"
    )
