"""Test helpers shipped with webex-tokens, for this project and for third-party backends.

- :class:`StoreConformance`: the shared test class every backend passes; subclass it in
  a test module and provide a ``store`` fixture.
- :mod:`webex_tokens.testing.processes`: real-process workers for concurrency tests.
- :mod:`webex_tokens.testing.plugin`: the pytest plugin (registered as ``pytest11``).
"""

from __future__ import annotations

from .conformance import AWKWARD_NAMES, INVALID_NAMES, StoreConformance, make_token

__all__ = ["AWKWARD_NAMES", "INVALID_NAMES", "StoreConformance", "make_token"]
