"""Deprecated: :class:`PendingLogins`, the server-side table of logins in progress.

The web login no longer keeps logins in progress in the server: they travel sealed in the
browser's cookie (:mod:`webex_tokens.web.flow`), so a flood of requests cannot evict
them and any worker can finish them. This class stays importable for code that used it
directly, warns when it is made, and will be removed in a future release.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import logging
import threading
import time
import warnings
from collections.abc import Callable

from ..errors import ConfigError
from ..oauth import AuthorizationRequest

__all__ = ["PendingLogins"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Pending:
    request: AuthorizationRequest
    browser: str
    expires: float


class PendingLogins:
    """Deprecated: authorization requests waiting for their callback, keyed by ``state``.

    .. deprecated:: unreleased
        :class:`~webex_tokens.web.flow.LoginFlow` keeps logins in progress in a sealed
        browser cookie and no longer uses this class; it will be removed.

    Thread-safe, at most ``max_size`` entries (the oldest is dropped to make room) and
    each kept ``ttl`` seconds. They live in this process's memory: run the app as one
    process, or route a browser's requests to the same process (sticky sessions).

    Args:
        max_size: how many logins may be in progress at once.
        ttl: seconds a login may take from ``/login`` to the callback.
        clock: the monotonic clock (for tests).

    Raises:
        ConfigError: ``max_size`` or ``ttl`` is not positive.
    """

    def __init__(
        self,
        max_size: int = 1000,
        ttl: float = 600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        warnings.warn(
            "PendingLogins is deprecated: LoginFlow keeps logins in progress in a sealed "
            "browser cookie and no longer uses it; it will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        if not max_size >= 1 or not ttl > 0:
            raise ConfigError(
                f"max_pending must be 1 or more and pending_ttl a positive number of seconds, "
                f"not {max_size!r} and {ttl!r}"
            )
        self.max_size = int(max_size)
        self.ttl = float(ttl)
        self._clock = clock
        self._entries: collections.OrderedDict[str, _Pending] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._entries)

    def _purge(self) -> None:
        now = self._clock()
        while self._entries:
            state, oldest = next(iter(self._entries.items()))
            if oldest.expires > now:
                break
            del self._entries[state]

    def add(self, request: AuthorizationRequest, browser: str) -> None:
        """Keep ``request`` for the browser whose session id is ``browser``."""
        with self._lock:
            self._purge()
            while len(self._entries) >= self.max_size:
                self._entries.popitem(last=False)
                log.info("too many logins in progress: the oldest one was dropped")
            self._entries[request.state] = _Pending(request, browser, self._clock() + self.ttl)

    def take(self, state: str, browser: str | None) -> AuthorizationRequest | str:
        """Remove and return the request for ``state`` if ``browser`` started it.

        Returns:
            The request, or why not: ``"unknown"`` (never issued, expired, dropped or
            already used) or ``"other-browser"`` (then it stays, for its own browser).
        """
        with self._lock:
            self._purge()
            entry = self._entries.get(state)
            if entry is None:
                return "unknown"
            if browser is None or not hmac.compare_digest(browser.encode(), entry.browser.encode()):
                return "other-browser"
            del self._entries[state]
            return entry.request
