"""hvac's raw adapter on kept-open connections, one per thread: the same requests, a
third of the CPU.

hvac sends every request through a ``requests.Session``, whose machinery (merging
cookies, hooks, environment settings and ``~/.netrc`` into each request) costs about
half a millisecond of CPU per request; urllib3's pool, which replaced it first, still
spends about 0.75 ms per request on URL parsing, pool keys and its header machinery (an
``update`` of a Vault store makes five requests, so at ``refresh --all --concurrency
32`` that, not Vault, set the pace). :class:`PooledAdapter` keeps hvac's client, its KV
v2 API, its headers (token, namespace, ``X-Vault-Request``) and its error types, and
sends each request on a ``http.client`` connection kept open by the calling thread:
about 0.25 ms per request, headers and body in one write. A connection the server
closed while idle is noticed before it is used and replaced; nothing is ever sent
twice. Through a proxy (``HTTPS_PROXY`` and the like), requests go through urllib3's
``ProxyManager`` instead. Failures of the connection are raised as the ``requests``
exceptions hvac's own adapter would raise, so callers see one set of errors.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import hvac.adapters
import requests
import urllib3
import urllib3.exceptions

__all__ = ["Answer", "PooledAdapter"]


class Answer:
    """The part of a ``requests.Response`` that hvac and the store use."""

    def __init__(self, status: int, headers: Any, content: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = content

    @property
    def ok(self) -> bool:
        """True for a status below 400."""
        return self.status_code < 400

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` when it is not JSON)."""
        return json.loads(self.content)


class PooledAdapter(hvac.adapters.RawAdapter):  # type: ignore[misc]
    """An hvac adapter that sends requests on one kept-open connection per thread.

    Takes hvac's adapter arguments; ``verify`` is True (certifi's CA bundle) or the path
    of a CA file, ``timeout`` a number or a ``(connect, read)`` pair, ``proxies`` a
    requests-style mapping.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        verify = self._kwargs.get("verify", True)
        timeout = self._kwargs.get("timeout") or 30
        self._connect_timeout, self._read_timeout = (
            timeout if isinstance(timeout, tuple) else (timeout, timeout)
        )
        base = urlsplit(self.base_uri)
        self._tls = base.scheme == "https"
        self._host = base.hostname or "127.0.0.1"
        self._port = base.port or (443 if self._tls else 80)
        self._context: ssl.SSLContext | None = None
        if self._tls:
            self._context = ssl.create_default_context(
                cafile=verify if isinstance(verify, str) else certifi.where()
            )
        self._local = threading.local()
        self._open: set[http.client.HTTPConnection] = set()
        self._open_lock = threading.Lock()
        self.proxy_pool: urllib3.ProxyManager | None = None
        proxies = self._kwargs.get("proxies") or {}
        proxy = proxies.get(base.scheme) or proxies.get("all")
        if proxy:
            self.proxy_pool = urllib3.ProxyManager(
                proxy,
                retries=False,  # a write repeated after a lost answer could be misreported
                timeout=urllib3.Timeout(connect=self._connect_timeout, read=self._read_timeout),
                cert_reqs="CERT_REQUIRED",
                ca_certs=verify if isinstance(verify, str) else certifi.where(),
            )

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        raise_exception: bool = True,
        **kwargs: Any,
    ) -> Answer:
        """Send one request to Vault; raise hvac's error for an error status (unless
        ``raise_exception`` is False) and requests' error for a failed connection."""
        while "//" in url:
            url = url.replace("//", "/")
        sent = dict(headers or {})
        if self.request_header:
            sent["X-Vault-Request"] = "true"
        if self.token:
            sent["X-Vault-Token"] = self.token
        if self.namespace:
            sent["X-Vault-Namespace"] = self.namespace
        wrap_ttl = kwargs.get("wrap_ttl")
        if wrap_ttl:
            sent["X-Vault-Wrap-TTL"] = str(wrap_ttl)
        params = kwargs.get("params")
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        body = None
        if kwargs.get("json") is not None:
            body = json.dumps(kwargs["json"]).encode("utf-8")
            sent["Content-Type"] = "application/json"
        if self.proxy_pool is not None:
            answer = self._through_proxy(method, url, body, sent)
        else:
            answer = self._send(method.upper(), "/" + url.lstrip("/"), body, sent)
        if not answer.ok and raise_exception and not self.ignore_exceptions:
            self._raise_for_error(method, self.urljoin(self.base_uri, url), answer)
        return answer

    # -- direct connections -------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection: the one kept open, unless the server closed it."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and (connection.sock is None or _dropped(connection.sock)):
            self._discard(connection)
            connection = None
        if connection is None:
            if self._context is not None:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._connect_timeout, context=self._context
                )
            else:
                connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._connect_timeout
                )
            connection.connect()
            assert connection.sock is not None
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.sock.settimeout(self._read_timeout)
            self._local.connection = connection
            with self._open_lock:
                self._open.add(connection)
        return connection

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._open_lock:
            self._open.discard(connection)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        connection = None
        try:
            connection = self._connection()
            connection.request(method, path, body=body, headers=headers)
            raw = connection.getresponse()
            content = raw.read()
        except ssl.SSLError as exc:
            self._drop(connection)
            raise requests.exceptions.SSLError(str(exc)) from None
        except TimeoutError as exc:
            self._drop(connection)
            raise requests.exceptions.Timeout(str(exc) or "timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop(connection)
            raise requests.exceptions.ConnectionError(str(exc) or type(exc).__name__) from None
        if raw.will_close:
            self._discard(connection)
        return Answer(raw.status, raw.headers, content)

    def _drop(self, connection: http.client.HTTPConnection | None) -> None:
        if connection is not None:
            self._discard(connection)

    # -- through a proxy ------------------------------------------------------------------

    def _through_proxy(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        assert self.proxy_pool is not None
        target = self.urljoin(self.base_uri, url)
        try:
            raw = self.proxy_pool.request(
                method.upper(), target, body=body, headers=headers, redirect=False
            )
        except urllib3.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(str(exc)) from None
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError) as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise requests.exceptions.Timeout(str(exc)) from None
        except urllib3.exceptions.HTTPError as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from None
        return Answer(raw.status, raw.headers, raw.data)

    def close(self) -> None:
        """Close every connection this adapter opened, in any thread."""
        with self._open_lock:
            connections, self._open = self._open, set()
        for connection in connections:
            connection.close()
        if self.proxy_pool is not None:
            self.proxy_pool.clear()
        super().close()


def _dropped(sock: socket.socket) -> bool:
    """True if the server closed (or wrote unasked to) an idle kept-open connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
