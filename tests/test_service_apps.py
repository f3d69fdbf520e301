"""Service Apps over real HTTP against FakeWebex: obtaining a pair through a manager,
refreshing it with the Service App's own credentials, and a refused refresh answered
with a new pair, all through the engine every surface uses."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from webex_tokens import (
    ConfigError,
    Keeper,
    ReauthorizationRequired,
    ServiceApp,
    Token,
    TokenEndpointError,
)
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.service_apps import default_app_id, organization_id, organization_label
from webex_tokens.settings import Settings, load_settings
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.testing.fake_webex import default_app_id as fake_app_id
from webex_tokens.testing.plugin import ServiceAppSetup

MANAGER = "admin@developer.example"
NAME = "reports:customer"


def service_app(setup: ServiceAppSetup) -> ServiceApp:
    return ServiceApp(
        setup.app.client_id, setup.app.client_secret, base_url=setup.fake.base_url, max_retries=0
    )


def manager_token(setup: ServiceAppSetup, *, now: datetime | None = None) -> Token:
    return Token.from_response(
        setup.manager, now=now, client_id=setup.fake.client_id, account=MANAGER
    )


def write_settings(
    directory: Path,
    setup: ServiceAppSetup,
    monkeypatch: pytest.MonkeyPatch,
    *,
    manager: str | None = MANAGER,
) -> Settings:
    """The manager's integration is the default one; the Service App a named one."""
    fake = setup.fake
    monkeypatch.setenv("TEST_DEFAULT_SECRET", fake.client_secret)
    monkeypatch.setenv("TEST_REPORTS_SECRET", setup.app.client_secret)
    monkeypatch.delenv("WEBEX_CLIENT_SECRET", raising=False)
    monkeypatch.delenv("WEBEX_CLIENT_ID", raising=False)
    monkeypatch.delenv("WEBEX_BASE_URL", raising=False)
    path = directory / "webex-tokens.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [integration]
            client_id = "{fake.client_id}"
            client_secret_env = "TEST_DEFAULT_SECRET"
            base_url = "{fake.base_url}"

            [integrations.reports]
            kind = "service_app"
            client_id = "{setup.app.client_id}"
            client_secret_env = "TEST_REPORTS_SECRET"
            """
        )
        + (f'manager = "{manager}"\n' if manager else ""),
        encoding="utf-8",
    )
    return load_settings(path)


def test_the_default_app_id_is_webexs(fake_service_app: ServiceAppSetup) -> None:
    app = service_app(fake_service_app)
    assert app.app_id == default_app_id("fake-service-app-id") == fake_app_id("fake-service-app-id")
    assert app.token_url == fake_service_app.fake.service_apps.token_url()


def test_obtain_mints_a_service_app_token_for_the_organization(
    fake_service_app: ServiceAppSetup,
) -> None:
    setup = fake_service_app
    token = service_app(setup).obtain(setup.org_id, setup.manager_token)
    assert token.kind == "service_app"
    assert token.org_id == setup.org_id
    assert token.client_id == setup.app.client_id
    assert token.refresh_token is not None and not token.is_expired(leeway=3600)
    assert setup.fake.service_apps.mints == {setup.org_id: 1}
    # A Token of the manager works too, and the pair refreshes with the app's credentials.
    again = service_app(setup).obtain(setup.org_id, manager_token(setup), account="r")
    assert again.account == "r"
    fresh = service_app(setup).refresh(again)
    assert (fresh.kind, fresh.org_id, fresh.account) == ("service_app", setup.org_id, "r")
    assert fresh.access_token != again.access_token
    assert setup.fake.service_apps.refreshes == {setup.org_id: 1}
    assert setup.org_id not in repr(service_app(setup)) and "secret" not in repr(service_app(setup))


def test_refusals_say_who_must_fix_what(
    fake_service_app: ServiceAppSetup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    setup = fake_service_app
    fake = setup.fake
    app = service_app(setup)
    plain = fake.issue_token("someone@developer.example")["access_token"]
    with pytest.raises(TokenEndpointError, match="lacks the spark:applications_token scope"):
        app.obtain(setup.org_id, plain)
    other = fake.org_id("stranger.example")
    with pytest.raises(
        TokenEndpointError, match=r"has not authorized the Service App.*Control Hub"
    ):
        app.obtain(other, setup.manager_token)
    with pytest.raises(TokenEndpointError, match="refused the manager's access token"):
        app.obtain(setup.org_id, "not-a-token")
    wrong = ServiceApp(setup.app.client_id, "wrong-secret", base_url=fake.base_url)
    with pytest.raises(TokenEndpointError, match="client ID or secret") as excinfo:
        wrong.obtain(setup.org_id, setup.manager_token)
    assert "wrong-secret" not in str(excinfo.value)
    missing = ServiceApp(
        setup.app.client_id,
        setup.app.client_secret,
        app_id=fake_app_id("nobody"),
        base_url=fake.base_url,
    )
    with pytest.raises(TokenEndpointError, match="knows no Service App with the application ID"):
        missing.obtain(setup.org_id, setup.manager_token)
    assert fake.service_apps.mints == {}
    assert setup.manager_token not in caplog.text and setup.app.client_secret not in caplog.text


@pytest.mark.parametrize("org_id", ["", "   ", "not-base64!", "Y2lzY29zcGFyazovL3VzL1BFT1BMRS94"])
def test_a_bad_organization_id_is_refused_before_webex_is_asked(
    fake_service_app: ServiceAppSetup, org_id: str
) -> None:
    with pytest.raises(ConfigError, match="not a Webex organization ID"):
        service_app(fake_service_app).obtain(org_id, fake_service_app.manager_token)
    assert fake_service_app.fake.calls["service_app_token"] == 0


def test_organization_labels_are_the_uuid_inside(fake_webex: FakeWebex) -> None:
    org = fake_webex.org_id("customer.example")
    assert organization_id(f"  {org}== ") == f"{org}=="
    label = organization_label(org)
    assert label and "/" not in label and label != org
    assert organization_label("plain") == "plain"


def test_the_engine_refreshes_with_the_service_apps_credentials(
    fake_service_app: ServiceAppSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = fake_service_app
    settings = write_settings(tmp_path, setup, monkeypatch)
    store = MemoryStore()
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    minted = service_app(setup).obtain(setup.org_id, setup.manager_token)
    store.put(NAME, minted.replace(expires_at=month_ago))
    with Keeper(store, settings=settings) as keeper:
        token = keeper.current(NAME)
    assert token.access_token != minted.access_token
    assert (token.kind, token.org_id) == ("service_app", setup.org_id)
    assert setup.fake.service_apps.refreshes == {setup.org_id: 1}
    assert setup.fake.service_apps.mints == {setup.org_id: 1}


def test_a_refused_refresh_obtains_a_new_pair_through_the_manager(
    fake_service_app: ServiceAppSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = fake_service_app
    fake = setup.fake
    settings = write_settings(tmp_path, setup, monkeypatch)
    store = MemoryStore()
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    store.put(MANAGER, manager_token(setup, now=month_ago))  # due: refreshed first
    minted = service_app(setup).obtain(setup.org_id, setup.manager_token)
    store.put(NAME, minted.replace(expires_at=month_ago, account="reports"))
    assert fake.service_apps.revoke_tokens(setup.org_id) == 1
    with Keeper(store, settings=settings) as keeper:
        token = keeper.current(NAME)
    assert fake.service_apps.mints == {setup.org_id: 2}
    assert (token.kind, token.org_id, token.account) == ("service_app", setup.org_id, "reports")
    assert token.refresh_token != minted.refresh_token
    assert store.get(NAME) == token
    manager = store.get(MANAGER)
    assert manager is not None and not manager.is_expired(leeway=3600)  # refreshed, and kept


def test_without_a_manager_a_refused_refresh_says_how_to_get_a_new_pair(
    fake_service_app: ServiceAppSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = fake_service_app
    settings = write_settings(tmp_path, setup, monkeypatch, manager=None)
    store = MemoryStore()
    minted = service_app(setup).obtain(setup.org_id, setup.manager_token)
    store.put(NAME, minted.replace(expires_at=datetime.now(timezone.utc)))
    setup.fake.service_apps.revoke_tokens(setup.org_id)
    with (
        Keeper(store, settings=settings) as keeper,
        pytest.raises(ReauthorizationRequired) as excinfo,
    ):
        keeper.current(NAME)
    message = str(excinfo.value)
    assert f"webex-tokens service-app add {setup.org_id} --app NAME --name {NAME}" in message
    assert "manager = " in message
    assert setup.fake.service_apps.mints == {setup.org_id: 1}
