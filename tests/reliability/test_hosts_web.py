"""Web logins across hosts: one app on two hosts, a login started on one ends on the other.

The app of ``tests/test_web_workers.py`` runs once on host 1 and once on host 2 (network
namespaces, :mod:`webex_tokens.testing.hosts`), each on its own address, sharing only
the secret key, the token store and the session store, both on PostgreSQL reached over
the bridge, as an app on several hosts is configured. The browser reaches them through
forwarders on one address (the gateway), host 1 on one port and host 2 on another, so it
holds one set of cookies, and the redirect URI points at host 2: every login starts on
host 1 and its callback reaches host 2, as a load balancer may split one browser's
requests. FakeWebex listens on the bridge, where both hosts reach it.

The tests are those of ``tests/test_web_workers.py``, run against these workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hosts_driver import on_gateway
from sql_tables import drop_table
from test_web_workers import (
    SECRET_KEY,
    Workers,
    _wait_until_up,
    test_a_replayed_callback_fails_on_either_worker,
    test_every_login_started_on_one_worker_finishes_on_the_other,
    test_logout_sticks_on_the_other_worker,
)

from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.hosts import HostNetwork
from webex_tokens.testing.servers import free_port

__all__ = [
    "test_a_replayed_callback_fails_on_either_worker",
    "test_every_login_started_on_one_worker_finishes_on_the_other",
    "test_logout_sticks_on_the_other_worker",
]

WORKER = Path(__file__).parent.parent / "test_web_workers.py"
#: The port each app listens on, inside its own host.
APP_PORT = 8000


@pytest.fixture(scope="module", params=["fastapi", "flask"])
def workers(
    request: pytest.FixtureRequest,
    host_network: HostNetwork,
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workers]:
    framework: str = request.param
    tmp = tmp_path_factory.mktemp(f"hosts-{framework}")
    first, second = host_network.hosts[:2]
    ports = free_port(), free_port()
    for port, host in zip(ports, (first, second), strict=True):
        host_network.expose(port, APP_PORT, target_host=host.address)
    a, b = (f"http://{host_network.gateway}:{port}" for port in ports)
    redirect_uri = b + "/oauth/webex/callback"
    tables = [f"wt_hosts_{kind}_{uuid.uuid4().hex[:10]}" for kind in ("tokens", "sessions")]
    store_url = f"{postgres_server}?table={tables[0]}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WEBEX_", "XDG_")) or key == "WEBEX_TOKENS_REQUIRE_SERVICES"
    }
    processes: list[subprocess.Popen[bytes]] = []
    with FakeWebex(host=host_network.gateway, redirect_uris=[redirect_uri]) as fake:
        try:
            for number, host in enumerate((first, second)):
                own = tmp / host.name  # nothing of one host's disk is seen by the other
                config: dict[str, Any] = {
                    "framework": framework,
                    "host": host.address,
                    "port": APP_PORT,
                    "redirect_uri": redirect_uri,
                    "base_url": fake.base_url,
                    "client_id": fake.client_id,
                    "client_secret": fake.client_secret,
                    "store_url": on_gateway(store_url, host_network),
                    "secret_key": SECRET_KEY,
                    "options": {
                        "session_store": on_gateway(
                            f"{postgres_server}?table={tables[1]}", host_network
                        )
                    },
                }
                processes.append(
                    subprocess.Popen(
                        host.command([sys.executable, str(WORKER), json.dumps(config)]),
                        env={
                            **env,
                            "XDG_DATA_HOME": str(own / "data"),
                            "XDG_CONFIG_HOME": str(own / "config"),
                        },
                    )
                )
                _wait_until_up((a, b)[number], processes[-1])
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
            for table in tables:
                drop_table(postgres_server, table)
