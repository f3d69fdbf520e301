"""The commands for Fernet keys: keygen (a new key) and rotate-key (re-encrypt a store)."""

from __future__ import annotations

from pathlib import Path

import click

from . import engine
from .errors import CommandFailed
from .state import state
from .transfer import write_private

__all__ = ["keygen", "rotate_key"]


@click.command()
@click.option(
    "--file",
    "key_file",
    type=click.Path(dir_okay=False),
    help="Write the key to this new 0600 file (for ?key_file=) instead of stdout.",
)
def keygen(key_file: str | None) -> None:
    """Print a new Fernet key for an encrypted (fernet+) store."""
    from ..backends.fernet import generate_key

    key = generate_key()
    if key_file is None:
        click.echo(key)
        click.echo(
            "hint: keep the key secret; use it with: export WEBEX_TOKENS_KEY=<the key above> "
            "(to rotate: WEBEX_TOKENS_KEY=NEW,OLD then webex-tokens rotate-key)",
            err=True,
        )
        return
    write_private(
        Path(key_file),
        (key + "\n").encode("ascii"),
        force=False,
        exists_hint="choose a new file name (a key file is never overwritten)",
    )
    click.echo(f"wrote a new key to {key_file}; use it with ?key_file={key_file}", err=True)


@click.command(name="rotate-key")
@click.pass_context
def rotate_key(ctx: click.Context) -> None:
    """Re-encrypt every token of a fernet+ store under the first of its keys.

    Put the new key first and the old one after it (WEBEX_TOKENS_KEY=NEW,OLD), run this,
    then drop the old key.
    """
    from ..backends.fernet import FernetStore, rotate_keys

    with state(ctx).open_existing() as store:
        if not isinstance(store, FernetStore):
            raise CommandFailed(
                f"{engine.redact_url(store.url)} is not encrypted, so it has no key to rotate; "
                "choose a fernet+ store with --store"
            )
        count = rotate_keys(store)
        where = engine.redact_url(store.url)
        click.echo(
            f"re-encrypted {count} token(s) in {where} under the first key of "
            f"{store.key_source}; any key listed after it there is no longer needed: "
            "keep the first key only"
        )
