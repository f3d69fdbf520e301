"""The commands that look at stores: stores (what is configured) and doctor (is it healthy)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from ..errors import StoreNotFound, WebexTokensError
from ..journal import JournalEntry
from ..store import TokenStore
from . import engine
from .durations import format_duration
from .output import emit_json, iso, json_option, one_line, print_table, safe, seconds
from .state import State, state

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["doctor", "stores"]


_STORE_HEADERS: Final = ("name", "url", "backend", "encrypted", "default", "description")


@click.command()
@json_option
@click.pass_context
def stores(ctx: click.Context, as_json: bool) -> None:
    """List the configured stores: URL, backend, encryption and which one is the default."""
    current = state(ctx)
    settings = current.settings()
    active = engine.active_store(settings, current.store)
    active_url = engine.resolve_store_url(settings, active)
    listed = [
        _Store(name, url, active == name, description, "settings file")
        for name, url, description in engine.configured_stores(settings)
    ]
    if not any(store.default for store in listed):
        origin = engine.default_origin(settings, current.store)
        listed.append(_Store(None, active_url, True, None, origin))
    if as_json:
        emit_json(
            "stores",
            {
                "settings_file": None if settings.path is None else str(settings.path),
                "stores": [store.document() for store in listed],
            },
        )
        return
    print_table(_STORE_HEADERS, [store.row() for store in listed])
    click.echo(f"settings file: {settings.path or 'none'}")


@dataclass(frozen=True)
class _Store:
    """A row of ``stores``: a configured store, or the store in use when it is not one."""

    name: str | None
    url: str
    default: bool
    description: str | None
    origin: str

    def row(self) -> tuple[str, ...]:
        return (
            self.name or f"({self.origin})",
            engine.redact_url(self.url),
            engine.backend_of(self.url),
            "yes" if engine.is_encrypted(self.url) else "no",
            "*" if self.default else "",
            safe(self.description or ""),
        )

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": engine.redact_url(self.url),
            "backend": engine.backend_of(self.url),
            "encrypted": engine.is_encrypted(self.url),
            "default": self.default,
            "description": self.description,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class _Finding:
    level: str  # "ok", "warning" or "problem"
    message: str


@click.command()
@json_option
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check every configured store (or the --store one): reachable, readable, keys, permissions.

    Exits 1 when any check finds a problem; warnings alone exit 0.
    """
    current = state(ctx)
    settings = current.settings()
    targets: list[tuple[str, str]] = []
    if current.store is not None:
        targets.append((current.store, engine.resolve_store_url(settings, current.store)))
    else:
        targets.extend((name, url) for name, url, _ in engine.configured_stores(settings))
        default_url = engine.resolve_store_url(settings, None)
        if all(url != default_url for _, url in targets):
            origin = engine.default_origin(settings, current.store)
            targets.append((f"({origin})", default_url))
    checked: list[dict[str, Any]] = []
    findings: list[_Finding] = []
    for label, url in targets:
        if not as_json:
            click.echo(f"{label}: {engine.redact_url(url)}")
        found = _run_checks(_check_store(current, url), quiet=as_json)
        checked.append({"name": label, "url": engine.redact_url(url), "findings": found})
        findings.extend(found)
    if not as_json:
        click.echo("integration:")
    integration = _run_checks(_check_integration(settings), quiet=as_json)
    findings.extend(integration)
    if not as_json:
        click.echo("rescue journal:")
    journal = _run_checks(_check_journal(), quiet=as_json)
    findings.extend(journal)
    problems = sum(f.level == "problem" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    if as_json:
        emit_json(
            "doctor",
            {
                "stores": [
                    {**section, "findings": [_finding_document(f) for f in section["findings"]]}
                    for section in checked
                ],
                "integration": {"findings": [_finding_document(f) for f in integration]},
                "journal": _journal_document(journal),
                "problems": problems,
                "warnings": warnings,
                "ok": problems == 0,
            },
        )
    else:
        click.echo(
            f"doctor: {len(targets)} store(s) checked, {problems} problem(s), {warnings} warning(s)"
        )
    if problems:
        raise click.exceptions.Exit(1)


def _run_checks(checks: Iterator[_Finding], *, quiet: bool) -> list[_Finding]:
    """Run ``checks``, printing each finding as it comes unless ``quiet``."""
    found = []
    for finding in checks:
        if not quiet:
            _print_finding(finding)
        found.append(finding)
    return found


def _finding_document(finding: _Finding) -> dict[str, str]:
    return {"level": finding.level, "message": one_line(finding.message)}


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
        store = current.open_existing(url)
    except StoreNotFound as exc:
        yield _Finding("ok", f"not created yet: {exc}")
        return
    except WebexTokensError as exc:
        yield _Finding("problem", f"cannot open: {exc}")
        return
    with store:
        facts = engine.store_facts(store)
        if facts.key_source is not None:
            yield _Finding("ok", f"encrypted (Fernet), keys from {facts.key_source}")
        else:
            yield _Finding("ok", "not encrypted (a fernet+ URL encrypts each record)")
        yield from _check_records(store)
        if facts.path is not None:
            yield from _check_permissions(facts.path)
        if facts.keyring_backend is not None:
            yield _Finding("ok", f"keyring backend: {facts.keyring_backend}")
        yield from _check_engine(facts.engine)


def _check_engine(store: TokenStore) -> Iterator[_Finding]:
    """What only the server of a Redis or Vault store can tell: whether Redis keeps the
    tokens through a restart, and what the Vault token's policy lacks."""
    # A store of either kind was opened, so its module is loaded; without the extra
    # installed neither module can be imported, and no store is of their kinds.
    redis = sys.modules.get("webex_tokens.backends.redis")
    vault = sys.modules.get("webex_tokens.backends.vault")
    if redis is not None and isinstance(store, redis.RedisStore):
        try:
            report = store.durability()
        except WebexTokensError as exc:
            yield _Finding("problem", f"cannot check persistence: {exc}")
            return
        if not report.checked:
            yield _Finding("warning", str(report.problem))
        elif report.problem and not (report.rdb or report.aof):
            yield _Finding("problem", report.problem)
        elif report.problem:
            yield _Finding("warning", report.problem)
        else:
            kept = " and ".join(
                what
                for what, on in (
                    ("RDB snapshots", report.rdb),
                    ("the append-only file", report.aof),
                )
                if on
            )
            yield _Finding(
                "ok", f"Redis keeps the tokens on disk ({kept}); eviction: {report.eviction}"
            )
    elif vault is not None and isinstance(store, vault.VaultStore):
        missing = store.missing_capabilities()
        if missing:
            yield _Finding(
                "problem",
                f"the Vault token's policy lacks {', '.join(missing)}: it cannot save or "
                f"delete tokens; grant at least: {store.minimal_policy()}",
            )
        elif not store.capabilities_checked:
            yield _Finding(
                "warning",
                "cannot tell what the Vault token's policy allows (sys/capabilities-self was "
                f"refused); make sure it grants at least: {store.minimal_policy()}",
            )
        else:
            yield _Finding("ok", "the Vault token's policy allows everything the store does")


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


@dataclass(frozen=True)
class _Waiting(_Finding):
    """A finding about a token waiting in the rescue journal."""

    entry: JournalEntry


def _check_journal() -> Iterator[_Finding]:
    """What waits in the rescue journal (account, store, age; never a secret), and how
    to store it: any operation on the account does, ``refresh NAME`` for one."""
    from ..journal import default_journal

    journal = default_journal()
    unreadable: list[str] = []
    try:
        entries = journal.entries(unreadable)
    except WebexTokensError as exc:
        yield _Finding("problem", str(exc))
        return
    for message in unreadable:
        yield _Finding("problem", message)
    if not entries and not unreadable:
        yield _Finding("ok", f"nothing waits in {journal.directory}")
    for entry in entries:
        command = shlex.join(["webex-tokens", "--store", entry.store, "refresh", entry.account])
        yield _Waiting(
            "warning",
            f"the new token of {safe(entry.account)!r} for {safe(entry.store)} has waited "
            f"{format_duration(entry.age())} to be stored ({entry.reason}, "
            f"{'encrypted' if entry.encrypted else 'not encrypted'}, {entry.path.name}); "
            f"any operation on the account stores it, or now: {safe(command)}",
            entry,
        )


def _journal_document(findings: list[_Finding]) -> dict[str, Any]:
    from ..journal import default_journal

    return {
        "directory": str(default_journal().directory),
        "waiting": [
            {
                "account": f.entry.account,
                "store_url": f.entry.store,
                "written_at": iso(f.entry.written_at),
                "age": seconds(f.entry.age()),
                "reason": f.entry.reason,
                "encrypted": f.entry.encrypted,
            }
            for f in findings
            if isinstance(f, _Waiting)
        ],
        "findings": [_finding_document(f) for f in findings],
    }


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
