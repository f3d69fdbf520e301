"""Fenced leases on real Redis and OpenBao servers, with real processes killed and stopped.

Each test runs on both backends. Holders are separate processes (forked from a server
that has imported the library), so a SIGKILL or SIGSTOP hits a real lease holder: its
renewal thread dies or freezes with it, exactly as on a crashed or paused host.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import hvac
import pytest
import redis

from webex_tokens.backends.redis import RedisStore
from webex_tokens.backends.vault import VaultStore, encode_name
from webex_tokens.errors import LockLost, LockTimeout
from webex_tokens.leases import MIN_LEASE_TTL, Busy, Leases
from webex_tokens.registry import open_url
from webex_tokens.testing import make_token
from webex_tokens.testing.processes import count_of, start_workers, worker_context
from webex_tokens.testing.servers import OpenBaoServer

pytestmark = [
    pytest.mark.skipif(os.name != "posix", reason="uses SIGKILL, SIGSTOP and a fork server"),
    pytest.mark.slow,
]

TTL = 3.0
NAME = "alice@example.com"


@pytest.fixture(params=["redis", "vault"])
def lease_url(request: pytest.FixtureRequest) -> str:
    """A store URL on each backend with a short lease TTL (3 s) and a long lock timeout."""
    base = str(request.getfixturevalue("redis_url" if request.param == "redis" else "vault_url"))
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}lease_ttl={TTL:g}&lock_timeout=120"


def update_worker(  # noqa: PLR0917 - start_workers passes arguments by position
    url: str, name: str, label: str, inside: Any, release: Any, results: Any, start: Any
) -> None:
    """``update(name)`` whose function sets ``inside``, waits for ``release`` and returns
    the counter plus one, labelled; reports ``(label, "ok", when)`` or
    ``(label, "error", class name, when)`` on ``results`` (``when``: monotonic time)."""
    start.wait()
    with open_url(url) as store:

        def work(token: Any) -> Any:
            inside.set()
            release.wait(300)
            return make_token(f"{label}-{count_of(token) + 1}")

        try:
            store.update(name, work)
        except Exception as exc:  # reported to the parent, which asserts on it
            results.put((label, "error", type(exc).__name__, time.monotonic()))
        else:
            results.put((label, "ok", time.monotonic()))


class Holder:
    """A process in ``update(NAME)``, its function waiting to be released."""

    def __init__(self, url: str, label: str, context: Any, results: Any) -> None:
        self.inside, self.release = context.Event(), context.Event()
        self.group = start_workers(
            [(update_worker, (url, NAME, label, self.inside, self.release, results))],
            method="forkserver",
        )
        self.pid = self.group.processes[0].pid

    def wait_inside(self, timeout: float = 60) -> None:
        assert self.inside.wait(timeout), "the holder never got the lease"


def lease_time_left(store: Any, name: str) -> float:
    """What the server says is left of the lease on ``name`` (seconds), or -1."""
    if isinstance(store, RedisStore):
        return float(store.client.pttl(store._lease_key(name))) / 1000
    lock = store.kv.read(store._lock_path(name), "reading the lease")
    assert lock.created is not None and lock.server_now is not None
    ttl = float((lock.data or {})["ttl"])
    return ttl - (lock.server_now - lock.created).total_seconds()


def lease_owner(store: Any, name: str) -> str | None:
    if isinstance(store, RedisStore):
        owner = store.client.get(store._lease_key(name))
        return owner.decode() if owner else None
    return (store.kv.read(store._lock_path(name), "reading the lease").data or {}).get("owner")


def record_history(store: Any, name: str) -> list[str]:
    """Every access token ever written under ``name`` (Vault keeps the versions)."""
    if isinstance(store, RedisStore):
        token = store.get(name)
        return [token.access_token] if token else []
    kv = store.kv.client.secrets.kv.v2
    path = store._record_path(name)
    metadata = kv.read_secret_metadata(path=path, mount_point=store.mount).json()
    tokens = []
    for version in sorted(int(v) for v in metadata["data"]["versions"]):
        data = kv.read_secret_version(
            path=path, version=version, mount_point=store.mount, raise_on_deleted_version=True
        ).json()["data"]["data"]
        tokens.append(store._decode(name, data["record"]).access_token)
    return tokens


# -- a dead holder ------------------------------------------------------------------------


def test_a_killed_holder_blocks_its_account_until_its_lease_lapses_and_no_longer(
    lease_url: str,
) -> None:
    context = worker_context("forkserver")
    results = context.Queue()
    with open_url(lease_url) as store:
        store.put(NAME, make_token("count-0"))
        holder = Holder(lease_url, "killed", context, results)
        holder.wait_inside()
        read_at = time.monotonic()
        left = lease_time_left(store, NAME)
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        holder.group.processes[0].join(10)

        # Other accounts go on at once.
        started = time.monotonic()
        store.update("bob", lambda token: make_token("count-1"))
        assert time.monotonic() - started < 2

        entered: list[float] = []

        def take_over(token: Any) -> Any:
            entered.append(time.monotonic())
            return make_token(f"count-{count_of(token) + 1}")

        store.update(NAME, take_over)
        elapsed = entered[0] - killed
        # Vault judges lapses by its Date header, to the second: up to a second later.
        late = 1.0 if isinstance(store, VaultStore) else 0.0
        assert elapsed >= left - (killed - read_at) - late - 0.05, (elapsed, left)
        assert elapsed <= TTL + late + 3.0, elapsed  # the TTL, and a margin for a busy machine
        assert count_of(store.get(NAME)) == 1  # the dead holder wrote nothing


# -- a paused holder ----------------------------------------------------------------------


@pytest.mark.parametrize("taker", ["has written", "still holds the lease"])
def test_a_paused_holder_resuming_after_a_takeover_writes_nothing(
    lease_url: str, taker: str
) -> None:
    context = worker_context("forkserver")
    results = context.Queue()
    with open_url(lease_url) as store:
        store.put(NAME, make_token("start-0"))
        paused = Holder(lease_url, "paused", context, results)
        paused.wait_inside()
        os.kill(paused.pid, signal.SIGSTOP)
        try:
            taking = Holder(lease_url, "taker", context, results)
            taking.wait_inside(TTL + 60)  # the paused lease lapsed: the other one took over
            taker_owner = lease_owner(store, NAME)
            if taker == "has written":
                taking.release.set()
                assert results.get(timeout=60)[:2] == ("taker", "ok")
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        paused.release.set()
        outcome = results.get(timeout=60)
        assert outcome[:3] == ("paused", "error", "LockLost"), outcome
        if taker == "still holds the lease":
            # The late writer neither wrote nor released the taker's lease.
            assert lease_owner(store, NAME) == taker_owner
            assert store.get(NAME) == make_token("start-0")
            taking.release.set()
            assert results.get(timeout=60)[:2] == ("taker", "ok")
        paused.group.finish(60)
        taking.group.finish(60)
        assert store.get(NAME) == make_token("taker-1")
        assert not any(token.startswith("paused") for token in record_history(store, NAME))


# -- renewal, waiting, releasing ------------------------------------------------------------


def test_renewal_keeps_a_long_function_exclusive_for_several_ttls(lease_url: str) -> None:
    ttl = 1.0
    url = lease_url.replace(f"lease_ttl={TTL:g}", f"lease_ttl={ttl:g}")
    context = worker_context("forkserver")
    results = context.Queue()
    with open_url(url) as store:
        store.put(NAME, make_token("count-0"))
        first = Holder(url, "first", context, results)
        first.wait_inside()
        second = Holder(url, "second", context, results)
        time.sleep(3.5 * ttl)  # several TTLs: only renewals keep the first one's lease
        assert not second.inside.is_set(), "the second writer got in while the first worked"
        first.release.set()
        second.release.set()
        outcomes = [results.get(timeout=60), results.get(timeout=60)]
        first.group.finish(60)
        second.group.finish(60)
    assert [outcome[:2] for outcome in outcomes] == [("first", "ok"), ("second", "ok")]
    with open_url(url) as store:
        assert store.get(NAME) == make_token("second-2")  # both writes landed, in turn


def test_waiting_for_a_held_lease_times_out(lease_url: str) -> None:
    context = worker_context("forkserver")
    results = context.Queue()
    with open_url(lease_url) as store:
        store.put(NAME, make_token("count-0"))
    holder = Holder(lease_url, "holder", context, results)
    try:
        holder.wait_inside()
        with open_url(lease_url.replace("lock_timeout=120", "lock_timeout=0.5")) as impatient:
            started = time.monotonic()
            with pytest.raises(LockTimeout) as info:
                impatient.update(NAME, lambda token: make_token("never"))
            waited = time.monotonic() - started
            assert impatient.get(NAME) == make_token("count-0")
    finally:
        holder.release.set()
    holder.group.finish(60)
    assert 0.5 <= waited < 3
    message = str(info.value)
    assert f"another process (pid {holder.pid} on " in message
    assert "held the lease on the token 'alice@example.com'" in message
    assert "for more than 0.5 seconds" in message and "?lock_timeout=SECONDS" in message


def test_compare_and_delete_never_releases_another_owners_lease(lease_url: str) -> None:
    with open_url(lease_url) as store:
        backend = store._leases.backend
        earlier = backend.try_acquire("k", "host/1/earlier", 30)
        assert not isinstance(earlier, Busy)
        busy = backend.try_acquire("k", "host/2/current", 30)
        assert isinstance(busy, Busy) and busy.holder == "host/1/earlier"
        assert busy.retry_after is not None and 20 < busy.retry_after <= 31
        backend.release("k", earlier)
        current = backend.try_acquire("k", "host/2/current", 30)
        assert not isinstance(current, Busy)
        # The earlier holder's grant, as a late holder would still have it, releases
        # nothing and renews nothing.
        backend.release("k", earlier)
        assert backend.renew("k", earlier, 30) is None
        assert lease_owner(store, "k") == "host/2/current"
        assert isinstance(backend.try_acquire("k", "host/3/later", 30), Busy)
        # Asking again as the holder (an answer that was lost) is acquiring it.
        assert not isinstance(backend.try_acquire("k", "host/2/current", 30), Busy)
        backend.release("k", current)
        assert not isinstance(backend.try_acquire("k", "host/3/later", 30), Busy)


def test_check_renews_a_lapsing_lease_and_refuses_a_lost_one(lease_url: str) -> None:
    with open_url(lease_url) as store:
        leases = Leases(store._leases.backend, ttl=1.0, lock_timeout=5, describe=store._describe)
        with leases.hold("k") as lease:
            leases.close()  # no background renewals from here on
            time.sleep(0.9)
            assert lease.valid_for() < 0.2
            lease.check()  # renews synchronously: nobody took the lease
            assert lease.valid_for() > 0.5
            time.sleep(1.3)  # lapsed; someone else takes it
            other = Leases(store._leases.backend, ttl=30, lock_timeout=10)
            with other.hold("k"):
                with pytest.raises(LockLost, match=r"nothing was written"):
                    lease.check()
                assert lease.lost
            other.close()


def test_a_lease_ttl_below_the_minimum_is_refused() -> None:
    class Never:
        poll_interval = 0.01

        def try_acquire(self, key: str, owner: str, ttl: float) -> Busy:
            return Busy()

        def renew(self, key: str, grant: object, ttl: float) -> None:
            return None

        def release(self, key: str, grant: object) -> None:
            return None

    with pytest.raises(ValueError, match=r"at least 0\.2"):
        Leases(Never(), ttl=MIN_LEASE_TTL / 2)
    with pytest.raises(ValueError, match="positive"):
        Leases(Never(), ttl=1, lock_timeout=0)
    leases = Leases(Never(), ttl=1, lock_timeout=0.1, describe=lambda key: f"the thing {key}")
    with (
        pytest.raises(LockTimeout, match=r"another process held the lease on the thing k"),
        leases.hold("k"),
    ):
        pass


def test_the_lock_secret_lives_under_dot_locks(vault_url: str, openbao: OpenBaoServer) -> None:
    with open_url(vault_url) as store:
        store.update("a/b", lambda token: make_token())
        folder = vault_url.partition("/secret/")[2]
    kv = hvac.Client(url=openbao.address, token=openbao.root_token).secrets.kv.v2
    lock = kv.read_secret_version(
        path=f"{folder}/.locks/{encode_name('a/b')}",
        mount_point="secret",
        raise_on_deleted_version=True,
    )
    assert lock["data"]["data"] == {"owner": ""}  # released
    assert lock["data"]["metadata"]["version"] == 2  # taken with cas=0, released with cas=1


def test_redis_leases_are_set_nx_px_keys(redis_url: str) -> None:
    with open_url(redis_url) as store:
        assert isinstance(store, RedisStore)
        client: redis.Redis = store.client
        seen: list[tuple[Any, int]] = []

        def look(token: Any) -> Any:
            key = store._lease_key("alice")
            seen.append((client.get(key), int(client.pttl(key))))
            return make_token()

        store.update("alice", look)
        owner, pttl = seen[0]
        assert owner is not None and owner.decode().count("/") == 2  # host/pid/random
        assert 0 < pttl <= store.lease_ttl * 1000
        assert client.exists(store._lease_key("alice")) == 0
