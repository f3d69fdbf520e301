"""The webex-tokens pytest plugin, registered through the ``pytest11`` entry point.

Fixtures:
    require_services: True when a missing service must fail a test instead of skipping
        it (``CI=true`` or ``WEBEX_TOKENS_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import os

import pytest

__all__ = ["require_services", "service_missing", "services_required"]


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
