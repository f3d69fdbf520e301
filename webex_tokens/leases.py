"""Fenced leases: one writer per account across hosts, for stores without row locks.

Redis and Vault cannot hold a lock for the length of a transaction the way a database
holds a row lock, so their ``update`` takes a *lease*: a claim on one account that the
server forgets after a time to live (TTL) unless its holder renews it. A process that
dies holding a lease therefore blocks that account only, and only until the TTL runs
out. The mechanism is written once, here; each store supplies three atomic steps on its
server (a :class:`LeaseBackend`), and this module does the rest:

- **acquire**: :meth:`Leases.hold` asks the backend to take the lease for a random
  owner, and polls (with a growing, jittered pause, never longer than the backend's
  ``poll_interval`` or the holder's time left) until it gets it or ``lock_timeout``
  passes, which raises :class:`~webex_tokens.errors.LockTimeout`;
- **renew**: while the caller works (a refresh may take seconds), one background thread
  per :class:`Leases` renews every lease it holds each ``ttl / 3`` seconds;
- **release**: when the caller is done the lease is given back, by its owner only (the
  backend compares the owner in the same atomic step as the delete).

A lease alone cannot make a write safe: a holder paused for longer than the TTL (a
stopped process, a partitioned host) may wake up and write after another writer took
over. So the write of an ``update`` is **fenced**: the store performs it in one atomic
step that also checks the lease is still the writer's (Redis: a Lua script comparing
the owner; Vault: check-and-set on the record's version), and when it is not, writes
nothing and raises :class:`~webex_tokens.errors.LockLost`. :meth:`Lease.check` is the
local half of that check, for stores whose server-side check cannot see the lease
itself (it renews synchronously when the lease is about to lapse).

Every duration here is measured on the monotonic clock of this process, never compared
with another host's clock. A lease's local deadline is the moment its last successful
acquire or renew was *sent* plus the TTL: the server started counting later than that,
so the local deadline never outlives the server's.

Third-party backends use the same module: implement :class:`LeaseBackend` and wrap
``_update_record`` in ``with leases.hold(name) as lease:``, then fence the write.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from .errors import LockLost, LockTimeout, StoreError
from .locks import DEFAULT_LOCK_TIMEOUT

__all__ = [
    "DEFAULT_LEASE_TTL",
    "MIN_LEASE_TTL",
    "Busy",
    "Lease",
    "LeaseBackend",
    "Leases",
    "new_owner",
]

log = logging.getLogger(__name__)

#: Seconds a lease lives without renewal: how long a dead holder can block its account.
DEFAULT_LEASE_TTL: Final = 15.0
#: The shortest TTL accepted: below it, renewals would be a constant stream of requests.
MIN_LEASE_TTL: Final = 0.2
#: Renewals per TTL: a holder renews after a third of it, so two renewals may fail in a
#: row (a network blip, a slow server) before the lease lapses.
RENEWALS_PER_TTL: Final = 3
#: The part of the TTL that must be left for :meth:`Lease.check` to let a write go out
#: without first renewing: the write must reach the server before the lease lapses.
WRITE_MARGIN: Final = 0.2
#: The first pause between two attempts to acquire (seconds); it doubles from there.
_FIRST_PAUSE: Final = 0.001

G = TypeVar("G")


@dataclass(frozen=True)
class Busy:
    """What :meth:`LeaseBackend.try_acquire` answers when another owner holds the lease.

    Attributes:
        retry_after: seconds until the holder's lease lapses, when the server said;
            the waiter sleeps no longer than this before trying again.
        holder: the holder's owner string (see :func:`new_owner`), when known, so that a
            :class:`~webex_tokens.errors.LockTimeout` can say who held the account.
    """

    retry_after: float | None = None
    holder: str | None = None


class LeaseBackend(Protocol[G]):
    """The three atomic steps a store performs on its server for a lease.

    ``G`` is the backend's *grant*: whatever it needs to prove ownership later (Redis:
    the owner string; Vault: the version of the lock secret it wrote). Each method is
    one atomic operation on the server; :class:`Leases` never holds a local lock while
    calling one, except that renewing and releasing the same lease never overlap.

    Attributes:
        poll_interval: the longest pause, in seconds, between two attempts to acquire.
    """

    poll_interval: float

    def try_acquire(self, key: str, owner: str, ttl: float) -> G | Busy:
        """Take the lease ``key`` for ``owner`` for ``ttl`` seconds if it is free or has
        lapsed; return the grant, or :class:`Busy` when another owner holds it.

        Must be safe to repeat with the same owner (a retry after a lost answer):
        finding the lease already held by ``owner`` counts as acquiring it.
        """
        ...

    def renew(self, key: str, grant: G, ttl: float) -> G | None:
        """Extend the lease to ``ttl`` seconds from now if it is still ``grant``'s;
        return the grant to use from now on, or None when the lease was lost."""
        ...

    def release(self, key: str, grant: G) -> None:
        """Give the lease up if it is still ``grant``'s; never touch another owner's."""
        ...


def new_owner() -> str:
    """A fresh owner string: ``host/pid/random``, unique to one acquisition.

    The random part (96 bits) makes it unguessable and unique; the host and process
    show an operator who holds a lease. It holds nothing secret.
    """
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-._")[:64]
    return f"{host or 'host'}/{os.getpid()}/{secrets.token_hex(12)}"


class Lease(Generic[G]):
    """A lease held by this process; :meth:`Leases.hold` makes one, nobody else should.

    Attributes:
        key: what the lease is on (an account name).
        owner: the random owner string the server holds while the lease is this one's.
        ttl: the lease's time to live in seconds.
    """

    def __init__(self, leases: Leases[G], key: str, owner: str, grant: G, sent: float) -> None:
        self.key = key
        self.owner = owner
        self.ttl = leases.ttl
        self._leases = leases
        self._grant = grant
        self._valid_until = sent + leases.ttl
        self._next_renewal = sent + leases.ttl / RENEWALS_PER_TTL
        self._lost = False
        self._done = False
        # Renewing and releasing this lease never overlap: both change the grant.
        self._mutex = threading.Lock()

    @property
    def grant(self) -> G:
        """The backend's proof of ownership, as of the last acquire or renewal."""
        return self._grant

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease taken over (the server said so)."""
        return self._lost

    def valid_for(self) -> float:
        """Seconds the lease surely lasts by this process's clock (0 when lost or lapsed)."""
        if self._lost:
            return 0.0
        return max(0.0, self._valid_until - time.monotonic())

    def check(self) -> None:
        """Make sure a write sent now reaches the server while the lease is still held.

        When less than a fifth of the TTL is left, renews synchronously first (a paused
        holder that nobody replaced simply carries on).

        Raises:
            LockLost: the lease was lost, or has lapsed and cannot be renewed; the
                caller must write nothing.
        """
        if not self._lost and self.valid_for() >= self.ttl * WRITE_MARGIN:
            return
        if not self._lost:
            self._leases._renew(self)
        if self._lost or self.valid_for() < self.ttl * WRITE_MARGIN:
            raise self._leases.lost_error(self.key)

    def mark_lost(self) -> None:
        """Record that the server refused this lease (a fenced write found it gone)."""
        self._lost = True

    def end_renewals(self) -> None:
        """Stop renewing this lease and leave releasing it to the caller.

        For a store whose fenced write also releases the lease (one round trip instead
        of two): call it just before sending that write, so that no renewal races with
        the release.
        """
        with self._mutex:
            self._done = True

    def __repr__(self) -> str:
        state = "lost" if self._lost else f"valid for {self.valid_for():.1f} s"
        return f"<Lease {self.key!r} {state}>"


