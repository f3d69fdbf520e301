"""The ``webex-tokens`` group: its global options, its error handling and its commands.

Every command works on one store: ``--store NAME|URL``, else ``WEBEX_TOKENS_STORE``, else
the settings' ``default_store``, else the embedded default (SQLite in the user data
directory). On a terminal, tables and progress bars are drawn with rich; otherwise the
output is plain lines that scripts can read.

Exit codes: 0 success; 1 an error (one line on stderr: ``error: ...``) or a partial
failure; 2 a usage error; 130 interrupted. No traceback is shown unless ``--debug``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Final

import click

from .. import __version__
from ..errors import WebexTokensError
from .completion import store_names
from .errors import describe, one_line_usage
from .output import configure_logging, one_line
from .state import debugging, state

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns every error into one ``error:`` line: exit 1, or 2 for a usage error.

    Library and operating-system errors show a traceback with --debug.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None
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
            shell_complete=store_names,
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


#: Each command, and the module and function that define it. A command's module is
#: imported only when the command runs (or help lists it), so ``webex-tokens token``
#: loads neither the transfer, doctor nor demo code.
_COMMANDS: Final = {
    "login": "tokens:login",
    "add": "kinds:add",
    "service-app": "kinds:service_app",
    "token": "tokens:token",
    "refresh": "tokens:refresh",
    "list": "accounts:list_",
    "show": "accounts:show",
    "delete": "accounts:delete",
    "migrate": "transfer:migrate",
    "import": "transfer:import_",
    "export": "transfer:export",
    "keygen": "keys:keygen",
    "rotate-key": "keys:rotate_key",
    "stores": "doctor:stores",
    "doctor": "doctor:doctor",
    "demo": "demo:demo",
    "emulator": "emulator:emulator",
    "completion": "completion:completion",
    "metrics": "metrics:metrics",
}


class _Commands(MutableMapping[str, click.Command]):
    """The group's commands by name, each imported on first use."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self._table = dict(table)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        command = self._loaded.get(name)
        if command is None:
            module, _, attribute = self._table[name].partition(":")
            command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
            if not isinstance(command, click.Command):  # pragma: no cover - a wiring bug
                raise TypeError(f"{self._table[name]} is not a click command")
            # The global options are accepted after the command too: list --store dev.
            command.params.extend(_global_options())
            for sub in getattr(command, "commands", {}).values():
                sub.params.extend(_global_options())
            self._loaded[name] = command
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._table.pop(name, None)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._table.pop(name, None)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter({**self._table, **self._loaded})

    def __len__(self) -> int:
        return len(self._table.keys() | self._loaded.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._table or name in self._loaded


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    params=_global_options(),
    commands=_Commands(_COMMANDS),
)
@click.version_option(__version__, prog_name="webex-tokens")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Get, keep and refresh Webex OAuth2 tokens in the store of your choice."""
    configure_logging(state(ctx).debug)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``webex-tokens`` command (the console-script entry point); exits the process."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="webex-tokens")
