"""How a command fails: one ``error:`` line on stderr and exit 1, never a traceback."""

from __future__ import annotations

from typing import Any, NoReturn

import click

from ..errors import WebexTokensError
from ..store import TokenStore
from . import engine
from .output import one_line, safe

__all__ = ["CommandFailed", "UsageFailed", "describe", "missing", "one_line_usage"]


class CommandFailed(click.ClickException):
    """A command could not do what was asked: one ``error:`` line on stderr, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        """Print the one-line message on stderr."""
        click.echo(f"error: {one_line(self.message)}", err=True)


class UsageFailed(click.UsageError):
    """A usage error as one ``error:`` line naming the help to read, exit 2.

    click's own usage errors print the usage, a hint and ``Error: ...`` on three lines;
    every error of this command is one ``error:`` line instead.
    """

    def __init__(self, original: click.UsageError) -> None:
        super().__init__(original.format_message(), ctx=original.ctx)

    def show(self, file: Any = None) -> None:
        """Print ``error: MESSAGE (see COMMAND --help)`` on stderr."""
        message = one_line(self.message)
        if len(message) > 1 and message[0].isupper() and message[1].islower():
            message = message[0].lower() + message[1:]
        # One sentence: "missing argument 'NAME' (see ...)", not "... 'NAME'. (see ...)".
        message = message.removesuffix(".")
        where = self.ctx.command_path if self.ctx is not None else "webex-tokens"
        click.echo(f"error: {message} (see {where} --help)", err=True)


def one_line_usage(exc: click.UsageError) -> click.UsageError:
    """``exc`` as a :class:`UsageFailed`, unless it is the help shown for no arguments."""
    no_args_is_help = getattr(click.exceptions, "NoArgsIsHelpError", ())
    if isinstance(exc, (UsageFailed, no_args_is_help)):
        return exc
    return UsageFailed(exc)


def describe(exc: BaseException) -> str:
    """The message of a library or operating-system error, as one ``error:`` line says it."""
    if isinstance(exc, OSError) and not isinstance(exc, WebexTokensError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}:{where}" if where else str(exc.strerror or exc)
    return str(exc)


def missing(store: TokenStore, name: str) -> NoReturn:
    """Fail because ``store`` holds no token called ``name``."""
    raise CommandFailed(
        f"no token named {safe(name)!r} in {engine.redact_url(store.url)}; "
        "see the stored names with: webex-tokens list"
    )
