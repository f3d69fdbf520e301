"""HTTP auth adapters: send a valid Webex token; on a 401, refresh once and replay once.

::

    client = WebexClient()                                   # or AsyncWebexClient()
    httpx.get(url, auth=WebexAuth(client))                   # httpx.Client / AsyncClient
    requests.get(url, auth=WebexRequestsAuth(client))        # requests

Each request gets the account's current token (refreshed single-flight through the store
when due). If Webex answers ``401 Unauthorized`` anyway (the token was revoked, or
replaced by another process), the token is refreshed once, again single-flight (a token
another process stored meanwhile is adopted instead), and the request is sent once more.
A second 401 raises :class:`~webex_tokens.errors.ReauthorizationRequired`; a ``403
Forbidden`` is returned as it is (a refresh does not change permissions).

The decisions live in one generator, :func:`bearer_flow`, with no I/O (the design of
httpx's auth flows): it yields "fetch a token" and "send the request" steps, and three
small drivers carry them out: httpx sync, httpx async and requests.

The adapters take any :class:`TokenSource`: an object that hands out a token for an
account and a replacement for one Webex refused. :class:`~webex_tokens.client.WebexClient`
and :class:`~webex_tokens.aio.AsyncWebexClient` are token sources; this module knows
neither of them. :class:`WebexAuth` works with ``httpx2`` (which Authlib's httpx
integration prefers) and with ``httpx`` clients alike.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import logging
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import requests
import requests.auth
from requests.cookies import extract_cookies_to_jar

from .errors import ReauthorizationRequired
from .oauth import login_command
from .token import Token

if TYPE_CHECKING:
    import httpx

    _HTTPXAuth = httpx.Auth
else:

    def _auth_bases() -> tuple[type, ...]:
        """``httpx2.Auth`` and ``httpx.Auth``, whichever are installed: an adapter that is
        an instance of both works with the clients of both (their flows are the same)."""
        bases = []
        for module in ("httpx2", "httpx"):
            try:
                bases.append(importlib.import_module(module).Auth)
            except ImportError:  # pragma: no cover - exercised without the async extra
                continue
        return tuple(bases)

    _BASES = _auth_bases()
    _HTTPXAuth = type("_HTTPXAuth", _BASES, {}) if _BASES else object

__all__ = [
    "AsyncTokenSource",
    "Fetch",
    "Send",
    "TokenSource",
    "WebexAuth",
    "WebexRequestsAuth",
    "bearer_flow",
]

log = logging.getLogger(__name__)


@runtime_checkable
class TokenSource(Protocol):
    """Where the adapters get tokens (a ``WebexClient``, an ``AsyncWebexClient``...)."""

    def serves(self, account: str | None) -> str | None:
        """Check that this source can serve ``account`` (None: its default account) and
        return the account's name for messages (None while unknown).

        Raises:
            ConfigError: this source cannot serve ``account``.
        """
        ...

    def token_for(self, account: str | None = None, refused: Token | None = None) -> Token:
        """Blocking: a valid token of ``account``; with ``refused`` (a token Webex
        answered 401 to), a replacement, refreshed single-flight unless another process
        stored one meanwhile."""
        ...


@runtime_checkable
class AsyncTokenSource(TokenSource, Protocol):
    """A token source that can also be awaited (an ``AsyncWebexClient``)."""

    async def atoken_for(self, account: str | None = None, refused: Token | None = None) -> Token:
        """As :meth:`TokenSource.token_for`, without blocking the event loop."""
        ...


@dataclasses.dataclass(frozen=True)
class Fetch:
    """Step: get a valid token; with ``refused``, one other than that refused token."""

    refused: Token | None = None


@dataclasses.dataclass(frozen=True)
class Send:
    """Step: send the request with ``token``; the driver replies with the HTTP status."""

    token: Token


def bearer_flow(account: str | None) -> Generator[Fetch | Send, Any, None]:
    """The decisions of the adapters, without I/O.

    Yields :class:`Fetch` (reply: a :class:`~webex_tokens.token.Token`) and :class:`Send`
    (reply: the status code of the answer). Ends normally when the answer can be returned.

    Args:
        account: the account's name, for the error message (None when unknown).

    Raises:
        ReauthorizationRequired: Webex answered 401 to the refreshed token as well.
    """
    label = repr(account) if account else "the account"
    token = yield Fetch()
    status = yield Send(token)
    if status != 401:
        return
    log.info("Webex answered 401 for %s: refreshing the token once and replaying", label)
    fresh = yield Fetch(refused=token)
    status = yield Send(fresh)
    if status == 401:
        raise ReauthorizationRequired(
            f"Webex refused the access token of {label} (HTTP 401) again after a refresh, "
            "so the request was not retried: the authorization may have been revoked; "
            f"log in again: {login_command(account)}",
            account=account,
        )


class _Source:
    """A :class:`TokenSource` and the account an adapter sends tokens of."""

    def __init__(self, source: TokenSource, account: str | None) -> None:
        if not isinstance(source, TokenSource):
            raise TypeError(
                "the auth adapters take a WebexClient or an AsyncWebexClient (any "
                f"webex_tokens.auth.TokenSource), not {type(source).__name__}"
            )
        source.serves(account)  # a source that cannot serve the account says so now
        self.source = source
        self.account = account

    @property
    def name(self) -> str | None:
        return self.source.serves(self.account)

    def fetch(self, refused: Token | None) -> Token:
        """Blocking: the current token, or one replacing ``refused``."""
        return self.source.token_for(self.account, refused)

    async def afetch(self, refused: Token | None) -> Token:
        """Async: the same, without blocking the event loop."""
        source = self.source
        if isinstance(source, AsyncTokenSource):
            return await source.atoken_for(self.account, refused)
        return await asyncio.to_thread(source.token_for, self.account, refused)


def _bearer(token: Token) -> str:
    return f"Bearer {token.access_token}"


class WebexAuth(_HTTPXAuth):
    """An ``httpx.Auth`` for ``httpx.Client`` and ``httpx.AsyncClient``.

    Args:
        client: a :class:`~webex_tokens.client.WebexClient` or an
            :class:`~webex_tokens.aio.AsyncWebexClient` (either works with both kinds of
            httpx client; a sync client used from ``httpx.AsyncClient`` runs in a worker
            thread, and an async client used from ``httpx.Client`` blocks).
        account: the account (default: the client's account).

    Raises:
        ImportError: httpx is not installed (``pip install 'webex-tokens[async]'``).
        ConfigError: ``account`` is not the account of the given ``WebexClient``.
    """

    # Read the body before sending, so the request can be replayed after a 401.
    requires_request_body = True

    def __init__(self, client: TokenSource, account: str | None = None) -> None:
        if _HTTPXAuth is object:  # pragma: no cover - exercised without the async extra
            raise ImportError(
                "WebexAuth needs httpx, which is not installed; run: "
                "pip install 'webex-tokens[async]' (or use WebexRequestsAuth with requests)"
            )
        self._source = _Source(client, account)

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        """Drive :func:`bearer_flow` with blocking token calls (``httpx.Client``)."""
        flow = bearer_flow(self._source.name)
        step = next(flow)
        while True:
            if isinstance(step, Fetch):
                reply: Any = self._source.fetch(step.refused)
            else:
                request.headers["Authorization"] = _bearer(step.token)
                response = yield request
                reply = response.status_code
            try:
                step = flow.send(reply)
            except StopIteration:
                return

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        """Drive :func:`bearer_flow` with awaited token calls (``httpx.AsyncClient``)."""
        flow = bearer_flow(self._source.name)
        step = next(flow)
        while True:
            if isinstance(step, Fetch):
                reply: Any = await self._source.afetch(step.refused)
            else:
                request.headers["Authorization"] = _bearer(step.token)
                response = yield request
                reply = response.status_code
            try:
                step = flow.send(reply)
            except StopIteration:
                return

    def __repr__(self) -> str:
        return f"WebexAuth(account={self._source.name!r})"


class WebexRequestsAuth(requests.auth.AuthBase):
    """A ``requests`` auth (``requests.get(url, auth=WebexRequestsAuth(client))``).

    A request whose body is a one-shot stream (a generator) cannot be replayed: after a
    401 its token is still refreshed, and the 401 is returned for the caller to retry.

    Args:
        client: a :class:`~webex_tokens.client.WebexClient` or an
            :class:`~webex_tokens.aio.AsyncWebexClient` (used through its blocking path).
        account: the account (default: the client's account).

    Raises:
        ConfigError: ``account`` is not the account of the given ``WebexClient``.
    """

    def __init__(self, client: TokenSource, account: str | None = None) -> None:
        self._source = _Source(client, account)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        flow = bearer_flow(self._source.name)
        step = next(flow)
        assert isinstance(step, Fetch)
        step = flow.send(self._source.fetch(step.refused))
        assert isinstance(step, Send)
        request.headers["Authorization"] = _bearer(step.token)
        body: Any = request.body
        position = body.tell() if hasattr(body, "seek") and hasattr(body, "tell") else None
        hook = functools.partial(self._on_response, flow, position)
        request.register_hook("response", hook)  # type: ignore[no-untyped-call]
        return request

    def _on_response(
        self,
        flow: Generator[Fetch | Send, Any, None],
        position: int | None,
        response: requests.Response,
        **kwargs: Any,
    ) -> requests.Response:
        try:
            step = flow.send(response.status_code)
        except StopIteration:  # also every later hop (redirects) once the flow is done
            return response
        assert isinstance(step, Fetch)
        step = flow.send(self._source.fetch(step.refused))
        assert isinstance(step, Send)
        replay = response.request.copy()
        body: Any = replay.body
        if position is not None and hasattr(body, "seek"):
            body.seek(position)
        elif body is not None and not isinstance(body, (bytes, str)):
            log.warning("the request body cannot be sent again; returning the 401 after refresh")
            flow.close()
            return response
        response.content  # noqa: B018 - read it all, so the connection can be reused
        response.close()
        jar: Any = getattr(replay, "_cookies", None)  # private, as in requests' digest auth
        if jar is not None:
            extract_cookies_to_jar(jar, response.request, response.raw)  # type: ignore[no-untyped-call]
            replay.prepare_cookies(jar)
        replay.headers["Authorization"] = _bearer(step.token)
        assert response.connection is not None
        again: requests.Response = response.connection.send(replay, **kwargs)
        again.history.append(response)
        again.request = replay
        try:
            flow.send(again.status_code)
        except StopIteration:
            return again
        except BaseException:
            again.close()
            raise
        raise AssertionError("bearer_flow asked for a third request")  # pragma: no cover

    def __repr__(self) -> str:
        return f"WebexRequestsAuth(account={self._source.name!r})"
