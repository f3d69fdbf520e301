"""The HTTP server under FakeWebex, and the one safe record of each request it answers.

:class:`EmulatorServer` is a threading HTTP/1.1 server on loopback that knows nothing of
Webex: it asks a *resolver* which endpoint serves ``(method, path)``, reads the body (at
most 64 KiB) only for a known endpoint, sends the :class:`~.answers.Answer`, and hands a
:class:`RequestRecord` to a callback (just before the answer goes out, so a client
that has its answer finds the record there). Connections stay open between requests, as with
Webex; a request whose body is left unread closes its connection, so the body can never
be taken for the next request.

A record holds the method, the path (never the query, where codes and states travel),
the status, and what the endpoint noted as safe: a registered client ID, the grant type,
the error code, the user's email, and a fingerprint of the credential presented.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ...token import fingerprint
from .answers import Answer, json_answer, normal_webex_id, oauth_error, tracking_id

__all__ = ["EmulatorServer", "Endpoint", "Request", "RequestRecord", "Resolver"]

#: The logger of the emulator (one DEBUG line per request, the record's).
log = logging.getLogger("webex_tokens.testing.fake_webex")

_MAX_BODY = 64 * 1024
_LONG_SEGMENT = 32


@dataclasses.dataclass(frozen=True)
class Request:
    """One request as an endpoint sees it."""

    method: str
    path: str
    query: str
    headers: Message
    body: bytes


Endpoint = Callable[[Request], Answer]
Resolver = Callable[[str, str], "Endpoint | None"]


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """What the emulator says about one request it answered: never a secret.

    Attributes:
        method, path: the request's method and path (no query; a path segment longer
            than 32 characters that is not a Webex ID shows as its fingerprint).
        status: the HTTP status answered.
        client_id: the client the request was for, when it is a registered one.
        grant_type: ``authorization_code``, ``refresh_token`` or ``device_code``.
        error: the error code answered (``invalid_grant``, ``slow_down``, ...).
        credential: a fingerprint (``sha256:1a2b3c4d``) of the code, token or device
            code presented.
        user: the email a login was approved as, or of the manager minting a token.
        org_id: the organization of a Service App token.
    """

    method: str
    path: str
    status: int
    client_id: str | None = None
    grant_type: str | None = None
    error: str | None = None
    credential: str | None = None
    user: str | None = None
    org_id: str | None = None

    def __str__(self) -> str:
        parts = [self.method, self.path, str(self.status)]
        for label, value in (
            ("client", self.client_id),
            ("grant", self.grant_type),
            ("error", self.error),
            ("user", self.user),
            ("org", self.org_id),
            ("credential", self.credential),
        ):
            if value:
                parts.append(f"{label}={value}")
        return " ".join(parts)


def safe_path(path: str) -> str:
    """``path`` with every long segment that is not a Webex ID replaced by its fingerprint."""
    return "/".join(
        segment
        if len(segment) <= _LONG_SEGMENT or normal_webex_id(segment)
        else fingerprint(segment)
        for segment in path.split("/")
    )


def _printable(value: str) -> str | None:
    return value if value.isprintable() and len(value) <= 200 else None


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server answering through ``resolve`` and reporting to ``answered``."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        resolve: Resolver,
        answered: Callable[[RequestRecord], None],
    ) -> None:
        self.resolve = resolve
        self.answered = answered
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    server_version = "FakeWebex/1"
    sys_version = ""
    timeout = 30
    # Keep connections open between requests, as Webex does: every answer has a
    # Content-Length, and a request whose body is left unread closes its connection.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the body must not wait for the headers' ACK

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # each answered request is logged as its record, in _serve

    def log_message(self, format: str, *args: Any) -> None:
        # Only malformed requests come here; their request line may carry codes and
        # states, so it is not logged.
        log.debug("malformed request from %s (not logged)", self.client_address[0])

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        endpoint = self.server.resolve(self.command, parts.path)
        if endpoint is None:
            if self.command != "GET":
                self.close_connection = True  # the body is not read
            answer = json_answer(404, {"message": "The requested resource could not be found."})
        else:
            body = self._body()
            answer = (
                endpoint(Request(self.command, parts.path, parts.query, self.headers, body))
                if body is not None
                else oauth_error(400, "invalid_request", "Bad Content-Length.")
            )
        # Reported before it is sent, so records come in the order requests were answered.
        record = RequestRecord(
            method=self.command,
            path=safe_path(parts.path),
            status=answer.status,
            **{
                name: value
                for name, value in answer.log.items()
                if name in _RECORD_FIELDS and _printable(value)
            },
        )
        log.debug("%s", record)
        self.server.answered(record)
        self._send(answer)

    def _body(self) -> bytes | None:
        """The request body, or None when its length is unacceptable (connection closed)."""
        if self.command == "GET":
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            return None
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # a chunked body is not read
        return self.rfile.read(length)

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("TrackingID", tracking_id())
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)


_RECORD_FIELDS = frozenset(
    field.name for field in dataclasses.fields(RequestRecord) if field.default is None
)
