"""Worker processes of the refresh-window suite (``test_refresh_window.py``).

Each is started by :func:`webex_tokens.testing.processes.start_workers`, which passes the
start event last.
"""

from __future__ import annotations

import time
from typing import Any

from webex_tokens.errors import WebexTokensError
from webex_tokens.journal import JournalEntry, RescueJournal
from webex_tokens.keeper import Keeper
from webex_tokens.oauth import WebexOAuth
from webex_tokens.refresh import ensure_fresh
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore
from webex_tokens.token import Token


class _PausedAfterTheJournal(RescueJournal):
    """The user's journal, which stops the refresh once Webex's answer is in it: the
    process then waits, between the journal and the store's write, to be killed."""

    def __init__(self, journaled: Any) -> None:
        super().__init__()
        self._journaled = journaled

    def keep(
        self,
        store: TokenStore,
        name: str,
        token: Token,
        *,
        previous: Token | None = None,
        reason: str = "refresh",
    ) -> JournalEntry | None:
        entry = super().keep(store, name, token, previous=previous, reason=reason)
        self._journaled.set()
        time.sleep(120)  # SIGKILLed here
        return entry


def refresh_killed_in_the_window(  # noqa: PLR0917 - start_workers passes arguments by position
    url: str,
    name: str,
    base_url: str,
    client_id: str,
    client_secret: str,
    journaled: Any,
    start: Any,
) -> None:
    """Refresh ``name`` and stop, to be SIGKILLed, after the journal and before the write."""
    start.wait()
    oauth = WebexOAuth(client_id, client_secret, base_url=base_url, timeout=30, backoff=0)
    with open_url(url) as store:
        ensure_fresh(store, name, oauth, journal=_PausedAfterTheJournal(journaled))


def next_operation(  # noqa: PLR0917 - start_workers passes arguments by position
    url: str,
    name: str,
    base_url: str,
    client_id: str,
    client_secret: str,
    results: Any,
    start: Any,
) -> None:
    """The next operation on the account, in a process of its own: its current token,
    through a keeper; puts ``("ok", access_token)`` or ``("error", class, message)``."""
    start.wait()
    oauth = WebexOAuth(client_id, client_secret, base_url=base_url, timeout=30, backoff=0)
    try:
        with open_url(url) as store, Keeper(store, oauth=oauth) as keeper:
            token = keeper.current(name)
    except WebexTokensError as exc:
        results.put(("error", type(exc).__name__, str(exc)))
    else:
        results.put(("ok", token.access_token))
