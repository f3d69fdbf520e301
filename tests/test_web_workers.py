"""Web logins across workers: two real server processes of one app behind one redirect URI.

Each framework (FastAPI under uvicorn, Flask under werkzeug) runs as two separate
processes, A and B, sharing nothing but the secret key, the token store (an SQLite file)
and where logouts are recorded: for FastAPI the default (an SQLite file in the user data
directory, shared by the processes of one host), for Flask a PostgreSQL table, as apps
on several hosts configure it. The redirect URI
points at B, so every login starts on A and its callback reaches B, the way a load
balancer may split one browser's requests. The browser is an HTTP client that keeps
cookies (cookies are per host, not per port, so A and B see the same ones); FakeWebex
plays Webex on loopback.

Run as a script (``python tests/test_web_workers.py CONFIG``) this module is one worker.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sql_tables import drop_table

from webex_tokens.registry import open_url
from webex_tokens.testing.fake_webex import FakeWebex

SECRET_KEY = "workers-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the worker process ------------------------------------------------------------------


def serve_worker(config: dict[str, Any]) -> None:
    """Serve the app described by ``config`` until killed (runs in the worker process)."""
    from webex_tokens.oauth import WebexOAuth
    from webex_tokens.registry import open_url

    oauth = WebexOAuth(
        config["client_id"],
        config["client_secret"],
        redirect_uri=config["redirect_uri"],
        base_url=config["base_url"],
    )
    store = open_url(config["store_url"])
    options = {"secret_key": config["secret_key"], **config["options"]}
    if config["framework"] == "fastapi":
        import uvicorn
        from fastapi import FastAPI
        from starlette.responses import JSONResponse

        from webex_tokens.web.starlette import WebexLogin

        login = WebexLogin(store, oauth, **options)
        app = FastAPI()
        app.include_router(login.api_router())

        async def me(request: Any) -> JSONResponse:  # a plain Starlette route
            account = login.current_account(request)
            if account is None:
                return JSONResponse({"error": "not signed in"}, 401)
            return JSONResponse({"account": account})

        app.add_route("/me", me)

        uvicorn.run(
            app, host=config.get("host", "127.0.0.1"), port=config["port"], log_level="warning"
        )
    else:
        import flask
        from werkzeug.serving import make_server

        from webex_tokens.web.flask import WebexLogin as FlaskLogin

        flask_login = FlaskLogin(store, oauth, **options)
        flask_app = flask.Flask(__name__)
        flask_app.register_blueprint(flask_login.blueprint)

        @flask_app.get("/me")
        def flask_me() -> Any:
            account = flask_login.current_account()
            if account is None:
                return {"error": "not signed in"}, 401
            return {"account": account}

        host = config.get("host", "127.0.0.1")
        make_server(host, config["port"], flask_app, threaded=True).serve_forever()


# -- the two workers -----------------------------------------------------------------------


@dataclass
class Workers:
    """Two worker processes of one app: ``a`` serves the logins, ``b`` the redirect URI."""

    framework: str
    a: str
    b: str
    fake: FakeWebex
    store_url: str

    def names(self) -> list[str]:
        with open_url(self.store_url) as store:
            return store.names()


def _wait_until_up(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the worker at {base} exited with {process.returncode}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the worker at {base} did not start")


@pytest.fixture(scope="module", params=["fastapi", "flask"])
def workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    framework: str = request.param
    tmp = tmp_path_factory.mktemp(f"workers-{framework}")
    ports = free_port(), free_port()
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    redirect_uri = b + "/oauth/webex/callback"
    store_url = f"sqlite:///{tmp / 'tokens.db'}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WEBEX_", "XDG_")) or key == "WEBEX_TOKENS_REQUIRE_SERVICES"
    }
    env.update(XDG_DATA_HOME=str(tmp / "data"), XDG_CONFIG_HOME=str(tmp / "config"))
    options: dict[str, Any] = {}
    table = None
    if framework == "flask":
        server: str = request.getfixturevalue("postgres_server")
        table = "wt_sessions_" + uuid.uuid4().hex[:12]
        options["session_store"] = f"{server}?table={table}"
    processes: list[subprocess.Popen[bytes]] = []
    with FakeWebex(redirect_uris=[redirect_uri]) as fake:
        try:
            for port in ports:
                config = {
                    "framework": framework,
                    "port": port,
                    "redirect_uri": redirect_uri,
                    "base_url": fake.base_url,
                    "client_id": fake.client_id,
                    "client_secret": fake.client_secret,
                    "store_url": store_url,
                    "secret_key": SECRET_KEY,
                    "options": options,
                }
                processes.append(
                    subprocess.Popen([sys.executable, __file__, json.dumps(config)], env=env)
                )
            for base, process in zip((a, b), processes, strict=True):
                _wait_until_up(base, process)
            yield Workers(framework, a, b, fake, store_url)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
            if table is not None:
                drop_table(server, table)


def browser() -> httpx.Client:
    """A browser: keeps cookies, follows redirects."""
    return httpx.Client(follow_redirects=True, timeout=15)


def start_login(person: httpx.Client, workers: Workers, user: str) -> str:
    """Begin a login on worker A as ``user``, approved at Webex: the callback URL (on B)."""
    workers.fake.user = user
    started = person.get(workers.a + "/oauth/webex/login", follow_redirects=False)
    assert started.status_code == 302
    callback = workers.fake.approve(started.headers["location"])
    assert callback.startswith(workers.b + "/oauth/webex/callback?")
    return callback


def account_cookie(person: httpx.Client) -> tuple[str, str]:
    """The name and value of the browser's account cookie."""
    (found,) = [(c.name, c.value) for c in person.cookies.jar if c.name.endswith("_account")]
    return found


