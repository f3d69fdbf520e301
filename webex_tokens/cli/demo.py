"""``webex-tokens demo``: the whole story against the built-in Webex emulator."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from ..store import TokenStore
from . import engine
from .accounts import LIST_HEADERS, list_row
from .durations import until
from .errors import CommandFailed
from .output import print_table, safe
from .state import state
from .transfer import run_migration, write_private

if TYPE_CHECKING:
    from ..oauth import WebexOAuth

__all__ = ["DEMO_CLIENT_ID", "TEMPORARY_LABEL", "demo"]

#: The client ID of the integration the demo emulates; it marks the tokens the demo owns.
DEMO_CLIENT_ID: Final = "webex-tokens-demo"
#: How the demo's output names its temporary store.
TEMPORARY_LABEL: Final = "temporary store"


def _step(number: int, title: str) -> None:
    click.echo()
    click.secho(f"== {number}. {title}", bold=True)


def _free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@click.command()
@click.option(
    "--account",
    default="demo@example.com",
    show_default=True,
    help="The emulated user; the token is saved under this name.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Use the default store (or --store) and leave the demo account in it afterwards.",
)
@click.pass_context
def demo(ctx: click.Context, account: str, keep: bool) -> None:
    """Run the whole flow against the built-in Webex emulator; no credentials needed.

    Logs in as ACCOUNT through a loopback callback and again with a device code, lists
    the token, gets one, forces a refresh, migrates it into a temporary encrypted store
    and lists that, then says how to do it for real. The tokens go to a temporary store
    that is gone at the end: the default store is never read or written, unless --keep
    (which keeps the demo account there). With --store, that store is used and the demo
    account is removed from it at the end unless --keep; no other account is read or
    changed.
    """
    import secrets
    import tempfile

    from ..oauth import WebexOAuth
    from ..testing.fake_webex import FakeWebex

    engine.check_name(account)
    current = state(ctx)
    temporary = current.target() is None and not keep
    redirect_uri = f"http://127.0.0.1:{_free_loopback_port()}/oauth/webex/callback"
    client_secret = secrets.token_urlsafe(24)
    with contextlib.ExitStack() as stack:
        if temporary:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="webex-tokens-demo-"))
            store = stack.enter_context(engine.open_for_writing(f"sqlite:///{scratch}/tokens.db"))
            label = TEMPORARY_LABEL
        else:
            store = stack.enter_context(current.open_for_writing())
            label = current.label(store)
        fake = stack.enter_context(
            FakeWebex(
                client_id=DEMO_CLIENT_ID,
                client_secret=client_secret,
                redirect_uris=(redirect_uri,),
                user=account,
            )
        )
        existing = store.get(account)
        if existing is not None and existing.client_id != DEMO_CLIENT_ID:
            raise CommandFailed(
                f"{label} already holds a real account named {safe(account)!r}; "
                "run the demo with another --account or --store"
            )
        _step(1, "Start the Webex emulator (FakeWebex) on loopback")
        click.echo(f"Webex API emulated at {fake.base_url}; redirect URI {redirect_uri}")
        if temporary:
            click.echo(
                "Tokens go to a temporary store, gone at the end "
                "(--keep uses your default store instead)"
            )
        fake.device.interval = 0.2  # the emulator's code is approved at once: poll soon
        fake.device.auto_approve_as = account
        oauth = WebexOAuth(
            DEMO_CLIENT_ID, client_secret, redirect_uri=redirect_uri, base_url=fake.base_url
        )
        try:
            _demo_story(store, label, oauth, fake.open_browser, account)
        finally:
            if not keep and not temporary and store.get(account) is not None:
                store.delete(account)
        click.echo()
        if temporary:
            click.echo("Demo done; the temporary store is gone (--keep keeps the demo account)")
        elif keep:
            click.echo(
                f"Demo done; {safe(account)} stays in {label} "
                f"(remove it with: webex-tokens delete {safe(account)})"
            )
        else:
            click.echo(
                f"Demo done; {safe(account)} was removed from {label} again (--keep keeps it)"
            )
    _next_steps()


def _next_steps() -> None:
    """The last words: how to do the same with a real Webex integration."""
    from ..settings import DEFAULT_REDIRECT_URI
    from ..token_endpoint import PORTAL

    _step(9, "Next: do it for real")
    click.echo(
        f"1. Create an integration at {PORTAL} (scopes: spark:all, or fewer).\n"
        f"2. Register its redirect URI: {DEFAULT_REDIRECT_URI}\n"
        "   (for login --device, also Webex's device-callback redirect URIs: see the\n"
        "   device grant in the OAuth guide).\n"
        "3. export WEBEX_CLIENT_ID=... WEBEX_CLIENT_SECRET=...  (or put them in .env)\n"
        "4. webex-tokens login            # a browser on this machine\n"
        "   webex-tokens login --device   # no browser here: enter a code on another device"
    )


def _demo_story(
    store: TokenStore,
    label: str,
    oauth: WebexOAuth,
    open_browser: Callable[[str], bool],
    account: str,
) -> None:
    """Steps 2-8 of the demo: login, device login, list, token, refresh, migrate, list."""
    import tempfile

    from ..backends.fernet import generate_key

    _step(2, "webex-tokens login (the emulator plays the browser)")
    # The login tells a human where the browser is; here the emulator is the browser.
    accounts = engine.keeper(store, oauth=oauth)
    _, token = engine.interactive_login(
        accounts, open_browser=open_browser, timeout=30, account=account, quiet=True
    )
    click.echo(f"Logged in as {safe(token.account or account)}; token saved to {label}")

    _step(3, "webex-tokens login --device (the emulator approves the code)")
    _, token = engine.device_login(
        accounts, timeout=30, account=account, notify=lambda notice: click.echo(str(notice))
    )
    click.echo(f"Logged in as {safe(token.account or account)}; token saved to {label}")

    _step(4, "webex-tokens list")
    entry = engine.Entry(account, store.get(account))
    print_table(LIST_HEADERS, [list_row(entry, label, engine.leeway())], common=1)

    _step(5, "webex-tokens token (scripts get the token; shown here as a fingerprint)")
    if accounts.stored(account) is None:
        raise CommandFailed(f"the demo account vanished from {label} during the demo")
    current = accounts.current(account)
    click.echo(f"access token {current.fingerprint}")

    _step(6, "webex-tokens refresh (forced now)")
    fresh = accounts.refresh(account)
    click.echo(
        f"access token {current.fingerprint} -> {fresh.fingerprint}, "
        f"expires in {until(fresh.expires_in())}"
    )

    _step(7, "webex-tokens migrate into an encrypted store (fernet+file, new key)")
    with tempfile.TemporaryDirectory(prefix="webex-tokens-demo-") as scratch:
        key_file = Path(scratch) / "demo.key"
        write_private(key_file, generate_key().encode("ascii"), force=False)
        data_file = Path(scratch) / "tokens.json"
        with engine.open_for_writing(f"fernet+file://{data_file}?key_file={key_file}") as encrypted:
            click.echo(f"key file {key_file} (mode 0600)")
            run_migration(
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

            _step(8, "webex-tokens list (from the encrypted store)")
            where = engine.redact_url(encrypted.url)
            print_table(
                LIST_HEADERS,
                [list_row(e, where, engine.leeway()) for e in engine.scan_store(encrypted)],
                common=1,
            )
