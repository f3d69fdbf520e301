"""The commands that keep the other kinds of Webex credentials: ``add`` (a bot's or a
personal access token) and ``service-app add`` (a Service App's token for one
organization)."""

from __future__ import annotations

import sys
from typing import Final

import click

from . import engine
from .durations import until
from .output import safe
from .state import state

__all__ = ["add", "service_app"]

#: The most a pasted token is read up to (a token is far shorter).
_MAX_INPUT: Final = 64 * 1024
_WHAT: Final = {"bot": "bot's token", "personal": "personal access token"}


def _read_token(kind: str) -> str:
    """The token from standard input, or from a hidden prompt on a terminal; never argv."""
    stdin = sys.stdin
    if stdin.isatty():
        text: str = click.prompt(f"Paste the {_WHAT[kind]}", hide_input=True, err=True)
        return text
    text = stdin.read(_MAX_INPUT + 1)
    if len(text) > _MAX_INPUT:
        raise click.UsageError("standard input holds more than a token; pipe in the token alone")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise click.UsageError(
            "standard input holds several lines; pipe in the token alone, on one line"
        )
    if not lines:
        raise click.UsageError(
            "no token on standard input; pipe it in (printf '%s\\n' \"$TOKEN\" | webex-tokens "
            "add NAME --kind ...) or run the command on a terminal to paste it"
        )
    return lines[0]


@click.command()
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["bot", "personal"]),
    required=True,
    help="bot: a bot's token (does not expire); personal: a personal access token (12 hours).",
)
@click.pass_context
def add(ctx: click.Context, name: str, kind: str) -> None:
    """Keep a bot's or a personal access token under NAME.

    The token is read from standard input, or from a hidden prompt on a terminal; never
    from the command line, which other users can read in ps. Webex is asked who it
    belongs to (/people/me): a refused token, or the other kind's, is not stored.

    \b
        printf '%s\\n' "$BOT_TOKEN" | webex-tokens add hr-bot --kind bot
    """
    current = state(ctx)
    engine.check_name(name)
    text = _read_token(kind)
    with current.open_for_writing() as store:
        accounts = engine.keeper(store, current.settings())
        token, checked = engine.add_static_token(accounts, name, text, kind)
        where = engine.redact_url(store.url)
    who = f" of {safe(token.account)}" if token.account else ""
    lasts = " (does not expire)" if kind == "bot" else f" (expires in {until(token.expires_in())})"
    click.echo(f"stored the {_WHAT[kind]}{who} in {where} as {safe(name)}{lasts}")
    if not checked:
        click.echo(
            "note: Webex could not be reached, so the token was not checked; "
            f"webex-tokens token {safe(name)} prints it as it is",
            err=True,
        )


@click.group(name="service-app")
def service_app() -> None:
    """Service App tokens: one per customer organization.

    The Service App is an [integrations.NAME] of kind "service_app" in the settings,
    naming its manager: the stored account whose token (with the
    spark:applications_token scope) obtains each organization's token pair.
    """


@service_app.command(name="add")
@click.argument("org_id")
@click.option("--app", "app", required=True, help="The Service App: NAME of [integrations.NAME].")
@click.option("--name", help="Save the token under this name (default: APP:ORGANIZATION).")
@click.pass_context
def service_app_add(ctx: click.Context, org_id: str, app: str, name: str | None) -> None:
    """Obtain and keep the Service App token of the organization ORG_ID.

    ORG_ID is the organization's Webex ID; its administrator must have authorized the
    Service App in Control Hub. The token is then refreshed like any other, and a new
    pair is obtained through the manager when Webex refuses a refresh.
    """
    current = state(ctx)
    if name is not None:
        engine.check_name(name)
    with current.open_for_writing() as store:
        accounts = engine.keeper(store, current.settings())
        label, token = engine.obtain_service_app(accounts, app, org_id, name)
        where = engine.redact_url(store.url)
    organization = engine.organization_label(token.org_id or org_id)
    click.echo(
        f"obtained a Service App token for the organization {safe(organization)}; saved to "
        f"{where} as {safe(label)} (expires in {until(token.expires_in())})"
    )
