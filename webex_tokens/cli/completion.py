"""``webex-tokens completion bash|zsh|fish``, and what the shell completes.

Completion is click's: the printed script calls ``webex-tokens`` back with
``_WEBEX_TOKENS_COMPLETE`` set, and click answers with the commands and options that
fit. On top of that, account arguments (``show NAME``, ``token NAME``, ...) complete the
names stored in the store the command line chose (``--store``, else the default
store), and store options (``--store``, ``migrate --from/--to``) the stores named in the
settings file.

Completing never fails and never prints an error: a store that cannot be opened (or is
locked, or does not exist yet) completes nothing. Nothing is created while completing.
"""

from __future__ import annotations

import logging
from typing import Final

import click
from click.shell_completion import CompletionItem

__all__ = ["COMPLETE_VARIABLE", "SHELLS", "account_names", "completion", "store_names"]

log = logging.getLogger(__name__)

#: The environment variable click's completion scripts set when they call back.
COMPLETE_VARIABLE: Final = "_WEBEX_TOKENS_COMPLETE"
#: The shells a script can be printed for.
SHELLS: Final = ("bash", "zsh", "fish")
_MOST: Final = 500  # a store of thousands of accounts completes the first of them


def account_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The stored account names that start with ``incomplete`` (a ``shell_complete``)."""
    from . import engine
    from .state import state

    current = state(ctx)
    try:
        url = engine.resolve_store_url(current.settings(), current.target())
        database = engine.sqlite_path(url)
        if database is not None and not database.exists():
            return []  # opening it would create it
        with current.open_existing() as store:
            found: list[str] = []
            for entry in store.names():
                if entry.startswith(incomplete):
                    found.append(entry)
                    if len(found) >= _MOST:
                        break
            return found
    except Exception as exc:
        log.debug("no account names to complete (%s)", type(exc).__name__)
        return []


def store_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The configured store names that start with ``incomplete``, each with its
    description (a ``shell_complete``)."""
    from . import engine
    from .state import state

    try:
        stores = engine.configured_stores(state(ctx).settings())
    except Exception as exc:
        log.debug("no store names to complete (%s)", type(exc).__name__)
        return []
    return [
        CompletionItem(name, help=description)
        for name, _url, description in stores
        if name.startswith(incomplete)
    ]


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    It completes commands, options, the account names of the store in use and the
    store names of the settings file. Load it from your shell's startup file:

    \b
        bash:  eval "$(webex-tokens completion bash)"      (in ~/.bashrc)
        zsh:   eval "$(webex-tokens completion zsh)"       (in ~/.zshrc)
        fish:  webex-tokens completion fish | source       (in config.fish)
    """
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # the choices are click's own shells
    root = ctx.find_root().command
    click.echo(complete(root, {}, "webex-tokens", COMPLETE_VARIABLE).source())
