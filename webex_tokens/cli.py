"""The ``webex-tokens`` command: log in, list, refresh, move and inspect tokens.

Every command works on one store: ``--store NAME|URL``, else ``WEBEX_TOKENS_STORE``, else
the settings' ``default_store``, else the embedded default (SQLite in the user data
directory). On a terminal, tables and progress bars are drawn with rich; otherwise the
output is plain lines that scripts can read.

Exit codes: 0 success; 1 an error (one line on stderr: ``error: ...``) or a partial
failure; 2 a usage error; 130 interrupted. No traceback is shown unless ``--debug``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NoReturn

import click

from . import __version__
from .errors import (
    DecryptionError,
    InvalidToken,
    StoreCorrupted,
    WebexTokensError,
)
from .registry import is_store_url, open_store
from .store import TokenStore, atomic_write, json_loads_strict, redact_url
from .token import Token, fingerprint

if TYPE_CHECKING:
    from .oauth import WebexOAuth
    from .settings import Settings

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "cli", "format_duration", "main", "parse_duration"]

#: The ``format`` field of an export bundle written by ``webex-tokens export``.
EXPORT_FORMAT: Final = "webex-tokens-export"
#: The bundle version this release writes and the newest it reads.
EXPORT_VERSION: Final = 1

#: A refresh token that expires within this window shows as ``due`` in ``list``.
REFRESH_DUE_WINDOW: Final = 7 * 86400.0

# -- errors and output -------------------------------------------------------------------


class CommandFailed(click.ClickException):
    """A command could not do what was asked: one ``error:`` line on stderr, exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        """Print the one-line message on stderr."""
        click.echo(f"error: {_one_line(self.message)}", err=True)


def _one_line(message: object) -> str:
    return " ".join(str(message).split()) or "unknown error"


def _safe(text: str) -> str:
    """``text`` with control characters escaped, so that no name can drive the terminal."""
    return "".join(
        repr(char)[1:-1] if unicodedata.category(char) in ("Cc", "Cs") else char for char in text
    )


def _terminal() -> bool:
    return sys.stdout.isatty()


def _console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False)


_STATUS_STYLES: Final = {
    "ok": "green",
    "due": "yellow",
    "expired": "yellow",
    "refresh expired": "bold red",
    "unreadable": "bold red",
}


def _print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, common: int | None = None
) -> None:
    """A rich table on a terminal; columns aligned with two spaces otherwise.

    ``common`` is the index of a column that may hold the same value on every row (the
    store); on a terminal such a column becomes the table's title instead.
    """
    if _terminal():
        from rich.table import Table
        from rich.text import Text

        title = None
        if common is not None and len({row[common] for row in rows}) == 1:
            title = f"{headers[common]}: {rows[0][common]}"
            headers = [h for i, h in enumerate(headers) if i != common]
            rows = [[c for i, c in enumerate(row) if i != common] for row in rows]
        table = Table(
            box=None, header_style="bold", pad_edge=False, title=title, title_justify="left"
        )
        for header in headers:
            # Names stay whole; only long URLs and descriptions may fold onto more lines.
            folding = header in ("store", "url", "description")
            table.add_column(
                header, no_wrap=not folding, overflow="fold" if folding else "ellipsis"
            )
        for row in rows:
            table.add_row(
                *(
                    Text(cell, style=_STATUS_STYLES.get(cell, "") if header == "status" else "")
                    for header, cell in zip(headers, row, strict=True)
                )
            )
        _console().print(table)
        return
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    for row in (headers, *rows):
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


class _Reporter:
    """Progress of many items: a progress bar on a terminal, one plain line each otherwise."""

    def __init__(self, description: str, total: int | None) -> None:
        self._description = description
        self._total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Reporter:
        if _terminal():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=_console(),
            )
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=self._total)
        return self

    def item(self, name: str, outcome: str, detail: str | None = None) -> None:
        """Record that ``name`` ended with ``outcome`` (``detail`` shown in plain mode)."""
        if self._progress is not None:
            self._progress.advance(self._task)
            return
        click.echo(f"{outcome} {_safe(name)}" + (f": {_one_line(detail)}" if detail else ""))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


