"""The loopback callback server that receives the authorization code from the browser.

:class:`CallbackServer` binds the loopback interface only (``127.0.0.1``, or ``::1`` when the
redirect URI names ``[::1]``), serves exactly the redirect URI's path with ``GET``, checks
``state`` in constant time, and stops after one successful callback or the timeout. Every
answer is a small HTML page in bytes, never a redirect, with ``Cache-Control: no-store`` and
a strict Content-Security-Policy; error text from the query is escaped and no code, state or
secret appears in a page.

:func:`handle_callback_query` is the same validation as a pure function, for web-app routes
(FastAPI, Flask) that receive the callback themselves; :func:`parse_callback_url` applies
it to a redirect URL the user pasted (no-browser mode).
"""

from __future__ import annotations

import dataclasses
import errno
import hmac
import html
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import (
    AuthorizationDenied,
    CallbackError,
    OAuthError,
    RedirectURIMismatch,
    TokenEndpointError,
)
from .scrubbing import printable
from .token import fingerprint

__all__ = [
    "PAGE_HEADERS",
    "CallbackOutcome",
    "CallbackResult",
    "CallbackServer",
    "browser_message",
    "handle_callback_query",
    "is_loopback_redirect_uri",
    "parse_callback_url",
    "render_page",
]

_log = logging.getLogger(__name__)

#: Headers sent with every callback page.
PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)

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


def render_page(title: str, message: str) -> bytes:
    """A minimal HTML page with ``title`` and ``message`` escaped, as UTF-8 bytes."""
    title, message = html.escape(title), html.escape(message)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;margin:3em auto;"
        "max-width:36em;line-height:1.5}</style></head>"
        f"<body><h1>{title}</h1><p>{message}</p></body></html>"
    ).encode()


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


def handle_callback_query(query: str, expected_state: str) -> CallbackOutcome:
    """Validate the query string of one callback request against the login's ``state``.

    Order of checks: ``state`` (constant-time; a wrong or missing one is refused without
    ending the flow), then ``error`` (``access_denied`` or another error reported by Webex),
    then ``code``. Unknown parameters are ignored. The function does no I/O.

    Args:
        query: the raw query string (``code=...&state=...``), without the ``?``.
        expected_state: the ``state`` sent in the authorization request.

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
                + _RETRY_HINT
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
                "request), so it was refused; " + _RETRY_HINT
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
                + _RETRY_HINT
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
                f"code (parameters received: {printable(received)}); " + _RETRY_HINT
            ),
        )
    if len(code) > _MAX_CODE_LENGTH or not code.isprintable():
        return CallbackOutcome(
            400,
            render_page("Sign-in failed", "The authorization code is malformed."),
            error=CallbackError(
                "the authorization code in the callback is malformed; " + _RETRY_HINT
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
    return handle_callback_query(parts.query, expected_state).raise_for_error()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: CallbackServer


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "webex-tokens"
    sys_version = ""
    timeout = 10  # an idle browser preconnection must not hold a thread for long

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the code and the state: keep them out of every log.
        _log.debug("callback %s %s", self.command, urlsplit(self.path).path)

    def _answer(self, status: int, page: bytes, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for name, value in (*PAGE_HEADERS, *extra):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(page)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(page)
        self.close_connection = True

    def do_GET(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        if parts.path != owner.path:
            self._answer(404, render_page("Not found", "This address serves nothing."))
            return
        status, page, final = owner._receive(parts.query)
        try:
            self._answer(status, page)
        finally:
            if final:
                # Only now: a CLI that exits right after wait() still delivers the page.
                owner._done.set()

    def _method_not_allowed(self) -> None:
        self._answer(
            405,
            render_page("Method not allowed", "Only GET is served here."),
            (("Allow", "GET"),),
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _method_not_allowed


class CallbackServer:
    """A one-shot HTTP server on loopback that waits for Webex's redirect to the redirect URI.

    The port is bound when the server is built, so a taken port is reported at once.

    Args:
        redirect_uri: the registered redirect URI (``http://localhost:8000/...``); its host
            must be ``localhost``, ``127.0.0.1`` or ``[::1]``.
        expected_state: the ``state`` sent in the authorization request.
        port: a port to use instead of the redirect URI's (0 picks a free one; the
            :attr:`redirect_uri` attribute then holds the actual port).
        timeout: seconds :meth:`wait` waits for the callback.

    Attributes:
        port: the bound port.
        redirect_uri: the redirect URI with the bound port.
        path: the only path served.
        refused: how many requests were refused without ending the flow (wrong state).

    Raises:
        CallbackError: the redirect URI is not an ``http`` loopback URI, or the port is
            taken or not permitted.
    """

    def __init__(
        self,
        redirect_uri: str,
        expected_state: str,
        *,
        port: int | None = None,
        timeout: float = 300.0,
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
        if not expected_state:
            raise CallbackError("the login has no state to check the callback against")
        self.expected_state = expected_state
        self.timeout = timeout
        self.path = parts.path or "/"
        self.refused = 0
        bind_port = uri_port if port is None else port
        if bind_port is None:
            bind_port = 80
        self._bind_host = _LOOPBACK_HOSTS[host]
        server_class = _IPv6Server if self._bind_host == "::1" else _Server
        try:
            self._server = server_class((self._bind_host, bind_port), _Handler)
        except OSError as exc:
            raise self._bind_error(exc, bind_port) from None
        self._server.owner = self
        self.port: int = int(self._server.server_address[1])
        netloc = f"[{parts.hostname}]" if self._bind_host == "::1" else parts.hostname or host
        self.redirect_uri = urlunsplit(
            (parts.scheme, f"{netloc}:{self.port}", parts.path, parts.query, "")
        )
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._outcome: CallbackOutcome | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def _bind_error(self, exc: OSError, port: int) -> CallbackError:
        where = f"{self._bind_host} port {port}"
        if exc.errno == errno.EADDRINUSE:
            return CallbackError(
                f"{where} is already in use, so the login callback cannot be received there; "
                f"stop the program using port {port}, or pass --port with another port and "
                "register the matching redirect URI with your Webex integration"
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

    def __repr__(self) -> str:
        return f"CallbackServer({self.redirect_uri!r})"

    def _receive(self, query: str) -> tuple[int, bytes, bool]:
        """Judge one request to the callback path: (status, page, whether it ends the flow).

        Called from the server's threads; the first final outcome is kept, later requests
        are refused.
        """
        with self._lock:
            if self._outcome is not None:
                return (
                    400,
                    render_page(
                        "Sign-in already finished",
                        "This sign-in has already been completed; this request was ignored.",
                    ),
                    False,
                )
            outcome = handle_callback_query(query, self.expected_state)
            if outcome.final:
                self._outcome = outcome
            else:
                self.refused += 1
            return outcome.status, outcome.page, outcome.final

    def start(self) -> CallbackServer:
        """Serve in a daemon thread; returns self.

        Raises:
            CallbackError: the server was already stopped.
        """
        if self._closed:
            raise CallbackError("this callback server was stopped; create a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"webex-tokens-callback:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def wait(self) -> CallbackResult:
        """Serve until one valid callback arrives or :attr:`timeout` passes, then stop.

        Returns:
            The authorization code and state.

        Raises:
            AuthorizationDenied: the user declined (``error=access_denied``).
            CallbackError: Webex reported another error, the code was missing, or no valid
                callback came in time.
        """
        self.start()
        deadline = time.monotonic() + self.timeout
        try:
            # Short waits keep Ctrl-C responsive in the main thread.
            while not self._done.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    break
        finally:
            self.stop()
        with self._lock:
            outcome = self._outcome
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
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> CallbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
