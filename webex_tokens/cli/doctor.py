"""The commands that look at stores: stores (what is configured) and doctor (is it healthy)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from ..errors import WebexTokensError
from ..store import TokenStore, redact_url
from . import engine
from .output import one_line, print_table, safe
from .state import State, state

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["doctor", "stores"]


@click.command()
@click.pass_context
def stores(ctx: click.Context) -> None:
    """List the configured stores: URL, backend, encryption and which one is the default."""
    current = state(ctx)
    settings = current.settings()
    active = current.store if current.store is not None else settings.default_target
    active_url = settings.store_url(active)
    rows: list[tuple[str, ...]] = []
    marked = False
    for name, configured in settings.stores.items():
        is_default = active == name
        marked = marked or is_default
        rows.append(_store_row(name, configured.url, is_default, configured.description))
    if not marked:
        origin = engine.default_origin(settings, current.store)
        rows.append(_store_row(origin, active_url, True, None))
    print_table(("name", "url", "backend", "encrypted", "default", "description"), rows)
    click.echo(f"settings file: {settings.path or 'none'}")


def _store_row(name: str, url: str, is_default: bool, description: str | None) -> tuple[str, ...]:
    return (
        name,
        redact_url(url),
        engine.backend_of(url),
        "yes" if engine.is_encrypted(url) else "no",
        "*" if is_default else "",
        safe(description or ""),
    )


@dataclass(frozen=True)
class _Finding:
    level: str  # "ok", "warning" or "problem"
    message: str


@click.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check every configured store (or the --store one): reachable, readable, keys, permissions.

    Exits 1 when any check finds a problem; warnings alone exit 0.
    """
    current = state(ctx)
    settings = current.settings()
    targets: list[tuple[str, str]] = []
    if current.store is not None:
        targets.append((current.store, settings.store_url(current.store)))
    else:
        targets.extend((name, configured.url) for name, configured in settings.stores.items())
        default_url = settings.store_url(None)
        if all(url != default_url for _, url in targets):
            targets.append((engine.default_origin(settings, current.store), default_url))
    findings: list[_Finding] = []
    for label, url in targets:
        click.echo(f"{label}: {redact_url(url)}")
        for finding in _check_store(current, url):
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
    click.echo(f"  {level} {one_line(finding.message)}")


def _check_store(current: State, url: str) -> Iterator[_Finding]:
    database = engine.sqlite_path(url)
    if database is not None and not database.exists():
        yield _Finding("ok", f"not created yet: {database} is made on first use")
        return
    try:
        store = current.open(url)
    except WebexTokensError as exc:
        yield _Finding("problem", f"cannot open: {exc}")
        return
    with store:
        from ..backends.fernet import FernetStore

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
        if engine.backend_of(url) == "keyring" and backend is not None:
            yield _Finding(
                "ok", f"keyring backend: {getattr(backend, 'name', type(backend).__name__)}"
            )


def _check_records(store: TokenStore) -> Iterator[_Finding]:
    try:
        entries = list(engine.scan_store(store))
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
