"""The auth adapters: httpx.Client, httpx.AsyncClient and requests, each fed by a
WebexClient or an AsyncWebexClient.

A 401 leads to one refresh and one replay; a 403 to neither; a second 401 to an error,
with no further request. The API is a real HTTP server on loopback that answers the
statuses a test queues; tokens are refreshed by FakeWebex.
"""

from __future__ import annotations

import asyncio
import collections
import io
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import httpx2
import pytest
import requests

from webex_tokens.aio import AsyncWebexClient
from webex_tokens.auth import Fetch, Send, WebexAuth, WebexRequestsAuth, bearer_flow
from webex_tokens.client import WebexClient
from webex_tokens.errors import ConfigError, ReauthorizationRequired
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token

NAME = "alice@example.com"


class _Handler(BaseHTTPRequestHandler):
    server: _APIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        api = self.server.api
        with api.lock:
            api.seen.append((self.command, self.headers.get("Authorization"), body))
            status = api.statuses.popleft() if api.statuses else 200
        payload = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer


class _APIServer(ThreadingHTTPServer):
    daemon_threads = True
    api: API


class API:
    """An API on loopback answering queued statuses (then 200); it records each request
    as (method, Authorization header, body)."""

    def __init__(self) -> None:
        self.statuses: collections.deque[int] = collections.deque()
        self.seen: list[tuple[str, str | None, bytes]] = []
        self.lock = threading.Lock()
        self.server = _APIServer(("127.0.0.1", 0), _Handler)
        self.server.api = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/messages"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def bearers(self) -> list[str | None]:
        return [auth.removeprefix("Bearer ") if auth else None for _, auth, _ in self.seen]


@pytest.fixture
def api() -> Iterator[API]:
    server = API()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def store(fake_webex: FakeWebex) -> TokenStore:
    """A store holding a valid token for alice."""
    memory = open_url("memory://")
    token = Token.from_response(
        fake_webex.issue_token(NAME), client_id=fake_webex.client_id, account=NAME
    )
    memory.put(NAME, token)
    return memory


def make_client(kind: str, store: TokenStore, fake: FakeWebex) -> WebexClient | AsyncWebexClient:
    oauth = WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url)
    if kind == "sync":
        return WebexClient(auto_auth=False, store=store, name=NAME, oauth=oauth)
    return AsyncWebexClient(store=store, name=NAME, oauth=oauth)


def send_httpx_sync(
    client: WebexClient | AsyncWebexClient, url: str, library: Any = httpx, **kwargs: Any
) -> tuple[int, bytes]:
    with library.Client(auth=WebexAuth(client)) as http:
        response = http.post(url, **kwargs)
    return response.status_code, response.content


def send_httpx_async(
    client: WebexClient | AsyncWebexClient, url: str, library: Any = httpx, **kwargs: Any
) -> tuple[int, bytes]:
    async def main() -> tuple[int, bytes]:
        async with library.AsyncClient(auth=WebexAuth(client)) as http:
            response = await http.post(url, **kwargs)
        return response.status_code, response.content

    return asyncio.run(main())


def send_httpx2_sync(
    client: WebexClient | AsyncWebexClient, url: str, **kwargs: Any
) -> tuple[int, bytes]:
    return send_httpx_sync(client, url, httpx2, **kwargs)


def send_httpx2_async(
    client: WebexClient | AsyncWebexClient, url: str, **kwargs: Any
) -> tuple[int, bytes]:
    return send_httpx_async(client, url, httpx2, **kwargs)


def send_requests(
    client: WebexClient | AsyncWebexClient, url: str, **kwargs: Any
) -> tuple[int, bytes]:
    with requests.Session() as http:
        http.auth = WebexRequestsAuth(client)
        response = http.post(url, timeout=10, **kwargs)
    return response.status_code, response.content


SENDERS: dict[str, Callable[..., tuple[int, bytes]]] = {
    "httpx-sync": send_httpx_sync,
    "httpx-async": send_httpx_async,
    "httpx2-sync": send_httpx2_sync,
    "httpx2-async": send_httpx2_async,
    "requests": send_requests,
}


@pytest.fixture(params=sorted(SENDERS))
def sender(request: pytest.FixtureRequest) -> str:
    """httpx.Client, httpx.AsyncClient (or their httpx2 twins) or requests."""
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """The token source: a WebexClient or an AsyncWebexClient."""
    return str(request.param)


def test_401_refreshes_once_and_replays_once(
    api: API, fake_webex: FakeWebex, store: TokenStore, sender: str, kind: str
) -> None:
    before = store.get(NAME)
    assert before is not None
    api.statuses.extend([401])
    status, _ = SENDERS[sender](make_client(kind, store, fake_webex), api.url, json={"text": "hi"})

    after = store.get(NAME)
    assert status == 200
    assert after is not None and after.access_token != before.access_token
    assert fake_webex.calls["refresh_token"] == 1
    assert api.bearers() == [before.access_token, after.access_token]
    first, replayed = (body for _, _, body in api.seen)
    assert b"hi" in first and replayed == first  # the replay carries the same body


def test_403_is_returned_without_refresh(
    api: API, fake_webex: FakeWebex, store: TokenStore, sender: str, kind: str
) -> None:
    api.statuses.extend([403])
    status, _ = SENDERS[sender](make_client(kind, store, fake_webex), api.url)
    assert status == 403
    assert len(api.seen) == 1
    assert fake_webex.calls["refresh_token"] == 0


