"""The commands that get and renew tokens: login, token and refresh."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from ..errors import ReauthorizationRequired, WebexTokensError
from ..store import TokenStore
from ..token import Token
from . import engine, history
from .completion import account_names
from .durations import duration_option, format_duration, until
from .errors import describe, missing
from .output import Reporter, emit_json, iso, json_option, one_line, safe, seconds
from .state import state

if TYPE_CHECKING:
    from ..keeper import Keeper

__all__ = ["login", "refresh", "token"]


# -- login / token / refresh -------------------------------------------------------------


@click.command()
@click.option(
    "--name",
    shell_complete=account_names,
    help="Save the token under this name (default: the account's email).",
)
@click.option("--no-browser", is_flag=True, help="Print the URL and read the redirect URL back.")
@click.option("--port", type=click.IntRange(1, 65535), help="Callback port (default: the URI's).")
@click.option(
    "--device",
    is_flag=True,
    help="Log in with a code entered on another device (no browser or callback here).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds to wait for the browser to come back (or the device code's approval).",
)
@click.pass_context
def login(
    ctx: click.Context,
    *,
    name: str | None,
    no_browser: bool,
    port: int | None,
    device: bool,
    timeout: float,
) -> None:
    """Log in to Webex in the browser and save the token.

    The integration comes from WEBEX_CLIENT_ID, WEBEX_CLIENT_SECRET, WEBEX_REDIRECT_URI,
    WEBEX_SCOPES and WEBEX_BASE_URL (environment, .env or the settings file). The code
    comes back to a loopback server on the redirect URI's port, or, with --no-browser,
    from the redirect URL pasted in. With --device (headless machines, SSH sessions,
    containers) the user code and its link are shown, with a QR code on a terminal, to
    approve on any other device; the integration must register Webex's device-callback
    redirect URIs (see the OAuth guide).
    """
    import webbrowser

    if device and (no_browser or port is not None):
        raise click.UsageError("--device takes neither --no-browser nor --port")
    current = state(ctx)
    if name is not None:
        engine.check_name(name)
    oauth = engine.oauth_from_settings(current.settings())
    with current.open_for_writing() as store:
        accounts = engine.keeper(store, current.settings(), oauth)
        if device:
            label, token = engine.device_login(accounts, timeout=timeout, account=name)
        else:
            label, token = engine.interactive_login(
                accounts,
                open_browser=None if no_browser else webbrowser.open,
                timeout=timeout,
                account=name,
                port=port,
            )
        who = safe(token.account or label)
        where = engine.redact_url(store.url)
        click.echo(f"Logged in as {who}; token saved to {where} as {safe(label)}")


@click.command()
@click.argument("name", shell_complete=account_names)
@click.pass_context
def token(ctx: click.Context, name: str) -> None:
    """Print a valid access token for NAME (refreshed first when due), for scripts.

    Nothing but the token and a newline is written on stdout:

    \b
        curl -H "Authorization: Bearer $(webex-tokens token alice)" ...
    """
    current = state(ctx)
    quick = engine.valid_token_quickly(current.settings(), current.target(), name)
    if quick is not None:
        click.echo(quick.access_token)
        return
    with current.open_existing() as store:
        accounts = engine.keeper(store, current.settings())
        before = accounts.stored(name)
        if before is None:
            missing(store, name)
        try:
            found = accounts.current(name)
        except ReauthorizationRequired as exc:
            _note(store, name, before, None, exc)
            raise
        if found.access_token != before.access_token:
            _note(store, name, before, found, None)
        click.echo(found.access_token)


def _note(
    store: TokenStore,
    name: str,
    before: Token | None,
    after: Token | None,
    error: BaseException | None,
) -> None:
    """Remember how the refresh of ``name`` ended (:mod:`~webex_tokens.cli.history`)."""
    result, seen = history.outcome_of(before, after, error)
    history.record(store.url, [(name, result, seen)])


def _refresh_one(accounts: Keeper, name: str, before: Token) -> Token:
    """Refresh ``name`` now and remember how it ended; raise what the refresh raised."""
    try:
        fresh = accounts.refresh(name)
    except (WebexTokensError, OSError) as exc:
        _note(accounts.store, name, before, None, exc)
        raise
    _note(accounts.store, name, before, fresh, None)
    return fresh


@click.command()
@click.argument("name", required=False, shell_complete=account_names)
@click.option("--all", "all_", is_flag=True, help="Refresh every account that is due.")
@click.option(
    "--due-within",
    metavar="DURATION",
    default="7d",
    show_default=True,
    callback=duration_option,
    help="With --all: refresh accounts whose access or refresh token expires within this.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="With --all: how many refreshes run at once.",
)
@json_option
@click.pass_context
def refresh(
    ctx: click.Context,
    *,
    name: str | None,
    all_: bool,
    due_within: float,
    concurrency: int,
    as_json: bool,
) -> None:
    """Refresh NAME now, or with --all every account due within --due-within.

    Each refresh is single-flight: another process refreshing the same account at the
    same time waits, then uses the new token instead of refreshing again.
    """
    if (name is None) == (not all_):
        raise click.UsageError("give either an account NAME or --all, not both or neither")
    current = state(ctx)
    oauth = engine.oauth_from_settings(current.settings())
    with current.open_existing() as store:
        accounts = engine.keeper(store, current.settings(), oauth)
        if name is None:
            outcome = _refresh_all(accounts, due_within, concurrency, quiet=as_json)
        else:
            before = accounts.stored(name)
            if before is None:
                missing(store, name)
            if not as_json:
                fresh = _refresh_one(accounts, name, before)
                click.echo(
                    f"refreshed {safe(name)}: access token {fresh.fingerprint} "
                    f"expires in {until(fresh.expires_in())}"
                )
                return
            outcome = _Outcome()
            try:
                outcome.refreshed.append((name, _refresh_one(accounts, name, before)))
            except (WebexTokensError, OSError) as exc:
                outcome.failed.append((name, describe(exc)))
        label, url = current.label(store), engine.redact_url(store.url)
    if as_json:
        emit_json("refresh", outcome.document(label, url, due_within if name is None else None))
    else:
        click.echo(
            f"{label}: {len(outcome.refreshed)} refreshed, {len(outcome.failed)} failed, "
            f"{len(outcome.not_due)} not due within {format_duration(due_within)}"
        )
    for failed_name, message in sorted(outcome.failed):
        click.echo(f"error: {safe(failed_name)}: {one_line(message)}", err=True)
    if outcome.failed:
        raise click.exceptions.Exit(1)


@dataclass
class _Outcome:
    """What a refresh did: the refreshed tokens, the failures, the accounts not due."""

    refreshed: list[tuple[str, Token]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)

    def document(self, store: str, url: str, window: float | None) -> dict[str, Any]:
        """The ``refresh --json`` document."""
        return {
            "store": store,
            "store_url": url,
            "due_within": seconds(window),
            "refreshed": [
                {
                    "name": name,
                    "fingerprint": token.fingerprint,
                    "expires_at": iso(token.expires_at),
                    "expires_in": seconds(token.expires_in()),
                    "refresh_expires_at": iso(token.refresh_token_expires_at),
                }
                for name, token in sorted(self.refreshed, key=lambda item: item[0])
            ],
            "failed": [
                {"name": name, "error": one_line(error)} for name, error in sorted(self.failed)
            ],
            "not_due": sorted(self.not_due),
        }


def _refresh_all(accounts: Keeper, window: float, concurrency: int, *, quiet: bool) -> _Outcome:
    """``refresh --all``: refresh the accounts due within ``window``, ``concurrency`` at
    a time (:meth:`Keeper.refresh_many <webex_tokens.keeper.Keeper.refresh_many>`)."""
    outcome = _Outcome()
    due: dict[str, Token] = {}
    for entry in engine.scan_store(accounts.store):
        if entry.token is None:
            outcome.failed.append((entry.name, entry.error or "unreadable"))
        elif engine.expires_within(entry.token, window):
            due[entry.name] = entry.token
        else:
            outcome.not_due.append(entry.name)
    notes: list[tuple[str, str, str | None]] = []
    with (
        Reporter(f"refreshing {len(due)} accounts", len(due), quiet=quiet) as reporter,
        _noting(accounts.store, notes),
    ):
        # Each refresh is single-flight through store.update; `seen` lets one that
        # another process has just done be adopted instead of repeated.
        for result in accounts.refresh_many(due, seen=due, concurrency=concurrency):
            notes.append(
                (result.name, *history.outcome_of(due[result.name], result.token, result.error))
            )
            if result.error is not None:
                outcome.failed.append((result.name, describe(result.error)))
                reporter.item(result.name, "failed")
            elif result.token is not None:
                outcome.refreshed.append((result.name, result.token))
                reporter.item(
                    result.name, "refreshed", f"expires in {until(result.token.expires_in())}"
                )
    return outcome


@contextmanager
def _noting(store: TokenStore, notes: list[tuple[str, str, str | None]]) -> Iterator[None]:
    """Remember the outcomes in ``notes`` at the end, even of a run cut short (Ctrl-C)."""
    try:
        yield
    finally:
        history.record(store.url, notes)