class _EchoHandler(logging.Handler):
    """Log records as ``warning: ...`` lines on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # logging must never break a command
            self.handleError(record)


_log_handler = _EchoHandler()


def _configure_logging(debug: bool) -> None:
    """Show the library's warnings (everything with --debug) on stderr.

    The handler sits on the ``webex_tokens`` logger and does its own level filtering, so
    an application (or a test) that embeds the command keeps its own logging setup.
    """
    package = logging.getLogger("webex_tokens")
    package.removeHandler(_log_handler)
    if debug:
        _log_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package.setLevel(logging.DEBUG)
    else:
        _log_handler.setFormatter(_LowercaseLevelFormatter("%(levelname)s: %(message)s"))
    _log_handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    package.addHandler(_log_handler)


class _LowercaseLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record)).replace(
            record.levelname + ":", record.levelname.lower() + ":", 1
        )


# -- durations ---------------------------------------------------------------------------

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``12h``, ``7d``, ``1w`` or ``1d12h``.

    A bare number is seconds.

    Raises:
        ValueError: ``text`` is not such a duration.
    """
    compact = text.strip().lower().replace(" ", "")
    if compact.isdigit():
        return float(compact)
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w), "
            "e.g. 30m, 12h, 7d or 1w"
        )
    return float(sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", compact)))


def format_duration(seconds: float) -> str:
    """A short human form of a (non-negative) number of seconds: ``11h 59m``, ``3d 4h``."""
    total = int(abs(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def _until(seconds: float | None, *, unknown: str = "unknown") -> str:
    if seconds is None:
        return unknown
    if seconds <= 0:
        return f"expired {format_duration(seconds)} ago"
    return format_duration(seconds)


def _duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


# -- state shared by the commands --------------------------------------------------------


@dataclass
class _State:
    """What the group's options chose, shared by every command (``ctx.obj``)."""

    config: str | None = None
    store: str | None = None
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            from .settings import load_settings

            self._settings = load_settings(self.config)
        return self._settings

    def target(self, target: str | None = None) -> str | None:
        """The store a command works on: its own option, else ``--store``, else default."""
        return target if target is not None else self.store

    def open(self, target: str | None = None) -> TokenStore:
        return open_store(self.target(target), settings=self.settings())

    def label(self, store: TokenStore, target: str | None = None) -> str:
        """How to name ``store`` in output: its configured name, else its URL."""
        chosen = self.target(target)
        if chosen is None:
            chosen = self.settings().default_target
        if chosen and not is_store_url(chosen):
            return chosen
        return redact_url(store.url)


def _state(ctx: click.Context) -> _State:
    return ctx.ensure_object(_State)


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
            if _debug(ctx):
                raise
            click.echo(f"error: {_one_line(_describe(exc))}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("error: interrupted", err=True)
            ctx.exit(130)


def _debug(ctx: click.Context) -> bool:
    state = ctx.find_object(_State)
    return bool(state and state.debug)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, WebexTokensError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}:{where}" if where else str(exc.strerror or exc)
    return str(exc)


# -- reading a store tolerantly ---------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    token: Token | None
    error: str | None = None


_UNREADABLE = (StoreCorrupted, DecryptionError, InvalidToken)


def _entries(store: TokenStore) -> Iterator[_Entry]:
    """Every account in ``store``; an unreadable record is an entry with an ``error``.

    Streams through ``items()`` where the store has it, and falls back to reading name by
    name once a record turns out unreadable, so one bad record never hides the others.
    """
    seen: set[str] = set()
    items = getattr(store, "items", None)
    if callable(items):
        try:
            for name, token in items():
                seen.add(name)
                yield _Entry(name, token)
        except _UNREADABLE:
            pass
        else:
            return
    for name in store.names():
        if name in seen:
            continue
        try:
            token = store.get(name)
        except _UNREADABLE as exc:
            yield _Entry(name, None, str(exc))
            continue
        if token is not None:
            yield _Entry(name, token)


def _matching(entries: Iterator[_Entry], pattern: str | None) -> Iterator[_Entry]:
    for entry in entries:
        if pattern is None or fnmatch.fnmatchcase(entry.name, pattern):
            yield entry


def _leeway() -> float:
    from .refresh import DEFAULT_LEEWAY

    return DEFAULT_LEEWAY


def _status(token: Token, leeway: float) -> str:
    """ok / due / expired / refresh expired, as ``list`` and ``show`` print it."""
    left = token.expires_in()
    refresh_left = token.refresh_expires_in()
    refresh_dead = token.refresh_token is None or (refresh_left is not None and refresh_left <= 0)
    if left is not None and left <= 0:
        return "refresh expired" if refresh_dead else "expired"
    if refresh_dead and token.refresh_token is not None:
        return "refresh expired"
    if left is not None and left <= leeway:
        return "due"
    if refresh_left is not None and refresh_left <= REFRESH_DUE_WINDOW:
        return "due"
    return "ok"


def _missing(store: TokenStore, name: str) -> NoReturn:
    raise CommandFailed(
        f"no token named {_safe(name)!r} in {redact_url(store.url)}; "
        "see the stored names with: webex-tokens list"
    )


# -- the command group -------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="Settings file (default: WEBEX_TOKENS_CONFIG, ./webex-tokens.toml, user config dir).",
)
@click.option(
    "--store",
    metavar="NAME|URL",
    help="Store to work on: a configured store name or a store URL (default: the default store).",
)
@click.option("--debug", is_flag=True, help="Log debug messages and show tracebacks on errors.")
@click.version_option(__version__, prog_name="webex-tokens")
@click.pass_context
def cli(ctx: click.Context, config: str | None, store: str | None, debug: bool) -> None:
    """Get, keep and refresh Webex OAuth2 tokens in the store of your choice."""
    _configure_logging(debug)
    ctx.obj = _State(config=config, store=store, debug=debug)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``webex-tokens`` command (the console-script entry point); exits the process."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="webex-tokens")


# -- login / token / refresh -------------------------------------------------------------


@cli.command()
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

    from .oauth import WebexOAuth
    from .store import validate_name

    state = _state(ctx)
    if name is not None:
        validate_name(name)
    oauth = WebexOAuth.from_settings(state.settings())
    with state.open() as store:
        token = oauth.login(
            open_browser=None if no_browser else webbrowser.open,
            timeout=timeout,
            account=name,
            port=port,
        )
        label = name or token.account or "default"
        store.put(label, token)
        who = _safe(token.account or label)
        click.echo(f"Logged in as {who}; token saved to {redact_url(store.url)} as {_safe(label)}")


@cli.command()
@click.argument("name")
@click.pass_context
def token(ctx: click.Context, name: str) -> None:
    """Print a valid access token for NAME (refreshed first when due), for scripts.

    Nothing but the token and a newline is written on stdout:

    \b
        curl -H "Authorization: Bearer $(webex-tokens token alice)" ...
    """
    state = _state(ctx)
    with state.open() as store:
        current = store.get(name)
        if current is None:
            _missing(store, name)
        if current.is_expired(leeway=_leeway()):
            from .oauth import WebexOAuth
            from .refresh import ensure_fresh

            oauth = WebexOAuth.from_settings(state.settings())
            current = ensure_fresh(store, name, oauth, seen=current)
        click.echo(current.access_token)


@cli.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Refresh every account that is due.")
@click.option(
    "--due-within",
    metavar="DURATION",
    default="7d",
    show_default=True,
    callback=_duration_option,
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
    from .oauth import WebexOAuth
    from .refresh import ensure_fresh

    state = _state(ctx)
    oauth = WebexOAuth.from_settings(state.settings())
    with state.open() as store:
        if name is not None:
            if store.get(name) is None:
                _missing(store, name)
            fresh = ensure_fresh(store, name, oauth, force=True)
            click.echo(
                f"refreshed {_safe(name)}: access token {fresh.fingerprint} "
                f"expires in {_until(fresh.expires_in())}"
            )
            return
        _refresh_all(
            store, label=state.label(store), oauth=oauth, window=due_within, concurrency=concurrency
        )


def _refresh_all(
    store: TokenStore, *, label: str, oauth: WebexOAuth, window: float, concurrency: int
) -> None:
    """``refresh --all``: refresh the due accounts in parallel, report, exit 1 on failures."""
    from .refresh import ensure_fresh

    due: list[tuple[str, Token]] = []
    failures: list[tuple[str, str]] = []
    not_due = 0
    for entry in _entries(store):
        if entry.token is None:
            failures.append((entry.name, entry.error or "unreadable"))
        elif _expires_within(entry.token, window):
            due.append((entry.name, entry.token))
        else:
            not_due += 1

    refreshed = 0
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh")
    try:
        with _Reporter(f"refreshing {len(due)} accounts", len(due)) as reporter:
            # Each refresh is single-flight through store.update; `seen` lets one that
            # another process has just done be adopted instead of repeated.
            futures = {
                pool.submit(ensure_fresh, store, name, oauth, force=True, seen=token): name
                for name, token in due
            }
            for future in as_completed(futures):
                name = futures[future]
                try:
                    fresh = future.result()
                except (WebexTokensError, OSError) as exc:
                    failures.append((name, _describe(exc)))
                    reporter.item(name, "failed")
                    continue
                refreshed += 1
                reporter.item(name, "refreshed", f"expires in {_until(fresh.expires_in())}")
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
        click.echo(f"error: {_safe(failed_name)}: {_one_line(message)}", err=True)
    if failures:
        raise click.exceptions.Exit(1)


def _expires_within(token: Token, window: float) -> bool:
    left = token.expires_in()
    refresh_left = token.refresh_expires_in()
    return (left is not None and left <= window) or (
        refresh_left is not None and refresh_left <= window
    )


# -- list / show / delete ----------------------------------------------------------------

_LIST_HEADERS: Final = ("account", "store", "expires in", "refresh expires in", "scopes", "status")


@cli.command(name="list")
@click.option("--all-stores", is_flag=True, help="List the accounts of every configured store.")
@click.pass_context
def list_(ctx: click.Context, all_stores: bool) -> None:
    """List the stored accounts and when their tokens expire.

    Exits 1 when a record (or a store, with --all-stores) cannot be read; the other
    accounts are still listed.
    """
    state = _state(ctx)
    targets: list[str | None] = [None]
    if all_stores:
        targets = list(state.settings().stores) or [None]
    rows: list[tuple[str, ...]] = []
    problems = 0
    leeway = _leeway()
    for target in targets:
        try:
            store = state.open(target)
        except WebexTokensError as exc:
            if not all_stores:
                raise
            problems += 1
            click.echo(f"error: {target}: {_one_line(exc)}", err=True)
            continue
        with store:
            label = state.label(store, target)
            try:
                entries = sorted(_entries(store), key=lambda e: e.name)
            except WebexTokensError as exc:
                if not all_stores:
                    raise
                problems += 1
                click.echo(f"error: {label}: {_one_line(exc)}", err=True)
                continue
            for entry in entries:
                rows.append(_list_row(entry, label, leeway))
                if entry.error is not None:
                    problems += 1
                    click.echo(f"error: {_one_line(entry.error)}", err=True)
    if rows:
        _print_table(_LIST_HEADERS, rows, common=1)
    elif not problems:
        click.echo("no tokens stored; add one with: webex-tokens login", err=True)
    if problems:
        raise click.exceptions.Exit(1)


def _list_row(entry: _Entry, label: str, leeway: float) -> tuple[str, ...]:
    token = entry.token
    if token is None:
        return (_safe(entry.name), label, "?", "?", "?", "unreadable")
    refresh = (
        _until(token.refresh_expires_in()) if token.refresh_token is not None else "no refresh"
    )
    return (
        _safe(entry.name),
        label,
        _until(token.expires_in()),
        refresh,
        _safe(" ".join(token.scopes)) or "-",
        _status(token, leeway),
    )


@cli.command()
@click.argument("name")
@click.option("--reveal", is_flag=True, help="Show the access and refresh tokens themselves.")
@click.pass_context
def show(ctx: click.Context, name: str, reveal: bool) -> None:
    """Show one stored token; the secrets are masked (a fingerprint) unless --reveal."""
    state = _state(ctx)
    with state.open() as store:
        current = store.get(name)
        if current is None:
            _missing(store, name)
        label = state.label(store)

    def secret(value: str | None) -> str:
        if value is None:
            return "none"
        return value if reveal else f"{fingerprint(value)} (masked; --reveal shows it)"

    def when(value: Any, seconds: float | None) -> str:
        if value is None:
            return "unknown"
        left = _until(seconds)
        if seconds is not None and seconds > 0:
            left = "in " + left
        return f"{value.replace(microsecond=0).isoformat()} ({left})"

    fields = [
        ("name", _safe(name)),
        ("account", _safe(current.account or "unknown")),
        ("store", label),
        ("status", _status(current, _leeway())),
        ("access token", secret(current.access_token)),
        ("expires at", when(current.expires_at, current.expires_in())),
        ("refresh token", secret(current.refresh_token)),
        (
            "refresh expires at",
            when(current.refresh_token_expires_at, current.refresh_expires_in()),
        ),
        ("token type", current.token_type),
        ("scopes", _safe(" ".join(current.scopes)) or "none"),
        ("client id", _safe(current.client_id or "unknown")),
        ("saved at", current.saved_at.replace(microsecond=0).isoformat()),
    ]
    width = max(len(key) for key, _ in fields) + 1
    for key, value in fields:
        click.echo(f"{key + ':':<{width}} {value}")


@cli.command()
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete the token stored under NAME."""
    state = _state(ctx)
    with state.open() as store:
        if not store.delete(name):
            _missing(store, name)
        click.echo(f"deleted {_safe(name)} from {redact_url(store.url)}")


# -- migrate / import / export -----------------------------------------------------------

_CONFLICT = click.Choice(["skip", "overwrite", "newer"])


@cli.command()
@click.option(
    "--from", "source", metavar="NAME|URL", help="Store to copy from (default: --store / default)."
)
@click.option("--to", "target", metavar="NAME|URL", required=True, help="Store to copy into.")
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
) -> None:
    """Copy (or --move) tokens from one store to another, safely and re-runnably."""
    state = _state(ctx)
    with state.open(source) as from_store, state.open(target) as to_store:
        total = sum(
            1 for name in from_store.names() if names is None or fnmatch.fnmatchcase(name, names)
        )
        _run_migration(
            from_store,
            to_store,
            names=names,
            on_conflict=on_conflict,
            move=move,
            dry_run=dry_run,
            total=total,
            heading=f"{state.label(from_store, source)} -> {state.label(to_store, target)}",
        )


def _run_migration(
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
) -> None:
    """Run :func:`webex_tokens.migration.migrate` with progress, a summary and failures."""
    from .migration import migrate as run

    with _Reporter(f"{verb} {heading}", total) as reporter:
        report = run(
            source,
            target,
            names,
            on_conflict=on_conflict,
            move=move,
            dry_run=dry_run,
            progress=reporter.item,
        )
    click.echo(f"{verb} {heading}: {report}")
    if report.skipped > report.unchanged and on_conflict == "skip":
        click.echo(
            "note: skipped names already exist in the target with another token; "
            "pass --on-conflict overwrite or newer to replace them",
            err=True,
        )
    for name, _outcome, detail in report.failures():
        click.echo(f"error: {_safe(name)}: {_one_line(detail or 'failed')}", err=True)
    if report.omitted:
        click.echo(f"note: {report.omitted} more outcome(s) were counted but not listed", err=True)
    if not report.ok:
        raise click.exceptions.Exit(1)


@cli.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--name", help="Name for a single legacy token (default: its account or 'default').")
@click.option(
    "--on-conflict",
    type=_CONFLICT,
    default="skip",
    show_default=True,
    help="When the store already holds a name: keep it, replace it, or keep the newer.",
)
@click.pass_context
def import_(ctx: click.Context, file: str, name: str | None, on_conflict: str) -> None:
    """Import a legacy .webex_token.json, or a bundle written by export (FILE '-': stdin).

    Also reads a file:// store's tokens.json with plain (unencrypted) records.
    """
    from .backends.memory import MemoryStore

    raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    tokens = _read_import(raw, file, name)
    state = _state(ctx)
    staging = MemoryStore()
    for key, value in tokens.items():
        staging.put(key, value)
    with state.open() as store:
        _run_migration(
            staging,
            store,
            names=None,
            on_conflict=on_conflict,
            move=False,
            dry_run=False,
            total=len(tokens),
            heading=f"{'stdin' if file == '-' else file} -> {state.label(store)}",
            verb="import",
        )


def _read_import(raw: bytes, file: str, name: str | None) -> dict[str, Token]:
    where = "stdin" if file == "-" else file
    try:
        document = json_loads_strict(raw)
    except (ValueError, RecursionError):
        raise CommandFailed(
            f"{where} is not valid JSON; give a .webex_token.json or an export bundle"
        ) from None
    if not isinstance(document, dict):
        raise CommandFailed(
            f"{where} does not hold a JSON object; give a token or an export bundle"
        )
    if "access_token" in document and "tokens" not in document:
        try:
            single = Token.from_dict(document)
        except InvalidToken as exc:
            raise CommandFailed(f"{where} does not hold a valid token: {exc}") from None
        return {name or single.account or "default": single}
    if name is not None:
        raise click.UsageError(f"--name is for a file with one token; {where} holds a bundle")
    if document.get("format") == EXPORT_FORMAT:
        version = document.get("version")
        if isinstance(version, int) and version > EXPORT_VERSION:
            raise CommandFailed(
                f"{where} was exported by a newer webex-tokens (bundle version {version}); "
                "upgrade with: pip install -U webex-tokens"
            )
        if version != EXPORT_VERSION:
            raise CommandFailed(f"{where} has an unknown bundle version {version!r}")
    elif document.get("version") != 1:
        raise CommandFailed(
            f"{where} is neither a token, an export bundle nor a webex-tokens file store"
        )
    records = document.get("tokens")
    if not isinstance(records, dict):
        raise CommandFailed(f"{where} has no 'tokens' object")
    tokens: dict[str, Token] = {}
    for key, value in records.items():
        if isinstance(value, str):
            raise CommandFailed(
                f"the token {_safe(key)!r} in {where} is encrypted; move encrypted stores "
                "with: webex-tokens migrate --from fernet+file://... --to ..."
            )
        try:
            tokens[key] = Token.from_dict(value)
        except InvalidToken as exc:
            raise CommandFailed(
                f"the token {_safe(key)!r} in {where} is not valid: {exc}"
            ) from None
    return tokens


@cli.command()
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
    state = _state(ctx)
    with state.open() as store:
        tokens: dict[str, Any] = {}
        for entry in _matching(_entries(store), names):
            if entry.token is None:
                raise CommandFailed(f"{entry.error}; nothing was exported")
            tokens[entry.name] = entry.token.to_dict()
        if not tokens:
            what = f"match {names!r}" if names else "are stored"
            raise CommandFailed(
                f"no tokens {what} in {redact_url(store.url)}; nothing was exported"
            )
    bundle = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "tokens": tokens}
    data = (json.dumps(bundle, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    if file == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        where = "stdout"
    else:
        _write_private(Path(file), data, force=force)
        where = file
    click.echo(
        f"warning: {where} holds {len(tokens)} access and refresh token(s) in plain text; "
        "keep it private and delete it once imported",
        err=True,
    )


def _write_private(
    path: Path, data: bytes, *, force: bool, exists_hint: str = "pass --force to replace it"
) -> None:
    """Write ``data`` to a new 0600 file (or replace it atomically with ``force``)."""
    if force and path.exists():
        atomic_write(path, data)
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise CommandFailed(f"{path} already exists; {exists_hint}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# -- keys ----------------------------------------------------------------------------


@cli.command()
@click.option(
    "--file",
    "key_file",
    type=click.Path(dir_okay=False),
    help="Write the key to this new 0600 file (for ?key_file=) instead of stdout.",
)
def keygen(key_file: str | None) -> None:
    """Print a new Fernet key for an encrypted (fernet+) store."""
    from .backends.fernet import generate_key

    key = generate_key()
    if key_file is None:
        click.echo(key)
        click.echo(
            "hint: keep the key secret; use it with: export WEBEX_TOKENS_KEY=<the key above> "
            "(to rotate: WEBEX_TOKENS_KEY=NEW,OLD then webex-tokens rotate-key)",
            err=True,
        )
        return
    _write_private(
        Path(key_file),
        (key + "\n").encode("ascii"),
        force=False,
        exists_hint="choose a new file name (a key file is never overwritten)",
    )
    click.echo(f"wrote a new key to {key_file}; use it with ?key_file={key_file}", err=True)


@cli.command(name="rotate-key")
@click.pass_context
def rotate_key(ctx: click.Context) -> None:
    """Re-encrypt every token of a fernet+ store under the first of its keys.

    Put the new key first and the old one after it (WEBEX_TOKENS_KEY=NEW,OLD), run this,
    then drop the old key.
    """
    from .backends.fernet import FernetStore, rotate_keys

    state = _state(ctx)
    with state.open() as store:
        if not isinstance(store, FernetStore):
            raise CommandFailed(
                f"{redact_url(store.url)} is not encrypted, so it has no key to rotate; "
                "choose a fernet+ store with --store"
            )
        count = rotate_keys(store)
        click.echo(
            f"re-encrypted {count} token(s) in {redact_url(store.url)} under the first key of "
            f"{store.key_source}; the old key can now be removed"
        )


# -- stores / doctor -------------------------------------------------------------------

_FERNET_PREFIX: Final = "fernet+"


def _is_encrypted(url: str) -> bool:
    return url[: len(_FERNET_PREFIX)].lower() == _FERNET_PREFIX


def _backend_of(url: str) -> str:
    from .registry import scheme_of

    return scheme_of(url[len(_FERNET_PREFIX) :] if _is_encrypted(url) else url)


def _default_origin(state: _State) -> str:
    settings = state.settings()
    if state.store is not None:
        return "(--store)"
    if settings.store_override:
        return "(WEBEX_TOKENS_STORE)"
    if settings.integration.token_file:
        return "(WEBEX_TOKEN_FILE)"
    return "(embedded default)"


@cli.command()
@click.pass_context
def stores(ctx: click.Context) -> None:
    """List the configured stores: URL, backend, encryption and which one is the default."""
    state = _state(ctx)
    settings = state.settings()
    active = state.store if state.store is not None else settings.default_target
    active_url = settings.store_url(active)
    rows: list[tuple[str, ...]] = []
    marked = False
    for name, configured in settings.stores.items():
        is_default = active == name
        marked = marked or is_default
        rows.append(_store_row(name, configured.url, is_default, configured.description))
    if not marked:
        rows.append(_store_row(_default_origin(state), active_url, True, None))
    _print_table(("name", "url", "backend", "encrypted", "default", "description"), rows)
    click.echo(f"settings file: {settings.path or 'none'}")


def _store_row(name: str, url: str, is_default: bool, description: str | None) -> tuple[str, ...]:
    return (
        name,
        redact_url(url),
        _backend_of(url),
        "yes" if _is_encrypted(url) else "no",
        "*" if is_default else "",
        _safe(description or ""),
    )


@dataclass(frozen=True)
class _Finding:
    level: str  # "ok", "warning" or "problem"
    message: str


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check every configured store (or the --store one): reachable, readable, keys, permissions.

    Exits 1 when any check finds a problem; warnings alone exit 0.
    """
    state = _state(ctx)
    settings = state.settings()
    targets: list[tuple[str, str]] = []
    if state.store is not None:
        targets.append((state.store, settings.store_url(state.store)))
    else:
        targets.extend((name, configured.url) for name, configured in settings.stores.items())
        default_url = settings.store_url(None)
        if all(url != default_url for _, url in targets):
            targets.append((_default_origin(state), default_url))
    findings: list[_Finding] = []
    for label, url in targets:
        click.echo(f"{label}: {redact_url(url)}")
        for finding in _check_store(state, url):
            _print_finding(finding)
            findings.append(finding)
    click.echo("integration:")
    for finding in _check_integration(settings):
        _print_finding(finding)
        findings.append(finding)
    problems = sum(f.level == "problem" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    click.echo(
        f"doctor: {len(targets)} store(s) checked, {problems} problem(s), {warnings} warning(s)"
    )
    if problems:
        raise click.exceptions.Exit(1)


_LEVEL_COLOURS: Final = {"ok": "green", "warning": "yellow", "problem": "red"}


def _print_finding(finding: _Finding) -> None:
    level = click.style(f"{finding.level:<8}", fg=_LEVEL_COLOURS[finding.level])
    click.echo(f"  {level} {_one_line(finding.message)}")


def _check_store(state: _State, url: str) -> Iterator[_Finding]:
    database = _sqlite_path(url)
    if database is not None and not database.exists():
        yield _Finding("ok", f"not created yet: {database} is made on first use")
        return
    try:
        store = state.open(url)
    except WebexTokensError as exc:
        yield _Finding("problem", f"cannot open: {exc}")
        return
    with store:
        from .backends.fernet import FernetStore

        base = store.inner if isinstance(store, FernetStore) else store
        if isinstance(store, FernetStore):
            yield _Finding("ok", f"encrypted (Fernet), keys from {store.key_source}")
        else:
            yield _Finding("ok", "not encrypted (a fernet+ URL encrypts each record)")
        yield from _check_records(store)
        path = getattr(base, "path", None)
        if isinstance(path, Path):
            yield from _check_permissions(path)
        backend = getattr(base, "backend", None)
        if _backend_of(url) == "keyring" and backend is not None:
            yield _Finding(
                "ok", f"keyring backend: {getattr(backend, 'name', type(backend).__name__)}"
            )


def _check_records(store: TokenStore) -> Iterator[_Finding]:
    try:
        entries = list(_entries(store))
    except WebexTokensError as exc:
        yield _Finding("problem", f"cannot read: {exc}")
        return
    bad = [entry for entry in entries if entry.error is not None]
    if bad:
        yield _Finding(
            "problem",
            f"{len(bad)} of {len(entries)} record(s) unreadable; the first: {bad[0].error}",
        )
    else:
        yield _Finding("ok", f"reachable: {len(entries)} account(s), all readable")


def _check_permissions(path: Path) -> Iterator[_Finding]:
    import stat

    if not path.exists():
        yield _Finding("ok", f"{path} does not exist yet (created 0600 on first write)")
        return
    file_mode = stat.S_IMODE(path.stat().st_mode)
    dir_mode = stat.S_IMODE(path.parent.stat().st_mode)
    if file_mode & 0o077:
        yield _Finding(
            "problem",
            f"{path} is mode {file_mode:o}: other users can read it; run: chmod 600 {path}",
        )
    else:
        yield _Finding("ok", f"{path} is mode {file_mode:o}")
    if dir_mode & 0o022:
        yield _Finding(
            "problem",
            f"{path.parent} is mode {dir_mode:o}: other users can replace files in it; "
            f"run: chmod 700 {path.parent}",
        )
    elif dir_mode & 0o077:
        yield _Finding(
            "warning",
            f"{path.parent} is mode {dir_mode:o}: other users can see its files; "
            f"run: chmod 700 {path.parent}",
        )
    else:
        yield _Finding("ok", f"{path.parent} is mode {dir_mode:o}")


def _sqlite_path(url: str) -> Path | None:
    """The database file of a (possibly encrypted) SQLite URL, or None."""
    inner = url[len(_FERNET_PREFIX) :] if _is_encrypted(url) else url
    if _backend_of(inner) != "sqlite":
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(inner.partition("?")[0]).database
    except ArgumentError:
        return None
    if not database or database == ":memory:":
        return None
    return Path(os.path.abspath(os.path.expanduser(database)))


def _check_integration(settings: Settings) -> Iterator[_Finding]:
    integration = settings.integration
    missing = [
        variable
        for variable, value in (
            ("WEBEX_CLIENT_ID", integration.client_id),
            ("WEBEX_CLIENT_SECRET", integration.client_secret),
        )
        if not value
    ]
    if missing:
        yield _Finding(
            "warning",
            f"{' and '.join(missing)} not set: login and refreshing need the integration's "
            "client ID and secret (environment, .env or [integration])",
        )
    else:
        yield _Finding(
            "ok",
            f"client ID set; redirect URI {integration.redirect_uri}; "
            f"scopes {' '.join(integration.scopes)}; API {integration.base_url}",
        )
    if integration.access_token:
        yield _Finding(
            "warning",
            "WEBEX_ACCESS_TOKEN is set: a direct token expires within 12 hours and cannot be "
            "refreshed; log in with webex-tokens login instead",
        )


# -- demo ----------------------------------------------------------------------------------

#: The client ID of the integration the demo emulates; it marks the tokens the demo owns.
DEMO_CLIENT_ID: Final = "webex-tokens-demo"


def _step(number: int, title: str) -> None:
    click.echo()
    click.secho(f"== {number}. {title}", bold=True)


def _free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@cli.command()
@click.option(
    "--account",
    default="demo@example.com",
    show_default=True,
    help="The emulated user; the token is saved under this name.",
)
@click.option("--keep", is_flag=True, help="Leave the demo account in the store afterwards.")
@click.pass_context
def demo(ctx: click.Context, account: str, keep: bool) -> None:
    """Run the whole flow against the built-in Webex emulator; no credentials needed.

    Logs in as ACCOUNT through a loopback callback, saves the token in the store (--store,
    else the default store), lists it, gets a token, forces a refresh, migrates it into a
    temporary encrypted store and lists that. The demo account is removed from the store
    at the end unless --keep; no other account is read or changed.
    """
    import secrets

    from .oauth import WebexOAuth
    from .store import validate_name
    from .testing.fake_webex import FakeWebex

    validate_name(account)
    state = _state(ctx)
    redirect_uri = f"http://127.0.0.1:{_free_loopback_port()}/oauth/webex/callback"
    client_secret = secrets.token_urlsafe(24)
    with (
        state.open() as store,
        FakeWebex(
            client_id=DEMO_CLIENT_ID,
            client_secret=client_secret,
            redirect_uris=(redirect_uri,),
            user=account,
        ) as fake,
    ):
        label = state.label(store)
        existing = store.get(account)
        if existing is not None and existing.client_id != DEMO_CLIENT_ID:
            raise CommandFailed(
                f"{label} already holds a real account named {_safe(account)!r}; "
                "run the demo with another --account or --store"
            )
        _step(1, "Start the Webex emulator (FakeWebex) on loopback")
        click.echo(f"Webex API emulated at {fake.base_url}; redirect URI {redirect_uri}")
        oauth = WebexOAuth(
            DEMO_CLIENT_ID, client_secret, redirect_uri=redirect_uri, base_url=fake.base_url
        )
        try:
            _demo_story(store, label, oauth, fake.open_browser, account)
        finally:
            if not keep and store.get(account) is not None:
                store.delete(account)
        click.echo()
        if keep:
            click.echo(
                f"Demo done; {_safe(account)} stays in {label} "
                f"(remove it with: webex-tokens delete {_safe(account)})"
            )
        else:
            click.echo(
                f"Demo done; {_safe(account)} was removed from {label} again (--keep keeps it)"
            )


def _demo_story(
    store: TokenStore,
    label: str,
    oauth: WebexOAuth,
    open_browser: Callable[[str], bool],
    account: str,
) -> None:
    """Steps 2-7 of the demo: login, list, token, refresh, migrate, list encrypted."""
    import tempfile

    from .backends.fernet import generate_key
    from .refresh import ensure_fresh

    _step(2, "webex-tokens login (the emulator plays the browser)")
    # login() tells a human where the browser is; here the emulator is the browser.
    with contextlib.redirect_stderr(io.StringIO()):
        token = oauth.login(open_browser=open_browser, timeout=30)
    store.put(account, token)
    click.echo(f"Logged in as {_safe(token.account or account)}; token saved to {label}")

    _step(3, "webex-tokens list")
    entry = _Entry(account, store.get(account))
    _print_table(_LIST_HEADERS, [_list_row(entry, label, _leeway())], common=1)

    _step(4, "webex-tokens token (scripts get the token; shown here as a fingerprint)")
    current = ensure_fresh(store, account, oauth)
    click.echo(f"access token {current.fingerprint}")

    _step(5, "webex-tokens refresh (forced now)")
    fresh = ensure_fresh(store, account, oauth, force=True)
    click.echo(
        f"access token {current.fingerprint} -> {fresh.fingerprint}, "
        f"expires in {_until(fresh.expires_in())}"
    )

    _step(6, "webex-tokens migrate into an encrypted store (fernet+file, new key)")
    with tempfile.TemporaryDirectory(prefix="webex-tokens-demo-") as scratch:
        key_file = Path(scratch) / "demo.key"
        _write_private(key_file, generate_key().encode("ascii"), force=False)
        data_file = Path(scratch) / "tokens.json"
        with open_store(f"fernet+file://{data_file}?key_file={key_file}") as encrypted:
            click.echo(f"key file {key_file} (mode 0600)")
            _run_migration(
                store,
                encrypted,
                names=[account],
                on_conflict="overwrite",
                move=False,
                dry_run=False,
                total=1,
                heading=f"{label} -> {encrypted.url}",
            )
            if fresh.access_token.encode() in data_file.read_bytes():
                raise CommandFailed(f"{data_file} holds a token in plain text")
            click.echo(f"{data_file.name} holds ciphertext only")

            _step(7, "webex-tokens list (from the encrypted store)")
            where = redact_url(encrypted.url)
            _print_table(
                _LIST_HEADERS,
                [_list_row(e, where, _leeway()) for e in _entries(encrypted)],
                common=1,
            )
