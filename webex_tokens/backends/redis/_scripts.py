"""The Lua scripts of the Redis store and the lease steps built on them.

Each script runs atomically on the server: taking a lease reads the record in the same
step, renewing and releasing compare the owner first, and the fenced write of an
``update`` compares the owner and the record's digest, writes the record and the names
set and releases the lease, all at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ...leases import Busy

if TYPE_CHECKING:
    from . import RedisStore

__all__ = [
    "FENCED_WRITE",
    "LOST",
    "POLL_INTERVAL",
    "SUPERSEDED",
    "WRITTEN",
    "Grant",
    "RedisLeases",
    "digest",
]

#: The longest pause between two attempts to take a lease (seconds).
POLL_INTERVAL: Final = 0.02

# -- the Lua scripts (each runs atomically on the server) --------------------------------

#: KEYS: lease, record. ARGV: owner, ttl in ms. Takes the lease if it is free (or
#: already this owner's: a retried attempt) and reads the record in the same step;
#: otherwise answers the holder's time left and owner.
_ACQUIRE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
   or redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, redis.call('GET', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[1])}
"""
#: KEYS: lease. ARGV: owner, ttl in ms. Extends the lease only if it is still the owner's.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
#: KEYS: lease. ARGV: owner. Compare-and-delete: never releases another owner's lease.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
#: KEYS: lease, record, names. ARGV: owner, SHA-1 of the record read ('' if none),
#: 'set' or 'del', the new record, the name. The fenced write of ``update``: 0 when the
#: lease is no longer the owner's (nothing written), 2 when the record changed since it
#: was read (a put or delete landed: nothing written), 1 when written. Releases the
#: lease unless it was lost.
FENCED_WRITE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local current = redis.call('GET', KEYS[2])
local seen = ''
if current then
  seen = redis.sha1hex(current)
end
local outcome = 1
if seen ~= ARGV[2] then
  outcome = 2
elseif ARGV[3] == 'set' then
  redis.call('SET', KEYS[2], ARGV[4])
  redis.call('ZADD', KEYS[3], 0, ARGV[5])
else
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[5])
end
redis.call('DEL', KEYS[1])
return outcome
"""
LOST, WRITTEN, SUPERSEDED = 0, 1, 2


def digest(data: bytes | None) -> str:
    """The SHA-1 the fenced write compares with (a change detector, not a secret)."""
    return "" if data is None else hashlib.sha1(data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Grant:
    """A Redis lease: its owner string, and the record read when it was taken."""

    owner: str
    record: bytes | None


class RedisLeases:
    """The atomic lease steps of :mod:`webex_tokens.leases`, as Lua scripts."""

    poll_interval = POLL_INTERVAL

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        client = store.client
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def try_acquire(self, key: str, owner: str, ttl: float) -> Grant | Busy:
        """``SET NX PX`` (or the owner's own lease again) and read the record, at once."""
        store = self._store
        keys = [store._lease_key(key), store._record_key(key)]
        answer = store._call(key, lambda: self._acquire(keys, [owner, ms(ttl)]), retry=True)
        if answer[0] == 1:
            return Grant(owner, answer[1] if len(answer) > 1 else None)
        time_left = answer[1] / 1000 if len(answer) > 1 and answer[1] > 0 else None
        holder = answer[2].decode("utf-8", "replace") if len(answer) > 2 and answer[2] else None
        return Busy(retry_after=time_left, holder=holder)

    def renew(self, key: str, grant: Grant, ttl: float) -> Grant | None:
        """``PEXPIRE`` the lease if it still holds the grant's owner."""
        store = self._store
        keys = [store._lease_key(key)]
        renewed = store._call(key, lambda: self._renew(keys, [grant.owner, ms(ttl)]), retry=True)
        return grant if renewed else None

    def release(self, key: str, grant: Grant) -> None:
        """Compare-and-delete: ``DEL`` the lease only if it holds the grant's owner."""
        store = self._store
        keys = [store._lease_key(key)]
        store._call(key, lambda: self._release(keys, [grant.owner]), retry=True)


def ms(seconds: float) -> int:
    """Seconds as whole milliseconds (at least 1), as ``PX`` takes them."""
    return max(1, round(seconds * 1000))
