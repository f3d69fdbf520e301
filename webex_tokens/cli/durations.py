"""Durations as the commands read them (``--due-within 7d``) and print them (``11h 59m``)."""

from __future__ import annotations

import re
from typing import Final

import click

__all__ = ["duration_option", "format_age", "format_duration", "parse_duration", "until"]

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``12h``, ``7d``, ``1w`` or ``1d12h``.

    A bare number is seconds.

    Raises:
        ValueError: ``text`` is not such a duration.
    """
    compact = text.strip().lower().replace(" ", "")
    if compact.isdigit():
        return float(compact)
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w), "
            "e.g. 30m, 12h, 7d or 1w"
        )
    return float(sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", compact)))


def format_duration(seconds: float) -> str:
    """A short human form of a (non-negative) number of seconds: ``11h 59m``, ``3d 4h``.

    From a year on, years and days: ``2y 14d``.
    """
    total = int(abs(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days >= 365:
        years, days = divmod(days, 365)
        return f"{years}y {days}d" if days else f"{years}y"
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def format_age(seconds: float) -> str:
    """How long ago, in its largest unit only: ``42s``, ``3m``, ``5h``, ``12d``, ``3y``."""
    total = int(abs(seconds))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if total >= size:
            return f"{total // size}{unit}"
    return f"{total}s"


def until(seconds: float | None, *, unknown: str = "unknown") -> str:
    """How long until an expiry ``seconds`` away: ``11h 59m``, ``expired 3m ago``."""
    if seconds is None:
        return unknown
    if seconds <= 0:
        return f"expired {format_age(seconds)} ago"
    return format_duration(seconds)


def duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback turning a duration option into seconds (a bad one: a usage error)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
