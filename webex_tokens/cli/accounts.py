"""The commands that look at stored accounts: list, show and delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import click

from ..errors import StoreNotFound, WebexTokensError
from ..token import Token, fingerprint
from . import engine, history
from .completion import account_names
from .durations import until
from .errors import describe, missing
from .output import (
    emit_json,
    iso,
    json_option,
    one_line,
    print_table,
    safe,
    seconds,
    terminal,
)
from .state import state

__all__ = ["LIST_HEADERS", "NEEDS_LOGIN", "account_document", "delete", "list_", "list_row", "show"]

LIST_HEADERS: Final = ("account", "store", "expires in", "refresh expires in", "scopes", "status")
#: The statuses of an account that only a new login revives.
NEEDS_LOGIN: Final = ("refresh expired", "refused")


@dataclass(frozen=True)
class _Listed:
    """One row of ``list``: an account and the store it is in."""

    store: str
    url: str
    entry: engine.Entry
    refused: bool = False


@click.command(name="list")
@click.option("--all-stores", is_flag=True, help="List the accounts of every configured store.")
@json_option
@click.pass_context
def list_(ctx: click.Context, all_stores: bool, as_json: bool) -> None:  # noqa: PLR0915
    """List the stored accounts and when their tokens expire.

    Exits 1 when a record (or a store, with --all-stores) cannot be read; the other
    accounts are still listed.
    """
    current = state(ctx)
    targets: list[str | None] = [None]
    if all_stores:
        targets = [name for name, _, _ in engine.configured_stores(current.settings())] or [None]
    listed: list[_Listed] = []
    store_errors: list[dict[str, Any]] = []
    not_created: list[str] = []
    for target in targets:
        try:
            store = current.open_existing(target)
        except WebexTokensError as exc:
            if isinstance(exc, StoreNotFound):  # holds no tokens; looking created nothing
                not_created.append(describe(exc))
                continue
            if not all_stores:
                raise
            shown = target if target is not None else "the default store"
            store_errors.append({"store": shown, "url": None, "message": describe(exc)})
            continue
        with store:
            label, url = current.label(store, target), engine.redact_url(store.url)
            try:
                entries = sorted(engine.scan_store(store), key=lambda e: e.name)
            except WebexTokensError as exc:
                if not all_stores:
                    raise
                store_errors.append({"store": label, "url": url, "message": describe(exc)})
                continue
            notes = history.read_history(store.url)
            listed.extend(_Listed(label, url, entry, _refused(notes, entry)) for entry in entries)
    for failed in store_errors:
        click.echo(f"error: {failed['store']}: {one_line(failed['message'])}", err=True)
    unreadable = [item for item in listed if item.entry.error is not None]
    _report_unreadable(listed, unreadable, every=current.debug)
    leeway = engine.leeway()
    if as_json:
        accounts = [
            account_document(item.entry, item.store, item.url, leeway, refused=item.refused)
            for item in listed
        ]
        emit_json("list", {"accounts": accounts, "errors": store_errors})
    elif listed:
        headers, rows = _table(
            [item.entry for item in listed],
            [item.store for item in listed],
            [item.refused for item in listed],
        )
        stores = {(item.store, item.url) for item in listed}
        title = None
        if len(stores) == 1:
            label, url = stores.pop()
            title = f"store: {label}" + (f" ({url})" if url != label else "")
        print_table(headers, rows, common=headers.index("store"), title=title)
        if terminal():
            _hint_logins(
                [
                    item.entry.name
                    for item, row in zip(listed, rows, strict=True)
                    if row[-1] in NEEDS_LOGIN
                ]
            )
    elif not store_errors:
        _say_empty(not_created)
    if store_errors or unreadable:
        raise click.exceptions.Exit(1)


def _refused(notes: dict[str, history.LastRefresh], entry: engine.Entry) -> bool:
    """True when the refresh history says Webex refused this entry's refresh token."""
    note = notes.get(entry.name)
    return note is not None and entry.token is not None and note.refuses(entry.token)


def _say_empty(not_created: list[str]) -> None:
    """No account anywhere: say so, and that the store does not exist yet if it does not."""
    if not_created:
        click.echo(f"no tokens stored: {one_line(not_created[0])}", err=True)
    else:
        click.echo("no tokens stored; add one with: webex-tokens login", err=True)


