"""FakeWebex in the foreground, for developing an app against it (``webex-tokens emulator``).

:func:`run_emulator` serves until it is interrupted (Ctrl-C) or its ``stop`` event is
set. It prints nothing: it tells its caller where it serves through ``on_ready`` and
reports each request it answered to ``on_request`` as a :class:`RequestRecord`, which
never holds a secret.

Without ``approve_as`` a browser opening ``/authorize`` sees a sign-in page where the
developer types any email and accepts; device codes are approved on the verification
page. With ``approve_as=EMAIL`` every login is approved at once as that person, and each
device code on its second poll (the first answers "pending", as with a real user).
"""

from __future__ import annotations

import dataclasses
import errno
import threading
from collections.abc import Callable, Iterable

from .emulator import DEFAULT_REDIRECT_URI, FakeWebex
from .oauth import valid_email
from .server import RequestRecord

__all__ = ["DEFAULT_EMULATOR_PORT", "EmulatorReady", "run_emulator"]

#: The port :func:`run_emulator` serves on unless told otherwise (another free port is
#: chosen, and said, when it is taken).
DEFAULT_EMULATOR_PORT = 8790


@dataclasses.dataclass(frozen=True)
class EmulatorReady:
    """Where a foreground emulator serves; handed to ``on_ready`` once it does.

    Attributes:
        fake: the running emulator (register a Service App, issue a bot token, ...).
        base_url: ``http://HOST:PORT/v1``, the app's ``WEBEX_BASE_URL``.
        environment: :meth:`FakeWebex.environment`: what to export for an app (it holds
            the emulator's client secret, so ``repr`` does not show it).
        port: the port it serves on.
        fell_back: True when the default port was taken and another was chosen.
        approve_as: who logins and device codes are approved as, or None (by hand).
    """

    fake: FakeWebex = dataclasses.field(repr=False)
    base_url: str
    environment: dict[str, str] = dataclasses.field(repr=False)
    port: int
    fell_back: bool
    approve_as: str | None


def run_emulator(
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    approve_as: str | None = None,
    client_id: str = "fake-client-id",
    client_secret: str = "fake-client-secret",
    redirect_uris: Iterable[str] = (DEFAULT_REDIRECT_URI,),
    on_request: Callable[[RequestRecord], None] | None = None,
    on_ready: Callable[[EmulatorReady], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run a FakeWebex in the foreground until interrupted or ``stop`` is set.

    Args:
        port: the port to serve on; None: :data:`DEFAULT_EMULATOR_PORT`, or any free
            port if that one is taken (``EmulatorReady.fell_back`` says so); 0: any free
            port.
        host: the address to bind (loopback by default).
        approve_as: approve every login at once as this email, and every device code on
            its second poll; None: a person approves in the browser.
        client_id: the integration's client ID.
        client_secret: its client secret.
        redirect_uris: the redirect URIs registered with the integration.
        on_request: called with a :class:`RequestRecord` for each request answered.
        on_ready: called once the emulator serves.
        stop: an event that ends the run when set (from another thread).

    Returns:
        When interrupted (``KeyboardInterrupt``) or stopped; the port is closed then.

    Raises:
        ValueError: ``approve_as`` is not an email address.
        OSError: the chosen port cannot be bound (``errno.EADDRINUSE`` when it is taken).
    """
    if approve_as is not None and not valid_email(approve_as):
        raise ValueError("approve_as must be an email address, such as alice@example.com")

    def build(bind: int) -> FakeWebex:
        fake = FakeWebex(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=redirect_uris,
            user=approve_as or "alice@example.com",
            host=host,
            port=bind,
            consent_page=approve_as is None,
            on_request=on_request,
        )
        fake.device.auto_approve_as = approve_as
        fake.device.auto_approve_after_polls = 1
        return fake

    wanted = DEFAULT_EMULATOR_PORT if port is None else port
    fake = build(wanted)
    fell_back = False
    try:
        fake.start()
    except OSError as error:
        if port is not None or error.errno != errno.EADDRINUSE:
            raise _port_error(error, host, wanted) from error
        fake = build(0).start()
        fell_back = True
    stop = stop or threading.Event()
    try:
        if on_ready is not None:
            on_ready(
                EmulatorReady(
                    fake=fake,
                    base_url=fake.base_url,
                    environment=fake.environment(),
                    port=fake.port,
                    fell_back=fell_back,
                    approve_as=approve_as,
                )
            )
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


def _port_error(error: OSError, host: str, port: int) -> OSError:
    if error.errno == errno.EADDRINUSE:
        return OSError(
            errno.EADDRINUSE,
            f"port {port} on {host} is in use; stop what uses it, or choose another port "
            "(0 for any free one)",
        )
    return OSError(error.errno, f"cannot serve on {host}:{port}: {error.strerror}")
