"""The commands that work on accounts: login, token, refresh, list, show and delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import click

from ..errors import WebexTokensError
from ..store import TokenStore, redact_url
from ..token import Token, fingerprint
from . import engine
from .durations import duration_option, format_duration, until
from .errors import describe, missing
from .output import Reporter, one_line, print_table, safe
from .state import state

if TYPE_CHECKING:
    from ..oauth import WebexOAuth

__all__ = ["LIST_HEADERS", "delete", "list_", "list_row", "login", "refresh", "show", "token"]


# -- login / token / refresh -------------------------------------------------------------


@click.command()
@click.option("--name", help="Save the token under this name (default: the account's email).")
@click.option("--no-browser", is_flag=True, help="Print the URL and read the redirect URL back.")
@click.option("--port", type=click.IntRange(1, 65535), help="Callback port (default: the URI's).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds to wait for the browser to come back.",
)
@click.pass_context
def login(
    ctx: click.Context, name: str | None, no_browser: bool, port: int | None, timeout: float
) -> None:
    """Log in to Webex in the browser and save the token.

    The integration comes from WEBEX_CLIENT_ID, WEBEX_CLIENT_SECRET, WEBEX_REDIRECT_URI,
    WEBEX_SCOPES and WEBEX_BASE_URL (environment, .env or the settings file). The code
    comes back to a loopback server on the redirect URI's port, or, with --no-browser,
    from the redirect URL pasted in.
    """
    import webbrowser

    from ..store import validate_name

    current = state(ctx)
    if name is not None:
        validate_name(name)
    oauth = engine.oauth_from_settings(current.settings())
    with current.open() as store:
        token = oauth.login(
            open_browser=None if no_browser else webbrowser.open,
            timeout=timeout,
            account=name,
            port=port,
        )
        label = name or token.account or "default"
        store.put(label, token)
        who = safe(token.account or label)
        click.echo(f"Logged in as {who}; token saved to {redact_url(store.url)} as {safe(label)}")


@click.command()
@click.argument("name")
@click.pass_context
def token(ctx: click.Context, name: str) -> None:
    """Print a valid access token for NAME (refreshed first when due), for scripts.

    Nothing but the token and a newline is written on stdout:

    \b
        curl -H "Authorization: Bearer $(webex-tokens token alice)" ...
    """
    current = state(ctx)
    with current.open() as store:
        found = store.get(name)
        if found is None:
            missing(store, name)
        fresh = engine.refresh_if_due(
            store, name, found, lambda: engine.oauth_from_settings(current.settings())
        )
        click.echo(fresh.access_token)


@click.command()
@click.argument("name", required=False)
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
@click.pass_context
def refresh(
    ctx: click.Context, name: str | None, all_: bool, due_within: float, concurrency: int
) -> None:
    """Refresh NAME now, or with --all every account due within --due-within.

    Each refresh is single-flight: another process refreshing the same account at the
    same time waits, then uses the new token instead of refreshing again.
    """
    if (name is None) == (not all_):
        raise click.UsageError("give either an account NAME or --all, not both or neither")
    current = state(ctx)
    oauth = engine.oauth_from_settings(current.settings())
    with current.open() as store:
        if name is not None:
            if store.get(name) is None:
                missing(store, name)
            fresh = engine.refresh_now(store, name, oauth)
            click.echo(
                f"refreshed {safe(name)}: access token {fresh.fingerprint} "
                f"expires in {until(fresh.expires_in())}"
            )
            return
        _refresh_all(
            store,
            label=current.label(store),
            oauth=oauth,
            window=due_within,
            concurrency=concurrency,
        )


def _refresh_all(
    store: TokenStore, *, label: str, oauth: WebexOAuth, window: float, concurrency: int
) -> None:
    """``refresh --all``: refresh the due accounts in parallel, report, exit 1 on failures."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    due: list[tuple[str, Token]] = []
    failures: list[tuple[str, str]] = []
    not_due = 0
    for entry in engine.scan_store(store):
        if entry.token is None:
            failures.append((entry.name, entry.error or "unreadable"))
        elif engine.expires_within(entry.token, window):
            due.append((entry.name, entry.token))
        else:
            not_due += 1

    refreshed = 0
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh")
    try:
        with Reporter(f"refreshing {len(due)} accounts", len(due)) as reporter:
            # Each refresh is single-flight through store.update; `seen` lets one that
            # another process has just done be adopted instead of repeated.
            futures = {
                pool.submit(engine.refresh_now, store, name, oauth, seen=token): name
                for name, token in due
            }
            for future in as_completed(futures):
                name = futures[future]
                try:
                    fresh = future.result()
                except (WebexTokensError, OSError) as exc:
                    failures.append((name, describe(exc)))
                    reporter.item(name, "failed")
                    continue
                refreshed += 1
                reporter.item(name, "refreshed", f"expires in {until(fresh.expires_in())}")
    except BaseException:
        # Ctrl-C: drop the refreshes not started yet; the running ones finish and save.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    click.echo(
        f"{label}: {refreshed} refreshed, {len(failures)} failed, "
        f"{not_due} not due within {format_duration(window)}"
    )
    for failed_name, message in sorted(failures):
        click.echo(f"error: {safe(failed_name)}: {one_line(message)}", err=True)
    if failures:
        raise click.exceptions.Exit(1)


