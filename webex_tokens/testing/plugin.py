"""The webex-tokens pytest plugin, registered through the ``pytest11`` entry point.

Fixtures:
    require_services: True when a missing service must fail a test instead of skipping
        it (``CI=true`` or ``WEBEX_TOKENS_REQUIRE_SERVICES=1``).
    fake_webex: a started :class:`~webex_tokens.testing.fake_webex.FakeWebex` on loopback,
        stopped after the test.
    fake_service_app: a :class:`ServiceAppSetup` on ``fake_webex``: a Service App
        registered and authorized by one customer organization, and a manager token.
    fake_bot_token: a bot's access token on ``fake_webex`` (``/people/me`` type ``bot``).
    fake_personal_token: a personal access token on ``fake_webex`` (12 hours).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from .fake_webex import MANAGER_SCOPE, FakeWebex, ServiceAppInfo

__all__ = [
    "ServiceAppSetup",
    "fake_bot_token",
    "fake_personal_token",
    "fake_service_app",
    "fake_webex",
    "require_services",
    "service_missing",
    "services_required",
]


def services_required() -> bool:
    """True in CI (``CI=true``) or when ``WEBEX_TOKENS_REQUIRE_SERVICES=1`` is set."""
    return os.environ.get("CI", "").lower() == "true" or (
        os.environ.get("WEBEX_TOKENS_REQUIRE_SERVICES") == "1"
    )


def service_missing(reason: str) -> None:
    """Skip the current test for a missing service, or fail it when services are required."""
    if services_required():
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def require_services() -> bool:
    """Whether a missing service fails tests (CI) rather than skipping them."""
    return services_required()


@pytest.fixture
def fake_webex() -> Iterator[FakeWebex]:
    """A started Webex emulator on 127.0.0.1 (defaults of :class:`FakeWebex`), stopped after."""
    with FakeWebex() as fake:
        yield fake


@dataclasses.dataclass(frozen=True)
class ServiceAppSetup:
    """What the ``fake_service_app`` fixture set up on its emulator.

    Attributes:
        fake: the emulator (the ``fake_webex`` fixture of the same test).
        app: the Service App: ``client_id``, ``client_secret``, ``app_id``.
        org_id: the customer organization that authorized it (``customer.example``).
        manager: the token answer of the manager, ``admin@developer.example``, an
            integration login with the ``spark:applications_token`` scope (it refreshes).
    """

    fake: FakeWebex
    app: ServiceAppInfo
    org_id: str
    manager: dict[str, object] = dataclasses.field(repr=False)

    @property
    def manager_token(self) -> str:
        """The manager's access token, for ``Authorization: Bearer``."""
        return str(self.manager["access_token"])


@pytest.fixture
def fake_service_app(fake_webex: FakeWebex) -> ServiceAppSetup:
    """A Service App registered on ``fake_webex`` and authorized by ``customer.example``."""
    app = fake_webex.service_apps.register()
    org_id = fake_webex.org_id("customer.example")
    fake_webex.service_apps.authorize(org_id)
    manager = fake_webex.issue_token("admin@developer.example", scope=f"spark:all {MANAGER_SCOPE}")
    return ServiceAppSetup(fake_webex, app, org_id, manager)


@pytest.fixture
def fake_bot_token(fake_webex: FakeWebex) -> str:
    """A bot's access token on ``fake_webex``: it never expires and cannot be refreshed."""
    return fake_webex.issue_bot_token("fake-bot")


@pytest.fixture
def fake_personal_token(fake_webex: FakeWebex) -> str:
    """A personal access token of ``fake_webex.user``: 12 hours, cannot be refreshed."""
    return fake_webex.issue_personal_token()
