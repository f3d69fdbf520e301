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
``engine``         every call into the library's engine and store layer
``state``          what the global options chose
``output``         tables, progress, escaping, logging on stderr
``durations``      ``7d`` in, ``11h 59m`` out
``errors``         one ``error:`` line and exit 1
=================  ==================================================================
"""

from __future__ import annotations

from .app import cli, main
from .durations import format_duration, parse_duration
from .transfer import EXPORT_FORMAT, EXPORT_VERSION

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "cli", "format_duration", "main", "parse_duration"]