# -- list / show / delete ----------------------------------------------------------------

LIST_HEADERS: Final = ("account", "store", "expires in", "refresh expires in", "scopes", "status")


@click.command(name="list")
@click.option("--all-stores", is_flag=True, help="List the accounts of every configured store.")
@click.pass_context
def list_(ctx: click.Context, all_stores: bool) -> None:
    """List the stored accounts and when their tokens expire.

    Exits 1 when a record (or a store, with --all-stores) cannot be read; the other
    accounts are still listed.
    """
    current = state(ctx)
    targets: list[str | None] = [None]
    if all_stores:
        targets = list(current.settings().stores) or [None]
    rows: list[tuple[str, ...]] = []
    problems = 0
    leeway = engine.leeway()
    for target in targets:
        try:
            store = current.open(target)
        except WebexTokensError as exc:
            if not all_stores:
                raise
            problems += 1
            click.echo(f"error: {target}: {one_line(exc)}", err=True)
            continue
        with store:
            label = current.label(store, target)
            try:
                entries = sorted(engine.scan_store(store), key=lambda e: e.name)
            except WebexTokensError as exc:
                if not all_stores:
                    raise
                problems += 1
                click.echo(f"error: {label}: {one_line(exc)}", err=True)
                continue
            for entry in entries:
                rows.append(list_row(entry, label, leeway))
                if entry.error is not None:
                    problems += 1
                    click.echo(f"error: {one_line(entry.error)}", err=True)
    if rows:
        print_table(LIST_HEADERS, rows, common=1)
    elif not problems:
        click.echo("no tokens stored; add one with: webex-tokens login", err=True)
    if problems:
        raise click.exceptions.Exit(1)


def list_row(entry: engine.Entry, label: str, leeway: float) -> tuple[str, ...]:
    """The row of ``list`` for one account (see :data:`LIST_HEADERS`)."""
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
        engine.status(found, leeway),
    )


@click.command()
@click.argument("name")
@click.option("--reveal", is_flag=True, help="Show the access and refresh tokens themselves.")
@click.pass_context
def show(ctx: click.Context, name: str, reveal: bool) -> None:
    """Show one stored token; the secrets are masked (a fingerprint) unless --reveal."""
    current = state(ctx)
    with current.open() as store:
        found = store.get(name)
        if found is None:
            missing(store, name)
        label = current.label(store)

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
        ("status", engine.status(found, engine.leeway())),
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
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete the token stored under NAME."""
    current = state(ctx)
    with current.open() as store:
        if not store.delete(name):
            missing(store, name)
        click.echo(f"deleted {safe(name)} from {redact_url(store.url)}")
