"""Test helpers shipped with webex-tokens, for this project and for third-party backends.

- :class:`StoreConformance`: the shared test class every backend passes; subclass it in
  a test module and provide a ``store`` fixture.
- :class:`FakeWebex` (:mod:`webex_tokens.testing.fake_webex`): the Webex emulator, and
  :func:`run_emulator`, which runs one in the foreground.
- :mod:`webex_tokens.testing.processes`: real-process workers for concurrency tests.
- :mod:`webex_tokens.testing.plugin`: the pytest plugin (registered as ``pytest11``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conformance import AWKWARD_NAMES, INVALID_NAMES, StoreConformance, make_token
    from .fake_webex import FakeWebex, run_emulator

__all__ = [
    "AWKWARD_NAMES",
    "INVALID_NAMES",
    "FakeWebex",
    "StoreConformance",
    "make_token",
    "run_emulator",
]

# Imported on first use: the conformance suite needs pytest, while the emulator in this
# package (which ``webex-tokens demo`` runs) must work where pytest is absent.
_LAZY = {
    "AWKWARD_NAMES": "conformance",
    "INVALID_NAMES": "conformance",
    "StoreConformance": "conformance",
    "make_token": "conformance",
    "FakeWebex": "fake_webex",
    "run_emulator": "fake_webex",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
