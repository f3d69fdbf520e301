"""The interactive login on this machine: the browser, the pasted redirect URL, the device
code, and what the person at the keyboard is told.

:func:`browser_login` runs the authorization-code flow of a
:class:`~webex_tokens.oauth.WebexOAuth` through a loopback
:class:`~webex_tokens.callback.CallbackServer`, with a paste-the-redirect-URL route when
no browser opens; :func:`device_login` runs the device grant, telling the person the code
to enter on another device. It never writes to the terminal itself: each thing the person must
know or do is a :class:`Notice` given to the ``notify`` callable, and each line pasted
back is read through ``prompt``.

Without a ``notify``, notices go to :func:`stderr_notify`, which writes them on standard
error as earlier releases did, so ``WebexOAuth.login()`` and ``WebexClient(auto_auth=True)``
in a script still tell the user where to go. Every notice is also logged at INFO on the
``webex_tokens.login`` logger, without the authorization URL's query (it holds the login's
``state``).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import sys
import threading
import webbrowser
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from .callback import CallbackInbox, CallbackServer, is_loopback_redirect_uri, pasted_query
from .errors import CallbackError, OAuthError, RedirectURIMismatch
from .token_endpoint import PORTAL, redirect_uri_mismatch_message

if TYPE_CHECKING:
    from .oauth import AuthorizationRequest, WebexOAuth
    from .token import Token

__all__ = [
    "PASTE_PROMPT",
    "Notice",
    "NoticeKind",
    "Notify",
    "browser_login",
    "device_login",
    "login_command",
    "read_line",
    "stderr_notify",
]

log = logging.getLogger(__name__)

#: The kinds of :class:`Notice`.
NoticeKind = Literal["browser_opened", "open_url", "paste_refused", "device_code"]

_PASTE_ATTEMPTS: Final = 5
_PASTE_HINT: Final = "run the login again and paste the address the browser is sent to"
#: What the default notifier writes where a pasted line is expected.
PASTE_PROMPT: Final = "Redirect URL: "


@dataclasses.dataclass(frozen=True)
class Notice:
    """Something the person logging in must know or do.

    ``str(notice)`` is :attr:`message`, so ``notify=print`` works.

    Attributes:
        kind: ``"browser_opened"`` (a browser window was opened at :attr:`url`: log in
            there), ``"open_url"`` (no browser opened: open :attr:`url` yourself, then
            paste the address the browser is sent back to, which starts with
            :attr:`redirect_uri`), ``"paste_refused"`` (the pasted text was refused;
            :attr:`message` says why: paste again), or ``"device_code"`` (a device-grant
            login: open :attr:`url` on any device, a phone say, and enter
            :attr:`user_code`).
        message: the whole notice as text, in English, possibly over several lines.
        url: the authorization URL to open, when there is one (for ``device_code``: the
            verification page, with the code filled in when Webex offers that).
        redirect_uri: where the browser is sent back to.
        user_code: the code to enter on the verification page (``device_code`` only).
    """

    kind: NoticeKind
    message: str
    url: str | None = None
    redirect_uri: str | None = None
    user_code: str | None = None

    def __str__(self) -> str:
        return self.message

    @property
    def expects_paste(self) -> bool:
        """True when a pasted line is read next."""
        return self.kind in ("open_url", "paste_refused")


#: Receives each :class:`Notice` of a login.
Notify = Callable[[Notice], None]


def stderr_notify(notice: Notice) -> None:
    """Write ``notice`` on standard error, then :data:`PASTE_PROMPT` when a pasted line
    is read next: what ``WebexOAuth.login()`` does without a ``notify``."""
    stream = sys.stderr
    if stream is None:  # pythonw: nowhere to write
        return
    stream.write(notice.message + "\n" + (PASTE_PROMPT if notice.expects_paste else ""))
    stream.flush()


def login_command(name: str | None) -> str:
    """The command that logs an account in again (``webex-tokens login --name NAME``),
    for messages that tell the user to log in."""
    import shlex

    return "webex-tokens login" + (f" --name {shlex.quote(name)}" if name else "")


def read_line(question: str) -> str:
    """The default ``prompt``: one line from standard input, writing nothing (the notice
    before it said what to paste, and :func:`stderr_notify` shows ``question``).

    Raises:
        EOFError: standard input is closed, missing or at its end.
    """
    stream = sys.stdin
    try:
        line = stream.readline() if stream is not None else ""
    except (OSError, ValueError):  # closed or unreadable
        line = ""
    if not line:
        raise EOFError("nothing can be read from standard input")
    return line


def _log(notice: Notice) -> None:
    where = urlsplit(notice.url) if notice.url else None
    shown = urlunsplit((where.scheme, where.netloc, where.path, "", "")) if where else None
    log.info("login: %s%s", notice.kind, f" ({shown})" if shown else "")


def browser_login(
    oauth: WebexOAuth,
    *,
    open_browser: Callable[[str], bool] | None = webbrowser.open,
    timeout: float = 300,
    account: str | None = None,
    port: int | None = None,
    prompt: Callable[[str], str] | None = None,
    notify: Notify | None = None,
) -> Token:
    """Run the whole authorization on this machine and return the token.

    With a redirect URI on this machine, a :class:`~webex_tokens.callback.CallbackServer`
    listens for the browser's return. When ``open_browser`` opens a browser, the login
    waits for it; otherwise (None, False or an exception, or a redirect URI on a server)
    the person is told to open the URL and paste back the address the browser was sent
    to, read through ``prompt`` in a thread while the server keeps listening: whichever
    comes first ends the login. A pasted URL is judged in-process, like a callback.

    - Nothing to read (standard input closed or at its end) while no browser was opened
      ends the login at once with a :class:`~webex_tokens.errors.CallbackError` saying
      what to do, instead of waiting for the timeout.
    - A pasted text that is not this login's redirect URL is refused with a
      ``paste_refused`` notice and read again, five times at most.
    - The timeout names the likely causes for the route taken (the browser, the
      redirect URI not registered exactly, a firewall or another program on the port);
      it suggests ``--no-browser`` only when a browser was opened.

    Called by :meth:`WebexOAuth.login <webex_tokens.oauth.WebexOAuth.login>`.

    Args:
        oauth: the integration's OAuth client.
        open_browser: opens a URL, returning False when it could not; None never
            tries (the paste route, ``webex-tokens login --no-browser``).
        timeout: seconds to wait for the browser or the paste.
        account: the label to give the token; by default the email from ``/people/me``.
        port: listen on this port instead of the redirect URI's.
        prompt: reads one pasted line, raising :class:`EOFError` when nothing can be
            read (the question is passed, for a prompt that shows it); default
            :func:`read_line`.
        notify: receives each :class:`Notice`; default :func:`stderr_notify`.

    Raises:
        CallbackError: the port is taken, the callback was wrong, nothing can be pasted,
            or nothing came in time.
        AuthorizationDenied: the user declined.
        RedirectURIMismatch: Webex refused the redirect URI.
        TokenEndpointError: the code exchange failed.
    """
    tell = _Teller(notify)
    state = secrets.token_urlsafe(32)
    server: CallbackServer | None = None
    if is_loopback_redirect_uri(oauth.redirect_uri):
        server = CallbackServer(oauth.redirect_uri, state, port=port, timeout=timeout)
        inbox = server.inbox
        redirect_uri = server.redirect_uri
    elif port is not None:
        raise CallbackError(
            f"--port only applies to a redirect URI on this machine, and "
            f"{oauth.redirect_uri} is not one; drop --port, or set WEBEX_REDIRECT_URI to "
            "an http://localhost:PORT/... URI registered with the integration"
        )
    else:
        inbox = CallbackInbox(state)
        redirect_uri = oauth.redirect_uri
    try:
        request = oauth.authorization_request(redirect_uri=redirect_uri, state=state)
        if server is not None:
            server.start()
        opened = _open(open_browser, request)
        if opened and server is not None:
            tell(
                Notice(
                    "browser_opened",
                    "Log in to Webex in the browser window that opened; if none did, open:\n"
                    f"  {request.url}",
                    url=request.url,
                    redirect_uri=request.redirect_uri,
                )
            )
        else:
            inbox.retry_hint = _PASTE_HINT
            tell(
                Notice(
                    "open_url",
                    "Open this URL in a browser and approve the access:\n"
                    f"  {request.url}\n"
                    "Then paste here the whole address the browser was sent to "
                    f"(it starts with {request.redirect_uri}).",
                    url=request.url,
                    redirect_uri=request.redirect_uri,
                )
            )
            paste = _Paste(
                inbox, request, prompt or read_line, tell, no_browser=open_browser is None
            )
            threading.Thread(target=paste.run, name="webex-tokens-paste", daemon=True).start()
        outcome = inbox.wait(timeout)
    finally:
        if server is not None:
            server.stop()
    if outcome is None:
        raise _timed_out(
            request,
            server,
            timeout,
            inbox.refused,
            browser_opened=opened and server is not None,
        )
    result = outcome.raise_for_error()
    return oauth.exchange_code(result.code, request, account=account)


def device_login(
    oauth: WebexOAuth,
    *,
    notify: Notify | None = None,
    timeout: float = 300,
    account: str | None = None,
) -> Token:
    """Log in with the device grant: no browser or callback on this machine.

    Asks Webex for a device code (:meth:`WebexOAuth.device_authorization
    <webex_tokens.oauth.WebexOAuth.device_authorization>`), tells the person where to
    enter the user code with one ``device_code`` :class:`Notice`, and waits for the
    approval (:meth:`WebexOAuth.poll_device <webex_tokens.oauth.WebexOAuth.poll_device>`).
    Called by :meth:`WebexOAuth.device_login <webex_tokens.oauth.WebexOAuth.device_login>`.

    Args:
        oauth: the integration's OAuth client.
        notify: receives the notice; default :func:`stderr_notify`.
        timeout: seconds to wait for the approval (at most the code's own lifetime).
        account: the label when the person's email is not known.

    Raises:
        DeviceCodeExpired: nobody approved within ``timeout`` or the code's lifetime.
        AuthorizationDenied: the person declined.
        IDTokenInvalid: ``openid`` was asked and the ID token failed verification.
        TokenEndpointError: Webex refused (the integration may not use the device grant:
            see the redirect URIs it needs in the docs) or kept failing.
    """
    tell = _Teller(notify)
    flow = oauth.device_authorization()
    minutes = max(1, round(min(timeout, flow.expires_in()) / 60))
    tell(
        Notice(
            "device_code",
            f"On any device, open {flow.verification_uri} and enter the code {flow.user_code}"
            + (
                f"\n  or open: {flow.verification_uri_complete}"
                if flow.verification_uri_complete
                else ""
            )
            + f"\nWaiting for the approval (up to {minutes} min)...",
            url=flow.link,
            user_code=flow.user_code,
        )
    )
    return oauth.poll_device(flow, timeout=timeout, account=account)


class _Teller:
    """Logs each notice and hands it to the notify callable."""

    def __init__(self, notify: Notify | None) -> None:
        self._notify = notify if notify is not None else stderr_notify

    def __call__(self, notice: Notice) -> None:
        _log(notice)
        self._notify(notice)


def _open(open_browser: Callable[[str], bool] | None, request: AuthorizationRequest) -> bool:
    if open_browser is None:
        return False
    try:
        return bool(open_browser(request.url))
    except RedirectURIMismatch:
        raise RedirectURIMismatch(redirect_uri_mismatch_message(request.redirect_uri)) from None
    except OAuthError:
        raise
    except Exception as exc:  # any failure of the opener means "no browser"
        log.info("could not open a browser: %s", type(exc).__name__)
        return False


class _Paste:
    """Reads pasted redirect URLs in a thread and delivers them to the login's inbox: the
    first one that ends the login, at most :data:`_PASTE_ATTEMPTS` refused ones, or the
    news that nothing can be read at all (which ends the login at once)."""

    def __init__(
        self,
        inbox: CallbackInbox,
        request: AuthorizationRequest,
        prompt: Callable[[str], str],
        tell: _Teller,
        *,
        no_browser: bool,
    ) -> None:
        self.inbox = inbox
        self.request = request
        self.prompt = prompt
        self.tell = tell
        self.no_browser = no_browser

    def run(self) -> None:
        try:
            self._read()
        except Exception as exc:  # a broken prompt or notify: end the login, clearly
            log.info("reading the pasted redirect URL failed: %s", type(exc).__name__)
            self.inbox.cancel(
                CallbackError(
                    f"reading the pasted redirect URL failed ({type(exc).__name__}); "
                    "run the login again"
                )
            )

    def _read(self) -> None:
        for attempt in range(1, _PASTE_ATTEMPTS + 1):
            try:
                text = self.prompt(PASTE_PROMPT)
            except (EOFError, OSError, RuntimeError, ValueError):
                # Standard input is closed, at its end or missing: nothing will come.
                self.inbox.cancel(self._nothing_to_read())
                return
            try:
                query = pasted_query(text, redirect_uri=self.request.redirect_uri)
            except CallbackError as exc:
                reason = str(exc)
            else:
                outcome = self.inbox.deliver(query)
                if outcome.final:
                    return
                reason = (
                    "the pasted URL does not belong to this login (a tab of an older "
                    "login?): paste the address the browser was sent to for this one"
                )
            left = _PASTE_ATTEMPTS - attempt
            if left:
                self.tell(
                    Notice(
                        "paste_refused",
                        f"{reason} ({left} more {'try' if left == 1 else 'tries'})",
                        redirect_uri=self.request.redirect_uri,
                    )
                )
        self.inbox.cancel(
            CallbackError(
                f"{_PASTE_ATTEMPTS} pasted texts in a row were not the redirect URL of this "
                "login; run the login again, approve, and paste the whole address from the "
                f"browser's address bar (it starts with {self.request.redirect_uri})"
            )
        )

    def _nothing_to_read(self) -> CallbackError:
        instead = (
            "or log in on a machine where a browser can open, without --no-browser"
            if self.no_browser
            else "or log in on a machine where a browser can open"
        )
        return CallbackError(
            "no browser was opened and nothing can be read from standard input (it is "
            "closed or at its end), so the redirect URL cannot be pasted; run the login in "
            f"a terminal and paste the redirect URL there, {instead}"
        )


def _timed_out(
    request: AuthorizationRequest,
    server: CallbackServer | None,
    timeout: float,
    refused: int,
    *,
    browser_opened: bool,
) -> CallbackError:
    """The timeout, with the likely causes for the route the login took."""
    came = f"no sign-in came back to {request.redirect_uri} within {timeout:g} seconds" + (
        f" ({refused} answer(s) of another login were refused)" if refused else ""
    )
    if browser_opened:
        first = (
            "the browser did not open or was closed before the sign-in finished (open the "
            "URL shown above by hand, or log in with --no-browser to paste the redirect URL)"
        )
    else:
        first = (
            "the URL shown above was not opened and approved, or the address the browser "
            "was sent to was not pasted here"
        )
    causes = [
        first,
        f"{request.redirect_uri} is not registered exactly for the integration, so Webex "
        "showed redirect_uri_mismatch on its own page instead of coming back (register it "
        f"at {PORTAL}, or set WEBEX_REDIRECT_URI to the one registered there)",
    ]
    if server is not None:
        causes.append(
            f"a firewall or another program on port {server.port} kept the browser from "
            "reaching this machine"
        )
    listed = "; ".join(causes[:-1]) + "; or " + causes[-1]
    return CallbackError(
        f"{came}; the likely causes: {listed}; then run the login again (with a longer "
        "--timeout if the sign-in needs more time)"
    )
