"""``redis://`` and ``rediss://``: tokens in Redis 7 or Valkey, one key per account.

Keys, under the prefix ``webex-tokens`` unless ``?prefix=`` names another::

    <prefix>:token:<name>   the record: JSON text, or ciphertext under fernet+
    <prefix>:names          a sorted set of every stored name (sorted by the server)
    <prefix>:lease:<name>   the lease of an update in progress; it expires by itself

Names are used as they are (Redis keys are binary-safe), so two names never share a key.
A ``put`` or ``delete`` writes the record and the names set in one ``MULTI``
transaction. ``update`` holds the account's lease (:mod:`webex_tokens.leases`) while its
function runs and writes through one Lua script that checks, in the same atomic step,
that the lease is still the writer's and that the record is still the one it read; it
also releases the lease there. Acquiring the lease reads the record in the same script,
so an update costs two round trips.

The password comes only from the environment variable that ``?password_env=`` names;
``rediss://`` verifies the server's certificate and host name. A server that keeps
nothing on disk is reported when the store opens (a logged warning, once per server)
and by :meth:`RedisStore.durability`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...errors import StoreCorrupted, StoreError, StoreUnavailable
from ...leases import DEFAULT_LEASE_TTL, MIN_LEASE_TTL, Leases
from ...locks import DEFAULT_LOCK_TIMEOUT
from ...store import BaseStore, Keep, Record, RecordChange, log_superseded
from ._scripts import FENCED_WRITE, LOST, SUPERSEDED, Grant, RedisLeases, digest
from ._url import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
    check_prefix,
    display_url,
    existing_file,
    parse_url,
    password_from,
)

__all__ = [
    "ACL_COMMANDS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "RedisDurability",
    "RedisStore",
]

log = logging.getLogger(__name__)

#: The commands the store runs (directly or in its scripts): a Redis ACL user needs these
#: on ``~<prefix>:*``, and ``+config|get`` for :meth:`RedisStore.durability`.
ACL_COMMANDS: Final = (
    "+ping +get +mget +set +del +pexpire +pttl +zadd +zrem +zrange +multi +exec "
    "+eval +evalsha +script|load"
)
#: Names read per round trip when streaming records.
_BATCH: Final = 500
#: Servers whose missing persistence was already reported by this process.
_WARNED: set[tuple[str, int, int]] = set()
_WARNED_LOCK = threading.Lock()

_T = TypeVar("_T")


@dataclass(frozen=True)
class RedisDurability:
    """What the server would keep of the tokens through a restart or memory pressure.

    Attributes:
        rdb: True when RDB snapshots are configured (``save`` is not empty); None when
            the server would not say.
        aof: True when the append-only file is on (``appendonly yes``); None when unknown.
        eviction: the ``maxmemory-policy``; ``allkeys-*`` policies may evict tokens.
        problem: one sentence saying what is wrong and how to fix it, or None.
        checked: False when the server refused ``CONFIG GET`` (managed services and
            restricted users often do), so nothing could be checked.
    """

    rdb: bool | None
    aof: bool | None
    eviction: str | None
    problem: str | None
    checked: bool


class RedisStore(BaseStore):
    """Tokens in Redis 7 or Valkey: ``redis://[USER@]HOST[:PORT]/DB?prefix=...``.

    Opening the store connects and sends ``PING``, so a wrong address, password or TLS
    setting fails here rather than at the first token.

    Args:
        url: ``redis://`` or ``rediss://`` (TLS) with the options ``prefix``,
            ``password_env``, ``connect_timeout``, ``timeout``, ``lock_timeout``,
            ``lease_ttl`` and, for ``rediss://``, ``ca_file``, ``cert_file`` and
            ``key_file`` in its query. A password in the URL is refused.
        prefix: the key prefix (overrides ``?prefix=``).
        lock_timeout: seconds an ``update`` waits for another writer's lease before
            :class:`LockTimeout` (overrides ``?lock_timeout=``).
        lease_ttl: seconds a lease lives without renewal; a dead writer blocks its
            account this long at most (overrides ``?lease_ttl=``).

    Raises:
        InvalidStoreURL: the URL or an option is malformed, or it holds a password.
        StoreUnavailable: the server cannot be reached, refused the login or the
            certificate, or the password variable is not set.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        lock_timeout: float | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        self._client: redis.Redis | None = None
        self._leases: Leases[Grant] | None = None
        parsed = parse_url(url)
        options = parsed.options
        self.prefix: str = check_prefix(options.text("prefix", prefix) or DEFAULT_PREFIX, url)
        self.lock_timeout: float = options.seconds(
            "lock_timeout", DEFAULT_LOCK_TIMEOUT, lock_timeout
        )
        self.lease_ttl: float = options.seconds(
            "lease_ttl", DEFAULT_LEASE_TTL, lease_ttl, minimum=MIN_LEASE_TTL
        )
        self.connect_timeout: float = options.seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self.timeout: float = options.seconds("timeout", DEFAULT_TIMEOUT)
        self.host, self.port, self.db = parsed.host, parsed.port, parsed.db
        self.tls = parsed.tls
        self.url = display_url(
            parsed,
            self.prefix,
            {
                "lock_timeout": (self.lock_timeout, DEFAULT_LOCK_TIMEOUT),
                "lease_ttl": (self.lease_ttl, DEFAULT_LEASE_TTL),
                "connect_timeout": (self.connect_timeout, DEFAULT_CONNECT_TIMEOUT),
                "timeout": (self.timeout, DEFAULT_TIMEOUT),
            },
        )
        password_env = options.text("password_env")
        self._password = password_from(password_env, self.url)
        self._password_env = password_env
        self._user = parsed.user
        tls: dict[str, Any] = {}
        if parsed.tls:
            tls = {
                "ssl": True,
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
                "ssl_ca_certs": existing_file(options.text("ca_file"), "ca_file", self.url),
                "ssl_certfile": existing_file(options.text("cert_file"), "cert_file", self.url),
                "ssl_keyfile": existing_file(options.text("key_file"), "key_file", self.url),
            }
        self._keys_prefix = self.prefix.encode("utf-8")
        self._names_key = self._keys_prefix + b":names"
        self._client = redis.Redis(
            host=parsed.host,
            port=parsed.port,
            db=parsed.db,
            username=parsed.user,
            password=self._password,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.timeout,
            # No automatic retries: a write retried after a lost answer could be applied
            # twice or misreported; the store repeats only what is safe to repeat.
            retry=Retry(NoBackoff(), 0),
            **tls,
        )
        try:
            self._call(None, self._client.ping, retry=True)
            self._fenced_write = self._client.register_script(FENCED_WRITE)
            self._leases = Leases(
                RedisLeases(self),
                ttl=self.lease_ttl,
                lock_timeout=self.lock_timeout,
                describe=self._describe,
            )
            self._warn_if_not_durable()
        except BaseException:
            self._client.close()
            raise

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """Open the store at a ``redis://`` or ``rediss://`` URL (options: see the class).

        Raises:
            InvalidStoreURL, StoreUnavailable: as the constructor.
        """
        return cls(url)

    @property
    def client(self) -> redis.Redis:
        """The redis-py client behind the store.

        Raises:
            StoreError: the store was closed.
        """
        if self._client is None:
            raise StoreError(f"the store {self.url} is closed; open it again")
        return self._client

    # -- keys and errors ----------------------------------------------------------

    def _record_key(self, name: str) -> bytes:
        return self._keys_prefix + b":token:" + name.encode("utf-8")

    def _lease_key(self, name: str) -> bytes:
        return self._keys_prefix + b":lease:" + name.encode("utf-8")

    def _describe(self, name: str) -> str:
        return f"the token {name!r} in {self.url}"

    def _call(self, name: str | None, run: Callable[[], _T], *, retry: bool = False) -> _T:
        """Run one command (or script, or transaction), turning redis-py's errors into
        the library's; ``retry``: once more after a connection error (only for commands
        that are safe to repeat)."""
        for attempt in (1, 2):
            try:
                return run()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if (
                    not retry
                    or attempt == 2
                    or isinstance(exc, redis.AuthenticationError)
                    or "SSL" in str(exc)
                ):
                    raise self._translate(exc, name) from None
                log.debug("the connection to %s failed; trying once more", self.url)
            except redis.RedisError as exc:
                raise self._translate(exc, name) from None
        raise AssertionError("unreachable")

    def _reason(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text[:300]

    def _translate(self, exc: redis.RedisError, name: str | None) -> StoreError:
        reason = self._reason(exc)
        what = self._describe(name) if name is not None else self.url
        address = f"{self.host}:{self.port}"
        if (
            reason.startswith("NOAUTH")
            or "Authentication required" in reason
            or (isinstance(exc, redis.AuthenticationError) and self._password is None)
        ):
            return StoreUnavailable(
                f"Redis at {address} requires a password; put it in an environment variable "
                "and name that variable with ?password_env=NAME"
            )
        if isinstance(exc, redis.AuthenticationError) or reason.startswith(
            ("WRONGPASS", "invalid password", "invalid username-password")
        ):
            source = (
                f"the password in ${self._password_env}" if self._password_env else "no password"
            )
            return StoreUnavailable(
                f"Redis at {address} refused the login of user {self._user or 'default'} with "
                f"{source}; check the user in the URL and the password in that variable"
            )
        if isinstance(exc, redis.exceptions.NoPermissionError) or reason.startswith("NOPERM"):
            return StoreUnavailable(
                f"Redis user {self._user or 'default'} may not run what {what} needs "
                f"({reason}); grant it: ACL SETUSER {self._user or 'default'} "
                f"~{self.prefix}:* {ACL_COMMANDS}"
            )
        if reason.startswith("READONLY"):
            return StoreUnavailable(
                f"Redis at {address} is a read-only replica; point the URL at the primary"
            )
        if reason.startswith("OOM"):
            return StoreUnavailable(
                f"Redis at {address} is out of memory (maxmemory) and refused to write "
                f"{what}; free memory or raise maxmemory"
            )
        if reason.startswith("WRONGTYPE"):
            return StoreCorrupted(
                f"a key of {what} holds another kind of value: something else uses the "
                f"prefix {self.prefix!r}; it was left untouched: choose another with ?prefix="
            )
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate" in reason.lower():
                return StoreUnavailable(
                    f"the TLS certificate of Redis at {address} was refused ({reason}); it must "
                    "be signed by a CA this system trusts or the one given with ?ca_file=PATH, "
                    "and name the host of the URL"
                )
            if "SSL" in reason or "TLS" in reason:
                return StoreUnavailable(
                    f"the TLS connection to Redis at {address} failed ({reason}); check that the "
                    "port serves TLS (rediss://) or plain text (redis://), and ?cert_file= and "
                    "?key_file= if the server asks for a client certificate"
                )
            return StoreUnavailable(
                f"cannot reach Redis at {address} for {what} ({reason}); is the server running "
                "and reachable? check the host and port in the URL"
            )
        return StoreError(f"Redis refused an operation on {what} ({reason})")

    # -- durability -----------------------------------------------------------------

    def durability(self) -> RedisDurability:
        """Ask the server (``CONFIG GET``) whether it keeps the tokens through a restart.

        A server with neither RDB snapshots nor the append-only file loses every token
        when it restarts; an ``allkeys-*`` eviction policy drops tokens under memory
        pressure. ``webex-tokens doctor`` reports both.

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        pipe = self.client.pipeline(transaction=False)
        for parameter in ("save", "appendonly", "maxmemory-policy"):
            pipe.config_get(parameter)
        try:
            answers = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise self._translate(exc, None) from None
        values: dict[str, str] = {}
        refused = None
        for answer in answers:
            if isinstance(answer, Exception):
                refused = self._reason(answer)
                continue
            for key, value in answer.items():
                values[_text(key)] = _text(value)
        if refused is not None or not values:
            return RedisDurability(
                None,
                None,
                None,
                f"cannot tell whether Redis at {self.host}:{self.port} keeps tokens on disk: it "
                f"refused CONFIG GET ({refused or 'no answer'}); check that RDB or AOF "
                "persistence is on in the server's settings (a managed service's console)",
                False,
            )
        rdb = bool(values.get("save", "").strip())
        aof = values.get("appendonly", "no").strip().lower() == "yes"
        eviction = values.get("maxmemory-policy") or None
        problem = None
        if not (rdb or aof):
            problem = (
                f"Redis at {self.host}:{self.port} keeps nothing on disk (no RDB snapshots, no "
                "append-only file): a restart loses every token; turn persistence on, e.g. "
                "CONFIG SET appendonly yes and CONFIG REWRITE"
            )
        elif eviction and eviction.startswith("allkeys-"):
            problem = (
                f"Redis at {self.host}:{self.port} evicts any key under memory pressure "
                f"(maxmemory-policy {eviction}), tokens included; use noeviction or a "
                "volatile-* policy"
            )
        return RedisDurability(rdb, aof, eviction, problem, True)

    def _warn_if_not_durable(self) -> None:
        address = (self.host, self.port, self.db)
        with _WARNED_LOCK:
            if address in _WARNED:
                return
            _WARNED.add(address)
        report = self.durability()
        if report.checked and report.problem:
            log.warning("%s (store %s)", report.problem, self.url)
        elif report.problem:
            log.info("%s (store %s)", report.problem, self.url)

    # -- records --------------------------------------------------------------------

    def _decode_text(self, name: str, data: bytes | str | None) -> str | None:
        if data is None or isinstance(data, str):
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreCorrupted(
                f"the token {name!r} in {self.url} is not text; it was left untouched: "
                "delete it and log in again, or choose another ?prefix="
            ) from None

    def _read(self, name: str) -> str | None:
        key = self._record_key(name)
        return self._decode_text(name, self._call(name, lambda: self.client.get(key), retry=True))

    def _write(self, name: str, record: Record) -> None:
        key, member = self._record_key(name), name.encode("utf-8")

        def put() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(key, record.data.encode("utf-8"))
            pipe.zadd(self._names_key, {member: 0})
            pipe.execute()

        self._call(name, put, retry=True)

    def _remove(self, name: str) -> bool:
        key, member = self._record_key(name), name.encode("utf-8")

        def remove() -> bool:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(key)
            pipe.zrem(self._names_key, member)
            return bool(pipe.execute()[0])

        return self._call(name, remove)

    def _iter_names(self) -> Iterable[str]:
        members = self._call(None, lambda: self.client.zrange(self._names_key, 0, -1), retry=True)
        return [_text(member) for member in members]

    def _iter_records(self) -> Iterator[tuple[str, str]]:
        """Stream ``(name, record)`` in name order, a batch of names and one ``MGET`` per
        round trip; a name deleted meanwhile is skipped."""
        start = b"-"
        while True:
            members = self._call(None, partial(self._names_from, start), retry=True)
            if not members:
                return
            keys = [self._keys_prefix + b":token:" + member for member in members]
            values = self._call(None, partial(self.client.mget, keys), retry=True)
            for member, value in zip(members, values, strict=True):
                name = _text(member)
                data = self._decode_text(name, value)
                if data is not None:
                    yield name, data
            if len(members) < _BATCH:
                return
            start = b"(" + members[-1]

    def _names_from(self, start: bytes) -> list[bytes]:
        """Up to ``_BATCH`` names from ``start`` (a ``ZRANGE ... BYLEX`` bound) on."""
        members = self.client.zrange(self._names_key, start, b"+", bylex=True, offset=0, num=_BATCH)
        return cast("list[bytes]", members)

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        leases = self._leases
        if leases is None:
            raise StoreError(f"the store {self.url} is closed; open it again")
        with leases.hold(name) as lease:
            seen = lease.grant.record
            result = change(self._decode_text(name, seen))
            if isinstance(result, Keep):
                return  # the lease is released on the way out
            keys = [self._lease_key(name), self._record_key(name), self._names_key]
            args: list[str | bytes]
            if result is None:
                args = [lease.owner, digest(seen), "del", b"", name.encode("utf-8")]
            else:
                args = [
                    lease.owner,
                    digest(seen),
                    "set",
                    result.data.encode("utf-8"),
                    name.encode("utf-8"),
                ]
            lease.end_renewals()  # the script releases the lease
            try:
                outcome = self._call(name, lambda: self._fenced_write(keys, args))
            except StoreUnavailable as exc:
                # If the script ran, the lease is gone already; if not, free it now
                # rather than after its TTL (compare-and-delete: safe either way).
                with contextlib.suppress(StoreError):
                    leases.backend.release(name, lease.grant)
                raise StoreUnavailable(
                    f"{exc}; the new token of {name!r} may or may not have been written"
                ) from None
            if outcome == LOST:
                lease.mark_lost()
                raise leases.lost_error(name)
            if outcome == SUPERSEDED:
                log_superseded(self.url, name)

    def _update_records(
        self, changes: Sequence[tuple[str, Callable[[str | None], RecordChange]]]
    ) -> bool:
        return False  # one lease per account: migrate updates them one by one

    def _close(self) -> None:
        if self._leases is not None:
            self._leases.close()
            self._leases = None
        if self._client is not None:
            self._client.close()
            self._client = None


def _text(value: object) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
