"""Ended sessions, recorded in a token store that every worker and host of the app shares.

A browser signed in through the web login holds an account cookie naming the account and
a random session id, fresh at each login. ``/logout`` records that session as ended here,
and every later request presenting the cookie is checked against this record, on any
worker or host using the same store: a copied cookie stops working when its user signs
out, not only when it expires.

The records live in an ordinary :class:`~webex_tokens.store.TokenStore`, so any backend
(SQLite for the processes of one host, PostgreSQL, MariaDB, Redis or Vault for several
hosts) shares them with its own guarantees. Each ended session is one record:

- named ``logout:`` and 40 hex digits of the SHA-256 of the session id (the id itself,
  which is in the cookie, is never stored);
- a ``personal``-kind :class:`~webex_tokens.token.Token` whose ``expires_at`` is when
  the cookie would have expired anyway; after that the record is useless and removed by
  the next sweep (at most one an hour per process, during a logout).

Only a logout of a valid, unexpired session writes a record, so anonymous requests
cannot grow the store; each record stands for a completed Webex login.

Use a store of its own for these records (the default is an SQLite file in the user data
directory, beside the embedded default token store): the app's token store would list
them as accounts.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from ..errors import ConfigError, StoreError
from ..store import TokenStore
from ..token import Token

__all__ = ["SESSION_PREFIX", "SessionRevocations", "default_session_store_url"]

log = logging.getLogger(__name__)

#: The prefix of the names of ended-session records.
SESSION_PREFIX: Final = "logout:"
#: Seconds between two sweeps of expired records by one process.
_SWEEP_INTERVAL: Final = 3600.0
_MARK: Final = "ended-session"


def default_session_store_url() -> str:
    """Where ended sessions are recorded by default: ``web-sessions.db`` (SQLite) beside
    the embedded default token store, in the user data directory. Shared by every process
    of one host that runs as the same user; give several hosts a shared store instead."""
    from ..settings import default_store_url

    path = Path(default_store_url().removeprefix("sqlite:///"))
    return f"sqlite:///{path.with_name('web-sessions.db')}"


def _record_name(session_id: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()[:40]


class SessionRevocations:
    """The ended sessions of an app's web login, kept in a shared token store.

    Args:
        store: the store holding the records, or a function opening it on first use (so
            an app that never signs anyone in creates nothing).
        clock: the wall clock, seconds since the epoch (for tests).
    """

    def __init__(
        self,
        store: TokenStore | Callable[[], TokenStore],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store if isinstance(store, TokenStore) else None
        self._open = None if isinstance(store, TokenStore) else store
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    def __repr__(self) -> str:
        where = self._store.url if self._store is not None else "not opened yet"
        return f"SessionRevocations({where})"

    @classmethod
    def for_app(
        cls,
        session_store: TokenStore | str | None,
        token_store: TokenStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> SessionRevocations:
        """The ended sessions of an app whose tokens are in ``token_store``.

        Args:
            session_store: a TokenStore, a store URL or a configured store name; None for
                :func:`default_session_store_url` (opened on first use).
            token_store: the app's token store, which must not hold these records.
            clock: the wall clock (for tests).

        Raises:
            ConfigError: ``session_store`` is the token store itself.
            StoreError: a named ``session_store`` cannot be opened.
        """
        if session_store is token_store:
            raise ConfigError(
                "session_store must not be the token store itself: its records would be "
                "listed as accounts; give it a store of its own, e.g. "
                "sqlite:///web-sessions.db"
            )
        if isinstance(session_store, str):
            from ..registry import open_store

            return cls(open_store(session_store), clock=clock)
        if session_store is not None:
            return cls(session_store, clock=clock)
        if _shared_by_hosts(token_store.url):
            log.warning(
                "logouts are recorded in %s, which only the processes of this host share, "
                "while the tokens are in a store that several hosts can share; if the app "
                "runs on several hosts, pass session_store= a store they all reach, or a "
                "session ended on one host stays valid on the others",
                default_session_store_url(),
            )

        def open_default() -> TokenStore:
            from ..registry import open_url

            return open_url(default_session_store_url())

        return cls(open_default, clock=clock)

    @property
    def store(self) -> TokenStore:
        """The store of the records (opened on first use).

        Raises:
            StoreError: the store cannot be opened.
        """
        with self._lock:
            if self._store is None:
                assert self._open is not None
                self._store = self._open()
            return self._store

    def revoke(self, session_id: str, until: float) -> None:
        """Record that the session ``session_id`` has ended; its cookie would expire at
        ``until`` (seconds since the epoch), after which the record may go.

        Raises:
            StoreError: the record could not be written (the session is not ended).
        """
        now = self._clock()
        expires = datetime.fromtimestamp(max(until, now), timezone.utc)
        record = Token(
            access_token=_MARK,
            kind="personal",
            expires_at=expires,
            saved_at=datetime.fromtimestamp(now, timezone.utc),
        )
        self.store.put(_record_name(session_id), record)
        if now - self._last_sweep >= _SWEEP_INTERVAL:
            self._last_sweep = now
            try:
                self.sweep()
            except StoreError as exc:  # the logout itself is recorded: say so, go on
                log.warning("could not sweep expired ended-session records: %s", exc)

    def is_revoked(self, session_id: str) -> bool:
        """Whether the session ``session_id`` has ended.

        Raises:
            StoreError: the store cannot be read (callers treat the session as ended).
        """
        return self.store.get(_record_name(session_id)) is not None

    def sweep(self) -> int:
        """Remove the records of sessions whose cookies have expired anyway; how many.

        A record that cannot be read or removed is left for the next sweep.
        """
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        removed = 0

        def drop_if_expired(token: Token | None) -> Token | None:
            if token is None or (token.expires_at is not None and token.expires_at <= now):
                return None
            return token

        store = self.store
        for name in store.names():
            if not name.startswith(SESSION_PREFIX):
                continue
            try:
                if store.update(name, drop_if_expired) is None:
                    removed += 1
            except StoreError as exc:
                log.warning("ended-session record %s left in place: %s", name, exc)
        if removed:
            log.info("removed %d expired ended-session records from %s", removed, store.url)
        return removed


def _shared_by_hosts(url: str) -> bool:
    """Whether a store URL names a backend that several hosts may share."""
    schemes = urlsplit(url).scheme.lower().split("+")
    return any(s in ("postgresql", "mysql", "mariadb", "redis", "rediss", "vault") for s in schemes)
