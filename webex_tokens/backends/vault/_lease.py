"""The leases of the Vault store: check-and-set writes of one lock secret per account."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from ...leases import Busy
from ._kv import Secret

if TYPE_CHECKING:
    from . import VaultStore

__all__ = ["POLL_INTERVAL", "Grant", "VaultLeases"]

log = logging.getLogger("webex_tokens.backends.vault")

#: The longest pause between two attempts to take a lease (seconds).
POLL_INTERVAL: Final = 0.05
_MEMORY: Final = 4096  # entries kept in the small per-store caches
log = logging.getLogger("webex_tokens.backends.vault")


@dataclass(frozen=True)
class Grant:
    """A Vault lease: its owner, the lock secret's version it wrote, and whether it
    took the lease over from a holder whose lease had lapsed."""

    owner: str
    version: int
    taken_over: bool


class VaultLeases:
    """The atomic lease steps of :mod:`webex_tokens.leases` as check-and-set writes of
    the lock secret ``MOUNT/PATH/.locks/<name>``: ``{"owner": ..., "ttl": seconds}``
    while held, ``{"owner": ""}`` once released.

    Whether a held lease has lapsed is judged on the Vault server's clock: the lock
    version's ``created_time`` plus the holder's TTL against the ``Date`` of the answer
    (to the second, so a takeover comes up to a second late, never early).
    """

    poll_interval = POLL_INTERVAL

    def __init__(self, store: VaultStore) -> None:
        self._store = store
        self._released: dict[str, int] = {}  # name -> version of our own release
        self._first_seen: dict[tuple[str, int], float] = {}  # when no Date header came
        self._memory = threading.Lock()

    def _lock_path(self, name: str) -> str:
        return self._store._lock_path(name)

    def _what(self, name: str) -> str:
        return f"the lease on {self._store._describe(name)}"

    def _write(self, name: str, data: dict[str, Any], cas: int) -> int | None:
        return self._store.kv.write(self._lock_path(name), data, cas, self._what(name))

    def read(self, name: str) -> Secret:
        """The lock secret of ``name`` as it is now."""
        return self._store.kv.read(self._lock_path(name), self._what(name))

    def try_acquire(self, key: str, owner: str, ttl: float) -> Grant | Busy:
        """Write the lock secret naming ``owner``, with check-and-set on the version
        read (or remembered from this store's own last release)."""
        held = {"owner": owner, "ttl": ttl}
        with self._memory:
            ours = self._released.pop(key, None)
        if ours is not None:  # we released it last: if nobody wrote since, it is free
            version = self._write(key, held, ours)
            if version is not None:
                return Grant(owner, version, False)
        lock = self.read(key)
        data = lock.data or {}
        holder = data.get("owner") if isinstance(data.get("owner"), str) else None
        if lock.version == 0 or lock.data is None or holder == "":
            version = self._write(key, held, lock.version)
            return Grant(owner, version, False) if version is not None else Busy()
        if holder == owner:
            # An earlier attempt of ours went through unanswered: write again, so that
            # the server's clock for the lease starts after this attempt was sent.
            version = self._write(key, held, lock.version)
            return Grant(owner, version, False) if version is not None else Busy()
        left = self._time_left(key, lock, data)
        if left > 0:
            return Busy(retry_after=left, holder=holder)
        version = self._write(key, held, lock.version)
        if version is None:
            return Busy()
        log.info("took over the lapsed lease on %s from %s", self._store._describe(key), holder)
        return Grant(owner, version, True)

    def _time_left(self, key: str, lock: Secret, data: dict[str, Any]) -> float:
        try:
            ttl = float(data.get("ttl", self._store.lease_ttl))
        except (TypeError, ValueError):
            ttl = self._store.lease_ttl
        if lock.created is not None and lock.server_now is not None:
            return (lock.created + timedelta(seconds=ttl) - lock.server_now).total_seconds()
        # No server time: count from when this process first saw this version.
        now = time.monotonic()
        with self._memory:
            if len(self._first_seen) > _MEMORY:
                self._first_seen.clear()
            first = self._first_seen.setdefault((key, lock.version), now)
        return ttl - (now - first)

    def renew(self, key: str, grant: Grant, ttl: float) -> Grant | None:
        """Write the lock secret again, with check-and-set on the grant's version."""
        held = {"owner": grant.owner, "ttl": ttl}
        version = self._write(key, held, grant.version)
        if version is None:
            # Our last renewal may have gone through unanswered: it is still ours only
            # if the owner is; then write once more, so the server's clock restarts now.
            lock = self.read(key)
            if (lock.data or {}).get("owner") != grant.owner:
                return None
            version = self._write(key, held, lock.version)
            if version is None:
                return None
        return Grant(grant.owner, version, grant.taken_over)

    def release(self, key: str, grant: Grant) -> None:
        """Write the lock secret naming no owner, with check-and-set on the grant's
        version: a later owner's lease is never released."""
        version = self._write(key, {"owner": ""}, grant.version)
        if version is None:
            lock = self.read(key)
            if (lock.data or {}).get("owner") != grant.owner:
                return  # another owner's lease now: leave it alone
            version = self._write(key, {"owner": ""}, lock.version)
        if version is not None:
            with self._memory:
                if len(self._released) > _MEMORY:
                    self._released.clear()
                self._released[key] = version

    def is_held_by(self, key: str, owner: str) -> bool:
        """True if the lock secret still names ``owner``."""
        return (self.read(key).data or {}).get("owner") == owner
