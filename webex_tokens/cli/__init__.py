"""The ``webex-tokens`` command: log in, list, refresh, move and inspect tokens.

One module per command group, over one door into the library:

=================  ==================================================================
``app``            the group, its global options and error handling, ``main``
``tokens``         ``login``, ``token``, ``refresh``
``accounts``       ``list``, ``show``, ``delete``
``transfer``       ``migrate``, ``import``, ``export``
``keys``           ``keygen``, ``rotate-key``
``doctor``         ``stores``, ``doctor``
``demo``           ``demo``
``emulator``       ``emulator``
``completion``     ``completion``, and what the shell completes
``metrics``        ``metrics``: Prometheus text format
``history``        how each account's last refresh ended (``refused``: log in again)
``engine``         every call into the library's engine and store layer, one per concept
``schemas``        the ``--json`` documents, field by field
``state``          what the global options chose
``output``         tables, progress, escaping, logging on stderr
``durations``      ``7d`` in, ``11h 59m`` out
``errors``         one ``error:`` line and exit 1
=================  ==================================================================
"""

from __future__ import annotations

from typing import Final

from ..bundle import BUNDLE_FORMAT, BUNDLE_VERSION
from .app import cli, main
from .durations import format_duration, parse_duration

#: The ``format`` field of an export bundle (:data:`webex_tokens.bundle.BUNDLE_FORMAT`).
EXPORT_FORMAT: Final = BUNDLE_FORMAT
#: The bundle version this release writes (:data:`webex_tokens.bundle.BUNDLE_VERSION`).
EXPORT_VERSION: Final = BUNDLE_VERSION

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "cli", "format_duration", "main", "parse_duration"]
