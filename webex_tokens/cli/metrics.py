"""``webex-tokens metrics``: how long each stored token has left, for Prometheus.

The exposition is the official ``prometheus_client`` library's (the ``metrics`` extra),
from a registry of its own holding one collector that reads the store once per run; no
number is formatted here. Per account and store: seconds until the access token and the
refresh token expire (recorded, or estimated for a legacy record as ``list`` does), its
kind and status, and the last refresh's result and time from the refresh history
(:mod:`~webex_tokens.cli.history`). No secret is read into a label or a value.

Account names are personal data (often emails), so they are labels only with
``--show-names``; otherwise an account is labelled with the fingerprint of its name
(``sha256:1a2b3c4d``), the same on every run, so alerts and graphs still follow it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from ..errors import WebexTokensError
from ..token import fingerprint
from . import engine, history
from .errors import CommandFailed, describe
from .output import one_line
from .state import state

if TYPE_CHECKING:
    from ..store import TokenStore

__all__ = ["METRIC_PREFIX", "metrics"]

#: The prefix of every metric name.
METRIC_PREFIX: Final = "webex_tokens"
_INSTALL: Final = "pip install 'webex-tokens[metrics]'"


@dataclass
class _Sample:
    """The values of one metric family, before prometheus_client turns them into text."""

    help: str
    labels: tuple[str, ...]
    values: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


@dataclass
class _Reading:
    """Everything one run read, by metric name (without the prefix)."""

    families: dict[str, _Sample]
    failed_stores: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, labels: tuple[str, ...], value: float) -> None:
        self.families[name].values.append((labels, value))


def _families() -> dict[str, _Sample]:
    account = ("store", "account", "kind")
    return {
        "access_token_expiry_seconds": _Sample(
            "Seconds until the access token expires (negative: expired); absent when unknown.",
            account,
        ),
        "refresh_token_expiry_seconds": _Sample(
            "Seconds until the refresh token expires (negative: expired); absent when the "
            "token has none or its expiry is unknown.",
            account,
        ),
        "account_status": _Sample(
            "1 for the status list shows for the account: ok, due, expired, refresh "
            "expired, refused, unknown or unreadable.",
            ("store", "account", "kind", "status"),
        ),
        "last_refresh_timestamp_seconds": _Sample(
            "When the last refresh by webex-tokens ended (Unix time), by its result: "
            "refreshed, refused (log in again) or failed.",
            ("store", "account", "result"),
        ),
        "last_refresh_success": _Sample(
            "1 when the last refresh by webex-tokens worked, 0 when it was refused or failed.",
            ("store", "account"),
        ),
        "accounts": _Sample("Accounts in the store.", ("store",)),
        "store_up": _Sample("1 when the store could be opened and listed, else 0.", ("store",)),
        "generated_timestamp_seconds": _Sample("When these metrics were read (Unix time).", ()),
    }


def _account_label(name: str, show_names: bool) -> str:
    return name if show_names else fingerprint(name)


def _read_store(
    reading: _Reading, store: TokenStore, label: str, now: datetime, show_names: bool
) -> None:
    """Add the samples of every account of ``store`` to ``reading``."""
    entries = list(engine.scan_store(store))
    notes = history.read_history(store.url)
    leeway = engine.leeway()
    for entry in entries:
        account = _account_label(entry.name, show_names)
        token = entry.token
        if token is None:
            reading.add("account_status", (label, account, "", "unreadable"), 1)
            continue
        note = notes.get(entry.name)
        refused = note is not None and note.refuses(token)
        labels = (label, account, token.kind)
        when = engine.expiry_times(token)
        if when.access_at is not None:
            left = (when.access_at - now).total_seconds()
            reading.add("access_token_expiry_seconds", labels, float(int(left)))
        if when.refresh_at is not None:
            left = (when.refresh_at - now).total_seconds()
            reading.add("refresh_token_expiry_seconds", labels, float(int(left)))
        status = engine.status(token, leeway, refused=refused)
        reading.add("account_status", (*labels, status), 1)
        if note is not None:
            reading.add(
                "last_refresh_timestamp_seconds",
                (label, account, note.result),
                note.at.timestamp(),
            )
            success = 1.0 if note.result == history.REFRESHED else 0.0
            reading.add("last_refresh_success", (label, account), success)
    reading.add("accounts", (label,), len(entries))


def _exposition(reading: _Reading) -> bytes:
    """The text format of ``reading``, by prometheus_client."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import GaugeMetricFamily
    except ImportError:
        raise CommandFailed(
            f"webex-tokens metrics needs the prometheus_client library; install it with: {_INSTALL}"
        ) from None

    class _Collector:
        def collect(self) -> Iterator[Any]:
            for name, sample in reading.families.items():
                family = GaugeMetricFamily(
                    f"{METRIC_PREFIX}_{name}", sample.help, labels=list(sample.labels)
                )
                for labels, value in sample.values:
                    family.add_metric(list(labels), value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


@click.command()
@click.option(
    "--textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Write the metrics to PATH atomically (for node_exporter's textfile collector, "
    "a .prom file in its directory) instead of printing them.",
)
@click.option(
    "--show-names",
    is_flag=True,
    help="Label accounts with their names; by default with the fingerprint of the name.",
)
@click.option("--all-stores", is_flag=True, help="Every configured store, not just one.")
@click.pass_context
def metrics(ctx: click.Context, textfile: Path | None, show_names: bool, all_stores: bool) -> None:
    """Print Prometheus metrics: per account, seconds until its tokens expire, its
    status and its last refresh.

    No secret appears in them, and account names only with --show-names. Exits 1 when
    a store cannot be read (its webex_tokens_store_up is then 0; the others are still
    reported).
    """
    current = state(ctx)
    targets: list[str | None] = [None]
    if all_stores:
        targets = [name for name, _, _ in engine.configured_stores(current.settings())] or [None]
    now = datetime.now(timezone.utc)
    reading = _Reading(_families())
    for target in targets:
        shown = target if target is not None else "default"
        try:
            with current.open_existing(target) as store:
                shown = current.label(store, target)
                _read_store(reading, store, shown, now, show_names)
        except WebexTokensError as exc:
            reading.add("store_up", (shown,), 0)
            reading.failed_stores.append((shown, describe(exc)))
            continue
        reading.add("store_up", (shown,), 1)
    reading.add("generated_timestamp_seconds", (), float(int(now.timestamp())))
    text = _exposition(reading)
    if textfile is None:
        click.echo(text.decode(), nl=False)
    else:
        from ..backends.files import atomic_write

        # node_exporter runs as another user; the file holds no secret.
        atomic_write(textfile, text, mode=0o644)
    for store_label, message in reading.failed_stores:
        click.echo(f"error: {store_label}: {one_line(message)}", err=True)
    if reading.failed_stores:
        raise click.exceptions.Exit(1)
