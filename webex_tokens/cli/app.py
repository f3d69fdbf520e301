"""The ``webex-tokens`` group: its global options, its error handling and its commands.

Every command works on one store: ``--store NAME|URL``, else ``WEBEX_TOKENS_STORE``, else
the settings' ``default_store``, else the embedded default (SQLite in the user data
directory). On a terminal, tables and progress bars are drawn with rich; otherwise the
output is plain lines that scripts can read.

Exit codes: 0 success; 1 an error (one line on stderr: ``error: ...``) or a partial
failure; 2 a usage error; 130 interrupted. No traceback is shown unless ``--debug``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from .. import __version__
from ..errors import WebexTokensError
from . import accounts, demo, doctor, keys, tokens, transfer
from .errors import describe
from .output import configure_logging, one_line
from .state import debugging, state

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns library errors into one ``error:`` line and exit 1 (a traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (``webex-tokens list | head``): stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except (WebexTokensError, OSError) as exc:
            if debugging(ctx):
                raise
            click.echo(f"error: {one_line(describe(exc))}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            if debugging(ctx):
                raise
            click.echo("error: interrupted", err=True)
            ctx.exit(130)


def _chose(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Record a global option in the :class:`State`, wherever on the line it was given.

    The group's options run first; the same options after the command run while the
    command's own arguments are parsed, so the one given after the command wins.
    """
    if value is None or value is False:
        return
    chosen = state(ctx)
    if param.name == "config":
        chosen.use_config(str(value))
    elif param.name == "store":
        chosen.store = str(value)
    elif param.name == "debug":
        chosen.debug = True
        configure_logging(True)


def _global_options() -> list[click.Parameter]:
    """``--config``, ``--store`` and ``--debug``: new instances for the group or a command."""
    return [
        click.Option(
            ["--config"],
            type=click.Path(dir_okay=False),
            expose_value=False,
            callback=_chose,
            help="Settings file (default: WEBEX_TOKENS_CONFIG, ./webex-tokens.toml, "
            "user config dir).",
        ),
        click.Option(
            ["--store"],
            metavar="NAME|URL",
            expose_value=False,
            callback=_chose,
            help="Store to work on: a configured store name or a store URL "
            "(default: the default store).",
        ),
        click.Option(
            ["--debug"],
            is_flag=True,
            expose_value=False,
            callback=_chose,
            help="Log debug messages and show tracebacks on errors.",
        ),
    ]


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    params=_global_options(),
)
@click.version_option(__version__, prog_name="webex-tokens")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Get, keep and refresh Webex OAuth2 tokens in the store of your choice."""
    configure_logging(state(ctx).debug)


for _command in (
    tokens.login,
    tokens.token,
    tokens.refresh,
    accounts.list_,
    accounts.show,
    accounts.delete,
    transfer.migrate,
    transfer.import_,
    transfer.export,
    keys.keygen,
    keys.rotate_key,
    doctor.stores,
    doctor.doctor,
    demo.demo,
):
    # The global options are accepted after the command too: webex-tokens list --store dev.
    _command.params.extend(_global_options())
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``webex-tokens`` command (the console-script entry point); exits the process."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="webex-tokens")
