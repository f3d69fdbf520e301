"""A tiny HTTP server on loopback that answers each request as the test scripts it.

Each request takes the next step of the script (the last one repeats): answer with a
status, headers and body (the body may be a function of the request body, to echo it),
stay silent for a while, or drop the connection after reading the request. Every request
is recorded with its body, so a test can count what was sent.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclasses.dataclass(frozen=True)
class Step:
    """What the server does with one request."""

    status: int = 200
    body: bytes | Callable[[bytes], bytes] = b"{}"
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    delay: float = 0.0  #: seconds of silence before answering (or dropping)
    drop: bool = False  #: close the connection without answering


def answer(status: int, body: bytes | Callable[[bytes], bytes] = b"{}", **headers: str) -> Step:
    """A step answering ``status`` with ``body`` (JSON unless a Content-Type is given)."""
    merged = {
        "Content-Type": "application/json",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    return Step(status, body, tuple(merged.items()))


DROP = Step(drop=True)


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """Serve ``steps`` on 127.0.0.1 (a free port) until closed; use it as a context."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps) or [answer(200)]
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with owner._lock:
                    owner.seen.append(
                        Seen(self.command, self.path, dict(self.headers.items()), body)
                    )
                    index = min(len(owner.seen), len(owner.steps)) - 1
                    step = owner.steps[index]
                if step.delay:
                    time.sleep(step.delay)
                if step.drop:
                    self.close_connection = True
                    return
                payload = step.body(body) if callable(step.body) else step.body
                self.send_response(step.status)
                for name, value in step.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
