"""hvac's raw adapter on a urllib3 connection pool: the same requests, half the CPU.

hvac sends every request through a ``requests.Session``, whose machinery (merging
cookies, hooks, environment settings and ``~/.netrc`` into each request) costs about
half a millisecond of CPU per request, twice what the HTTP exchange itself costs. An
``update`` of a Vault store makes five requests, so at ``refresh --all --concurrency
32`` that machinery, not Vault, set the pace. :class:`PooledAdapter` keeps hvac's
client, its KV v2 API, its headers (token, namespace, ``X-Vault-Request``) and its error
types, and sends the request with urllib3 directly. Failures of the connection are
raised as the ``requests`` exceptions hvac's own adapter would raise, so callers see
one set of errors.
"""

from __future__ import annotations

import json
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
    """An hvac adapter that sends requests through one urllib3 pool per store.

    Takes hvac's adapter arguments; ``verify`` is True (the CA bundle of requests, or
    ``REQUESTS_CA_BUNDLE``) or the path of a CA file, ``timeout`` a number or a
    ``(connect, read)`` pair, ``proxies`` a requests-style mapping.

    Args:
        pool_size: connections kept per host (one per thread that uses the store).
    """

    def __init__(self, *args: Any, pool_size: int = 64, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        verify = self._kwargs.get("verify", True)
        timeout = self._kwargs.get("timeout") or 30
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        options: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": pool_size,
            "retries": False,  # a write repeated after a lost answer could be misreported
            "timeout": urllib3.Timeout(connect=connect, read=read),
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": verify if isinstance(verify, str) else certifi.where(),
        }
        proxies = self._kwargs.get("proxies") or {}
        proxy = proxies.get(urlsplit(self.base_uri).scheme) or proxies.get("all")
        self.pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
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
        url = self.urljoin(self.base_uri, url)
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
        try:
            raw = self.pool.request(method.upper(), url, body=body, headers=sent, redirect=False)
        except urllib3.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(str(exc)) from None
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError) as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise requests.exceptions.Timeout(str(exc)) from None
        except urllib3.exceptions.HTTPError as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from None
        answer = Answer(raw.status, raw.headers, raw.data)
        if not answer.ok and raise_exception and not self.ignore_exceptions:
            self._raise_for_error(method, url, answer)
        return answer

    def close(self) -> None:
        """Close the pooled connections."""
        self.pool.clear()
        super().close()