def _hint_logins(names: list[str], shown: int = 5) -> None:
    """Under a table on a terminal: the command that revives each account (a few)."""
    for name in names[:shown]:
        click.echo(f"log in again: {safe(engine.login_command(name))}")
    if len(names) > shown:
        click.echo(f"... and {len(names) - shown} more (list --json has each command)")


def _report_unreadable(listed: list[_Listed], unreadable: list[_Listed], *, every: bool) -> None:
    """One ``error:`` line per store for its unreadable records (one per record: ``every``).

    A wrong key makes every record unreadable with the same long message; one line with
    the count and the first record's message (which says how to fix it) tells it all.
    """
    if every:
        for item in unreadable:
            click.echo(f"error: {one_line(item.entry.error)}", err=True)
        return
    for store in dict.fromkeys(item.store for item in unreadable):
        bad = [item.entry for item in unreadable if item.store == store]
        if len(bad) == 1:
            click.echo(f"error: {one_line(bad[0].error)}", err=True)
            continue
        total = sum(1 for item in listed if item.store == store)
        click.echo(
            f"error: {len(bad)} of {total} records in {store} cannot be read "
            f"(--debug or --json shows each); the first, {bad[0].name!r}: "
            f"{one_line(bad[0].error)}",
            err=True,
        )


