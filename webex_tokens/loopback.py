"""A small HTTP server on this machine's loopback addresses that an attacker cannot hold up.

:class:`LoopbackServer` serves the requests of a :class:`Responder` on every address a
loopback host name stands for, on one port:

- ``localhost`` is 127.0.0.1 **and** ::1 (when the machine has IPv6 loopback), plus any
  other loopback address the resolver gives for it: browsers may try either, so another
  local user listening on the one left free would receive what was meant for this
  server. Every address is bound before anything is served; one that another program
  holds is an error naming it (:class:`BindError`), never a half-bound server.
- each connection has ``connection_timeout`` seconds, in all, to send its request line
  and headers (an idle browser preconnection, or a client sending a byte at a time, is
  closed quietly at the end of it), and at most ``max_connections`` are served at once:
  when all are taken, the oldest connection that has not sent its request yet makes
  room for the newest, so a flood of idle connections cannot keep a real request out;
- a request line over 64 KiB is answered 414 and headers over the limits 431, with the
  same small HTML page as every other answer, never a dropped connection or a traceback.

Nothing here knows OAuth: :class:`~webex_tokens.callback.CallbackServer` is the
responder that does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import html
import io
import ipaddress
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

__all__ = [
    "PAGE_HEADERS",
    "BindError",
    "LoopbackServer",
    "Reply",
    "Responder",
    "loopback_addresses",
    "render_page",
]

_log = logging.getLogger("webex_tokens.callback")

#: Headers sent with every page.
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

_POLL: Final = 0.05
_DRAIN_BYTES: Final = 256 * 1024
_DRAIN_SECONDS: Final = 0.5
_ERROR_TEXT: Final = {
    400: "This request could not be read.",
    414: "The address of this request is too long.",
    431: "The headers of this request are too large.",
}


def render_page(title: str, message: str) -> bytes:
    """A minimal HTML page with ``title`` and ``message`` escaped, as UTF-8 bytes."""
    title, message = html.escape(title), html.escape(message)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;margin:3em auto;"
        "max-width:36em;line-height:1.5}</style></head>"
        f"<body><h1>{title}</h1><p>{message}</p></body></html>"
    ).encode()


@dataclasses.dataclass(frozen=True)
class Reply:
    """The answer to one request.

    Attributes:
        status: the HTTP status.
        page: the HTML page (sent with :data:`PAGE_HEADERS`).
        headers: more headers.
        after: called once the page was sent (or could not be).
    """

    status: int
    page: bytes
    headers: tuple[tuple[str, str], ...] = ()
    after: Callable[[], None] | None = None


class Responder(Protocol):
    """What a :class:`LoopbackServer` asks for each complete request."""

    def respond(self, method: str, target: str) -> Reply:
        """The reply to ``method`` on ``target`` (the path and query as sent)."""
        ...


class BindError(OSError):
    """An address could not be bound: the address, the port and the reason (``errno``)."""

    def __init__(self, address: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.address = address
        self.port = port


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def loopback_addresses(host: str) -> list[str]:
    """The addresses to serve for ``host``: ``localhost`` is 127.0.0.1, ::1 where this
    machine has IPv6 loopback, and any other loopback address the resolver gives it;
    ``127.0.0.1`` and ``::1`` are themselves.

    Raises:
        ValueError: ``host`` is not a loopback host.
    """
    host = host.lower().strip("[]")
    if host in ("127.0.0.1", "::1"):
        return [host]
    if host != "localhost":
        raise ValueError(f"{host!r} is not a loopback host")
    found = ["127.0.0.1"]
    if _has_ipv6_loopback():
        found.append("::1")
    with contextlib.suppress(OSError):
        for *_, address in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM):
            text = str(address[0]).partition("%")[0]
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(text).is_loopback and text not in found:
                    found.append(text)
    return found


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if os.name == "nt":  # never share the port with another program
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
        else:  # rebind at once after a stop (TIME_WAIT), never share with a listener
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise BindError(address, port, exc) from None
    return sock


def _bind_all(addresses: list[str], port: int) -> list[socket.socket]:
    """One listening socket per address, all on ``port`` (0: one free on all of them)."""
    for _ in range(20 if port == 0 else 1):
        bound: list[socket.socket] = []
        try:
            for address in addresses:
                bound.append(_listen(address, port or (bound[0].getsockname()[1] if bound else 0)))
            return bound
        except BindError as exc:
            for sock in bound:
                sock.close()
            if port == 0 and bound and exc.errno == errno.EADDRINUSE:
                continue  # the free port of the first address is taken on another: again
            raise
    raise BindError(addresses[-1], port, OSError(errno.EADDRINUSE, "no common free port"))


class _DeadlineReader(io.RawIOBase):
    """Reads a socket, refusing to wait past ``deadline`` in all (not per read)."""

    def __init__(self, sock: socket.socket, deadline: float, connection: _Connection) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._connection = connection

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request took longer than the connection timeout")
        self._sock.settimeout(remaining)
        count = self._sock.recv_into(buffer)
        if count:
            self._connection.spoke = True
        return count


@dataclasses.dataclass(eq=False)
class _Connection:
    sock: socket.socket
    opened: float
    spoke: bool = False  #: some bytes arrived
    dispatched: bool = False  #: its request was complete and is being answered
    answered: bool = False  #: a page was sent


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer  # type: ignore[assignment]
    server_version = "webex-tokens"
    sys_version = ""

    def __init__(
        self, sock: socket.socket, peer: Any, server: LoopbackServer, state: _Connection
    ) -> None:
        self.connection_state = state
        super().__init__(sock, peer, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        super().setup()
        state = self.connection_state
        deadline = state.opened + self.server.connection_timeout
        self.rfile = io.BufferedReader(_DeadlineReader(self.request, deadline, state))

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the code and the state: log the method and path only.
        # Either may be missing (a connection that never sent a request line).
        command = getattr(self, "command", "") or "-"
        path = urlsplit(getattr(self, "path", "") or "").path or "-"
        _log.debug("callback %s %s", command, path)

    def log_error(self, format: str, *args: Any) -> None:
        self.log_message(format, *args)

    def parse_request(self) -> bool:
        complete = super().parse_request()
        if complete:
            self.connection_state.dispatched = True
        return complete

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        text = _ERROR_TEXT.get(code, "This request was refused.")
        self._write(Reply(code, render_page(phrase, text)))

    def _write(self, reply: Reply) -> None:
        try:
            self.request.settimeout(5)  # the page goes out whatever the read deadline left
            self.send_response(reply.status)
            for name, value in (*PAGE_HEADERS, *reply.headers):
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.page)))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", "") != "HEAD":
                self.wfile.write(reply.page)
            self.close_connection = True
            self.connection_state.answered = True
        finally:
            if reply.after is not None:
                reply.after()

    def _serve(self) -> None:
        self._write(self.server.responder.respond(self.command, self.path))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve


class LoopbackServer:
    """Serves ``responder`` on every loopback address of ``host``, on one port.

    The addresses are bound when the server is built, so a taken one is reported at once.

    Args:
        host: ``localhost``, ``127.0.0.1`` or ``::1``.
        port: the port; 0 picks one that is free on every address.
        responder: answers each complete request.
        connection_timeout: seconds each connection has to send its whole request.
        max_connections: connections served at once.

    Attributes:
        addresses: the addresses bound, in order.
        port: the bound port.

    Raises:
        BindError: an address could not be bound (in use, not permitted...).
    """

    def __init__(
        self,
        host: str,
        port: int,
        responder: Responder,
        *,
        connection_timeout: float = 10.0,
        max_connections: int = 16,
    ) -> None:
        self.responder = responder
        self.connection_timeout = float(connection_timeout)
        self.max_connections = max(1, int(max_connections))
        self.addresses = tuple(loopback_addresses(host))
        self._sockets = _bind_all(list(self.addresses), port)
        self.port: int = int(self._sockets[0].getsockname()[1])
        self._lock = threading.Lock()
        self._open: dict[socket.socket, _Connection] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LoopbackServer({list(self.addresses)!r}, port={self.port})"

    def start(self) -> None:
        """Accept connections in a daemon thread (once)."""
        if self._thread is None and not self._stopping.is_set():
            self._thread = threading.Thread(
                target=self._accept_loop, name=f"webex-tokens-callback:{self.port}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every open connection and free the port."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()
        with self._lock:
            left = list(self._open)
        for sock in left:
            _wake(sock)

    # -- connections ------------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            for sock in self._sockets:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select(_POLL):
                    listener: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        sock, peer = listener.accept()
                    except OSError:
                        continue
                    sock.setblocking(True)
                    self._admit(sock, peer)

    def _admit(self, sock: socket.socket, peer: Any) -> None:
        state = _Connection(sock, time.monotonic())
        with self._lock:
            if len(self._open) >= self.max_connections:
                waiting = [c for c in self._open.values() if not c.dispatched]
                if not waiting:
                    _log.debug("callback: %d connections busy, one refused", len(self._open))
                    _shut(sock)
                    return
                oldest = min(waiting, key=lambda c: c.opened)
                _log.debug("callback: connection limit reached, the oldest idle one closed")
                _wake(oldest.sock)  # its thread ends and closes it
                del self._open[oldest.sock]
            self._open[sock] = state
        threading.Thread(
            target=self._handle,
            args=(sock, peer, state),
            name="webex-tokens-callback-request",
            daemon=True,
        ).start()

    def _handle(self, sock: socket.socket, peer: Any, state: _Connection) -> None:
        try:
            _Handler(sock, peer, self, state)
        except Exception as exc:  # a client that vanished, a reset: nothing to report
            _log.debug("callback connection ended: %s", type(exc).__name__)
        finally:
            with self._lock:
                self._open.pop(sock, None)
            _close(sock, linger=state.answered)


def _wake(sock: socket.socket) -> None:
    """End a connection another thread is reading: its read returns, and it closes it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _shut(sock: socket.socket) -> None:
    _wake(sock)
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket, *, linger: bool) -> None:
    """Close ``sock``; after an answer, read what the client still sends for a moment, so
    unread bytes (the rest of a refused 70 KiB request line) do not reset the
    connection before the client has read the page."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        if linger:
            deadline = time.monotonic() + _DRAIN_SECONDS
            drained = 0
            while drained < _DRAIN_BYTES and (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
    with contextlib.suppress(OSError):
        sock.close()
