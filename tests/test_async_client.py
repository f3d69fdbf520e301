"""AsyncWebexClient: single-flight refresh in the event loop and across processes, a free
event loop during a slow refresh, and the same behaviour as WebexClient otherwise.

Everything runs against FakeWebex over real HTTP, with real file and SQLite stores.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import multiprocessing
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from webex_tokens.aio import AsyncWebexClient
from webex_tokens.backends.file import FileStore
from webex_tokens.client import DirectTokenWarning
from webex_tokens.errors import ConfigError, InvalidName, ReauthorizationRequired
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.processes import run_workers
from webex_tokens.token import Token

NAME = "alice@example.com"
COROUTINES = 50
PROCESSES = 4


def oauth_for(fake: FakeWebex, **options: Any) -> WebexOAuth:
    return WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url, **options)


def seed(store: TokenStore, fake: FakeWebex, name: str = NAME, *, days_ago: float = 30) -> Token:
    """Store a token for ``name`` issued ``days_ago`` days ago (expired after 14)."""
    issued = datetime.now(timezone.utc) - timedelta(days=days_ago)
    token = Token.from_response(
        fake.issue_token(name), now=issued, client_id=fake.client_id, account=name
    )
    store.put(name, token)
    return token


class CountingFileStore(FileStore):
    """A real file store that counts calls to ``update``."""

    updates = 0

    def update(self, name: str, fn: Callable[[Token | None], Token | None]) -> Token | None:
        self.updates += 1
        return super().update(name, fn)


def test_fifty_coroutines_one_refresh_one_store_update(
    fake_webex: FakeWebex, tmp_path: Path
) -> None:
    fake_webex.rotate_refresh_tokens = True
    fake_webex.delay = 0.2
    store = CountingFileStore(tmp_path / "tokens.json")
    expired = seed(store, fake_webex)
    client = AsyncWebexClient(store=store, oauth=oauth_for(fake_webex))

    async def main() -> list[str]:
        return await asyncio.gather(*(client.get_access_token(NAME) for _ in range(COROUTINES)))

    tokens = asyncio.run(main())
    assert fake_webex.calls["refresh_token"] == 1
    assert store.updates == 1  # the others waited in the loop, not on the store
    stored = store.get(NAME)
    assert stored is not None and set(tokens) == {stored.access_token}
    assert stored.access_token != expired.access_token
    assert fake_webex.revoked_families == 0


def test_event_loop_keeps_running_during_a_slow_refresh(
    fake_webex: FakeWebex, tmp_path: Path
) -> None:
    fake_webex.delay = 1.0
    store = FileStore(tmp_path / "tokens.json")
    seed(store, fake_webex)
    seed(store, fake_webex, "bob@example.com", days_ago=0)
    client = AsyncWebexClient(store=store, oauth=oauth_for(fake_webex))
    period = 0.01

    async def main() -> tuple[float, float, int, float]:
        stop = asyncio.Event()
        lateness: list[float] = []

        async def heartbeat() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(period)
                lateness.append(time.perf_counter() - before - period)

        async def other_account() -> float:
            await asyncio.sleep(0.1)  # while alice's refresh is in flight
            before = time.perf_counter()
            await client.get_access_token("bob@example.com")
            return time.perf_counter() - before

        beat = asyncio.create_task(heartbeat())
        started = time.perf_counter()
        _, bob_took = await asyncio.gather(client.get_access_token(NAME), other_account())
        took = time.perf_counter() - started
        stop.set()
        await beat
        return took, max(lateness), len(lateness), bob_took

    took, worst, beats, bob_took = asyncio.run(main())
    assert bob_took < 0.5  # another account does not wait for alice's refresh
    assert took >= 1.0  # the refresh really was slow
    assert beats >= 30  # the heartbeat kept beating meanwhile
    assert worst < 0.2, f"the event loop was blocked for {worst:.3f} s"


def async_refresh_worker(  # noqa: PLR0917 - run_workers passes arguments by position
    url: str, base_url: str, client_id: str, client_secret: str, results: Any, start: Any
) -> None:
    """One process: 50 coroutines ask for the token at once; report what they got."""
    oauth = WebexOAuth(client_id, client_secret, base_url=base_url, timeout=30)
    with open_url(url) as store:
        client = AsyncWebexClient(store=store, oauth=oauth)
        start.wait()

        async def main() -> list[str]:
            calls = (client.get_access_token(NAME) for _ in range(COROUTINES))
            return await asyncio.gather(*calls)

        results.put(sorted(set(asyncio.run(main()))))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_four_processes_of_fifty_coroutines_one_refresh(
    fake_webex: FakeWebex, tmp_path: Path, kind: str
) -> None:
    fake_webex.rotate_refresh_tokens = True
    fake_webex.delay = 0.3
    url = f"file://{tmp_path}/tokens.json" if kind == "file" else f"sqlite:///{tmp_path}/t.db"
    with open_url(url) as store:
        expired = seed(store, fake_webex)
    results = multiprocessing.get_context("spawn").Queue()
    args = (url, fake_webex.base_url, fake_webex.client_id, fake_webex.client_secret, results)
    run_workers(async_refresh_worker, [args] * PROCESSES, timeout=120)

    seen = [results.get(timeout=10) for _ in range(PROCESSES)]
    assert fake_webex.calls["refresh_token"] == 1
    assert fake_webex.revoked_families == 0
    with open_url(url) as store:
        stored = store.get(NAME)
    assert stored is not None and stored.access_token != expired.access_token
    assert seen == [[stored.access_token]] * PROCESSES


def test_valid_token_is_served_from_memory(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    token = seed(store, fake_webex, days_ago=0)
    client = AsyncWebexClient(store=store)  # no OAuth credentials needed for a valid token

    async def main() -> tuple[str, str]:
        first = await client.get_access_token(NAME)
        store.delete(NAME)
        return first, await client.get_access_token(NAME)

    assert asyncio.run(main()) == (token.access_token, token.access_token)
    assert fake_webex.calls["refresh_token"] == 0


def test_many_accounts_in_one_client(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    alice = seed(store, fake_webex, "alice@example.com")
    bob = seed(store, fake_webex, "bob@example.com", days_ago=0)
    client = AsyncWebexClient(store=store, oauth=oauth_for(fake_webex))

    async def main() -> tuple[Token, Token]:
        return await asyncio.gather(
            client.get_token("alice@example.com"), client.get_token("bob@example.com")
        )

    fresh_alice, same_bob = asyncio.run(main())
    assert fresh_alice.access_token != alice.access_token  # was expired: refreshed
    assert same_bob.access_token == bob.access_token
    assert fake_webex.calls["refresh_token"] == 1

    with pytest.raises(ConfigError) as excinfo:
        asyncio.run(client.get_token())
    assert "holds 2 accounts" in str(excinfo.value)
    assert "pass the account" in str(excinfo.value)


def test_the_only_account_is_the_default(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    token = seed(store, fake_webex, days_ago=0)
    client = AsyncWebexClient(store=store)
    assert asyncio.run(client.get_access_token()) == token.access_token
    assert client.name == NAME


def test_missing_token_names_the_login_command(fake_webex: FakeWebex) -> None:
    client = AsyncWebexClient(store=open_url("memory://"), oauth=oauth_for(fake_webex))
    with pytest.raises(ReauthorizationRequired) as excinfo:
        asyncio.run(client.get_token("carol@example.com"))
    assert "webex-tokens login --name carol@example.com" in str(excinfo.value)
    assert excinfo.value.account == "carol@example.com"
    with pytest.raises(ReauthorizationRequired) as empty:
        asyncio.run(client.get_token())
    assert "webex-tokens login" in str(empty.value)


def test_revoked_refresh_token_requires_login(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    seed(store, fake_webex)
    fake_webex.revoke_refresh_tokens()
    client = AsyncWebexClient(store=store, oauth=oauth_for(fake_webex))
    with pytest.raises(ReauthorizationRequired) as excinfo:
        asyncio.run(client.get_token(NAME))
    assert f"webex-tokens login --name {NAME}" in str(excinfo.value)


def test_refresh_adopts_a_token_another_process_stored(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    old = seed(store, fake_webex, days_ago=0)
    client = AsyncWebexClient(store=store, oauth=oauth_for(fake_webex))
    assert asyncio.run(client.get_access_token(NAME)) == old.access_token
    newer = seed(store, fake_webex, days_ago=0)  # as if another process had refreshed

    adopted = asyncio.run(client.refresh(NAME, seen=old))
    assert adopted.access_token == newer.access_token
    assert fake_webex.calls["refresh_token"] == 0
    forced = asyncio.run(client.refresh(NAME))
    assert forced.access_token != newer.access_token
    assert fake_webex.calls["refresh_token"] == 1
    legacy = asyncio.run(client.refresh_access_token(NAME))
    assert legacy["expires_in"] > 0 and legacy["access_token"] != forced.access_token


def test_bad_account_name_is_refused(fake_webex: FakeWebex) -> None:
    client = AsyncWebexClient(store=open_url("memory://"), oauth=oauth_for(fake_webex))
    with pytest.raises(InvalidName):
        asyncio.run(client.get_token("bad\nname"))


def test_direct_token_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBEX_ACCESS_TOKEN", "direct-token-value")
    monkeypatch.setenv("WEBEX_TOKENS_STORE", "memory://")
    with pytest.warns(DirectTokenWarning, match="no refresh support"):
        client = AsyncWebexClient()
    assert client.using_direct_token and not client.using_oauth
    assert asyncio.run(client.get_access_token()) == "direct-token-value"
    with pytest.raises(ConfigError) as excinfo:
        asyncio.run(client.refresh())
    assert "unset WEBEX_ACCESS_TOKEN" in str(excinfo.value)
    assert "direct-token-value" not in repr(client)


def test_session_calls_webex_with_the_token(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    seed(store, fake_webex)  # expired: the session's first request refreshes it

    async def main() -> Any:
        client = await AsyncWebexClient.create(store=store, oauth=oauth_for(fake_webex))
        async with client.session_for(NAME) as http:
            response = await http.get("people/me")
        await client.aclose()
        return response

    response = asyncio.run(main())
    assert response.status_code == 200
    assert response.json()["emails"] == [NAME]
    assert fake_webex.calls["refresh_token"] == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_login_stores_the_token_under_the_email(fake_webex: FakeWebex) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/oauth/webex/callback"
    fake_webex.add_redirect_uri(redirect_uri)
    fake_webex.user = "dave@example.com"
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=redirect_uri,
        base_url=fake_webex.base_url,
    )
    store = open_url("memory://")
    client = AsyncWebexClient(store=store, oauth=oauth, open_browser=fake_webex.open_browser)

    async def main() -> tuple[Token, str]:
        token = await client.login(timeout=20)
        return token, await client.get_access_token()

    token, access = asyncio.run(main())
    assert store.names() == ["dave@example.com"]
    assert access == token.access_token
    assert client.name == "dave@example.com"


def test_repr_shows_no_secret(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    token = seed(store, fake_webex, days_ago=0)
    client = AsyncWebexClient(store=store, oauth=oauth_for(fake_webex))
    asyncio.run(client.get_token(NAME))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = repr(client) + repr(client.auth(NAME))
    assert token.access_token not in text
    assert fake_webex.client_secret not in text


# -- issue 13: parity with WebexClient ---------------------------------------------------------


def test_the_constructor_takes_the_arguments_of_webex_client() -> None:
    from webex_tokens.client import WebexClient

    sync = inspect.signature(WebexClient).parameters
    both = inspect.signature(AsyncWebexClient).parameters
    assert [(p.name, p.kind) for p in both.values()] == [(p.name, p.kind) for p in sync.values()]
    different = {name for name in sync if sync[name].default != both[name].default}
    assert different == {"auto_auth"}  # False for async: see docs/async.md


def test_auto_auth_false_like_the_legacy_guide(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    token = seed(store, fake_webex, days_ago=0)
    client = AsyncWebexClient(auto_auth=False, store=store, name=NAME, oauth=oauth_for(fake_webex))
    assert asyncio.run(client.get_access_token()) == token.access_token


def test_the_store_given_first_still_works_with_a_deprecation(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    token = seed(store, fake_webex, days_ago=0)
    with pytest.warns(DeprecationWarning, match="pass store=... and name=... by keyword"):
        client = AsyncWebexClient(store, NAME)  # type: ignore[arg-type] # the 0.1 form
    assert client.store is store and client.name == NAME
    oauth = oauth_for(fake_webex)
    with pytest.warns(DeprecationWarning, match="by keyword"):
        keyword = AsyncWebexClient(store, oauth=oauth)  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning, match="by keyword"):
        three = AsyncWebexClient(store, NAME, oauth)  # type: ignore[arg-type]
    assert keyword.oauth is oauth and three.oauth is oauth and three.name == NAME
    assert asyncio.run(client.get_access_token()) == token.access_token


def test_the_integration_account_of_the_settings_file_is_the_default(
    fake_webex: FakeWebex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "webex-tokens.toml").write_text('[integration]\naccount = "bob@example.com"\n')
    store = open_url("memory://")
    seed(store, fake_webex, days_ago=0)
    bob = seed(store, fake_webex, "bob@example.com", days_ago=0)
    client = AsyncWebexClient(store=store)
    assert asyncio.run(client.get_access_token()) == bob.access_token


def test_session_is_a_property_as_on_webex_client(fake_webex: FakeWebex) -> None:
    store = open_url("memory://")
    seed(store, fake_webex, days_ago=0)

    async def main() -> tuple[int, Any, Any]:
        client = AsyncWebexClient(store=store, oauth=oauth_for(fake_webex))
        first = client.session
        response = await client.session.get("people/me")
        assert client.session is first  # one session per client, as WebexClient keeps
        with pytest.warns(DeprecationWarning, match="session_for"):
            old_form = client.session(NAME)  # the 0.1 call form
        async with old_form as http:
            again = await http.get("people/me")
        await client.aclose()
        return response.status_code, again.status_code, first.is_closed

    assert asyncio.run(main()) == (200, 200, True)


def test_the_session_warns_nothing(fake_webex: FakeWebex, tmp_path: Path) -> None:
    """Authlib's httpx integration deprecates plain httpx for httpx2; building and using
    the session must not warn (checked in a fresh interpreter: the warning is issued
    when Authlib's module is first imported)."""
    token = Token.from_response(fake_webex.issue_token(NAME), account=NAME)
    script = tmp_path / "session.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, json, sys
            from webex_tokens.aio import AsyncWebexClient
            from webex_tokens.registry import open_url
            from webex_tokens.token import Token

            store = open_url("memory://")
            store.put({NAME!r}, Token.from_dict(json.loads(sys.stdin.read())))

            async def main():
                client = AsyncWebexClient(store=store)
                response = await client.session.get({fake_webex.people_me_url!r})
                await client.aclose()
                print(response.status_code)

            asyncio.run(main())
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        input=json.dumps(token.to_dict()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "200" and run.stderr == ""


def test_auto_auth_logs_in_on_first_use_or_in_create(fake_webex: FakeWebex) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/oauth/webex/callback"
    fake_webex.add_redirect_uri(redirect_uri)
    oauth = WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=redirect_uri,
        base_url=fake_webex.base_url,
    )
    store = open_url("memory://")
    lazy = AsyncWebexClient(
        auto_auth=True, store=store, oauth=oauth, open_browser=fake_webex.open_browser
    )
    assert fake_webex.calls["authorization_code"] == 0  # __init__ cannot await
    token = asyncio.run(lazy.get_token())
    assert fake_webex.calls["authorization_code"] == 1
    assert store.names() == [fake_webex.user] and lazy.name == fake_webex.user

    async def create() -> AsyncWebexClient:
        return await AsyncWebexClient.create(
            auto_auth=True,
            store=store,
            name="second@example.com",
            oauth=oauth,
            open_browser=fake_webex.open_browser,
        )

    eager = asyncio.run(create())
    assert fake_webex.calls["authorization_code"] == 2  # logged in before create returned
    assert store.get("second@example.com") is not None
    assert eager.keeper.cached("second@example.com") is not None
    assert token.access_token != store.get("second@example.com").access_token  # type: ignore[union-attr]
