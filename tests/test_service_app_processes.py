"""A Service App re-mint storm: 16 real processes find the same Service App token whose
refresh Webex refuses, with the manager's token expired too. Webex sees one refused
refresh, one refresh of the manager and one new pair; every process gets that pair.

The emulator rotates refresh tokens and revokes a whole login when a rotated-away
refresh token comes back, so a second refresh of the manager by any process would show
as a revoked family, and a second mint as a second family of the organization.
"""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from webex_tokens import ServiceApp, Token
from webex_tokens.registry import open_url
from webex_tokens.testing.plugin import ServiceAppSetup
from webex_tokens.testing.processes import run_workers, worker_context

WORKERS = 16
NAME = "reports:customer"
MANAGER = "admin@developer.example"


def current_worker(url: str, config: str, results: Any, start: Any) -> None:
    """Open the store through the settings, wait for the others, then read a valid token."""
    from webex_tokens import Keeper
    from webex_tokens.settings import load_settings

    with Keeper(url, settings=load_settings(config)) as keeper:
        start.wait()
        results.put(keeper.current(NAME).access_token)


@pytest.fixture(params=["file", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "file":
        yield f"file://{tmp_path}/tokens.json"
        return
    server = request.getfixturevalue("postgres_server")
    table = request.getfixturevalue("unique_table")
    yield f"{server}?table={table}"
    engine = sa.create_engine(server)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


@pytest.mark.slow
def test_sixteen_processes_make_one_new_pair(
    fake_service_app: ServiceAppSetup,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = fake_service_app
    fake = setup.fake
    fake.rotate_refresh_tokens = True
    monkeypatch.setenv("STORM_DEFAULT_SECRET", fake.client_secret)
    monkeypatch.setenv("STORM_REPORTS_SECRET", setup.app.client_secret)
    for variable in ("WEBEX_CLIENT_ID", "WEBEX_CLIENT_SECRET", "WEBEX_BASE_URL", "WEBEX_CLOUD"):
        monkeypatch.delenv(variable, raising=False)
    config = tmp_path / "webex-tokens.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [integration]
            client_id = "{fake.client_id}"
            client_secret_env = "STORM_DEFAULT_SECRET"
            base_url = "{fake.base_url}"

            [integrations.reports]
            kind = "service_app"
            client_id = "{setup.app.client_id}"
            client_secret_env = "STORM_REPORTS_SECRET"
            manager = "{MANAGER}"
            """
        ),
        encoding="utf-8",
    )
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    app = ServiceApp(setup.app.client_id, setup.app.client_secret, base_url=fake.base_url)
    minted = app.obtain(setup.org_id, setup.manager_token)
    with open_url(store_url) as store:
        store.put(
            MANAGER,
            Token.from_response(setup.manager, now=month_ago, client_id=fake.client_id),
        )
        store.put(NAME, minted.replace(expires_at=month_ago))
    assert fake.service_apps.revoke_tokens(setup.org_id) == 1
    before = dict(fake.calls)

    results = worker_context("forkserver").Queue()
    jobs = [(store_url, str(config), results)] * WORKERS
    run_workers(current_worker, jobs, timeout=240, method="forkserver")

    tokens = [results.get(timeout=10) for _ in range(WORKERS)]
    assert fake.service_apps.mints == {setup.org_id: 2}  # the test's own, and one new pair
    assert fake.calls["service_app_token"] - before.get("service_app_token", 0) == 1
    assert fake.calls["refresh_token"] - before.get("refresh_token", 0) == 2  # refused + manager
    assert fake.revoked_families == 0
    with open_url(store_url) as store:
        stored = store.get(NAME)
        manager = store.get(MANAGER)
    assert stored is not None and stored.kind == "service_app" and stored.org_id == setup.org_id
    assert set(tokens) == {stored.access_token}
    assert stored.refresh_token != minted.refresh_token
    assert manager is not None and not manager.is_expired(leeway=3600)
