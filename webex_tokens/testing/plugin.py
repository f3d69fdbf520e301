"""The webex-tokens pytest plugin, registered through the ``pytest11`` entry point.

Fixtures:
    require_services: True when a missing service must fail a test instead of skipping
        it (``CI=true`` or ``WEBEX_TOKENS_REQUIRE_SERVICES=1``).
    fake_webex: a started :class:`~webex_tokens.testing.fake_webex.FakeWebex` on loopback,
        stopped after the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .fake_webex import FakeWebex

__all__ = ["fake_webex", "require_services", "service_missing", "services_required"]


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