def _table(
    entries: list[engine.Entry], stores: list[str], refused: list[bool]
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The headers and rows of ``list``: :data:`LIST_HEADERS`, and the kind of each
    token that is not an integration's (with the organization of a Service App's).

    Plain output gets a ``kind`` column after the account (and an ``organization``
    column when a Service App token is listed); a terminal shows the kind under the
    account's name instead (``[bot]``, ``[service_app]`` and ``[org 1eb65fdf]``), so the
    table still fits 80 columns. A store of integrations alone reads as before.
    """
    leeway = engine.leeway()
    rows = [
        list_row(entry, store, leeway, refused=no)
        for entry, store, no in zip(entries, stores, refused, strict=True)
    ]
    tokens = [entry.token for entry in entries]
    if not any(token is not None and token.kind != "integration" for token in tokens):
        return LIST_HEADERS, rows
    kinds = [token.kind if token else "?" for token in tokens]
    orgs = [
        safe(engine.organization_label(token.org_id)) if token and token.org_id else ""
        for token in tokens
    ]
    if terminal():
        marked = []
        for row, kind, org in zip(rows, kinds, orgs, strict=True):
            notes = [f"[{kind}]"] if kind != "integration" else []
            notes += [f"[org {org[:_SHOWN_ORG]}]"] if org else []
            marked.append(("\n".join([row[0], *notes]), *row[1:]))
        return LIST_HEADERS, marked
    extra = [("kind", kinds)]
    if any(orgs):
        extra.append(("organization", [org or "-" for org in orgs]))
    headers = (LIST_HEADERS[0], *(name for name, _ in extra), *LIST_HEADERS[1:])
    table = [
        (row[0], *(column[index] for _, column in extra), *row[1:])
        for index, row in enumerate(rows)
    ]
    return headers, table


#: How much of an organization's ID a terminal shows under a Service App token's name.
_SHOWN_ORG: Final = 8


def list_row(
    entry: engine.Entry, label: str, leeway: float, *, refused: bool = False
) -> tuple[str, ...]:
    """The row of ``list`` for one account (see :data:`LIST_HEADERS`); ``refused``: Webex
    refused its refresh token (:mod:`~webex_tokens.cli.history`)."""
    found = entry.token
    if found is None:
        return (safe(entry.name), label, "?", "?", "?", "unreadable")
    refresh_left = (
        until(found.refresh_expires_in()) if found.refresh_token is not None else "no refresh"
    )
    return (
        safe(entry.name),
        label,
        until(found.expires_in()),
        refresh_left,
        safe(" ".join(found.scopes)) or "-",
        engine.status(found, leeway, refused=refused),
    )


def account_document(
    entry: engine.Entry,
    store: str,
    url: str,
    leeway: float,
    *,
    reveal: bool = False,
    refused: bool = False,
) -> dict[str, Any]:
    """One account as ``list --json`` and ``show --json`` print it (secrets: ``reveal``;
    ``refused``: Webex refused its refresh token).

    The fields are those of the ``account`` object in :mod:`webex_tokens.cli.schemas`.
    """
    found = entry.token
    status = "unreadable" if found is None else engine.status(found, leeway, refused=refused)
    document: dict[str, Any] = {
        "name": entry.name,
        "store": store,
        "store_url": url,
        "status": status,
        "action": engine.login_command(entry.name) if status in NEEDS_LOGIN else None,
        "error": entry.error,
    }
    if found is None:
        return {**document, **dict.fromkeys(_TOKEN_FIELDS)}
    document.update(
        {
            "account": found.account,
            "kind": found.kind,
            "expires_at": iso(found.expires_at),
            "expires_in": seconds(found.expires_in()),
            "refresh_expires_at": iso(found.refresh_token_expires_at),
            "refresh_expires_in": seconds(found.refresh_expires_in()),
            "has_refresh_token": found.refresh_token is not None,
            "scopes": list(found.scopes),
            "token_type": found.token_type,
            "client_id": found.client_id,
            "org_id": found.org_id,
            "saved_at": iso(found.saved_at),
            "fingerprint": found.fingerprint,
            "refresh_fingerprint": _fingerprint(found.refresh_token),
        }
    )
    if reveal:
        document.update(
            {
                "access_token": found.access_token,
                "refresh_token": found.refresh_token,
                "id_token": found.id_token,
            }
        )
    return document


_TOKEN_FIELDS: Final = (
    "account",
    "kind",
    "expires_at",
    "expires_in",
    "refresh_expires_at",
    "refresh_expires_in",
    "has_refresh_token",
    "scopes",
    "token_type",
    "client_id",
    "org_id",
    "saved_at",
    "fingerprint",
    "refresh_fingerprint",
)


def _fingerprint(secret: str | None) -> str | None:
    return None if secret is None else fingerprint(secret)


@click.command()
@click.argument("name", shell_complete=account_names)
@click.option("--reveal", is_flag=True, help="Show the access and refresh tokens themselves.")
@json_option
@click.pass_context
def show(ctx: click.Context, name: str, reveal: bool, as_json: bool) -> None:
    """Show one stored token; the secrets are masked (a fingerprint) unless --reveal."""
    current = state(ctx)
    with current.open_existing() as store:
        found = store.get(name)
        if found is None:
            missing(store, name)
        label, url = current.label(store), engine.redact_url(store.url)
        entry = engine.Entry(name, found)
        refused = _refused(history.read_history(store.url), entry)
    if as_json:
        document = account_document(
            entry, label, url, engine.leeway(), reveal=reveal, refused=refused
        )
        emit_json("show", {"account": document})
        return
    _show_text(name, found, label, reveal, refused)


def _show_text(name: str, found: Token, label: str, reveal: bool, refused: bool) -> None:
    def secret(value: str | None) -> str:
        if value is None:
            return "none"
        return value if reveal else f"{fingerprint(value)} (masked; --reveal shows it)"

    def when(value: Any, seconds: float | None) -> str:
        if value is None:
            return "unknown"
        left = until(seconds)
        if seconds is not None and seconds > 0:
            left = "in " + left
        return f"{value.replace(microsecond=0).isoformat()} ({left})"

    fields = [
        ("name", safe(name)),
        ("account", safe(found.account or "unknown")),
        ("store", label),
        ("status", engine.status(found, engine.leeway(), refused=refused)),
        ("kind", found.kind),
        *(
            [("organization", safe(engine.organization_label(found.org_id)))]
            if found.org_id
            else []
        ),
        ("access token", secret(found.access_token)),
        ("expires at", when(found.expires_at, found.expires_in())),
        ("refresh token", secret(found.refresh_token)),
        (
            "refresh expires at",
            when(found.refresh_token_expires_at, found.refresh_expires_in()),
        ),
        ("token type", found.token_type),
        ("scopes", safe(" ".join(found.scopes)) or "none"),
        ("client id", safe(found.client_id or "unknown")),
        ("saved at", found.saved_at.replace(microsecond=0).isoformat()),
    ]
    width = max(len(key) for key, _ in fields) + 1
    for key, value in fields:
        click.echo(f"{key + ':':<{width}} {value}")


@click.command()
@click.argument("name", shell_complete=account_names)
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete the token stored under NAME."""
    current = state(ctx)
    with current.open_existing() as store:
        if not store.delete(name):
            missing(store, name)
        click.echo(f"deleted {safe(name)} from {engine.redact_url(store.url)}")
