"""``webex-tokens emulator``: FakeWebex in the foreground, for developing an app against it.

It prints the environment variables that point an app at the emulator, then one line
per request it answers (a :class:`~webex_tokens.testing.fake_webex.RequestRecord`, which
never holds a secret), until Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import click

from .output import safe

if TYPE_CHECKING:
    from ..testing.fake_webex import EmulatorReady, RequestRecord

__all__ = ["emulator"]


def _email(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ..testing.fake_webex.oauth import valid_email

    if value is not None and not valid_email(value):
        raise click.BadParameter(f"{value!r} is not an email address, such as alice@example.com")
    return value


@contextmanager
def _stopped_by_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (``systemctl stop``, ``docker stop``) ends the run as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to serve on (default: 8790, or a free one when it is taken; 0: any free one).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--approve-as",
    metavar="EMAIL",
    callback=_email,
    help="Approve every login at once as EMAIL (and each device code on its second poll), "
    "without a browser.",
)
@click.option(
    "--client-id", default="fake-client-id", show_default=True, help="The integration's ID."
)
@click.option(
    "--client-secret",
    default="fake-client-secret",
    show_default=True,
    help="The integration's secret (the emulator's own, worthless elsewhere).",
)
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help="A redirect URI to register (repeatable; default: "
    "http://localhost:8000/oauth/webex/callback).",
)
def emulator(
    *,
    port: int | None,
    host: str,
    approve_as: str | None,
    client_id: str,
    client_secret: str,
    redirect_uris: tuple[str, ...],
) -> None:
    """Run the built-in Webex emulator in the foreground for developing an app against it.

    Prints the environment variables that point an app (or this command's login) at it,
    then one line per request it answers, never a secret. Without --approve-as, a browser
    opening the login sees a sign-in page where any email is accepted. Ctrl-C stops it.
    """
    from ..testing.fake_webex import DEFAULT_EMULATOR_PORT, DEFAULT_REDIRECT_URI, run_emulator

    printing = threading.Lock()

    def ready(info: EmulatorReady) -> None:
        with printing:
            if info.fell_back:
                click.echo(
                    f"port {DEFAULT_EMULATOR_PORT} is in use, so the emulator serves on "
                    f"port {info.port}"
                )
            who = (
                f"logins approved as {safe(info.approve_as)}"
                if info.approve_as
                else "logins signed in by hand in the browser"
            )
            click.echo(f"FakeWebex serves {info.base_url} ({who})")
            click.echo("Point your app at it:")
            for name, value in info.environment.items():
                click.echo(f"  export {name}={shlex.quote(value)}")
            click.echo("Requests answered (Ctrl-C stops):")

    def answered(record: RequestRecord) -> None:
        with printing:
            click.echo(f"{datetime.now().strftime('%H:%M:%S')} {safe(str(record))}")

    stop = threading.Event()
    with _stopped_by_sigterm(stop):
        run_emulator(
            port=port,
            host=host,
            approve_as=approve_as,
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=redirect_uris or (DEFAULT_REDIRECT_URI,),
            on_request=answered,
            on_ready=ready,
            stop=stop,
        )
    click.echo("emulator stopped")
