"""Test helpers shipped with webex-tokens, for this project and for third-party backends.

- :class:`StoreConformance`: the shared test class every backend passes; subclass it in
  a test module and provide a ``store`` fixture.
- :mod:`webex_tokens.testing.processes`: real-process workers for concurrency tests.
- :mod:`webex_tokens.testing.plugin`: the pytest plugin (registered as ``pytest11``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conformance import AWKWARD_NAMES, INVALID_NAMES, StoreConformance, make_token

__all__ = ["AWKWARD_NAMES", "INVALID_NAMES", "StoreConformance", "make_token"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the conformance suite needs pytest, while the emulator in
    # this package (which ``webex-tokens demo`` runs) must work where pytest is absent.
    if name in __all__:
        from . import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