class Leases(Generic[G]):
    """Acquire, renew and release leases through one :class:`LeaseBackend`.

    A store keeps one ``Leases`` and calls :meth:`hold` around the read, ``fn`` and the
    fenced write of each ``update``. Renewals run on one daemon thread, started on first
    use and stopped by :meth:`close`.

    Args:
        backend: the store's atomic lease steps.
        ttl: the lease's time to live in seconds (renewed every ``ttl / 3``).
        lock_timeout: seconds to wait for a lease held by another owner before
            :class:`~webex_tokens.errors.LockTimeout`.
        describe: turns a key into words for error messages (``"the token 'alice' in
            redis://host/0"``); by default the key in quotes.

    Raises:
        ValueError: ``ttl`` is below :data:`MIN_LEASE_TTL` or ``lock_timeout`` is not
            positive.
    """

    def __init__(
        self,
        backend: LeaseBackend[G],
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        describe: Callable[[str], str] = repr,
    ) -> None:
        if not ttl >= MIN_LEASE_TTL:
            raise ValueError(f"a lease TTL must be at least {MIN_LEASE_TTL} seconds, not {ttl}")
        if not lock_timeout > 0:
            raise ValueError(
                f"lock_timeout must be a positive number of seconds, not {lock_timeout}"
            )
        self.backend = backend
        self.ttl = float(ttl)
        self.lock_timeout = float(lock_timeout)
        self.describe = describe
        self._renewer: _Renewer[G] = _Renewer(self)

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[Lease[G]]:
        """Hold the lease ``key`` for the body of the ``with`` block.

        Renewed in the background while the body runs; released when it ends, however it
        ends (unless the store releases it in its fenced write, see
        :meth:`Lease.end_renewals`).

        Raises:
            LockTimeout: another owner held the lease for longer than ``lock_timeout``.
            StoreError: the server could not be reached (from the backend).
        """
        lease = self._acquire(key)
        self._renewer.add(lease)
        try:
            yield lease
        finally:
            self._release(lease)

    def lost_error(self, key: str) -> LockLost:
        """The :class:`~webex_tokens.errors.LockLost` for a write refused on ``key``."""
        return LockLost(
            f"the lease on {self.describe(key)} lapsed while this process worked (it was "
            f"paused, or could not renew it, for more than lease_ttl={self.ttl:g} seconds) "
            "and another writer may have taken it over; nothing was written: retry the "
            "operation, and raise ?lease_ttl=SECONDS if holders are often stalled that long"
        )

    def close(self) -> None:
        """Stop the renewal thread; leases still held stop being renewed."""
        self._renewer.stop()

    # -- the steps --------------------------------------------------------------------

    def _acquire(self, key: str) -> Lease[G]:
        owner = new_owner()
        started = time.monotonic()
        deadline = started + self.lock_timeout
        pause = _FIRST_PAUSE
        while True:
            sent = time.monotonic()
            answer = self.backend.try_acquire(key, owner, self.ttl)
            if not isinstance(answer, Busy):
                return Lease(self, key, owner, answer, sent)
            now = time.monotonic()
            if now >= deadline:
                raise self._timeout_error(key, answer.holder)
            wait = min(pause, self.backend.poll_interval, deadline - now)
            if answer.retry_after is not None:
                wait = min(wait, max(answer.retry_after, 0.0) + _FIRST_PAUSE)
            # Jitter: waiters that started together must not keep asking together.
            time.sleep(wait * random.uniform(0.5, 1.0))  # noqa: S311 - not cryptographic
            pause *= 2

    def _renew(self, lease: Lease[G]) -> None:
        """Renew ``lease`` once, now (from the renewer thread or :meth:`Lease.check`)."""
        with lease._mutex:
            if lease._done or lease._lost:
                return
            sent = time.monotonic()
            try:
                grant = self.backend.renew(lease.key, lease._grant, self.ttl)
            except (StoreError, OSError) as exc:
                # The lease may still be ours: try again soon, until it lapses.
                log.debug("renewing the lease on %s failed: %s", self.describe(lease.key), exc)
                lease._next_renewal = time.monotonic() + self.ttl / (4 * RENEWALS_PER_TTL)
                return
            if grant is None:
                lease._lost = True
                log.warning(
                    "the lease on %s was taken over while this process held it; its write "
                    "will be refused",
                    self.describe(lease.key),
                )
                return
            lease._grant = grant
            lease._valid_until = sent + self.ttl
            lease._next_renewal = sent + self.ttl / RENEWALS_PER_TTL

    def _release(self, lease: Lease[G]) -> None:
        with lease._mutex:
            if lease._done:
                return
            lease._done = True
            if lease._lost:
                return
            try:
                self.backend.release(lease.key, lease._grant)
            except (StoreError, OSError) as exc:
                log.warning(
                    "could not release the lease on %s (%s); it lapses within %g seconds",
                    self.describe(lease.key),
                    exc,
                    self.ttl,
                )

    def _timeout_error(self, key: str, holder: str | None) -> LockTimeout:
        who = "another process"
        if holder:
            host, _, rest = holder.partition("/")
            pid = rest.partition("/")[0]
            if host and pid.isdigit():
                who = f"another process (pid {pid} on {host})"
        return LockTimeout(
            f"{who} held the lease on {self.describe(key)} for more than "
            f"{self.lock_timeout:g} seconds; wait for it to finish, or raise the timeout "
            "with ?lock_timeout=SECONDS"
        )


class _Renewer(Generic[G]):
    """One daemon thread that renews the held leases of one :class:`Leases` when due."""

    def __init__(self, leases: Leases[G]) -> None:
        self._leases = leases
        self._due: list[tuple[float, int, Lease[G]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopped = False

    def add(self, lease: Lease[G]) -> None:
        with self._changed:
            if self._stopped:
                return
            heapq.heappush(self._due, (lease._next_renewal, next(self._order), lease))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="webex-tokens-lease-renewer", daemon=True
                )
                self._thread.start()
            elif self._due[0][2] is lease:
                self._changed.notify()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._due.clear()
            self._changed.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    if self._stopped:
                        return
                    # Finished leases are dropped here rather than searched for on release.
                    while self._due and self._due[0][2]._done:
                        heapq.heappop(self._due)
                    if not self._due:
                        self._changed.wait()
                        continue
                    due, _, lease = self._due[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._due)
                        break
                    self._changed.wait(wait)
            self._leases._renew(lease)
            if not lease._done and not lease._lost:
                with self._changed:
                    if not self._stopped:
                        heapq.heappush(self._due, (lease._next_renewal, next(self._order), lease))
