"""How hard the reliability suites push, and where their numbers are reported.

The default (CI) profile scales the counts down so that the whole suite stays quick;
``WEBEX_TOKENS_STRESS=full`` (set by ``scripts/stress``) runs the full counts and the
heavy Hypothesis profile. Tests call :func:`record` with what they measured; the numbers
are printed at the end of the run and, when ``WEBEX_TOKENS_STRESS_REPORT`` names a
file, written there as JSON.
"""

from __future__ import annotations

import os
from typing import Any, Final

from hypothesis import HealthCheck, settings

FULL: Final = os.environ.get("WEBEX_TOKENS_STRESS", "").strip().lower() == "full"
PROFILE: Final = "full" if FULL else "ci"

settings.register_profile(
    "webex-tokens-ci",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "webex-tokens-heavy",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: The Hypothesis settings every fuzz test runs with (applied per test, not globally).
FUZZ: Final = settings.get_profile("webex-tokens-heavy" if FULL else "webex-tokens-ci")

RECORDS: list[dict[str, Any]] = []


def scale(ci: int, full: int) -> int:
    """``full`` under ``WEBEX_TOKENS_STRESS=full``, else ``ci``."""
    return full if FULL else ci


def record(suite: str, **numbers: Any) -> None:
    """Keep one result line (a suite name and what it measured) for the end-of-run report."""
    RECORDS.append({"suite": suite, "profile": PROFILE, **numbers})
