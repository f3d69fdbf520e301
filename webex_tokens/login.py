"""The interactive login on this machine: the browser, the pasted redirect URL, and what
the person at the keyboard is told.

:func:`browser_login` runs the authorization-code flow of a
:class:`~webex_tokens.oauth.WebexOAuth` through a loopback
:class:`~webex_tokens.callback.CallbackServer`, with a paste-the-redirect-URL route when
no browser opens. It never writes to the terminal itself: each thing the person must
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

from .callback import CallbackResult, CallbackServer, is_loopback_redirect_uri, parse_callback_url
from .errors import CallbackError, OAuthError, RedirectURIMismatch
from .token_endpoint import redirect_uri_mismatch_message

if TYPE_CHECKING:
    from .oauth import AuthorizationRequest, WebexOAuth
    from .token import Token

__all__ = [
    "PASTE_PROMPT",
    "Notice",
    "NoticeKind",
    "Notify",
    "browser_login",
    "login_command",
    "read_line",
    "stderr_notify",
]

log = logging.getLogger(__name__)

#: The kinds of :class:`Notice`.
NoticeKind = Literal["browser_opened", "open_url", "paste_refused"]

_PASTE_ATTEMPTS: Final = 5
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
            :attr:`redirect_uri`), or ``"paste_refused"`` (the pasted text was refused;
            :attr:`message` says why: paste again).
        message: the whole notice as text, in English, possibly over several lines.
        url: the authorization URL to open, when there is one.
        redirect_uri: where the browser is sent back to.
    """

    kind: NoticeKind
    message: str
    url: str | None = None
    redirect_uri: str | None = None

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

    See :meth:`WebexOAuth.login <webex_tokens.oauth.WebexOAuth.login>`, which calls it.

    Args:
        oauth: the integration's OAuth client.
        open_browser: opens a URL, returning False when it could not; None never
            tries (the paste route, ``webex-tokens login --no-browser``).
        timeout: seconds to wait for the callback.
        account: the label to give the token; by default the email from ``/people/me``.
        port: listen on this port instead of the redirect URI's.
        prompt: reads one pasted line (the question is passed, for a prompt that shows
            it); default: :func:`input`.
        notify: receives each :class:`Notice`; default :func:`stderr_notify`.

    Raises:
        CallbackError: the port is taken, the callback was wrong, or none came in time.
        AuthorizationDenied: the user declined.
        RedirectURIMismatch: Webex refused the redirect URI.
        TokenEndpointError: the code exchange failed.
    """
    tell = _Teller(notify)
    state = secrets.token_urlsafe(32)
    server: CallbackServer | None = None
    if is_loopback_redirect_uri(oauth.redirect_uri):
        server = CallbackServer(oauth.redirect_uri, state, port=port, timeout=timeout)
        redirect_uri = server.redirect_uri
    elif port is not None:
        raise CallbackError(
            f"--port only applies to a redirect URI on this machine, and "
            f"{oauth.redirect_uri} is not one; drop --port, or set WEBEX_REDIRECT_URI to "
            "an http://localhost:PORT/... URI registered with the integration"
        )
    else:
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
            result = server.wait()
        else:
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
            result = _wait_for_paste(server, request, prompt or read_line, tell)
    finally:
        if server is not None:
            server.stop()
    return oauth.exchange_code(result.code, request, account=account)


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


def _wait_for_paste(
    server: CallbackServer | None,
    request: AuthorizationRequest,
    prompt: Callable[[str], str],
    tell: _Teller,
) -> CallbackResult:
    """The pasted redirect URL or the browser's callback, whichever comes first."""
    if server is None:
        pasted = _read_pasted(request, prompt, tell)
        if pasted is None:
            raise CallbackError(
                "no redirect URL was pasted; run the login again and paste the address "
                "the browser was sent to after approving"
            )
        if isinstance(pasted[1], OAuthError):
            raise pasted[1]
        return pasted[1]

    def paste_then_deliver() -> None:
        pasted = _read_pasted(request, prompt, tell)
        if pasted is not None and pasted[0]:
            # Hand the pasted answer to the callback server's inbox in this process (never
            # over HTTP, where another local program could listen): it judges it like a
            # browser's and ends the wait, so one place decides how the login ends.
            server.deliver(pasted[0])

    threading.Thread(target=paste_then_deliver, name="webex-tokens-paste", daemon=True).start()
    return server.wait()


def _read_pasted(
    request: AuthorizationRequest, prompt: Callable[[str], str], tell: _Teller
) -> tuple[str, CallbackResult | OAuthError] | None:
    """Prompt until a redirect URL parses: (its query, the result or the error to
    raise), or None when nothing was pasted."""
    for attempt in range(1, _PASTE_ATTEMPTS + 1):
        try:
            text = prompt(PASTE_PROMPT)
        except (EOFError, KeyboardInterrupt, OSError):
            return None
        try:
            result = parse_callback_url(text, request.state, redirect_uri=request.redirect_uri)
        except CallbackError as exc:
            if attempt == _PASTE_ATTEMPTS:
                return "", exc
            tell(Notice("paste_refused", f"error: {exc}", redirect_uri=request.redirect_uri))
            continue
        except OAuthError as exc:  # the user declined: the server reports it too
            return urlsplit(text.strip()).query, exc
        return urlsplit(text.strip()).query, result
    return None
