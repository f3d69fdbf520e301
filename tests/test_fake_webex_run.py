"""The request record (never a secret) and run_emulator, the foreground emulator."""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from webex_tokens.testing.fake_webex import (
    DEFAULT_EMULATOR_PORT,
    DEVICE_GRANT_TYPE,
    MANAGER_SCOPE,
    EmulatorReady,
    FakeWebex,
    RequestRecord,
    run_emulator,
)
from webex_tokens.token import fingerprint


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _authorize_url(base_url: str, client_id: str, redirect_uri: str, challenge: str) -> str:
    params = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": "openid email spark:all",
        "state": "state-1",
        "nonce": "nonce-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{base_url}/authorize?{urlencode(params)}"


def test_every_endpoint_is_recorded_and_no_secret_ever_is(  # noqa: PLR0915 - one tour
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="webex_tokens")
    records: list[RequestRecord] = []
    secret = "secret-" + secrets.token_urlsafe(16)
    app_secret = "app-secret-" + secrets.token_urlsafe(16)
    issued: set[str] = {secret, app_secret}
    with FakeWebex(client_secret=secret, on_request=records.append, consent_page=True) as fake:
        fake.device.interval = 0
        # The authorization-code flow, through the consent page, with openid.
        verifier, challenge = _pkce()
        url = _authorize_url(fake.base_url, fake.client_id, fake.redirect_uris[0], challenge)
        page = requests.get(url, timeout=10)
        request_id = page.headers["X-Fake-Webex-Consent"]
        consent = requests.post(
            fake.authorize_url,
            data={"request": request_id, "email": "jo@example.com", "decision": "approve"},
            allow_redirects=False,
            timeout=10,
        )
        code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
        credentials = {"client_id": fake.client_id, "client_secret": secret}
        pair = requests.post(
            fake.token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": fake.redirect_uris[0],
                "code_verifier": verifier,
                **credentials,
            },
            timeout=10,
        ).json()
        refresh = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
        requests.post(fake.token_url, data={**refresh, **credentials}, timeout=10)
        requests.post(
            fake.token_url,
            data={**refresh, "client_id": fake.client_id, "client_secret": "wrong"},
            timeout=10,
        )
        requests.post(fake.token_url, data=refresh, auth=(fake.client_id, secret), timeout=10)
        bearer = {"Authorization": "Bearer " + pair["access_token"]}
        requests.get(fake.people_me_url, headers=bearer, timeout=10)
        requests.get(fake.oidc.userinfo_url, headers=bearer, timeout=10)
        requests.get(fake.oidc.discovery_url, timeout=10)
        requests.get(fake.oidc.jwks_url, timeout=10)
        # The device grant, approved on the page.
        device = requests.post(
            fake.device.authorize_url,
            data={"client_id": fake.client_id, "scope": "spark:all"},
            timeout=10,
        ).json()
        poll = {"grant_type": DEVICE_GRANT_TYPE, "device_code": device["device_code"]}
        requests.post(fake.device.token_url, data={**poll, **credentials}, timeout=10)
        requests.get(device["verification_uri_complete"], timeout=10)
        requests.post(
            fake.device.verification_uri,
            data={"user_code": device["user_code"], "decision": "approve"},
            timeout=10,
        )
        device_pair = requests.post(
            fake.device.token_url, data={**poll, **credentials}, timeout=10
        ).json()
        # A Service App mint and refresh; bots and personal tokens.
        app = fake.service_apps.register("sa-id", app_secret)
        org = fake.org_id("customer.example")
        fake.service_apps.authorize(org)
        manager = fake.issue_personal_token(scope=f"spark:all {MANAGER_SCOPE}")
        minted = requests.post(
            fake.service_apps.token_url(),
            json={"clientId": app.client_id, "clientSecret": app_secret, "targetOrgId": org},
            headers={"Authorization": "Bearer " + manager},
            timeout=10,
        ).json()
        requests.post(
            fake.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": minted["refresh_token"],
                "client_id": app.client_id,
                "client_secret": app_secret,
            },
            timeout=10,
        )
        bot = fake.issue_bot_token()
        requests.get(fake.people_me_url, headers={"Authorization": "Bearer " + bot}, timeout=10)
        # A secret where a path segment is, and where a client ID is.
        requests.get(f"{fake.base_url}/{pair['access_token']}", timeout=10)
        requests.post(
            fake.token_url,
            data={**refresh, "client_id": secret, "client_secret": secret},
            timeout=10,
        )
    issued |= {code, verifier, request_id, pair["id_token"], manager, bot}
    issued |= {device["device_code"], device_pair["access_token"], device_pair["refresh_token"]}
    issued |= {pair[k] for k in ("access_token", "refresh_token")}
    issued |= {minted[k] for k in ("access_token", "refresh_token")}

    shown = "\n".join(f"{record}\n{record!r}" for record in records) + caplog.text
    for value in issued:
        assert value not in shown
    assert len(records) == 20
    assert str(records[0]).startswith("GET /v1/authorize 200 client=fake-client-id")
    exchange = records[2]
    assert (exchange.method, exchange.path, exchange.status) == ("POST", "/v1/access_token", 200)
    assert (exchange.grant_type, exchange.user) == ("authorization_code", "jo@example.com")
    assert exchange.credential == fingerprint(code)
    assert records[4].error == "invalid_client" and records[4].client_id == "fake-client-id"
    minted_record = next(r for r in records if r.path.startswith("/v1/applications/"))
    assert (minted_record.client_id, minted_record.org_id) == ("sa-id", org)
    assert records[-2].status == 404 and records[-2].path.startswith("/v1/sha256:")
    assert records[-1].client_id is None  # a secret sent as a client ID is not shown
    assert "/v1/device/token" in caplog.text


