"""A TCP forwarder on 127.0.0.1 that a test can cut, silence and restore.

It stands between a store and its database server, so a test can make the database
vanish (``cut``: every connection is reset and new ones are refused), stop answering
(``hang``: connections stay open but nothing is forwarded) and come back (``resume``)
in the middle of a run, without touching the shared server.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from types import TracebackType


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; see the module for the modes."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "forward"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._upstream: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # -- control ------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every connection and refuse new ones, as if the server had gone."""
        self.mode = "refuse"
        with self._lock:
            sockets, self._sockets = self._sockets, set()
            self._upstream.clear()
        for sock in sockets:
            _reset(sock)

    def hang(self) -> None:
        """Stop forwarding: connections stay open and new ones are accepted, but no byte
        goes through in either direction, as if the server had frozen."""
        self.mode = "hang"

    def resume(self) -> None:
        """Forward again (connections cut earlier stay closed)."""
        self.mode = "forward"

    def upstream_ports(self) -> list[int]:
        """The local ports of the proxy's open connections to the server: the client
        ports the server sees for this proxy's sessions (to pick them out, and kill
        them, without touching anyone else's)."""
        with self._lock:
            upstream = list(self._upstream)
        ports = []
        for sock in upstream:
            with contextlib.suppress(OSError):
                ports.append(sock.getsockname()[1])
        return ports

    def close(self) -> None:
        """Stop the proxy and close every socket."""
        self._stopping.set()
        self.cut()
        self._listener.close()
        self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- forwarding ---------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.05)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets.update((client, server))
                self._upstream.add(server)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self._stopping.is_set():
                if self.mode != "forward":
                    if self.mode == "refuse":
                        return
                    self._stopping.wait(0.02)  # hang: leave the bytes unread
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    if self.mode != "forward":
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: cut() closed the socket meanwhile
            return
        finally:
            with self._lock:
                self._sockets.difference_update(peers)
                self._upstream.discard(server)
            for sock in peers:
                _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset rather than an orderly shutdown."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
