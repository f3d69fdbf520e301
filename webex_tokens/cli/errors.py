"""How a command fails: one ``error:`` line on stderr and exit 1, never a traceback."""

from __future__ import annotations

from typing import Any, NoReturn

import click

from ..errors import WebexTokensError
from ..store import TokenStore, redact_url
from .output import one_line, safe

__all__ = ["CommandFailed", "describe", "missing"]


class CommandFailed(click.ClickException):
    """A command could not do what was asked: one ``error:`` line on stderr, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        """Print the one-line message on stderr."""
        click.echo(f"error: {one_line(self.message)}", err=True)


def describe(exc: BaseException) -> str:
    """The message of a library or operating-system error, as one ``error:`` line says it."""
    if isinstance(exc, OSError) and not isinstance(exc, WebexTokensError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}:{where}" if where else str(exc.strerror or exc)
    return str(exc)


def missing(store: TokenStore, name: str) -> NoReturn:
    """Fail because ``store`` holds no token called ``name``."""
    raise CommandFailed(
        f"no token named {safe(name)!r} in {redact_url(store.url)}; "
        "see the stored names with: webex-tokens list"
    )