def signs_in(response: httpx.Response) -> bool:
    """Whether ``response`` gives the browser an account cookie."""
    return any(
        "_account=" in header and "Max-Age=0" not in header
        for header in response.headers.get_list("set-cookie")
    )


def signed_in_as(base: str, cookies: dict[str, str]) -> str | None:
    """Who a browser holding exactly ``cookies`` is signed in as at ``base``, or None."""
    with httpx.Client(timeout=15, cookies=cookies) as client:
        me = client.get(base + "/me")
    if me.status_code == 401:
        return None
    assert me.status_code == 200, me.text
    account: str = me.json()["account"]
    return account


# -- the tests -------------------------------------------------------------------------------


def test_every_login_started_on_one_worker_finishes_on_the_other(workers: Workers) -> None:
    users = [f"{workers.framework}-user{i}@example.com" for i in range(3)]
    for user in users:
        with browser() as person:
            callback = start_login(person, workers, user)
            page = person.get(callback)
            assert page.status_code == 200, page.text
            assert f"signed in as {user}" in page.text
            assert person.get(workers.a + "/me").json() == {"account": user}
            assert person.get(workers.b + "/me").json() == {"account": user}
    assert set(users) <= set(workers.names())


def test_a_flood_of_anonymous_logins_evicts_no_real_one(workers: Workers) -> None:
    user = f"{workers.framework}-patient@example.com"
    with browser() as person:
        callback = start_login(person, workers, user)

        def flood(base: str) -> int:
            with httpx.Client(timeout=15) as anonymous:
                for _ in range(500):
                    answer = anonymous.get(base + "/oauth/webex/login")
                    assert answer.status_code == 302
                    anonymous.cookies.clear()
            return 500

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            sent = sum(pool.map(flood, [workers.a, workers.b] * 2))
        assert sent == 2000
        page = person.get(callback)
        assert page.status_code == 200, page.text
        assert person.get(workers.b + "/me").json() == {"account": user}
    assert user in workers.names()


def test_a_replayed_callback_fails_on_either_worker(workers: Workers) -> None:
    user = f"{workers.framework}-replayed@example.com"
    with browser() as person:
        callback = start_login(person, workers, user)
        captured = dict(person.cookies)  # what an attacker copying the cookies would hold
        assert person.get(callback).status_code == 200
    with open_url(workers.store_url) as store:
        stored = store.get(user)
    exchanges = workers.fake.calls["authorization_code"]
    for base in (workers.b, workers.a):
        replay = callback.replace(workers.b, base)
        # The same browser again: its login cookie was used up by the first callback.
        with httpx.Client(timeout=15, cookies=dict(person.cookies)) as same:
            refused = same.get(replay)
            assert refused.status_code == 400
            assert "not recognised" in refused.text
            assert not signs_in(refused)
        # With the login cookie copied before it was used: Webex refuses the used code.
        with httpx.Client(timeout=15, cookies=captured) as attacker:
            refused = attacker.get(replay)
            assert refused.status_code == 502
            assert "Sign-in failed" in refused.text
            assert not signs_in(refused)
    # Only the copied login cookie got as far as Webex (once per worker), which refused.
    assert workers.fake.calls["authorization_code"] - exchanges == 2
    with open_url(workers.store_url) as store:
        assert store.get(user) == stored


def test_logout_sticks_on_the_other_worker(workers: Workers) -> None:
    user = f"{workers.framework}-leaving@example.com"
    with browser() as laptop, browser() as phone:
        assert laptop.get(start_login(laptop, workers, user)).status_code == 200
        assert phone.get(start_login(phone, workers, user)).status_code == 200
        name, value = account_cookie(laptop)
        assert signed_in_as(workers.b, {name: value}) == user
        assert laptop.get(workers.a + "/oauth/webex/logout").status_code == 200
        assert laptop.get(workers.a + "/me").status_code == 401
        # The captured cookie of the ended session: refused by both workers.
        assert signed_in_as(workers.b, {name: value}) is None
        assert signed_in_as(workers.a, {name: value}) is None
        # The other browser's session of the same account is its own, and stays.
        assert phone.get(workers.b + "/me").json() == {"account": user}
    assert user in workers.names()  # the token stays stored


if __name__ == "__main__":
    serve_worker(json.loads(sys.argv[1]))