def test_second_401_raises_without_a_third_request(
    api: API, fake_webex: FakeWebex, store: TokenStore, sender: str, kind: str
) -> None:
    api.statuses.extend([401, 401, 401])
    with pytest.raises(ReauthorizationRequired) as excinfo:
        SENDERS[sender](make_client(kind, store, fake_webex), api.url)
    assert len(api.seen) == 2
    assert fake_webex.calls["refresh_token"] == 1
    message = str(excinfo.value)
    assert "again after a refresh" in message
    assert f"webex-tokens login --name {NAME}" in message
    for token in api.bearers():
        assert token is not None and token not in message


def test_401_adopts_a_token_another_process_stored(
    api: API, fake_webex: FakeWebex, store: TokenStore, sender: str, kind: str
) -> None:
    client = make_client(kind, store, fake_webex)
    old = store.get(NAME)
    assert old is not None
    if isinstance(client, WebexClient):
        assert client.access_token == old.access_token  # cached in the client
    else:
        assert asyncio.run(client.get_access_token()) == old.access_token
    newer = Token.from_response(
        fake_webex.issue_token(NAME), client_id=fake_webex.client_id, account=NAME
    )
    store.put(NAME, newer)  # another process refreshed meanwhile
    api.statuses.extend([401])

    status, _ = SENDERS[sender](client, api.url)
    assert status == 200
    assert api.bearers() == [old.access_token, newer.access_token]
    assert fake_webex.calls["refresh_token"] == 0


def test_revoked_access_token_against_fake_webex(
    fake_webex: FakeWebex, store: TokenStore, sender: str, kind: str
) -> None:
    """FakeWebex itself answers 401 to a token it no longer accepts."""
    fake_webex.expire_access_tokens()
    client = make_client(kind, store, fake_webex)
    me = fake_webex.people_me_url
    if sender == "httpx-sync":
        with httpx.Client(auth=WebexAuth(client)) as http:
            response: Any = http.get(me)
    elif sender == "httpx-async":

        async def main() -> Any:
            async with httpx.AsyncClient(auth=WebexAuth(client)) as http:
                return await http.get(me)

        response = asyncio.run(main())
    else:
        response = requests.get(me, auth=WebexRequestsAuth(client), timeout=10)
    assert response.status_code == 200
    assert response.json()["emails"] == [NAME]
    assert fake_webex.calls["refresh_token"] == 1
    assert fake_webex.calls["people_me"] == 2


# -- not parametrised ---------------------------------------------------------------------


def test_flow_without_io() -> None:
    """The decisions alone: fetch, send, on 401 fetch a replacement, send, then stop."""
    first = Token(access_token="a")
    second = Token(access_token="b")
    flow = bearer_flow("alice@example.com")
    assert next(flow) == Fetch()
    assert flow.send(first) == Send(first)
    assert flow.send(401) == Fetch(refused=first)
    assert flow.send(second) == Send(second)
    with pytest.raises(StopIteration):
        flow.send(200)


def test_wrong_client_or_account_is_refused(fake_webex: FakeWebex, store: TokenStore) -> None:
    client = make_client("sync", store, fake_webex)
    with pytest.raises(ConfigError) as excinfo:
        WebexAuth(client, "bob@example.com")
    assert "serves one account" in str(excinfo.value)
    with pytest.raises(TypeError) as wrong:
        WebexRequestsAuth(object())  # type: ignore[arg-type]
    assert "WebexClient or an AsyncWebexClient" in str(wrong.value)


def test_any_token_source_feeds_the_adapters(api: API) -> None:
    """The adapters depend on the TokenSource protocol, not on the two client classes."""

    class Rotating:
        def __init__(self) -> None:
            self.tokens = [Token(access_token="first"), Token(access_token="second")]

        def serves(self, account: str | None) -> str | None:
            return account or "robot"

        def token_for(self, account: str | None = None, refused: Token | None = None) -> Token:
            return self.tokens[1] if refused is not None else self.tokens[0]

    api.statuses.extend([401])
    with httpx2.Client(auth=WebexAuth(Rotating())) as http:
        assert http.get(api.url).status_code == 200
    assert api.bearers() == ["first", "second"]


def test_requests_replays_a_file_body(api: API, fake_webex: FakeWebex, store: TokenStore) -> None:
    api.statuses.extend([401])
    client = make_client("sync", store, fake_webex)
    response = requests.post(
        api.url, data=io.BytesIO(b"file body"), auth=WebexRequestsAuth(client), timeout=10
    )
    assert response.status_code == 200
    assert [body for _, _, body in api.seen] == [b"file body", b"file body"]
    assert len(response.history) == 1 and response.history[0].status_code == 401


def test_expired_token_is_refreshed_before_sending(
    api: API, fake_webex: FakeWebex, sender: str, kind: str
) -> None:
    memory = open_url("memory://")
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    expired = Token.from_response(
        fake_webex.issue_token(NAME), now=month_ago, client_id=fake_webex.client_id
    )
    memory.put(NAME, expired)
    status, _ = SENDERS[sender](make_client(kind, memory, fake_webex), api.url)
    assert status == 200
    assert fake_webex.calls["refresh_token"] == 1
    assert api.bearers() != [expired.access_token] and len(api.seen) == 1
