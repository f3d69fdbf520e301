"""The commands that move tokens: migrate (store to store), import and export (files)."""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..store import TokenStore
from ..token import Token
from . import engine
from .completion import store_names
from .errors import CommandFailed
from .output import Reporter, emit_json, json_option, one_line, safe
from .state import state

if TYPE_CHECKING:
    from ..migration import MigrationReport

__all__ = [
    "export",
    "import_",
    "migrate",
    "run_migration",
    "write_private",
]


_CONFLICT = click.Choice(["skip", "overwrite", "newer"])


@click.command()
@click.option(
    "--from",
    "source",
    metavar="NAME|URL",
    shell_complete=store_names,
    help="Store to copy from (default: --store / default).",
)
@click.option(
    "--to",
    "target",
    metavar="NAME|URL",
    required=True,
    shell_complete=store_names,
    help="Store to copy into.",
)
@click.option(
    "--names", metavar="GLOB", help="Only the accounts whose names match, e.g. '*@acme.com'."
)
@click.option(
    "--on-conflict",
    type=_CONFLICT,
    default="skip",
    show_default=True,
    help="When the target already holds a name: keep it, replace it, or keep the newer.",
)
@click.option("--move", is_flag=True, help="Delete each token from the source once verified.")
@click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
@json_option
@click.pass_context
def migrate(
    ctx: click.Context,
    *,
    source: str | None,
    target: str,
    names: str | None,
    on_conflict: str,
    move: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Copy (or --move) tokens from one store to another, safely and re-runnably."""
    current = state(ctx)
    with current.open_existing(source) as from_store, current.open_for_writing(target) as to_store:
        total = sum(
            1 for name in from_store.names() if names is None or fnmatch.fnmatchcase(name, names)
        )
        source_label, target_label = (
            current.label(from_store, source),
            current.label(to_store, target),
        )
        run_migration(
            from_store,
            to_store,
            names=names,
            on_conflict=on_conflict,
            move=move,
            dry_run=dry_run,
            total=total,
            heading=f"{source_label} -> {target_label}",
            json_fields=_endpoints(source_label, from_store, target_label, to_store)
            if as_json
            else None,
        )


def _endpoints(
    source: str, from_store: TokenStore | None, target: str, to_store: TokenStore
) -> dict[str, Any]:
    """Where a migration or an import went, for its ``--json`` document."""
    return {
        "source": source,
        "source_url": None if from_store is None else engine.redact_url(from_store.url),
        "target": target,
        "target_url": engine.redact_url(to_store.url),
    }


def run_migration(
    source: TokenStore,
    target: TokenStore,
    *,
    names: str | Sequence[str] | None,
    on_conflict: str,
    move: bool,
    dry_run: bool,
    total: int | None,
    heading: str,
    verb: str = "migrate",
    json_fields: dict[str, Any] | None = None,
) -> None:
    """Run :func:`webex_tokens.migration.migrate` with progress, a summary and failures.

    With ``json_fields`` (``--json``), the summary is the command's JSON document: those
    fields, then the counts and outcomes; no progress is shown.
    """
    quiet = json_fields is not None
    with Reporter(f"{verb} {heading}", total, quiet=quiet) as reporter:
        report = engine.migrate_tokens(
            source,
            target,
            names,
            on_conflict=on_conflict,
            move=move,
            dry_run=dry_run,
            progress=reporter.item,
        )
    if json_fields is None:
        click.echo(f"{verb} {heading}: {report}")
    else:
        emit_json(verb, {**json_fields, **_report_document(report, on_conflict, move)})
    if report.skipped > report.unchanged and on_conflict == "skip":
        click.echo(
            "note: skipped names already exist in the target with another token; "
            "pass --on-conflict overwrite or newer to replace them",
            err=True,
        )
    for name, _outcome, detail in report.failures():
        click.echo(f"error: {safe(name)}: {one_line(detail or 'failed')}", err=True)
    if report.omitted:
        click.echo(f"note: {report.omitted} more outcome(s) were counted but not listed", err=True)
    if not report.ok:
        raise click.exceptions.Exit(1)


def _report_document(report: MigrationReport, on_conflict: str, move: bool) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "same_store": report.same_store,
        "move": move,
        "on_conflict": on_conflict,
        "ok": report.ok,
        "counts": {
            "copied": report.copied,
            "skipped": report.skipped,
            "unchanged": report.unchanged,
            "overwritten": report.overwritten,
            "deleted": report.deleted,
            "failed": report.failed,
        },
        "outcomes": [
            {
                "name": name,
                "outcome": outcome,
                "detail": None if detail is None else one_line(detail),
            }
            for name, outcome, detail in report.outcomes
        ],
        "omitted": report.omitted,
    }


@click.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--name", help="Name for a single legacy token (default: its account or 'default').")
@click.option(
    "--on-conflict",
    type=_CONFLICT,
    default="skip",
    show_default=True,
    help="When the store already holds a name: keep it, replace it, or keep the newer.",
)
@json_option
@click.pass_context
def import_(
    ctx: click.Context, file: str, name: str | None, on_conflict: str, as_json: bool
) -> None:
    """Import a legacy .webex_token.json, or a bundle written by export (FILE '-': stdin).

    Also reads a file:// store's tokens.json with plain (unencrypted) records.
    """
    from ..backends.memory import MemoryStore
    from ..bundle import loads_bundle, read_bundle

    if file == "-":
        bundle = loads_bundle(sys.stdin.buffer.read(), source="stdin")
    else:
        bundle = read_bundle(file)
    tokens = bundle.tokens
    where = "stdin" if file == "-" else file
    if name is not None:
        if bundle.form != "token":
            raise click.UsageError(
                f"--name is for a file with one token; {where} holds a {bundle.form}"
            )
        tokens = {name: next(iter(tokens.values()))}
    current = state(ctx)
    staging = MemoryStore()
    for key, value in tokens.items():
        staging.put(key, value)
    with current.open_for_writing() as store:
        run_migration(
            staging,
            store,
            names=None,
            on_conflict=on_conflict,
            move=False,
            dry_run=False,
            total=len(tokens),
            heading=f"{where} -> {current.label(store)}",
            verb="import",
            json_fields={
                **_endpoints(where, None, current.label(store), store),
                "form": bundle.form,
            }
            if as_json
            else None,
        )


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--names", metavar="GLOB", help="Only the accounts whose names match.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.option("--stdout", "to_stdout", is_flag=True, help="Allow FILE '-' (write to stdout).")
@click.pass_context
def export(ctx: click.Context, file: str, names: str | None, force: bool, to_stdout: bool) -> None:
    """Write tokens to a JSON bundle FILE (created 0600) that import reads back.

    The bundle holds the secrets in plain text: keep it private and delete it after use.
    """
    if file == "-" and not to_stdout:
        raise click.UsageError(
            "writing the tokens to stdout needs --stdout (the bundle holds secrets in plain text)"
        )
    from ..bundle import dumps_bundle

    current = state(ctx)
    with current.open_existing() as store:
        tokens: dict[str, Token] = {}
        for entry in engine.matching(engine.scan_store(store), names):
            if entry.token is None:
                raise CommandFailed(f"{entry.error}; nothing was exported")
            tokens[entry.name] = entry.token
        if not tokens:
            what = f"match {names!r}" if names else "are stored"
            raise CommandFailed(
                f"no tokens {what} in {engine.redact_url(store.url)}; nothing was exported"
            )
    data = dumps_bundle(tokens)
    count = f"{len(tokens)} access and refresh token(s) in plain text"
    if file == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        warning = (
            f"the bundle written to stdout holds {count}; pipe it straight into "
            "webex-tokens import - and keep no copy of it"
        )
    else:
        write_private(Path(file), data, force=force)
        warning = f"{file} holds {count}; keep it private and delete it once imported"
    click.echo(f"warning: {warning}", err=True)


def write_private(
    path: Path, data: bytes, *, force: bool, exists_hint: str = "pass --force to replace it"
) -> None:
    """Write ``data`` to a new 0600 file (or replace it atomically with ``force``)."""
    from ..bundle import write_secret_file

    try:
        write_secret_file(path, data, replace=force)
    except FileExistsError:
        raise CommandFailed(f"{path} already exists; {exists_hint}") from None