def test_a_failing_callback_does_not_stop_the_server(caplog: pytest.LogCaptureFixture) -> None:
    def boom(record: RequestRecord) -> None:
        raise RuntimeError("boom")

    with FakeWebex(on_request=boom) as fake:
        assert requests.get(fake.people_me_url, timeout=10).status_code == 401
        assert requests.get(fake.people_me_url, timeout=10).status_code == 401
    assert "RuntimeError" in caplog.text


# -- run_emulator ----------------------------------------------------------------------------


class Running:
    """run_emulator in a thread, stopped at the end."""

    def __init__(self, **options: Any) -> None:
        self.records: list[RequestRecord] = []
        self.ready: EmulatorReady | None = None
        self.stop = threading.Event()
        self._started = threading.Event()
        self.error: BaseException | None = None

        def on_ready(ready: EmulatorReady) -> None:
            self.ready = ready
            self._started.set()

        def run() -> None:
            try:
                run_emulator(
                    on_ready=on_ready, on_request=self.records.append, stop=self.stop, **options
                )
            except BaseException as error:
                self.error = error
            finally:
                self._started.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self._started.wait(10)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for emulator in started:
        emulator.close()


def test_run_emulator_serves_until_stopped(running: list[Running]) -> None:
    emulator = Running(port=0)
    running.append(emulator)
    ready = emulator.ready
    assert ready is not None and not ready.fell_back
    assert ready.base_url == f"http://127.0.0.1:{ready.port}/v1"
    assert ready.environment == {
        "WEBEX_BASE_URL": ready.base_url,
        "WEBEX_CLIENT_ID": "fake-client-id",
        "WEBEX_CLIENT_SECRET": "fake-client-secret",
        "WEBEX_REDIRECT_URI": "http://localhost:8000/oauth/webex/callback",
    }
    assert "fake-client-secret" not in repr(ready)
    assert requests.get(ready.base_url + "/people/me", timeout=10).status_code == 401
    emulator.close()
    assert emulator.error is None
    assert [r.path for r in emulator.records] == ["/v1/people/me"]
    with pytest.raises(requests.ConnectionError):
        requests.get(ready.base_url + "/people/me", timeout=5)


def test_without_approve_as_a_person_signs_in(running: list[Running]) -> None:
    emulator = Running(port=0)
    running.append(emulator)
    assert emulator.ready is not None
    _, challenge = _pkce()
    url = _authorize_url(
        emulator.ready.base_url,
        "fake-client-id",
        "http://localhost:8000/oauth/webex/callback",
        challenge,
    )
    page = requests.get(url, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and "<form" in page.text


def test_approve_as_approves_logins_and_device_codes(running: list[Running]) -> None:
    redirect = "http://127.0.0.1:9/cb"
    emulator = Running(
        port=0,
        approve_as="kim@example.com",
        client_id="cid",
        client_secret="cs",
        redirect_uris=(redirect,),
    )
    running.append(emulator)
    ready = emulator.ready
    assert ready is not None and ready.approve_as == "kim@example.com"
    assert ready.environment["WEBEX_REDIRECT_URI"] == redirect
    verifier, challenge = _pkce()
    url = _authorize_url(ready.base_url, "cid", redirect, challenge)
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    pair = requests.post(
        ready.base_url + "/access_token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
            "client_id": "cid",
            "client_secret": "cs",
        },
        timeout=10,
    ).json()
    assert pair["id_token"]
    person = requests.get(
        ready.base_url + "/people/me",
        headers={"Authorization": "Bearer " + pair["access_token"]},
        timeout=10,
    ).json()
    assert person["emails"] == ["kim@example.com"]
    # A device code: pending on the first poll, approved on the next.
    ready.fake.device.interval = 0.01
    device = requests.post(
        ready.base_url + "/device/authorize", data={"client_id": "cid", "scope": "x"}, timeout=10
    ).json()
    poll = {
        "grant_type": DEVICE_GRANT_TYPE,
        "device_code": device["device_code"],
        "client_id": "cid",
        "client_secret": "cs",
    }
    assert requests.post(ready.base_url + "/device/token", data=poll, timeout=10).status_code == 428
    time.sleep(0.05)
    granted = requests.post(ready.base_url + "/device/token", data=poll, timeout=10)
    assert granted.status_code == 200
    assert {pair["access_token"], granted.json()["access_token"], "cs"}.isdisjoint(
        str(record) for record in emulator.records
    )


def test_the_default_port_falls_back_when_taken(running: list[Running]) -> None:
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", DEFAULT_EMULATOR_PORT))
        holder.listen()
    except OSError:
        pass  # something else holds it already: taken all the same
    try:
        emulator = Running()
        running.append(emulator)
        assert emulator.ready is not None
        assert emulator.ready.fell_back
        assert emulator.ready.port != DEFAULT_EMULATOR_PORT
    finally:
        holder.close()


def test_a_chosen_port_that_is_taken_is_an_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is in use") as caught:
            run_emulator(port=port)
    assert caught.value.errno == errno.EADDRINUSE


def test_approve_as_must_be_an_email() -> None:
    with pytest.raises(ValueError, match="email"):
        run_emulator(port=0, approve_as="kim")


def test_ctrl_c_ends_the_run_cleanly(tmp_path: object) -> None:
    code = (
        "from webex_tokens.testing.fake_webex import run_emulator\n"
        "run_emulator(port=0, on_ready=lambda r: print(r.base_url, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert requests.get(base_url + "/people/me", timeout=10).status_code == 401
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "stopped"
    assert "Traceback" not in err
