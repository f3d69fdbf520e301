"""RedisStore on a real Redis: conformance, key layout, passwords, TLS, durability, errors."""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from tls_certs import Authority

from webex_tokens.backends import redis as redis_backend
from webex_tokens.backends.fernet import FernetStore, generate_key
from webex_tokens.backends.redis import ACL_COMMANDS, RedisStore
from webex_tokens.errors import (
    BackendUnavailable,
    InvalidStoreURL,
    LockLost,
    StoreCorrupted,
    StoreUnavailable,
)
from webex_tokens.registry import open_url
from webex_tokens.testing import AWKWARD_NAMES, StoreConformance, make_token
from webex_tokens.testing.plugin import service_missing
from webex_tokens.testing.servers import RedisServer, delete_redis_prefix


class TestRedisStore(StoreConformance):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[RedisStore]:
        with RedisStore.from_url(redis_url) as store:
            yield store


class TestEncryptedRedisStore(StoreConformance):
    @pytest.fixture
    def store(self, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FernetStore]:
        monkeypatch.setenv("WEBEX_TOKENS_KEY", generate_key())
        with open_url("fernet+" + redis_url) as store:
            assert isinstance(store, FernetStore) and isinstance(store.inner, RedisStore)
            yield store


def raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url.partition("?")[0])


def prefix_of(url: str) -> str:
    return url.rpartition("prefix=")[2]


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (to stop, restart or configure)."""
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        service_missing(str(exc))
    yield server
    server.stop()


# -- what is stored where ----------------------------------------------------------------


def test_records_and_names_live_under_the_documented_keys(redis_url: str) -> None:
    prefix = prefix_of(redis_url)
    with RedisStore.from_url(redis_url) as store:
        store.put("alice@example.com", make_token("a"))
        store.update("bob", lambda token: make_token("b"))
    client = raw(redis_url)
    try:
        record = client.get(f"{prefix}:token:alice@example.com")
        assert record is not None
        assert json.loads(record)["access_token"] == "a"
        assert client.zrange(f"{prefix}:names", 0, -1) == [b"alice@example.com", b"bob"]
        assert client.keys(f"{prefix}:lease:*") == []  # every lease was released
    finally:
        client.close()


def test_hostile_names_get_keys_of_their_own(redis_url: str) -> None:
    prefix = prefix_of(redis_url)
    names = [*AWKWARD_NAMES, "a:token:b", "names", "lease:x", "*", "[a-z]", "a b", " a", "a\u00a0"]
    with RedisStore.from_url(redis_url) as store:
        for i, name in enumerate(names):
            store.put(name, make_token(f"t{i}"))
        assert store.names() == sorted(names)
        for i, name in enumerate(names):
            assert store.get(name) == make_token(f"t{i}"), name
    client = raw(redis_url)
    try:
        keys = set(client.keys(f"{prefix}:token:*"))
        assert keys == {f"{prefix}:token:{name}".encode() for name in names}
    finally:
        client.close()


def test_items_stream_in_name_order_across_batches(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_backend, "_BATCH", 7)
    names = [f"user{i:03d}" for i in range(40)] + ["é", "日本", "🎉", "Z", "a b"]
    with RedisStore.from_url(redis_url) as store:
        for name in names:
            store.put(name, make_token(name))
        seen = [(name, token.access_token) for name, token in store.items()]
    assert seen == [(name, name) for name in sorted(names)]


def test_a_name_deleted_while_streaming_is_skipped(redis_url: str) -> None:
    with RedisStore.from_url(redis_url) as store:
        for name in ("a", "b", "c"):
            store.put(name, make_token(name))
        client = raw(redis_url)
        try:
            client.delete(f"{prefix_of(redis_url)}:token:b")  # the record, not its name
        finally:
            client.close()
        assert [name for name, _ in store.items()] == ["a", "c"]


def test_an_update_whose_lease_was_taken_over_writes_nothing(redis_url: str) -> None:
    prefix = prefix_of(redis_url)
    client = raw(redis_url)
    with RedisStore.from_url(redis_url) as store:
        store.put("alice", make_token("before"))

        def taken_over(token: object) -> object:
            # Another owner holds the lease now, as after a lapse and a takeover.
            client.set(f"{prefix}:lease:alice", "other-host/1/abc", px=60_000)
            return make_token("late")

        with pytest.raises(LockLost, match=r"'alice'.*nothing was written.*lease_ttl"):
            store.update("alice", taken_over)  # type: ignore[arg-type]
        assert store.get("alice") == make_token("before")
        # The fenced write left the other owner's lease alone.
        assert client.get(f"{prefix}:lease:alice") == b"other-host/1/abc"
    client.close()


def test_wrongly_typed_keys_are_corrupted_and_left_alone(redis_url: str) -> None:
    prefix = prefix_of(redis_url)
    client = raw(redis_url)
    try:
        client.rpush(f"{prefix}:token:listy", "x")
        client.set(f"{prefix}:token:binary", b"\xff\xfe not utf-8")
        with RedisStore.from_url(redis_url) as store:
            with pytest.raises(StoreCorrupted, match=r"another kind of value.*\?prefix="):
                store.get("listy")
            with pytest.raises(StoreCorrupted, match=r"'binary'.*not text"):
                store.get("binary")
        assert client.lrange(f"{prefix}:token:listy", 0, -1) == [b"x"]
    finally:
        client.close()


def test_registry_opens_both_schemes(redis_url: str) -> None:
    with open_url(redis_url) as store:
        assert isinstance(store, RedisStore) and not store.tls
    assert store.url == redis_url.replace("redis://127.0.0.1:6379/0", "redis://127.0.0.1/0")


# -- passwords and users -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret-pw@127.0.0.1/0",
        "redis://app:s3cret-pw@127.0.0.1/0",
        "rediss://app:s3cret-pw@127.0.0.1:6380/0",
        "redis://127.0.0.1/0?password=s3cret-pw",
        "redis://127.0.0.1/0?prefix=x&PASSWORD=s3cret-pw",
    ],
)
def test_a_password_in_the_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(InvalidStoreURL, match=r"password_env=NAME") as info:
        open_url(url)
    assert "s3cret" not in str(info.value)


@pytest.fixture
def acl_user(redis_server: str) -> Iterator[tuple[str, str, str]]:
    """(user, password, key prefix): a Redis ACL user allowed only its own prefix."""
    user, password = f"wt-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    prefix = f"wt-acl-{uuid.uuid4().hex[:8]}"
    client = raw(redis_server)
    client.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"{prefix}:*"],
        commands=ACL_COMMANDS.split(),  # the documented minimum, nothing more
    )
    yield user, password, prefix
    client.acl_deluser(user)
    client.close()
    delete_redis_prefix(prefix, redis_server)


def test_password_from_the_environment_logs_in_an_acl_user(
    acl_user: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, password, prefix = acl_user
    monkeypatch.setenv("WT_REDIS_PASSWORD", password)
    monkeypatch.setattr(redis_backend, "_WARNED", set())
    url = f"redis://{user}@127.0.0.1/0?prefix={prefix}&password_env=WT_REDIS_PASSWORD"
    with caplog.at_level(logging.INFO), RedisStore.from_url(url) as store:
        store.put("alice", make_token())
        assert store.update("alice", lambda token: token) == make_token()
        assert store.url == url
        report = store.durability()
    # This user may not run CONFIG GET: the report says it cannot tell, and why.
    assert report.checked is False and report.rdb is None and report.problem is not None
    assert "cannot tell whether Redis" in report.problem and "CONFIG GET" in report.problem
    assert all(record.levelno < logging.WARNING for record in caplog.records)
    assert password not in caplog.text


def test_a_wrong_password_is_refused_without_showing_it(
    acl_user: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, _, prefix = acl_user
    monkeypatch.setenv("WT_REDIS_PASSWORD", "wr0ng-s3cret")
    url = f"redis://{user}@127.0.0.1/0?prefix={prefix}&password_env=WT_REDIS_PASSWORD"
    with pytest.raises(StoreUnavailable, match=rf"refused the login of user {user}") as info:
        RedisStore.from_url(url)
    assert "wr0ng-s3cret" not in str(info.value)
    assert "$WT_REDIS_PASSWORD" in str(info.value)


def test_a_user_outside_its_key_pattern_is_told_the_acl_to_grant(
    acl_user: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password, _ = acl_user
    monkeypatch.setenv("WT_REDIS_PASSWORD", password)
    url = f"redis://{user}@127.0.0.1/0?prefix=elsewhere&password_env=WT_REDIS_PASSWORD"
    with RedisStore.from_url(url) as store, pytest.raises(StoreUnavailable) as info:
        store.get("alice")
    assert f"ACL SETUSER {user} ~elsewhere:* {ACL_COMMANDS}" in str(info.value)


def test_a_missing_password_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WT_NOT_SET", raising=False)
    with pytest.raises(StoreUnavailable, match=r"WT_NOT_SET \(named by password_env\) is not set"):
        RedisStore.from_url("redis://127.0.0.1/0?password_env=WT_NOT_SET")


def test_a_server_that_requires_a_password_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    try:
        server = RedisServer("--requirepass", "server-s3cret").start()
    except RuntimeError as exc:
        service_missing(str(exc))
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        with pytest.raises(StoreUnavailable, match=r"requires a password.*password_env=NAME"):
            RedisStore.from_url(url)
        monkeypatch.setenv("WT_REDIS_PASSWORD", "server-s3cret")
        with RedisStore.from_url(url + "?password_env=WT_REDIS_PASSWORD") as store:
            store.put("alice", make_token())
            assert store.get("alice") == make_token()
    finally:
        server.stop()


# -- durability --------------------------------------------------------------------------


def test_a_server_without_persistence_is_reported_once_and_by_durability(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_backend, "_WARNED", set())
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    with caplog.at_level(logging.WARNING):
        RedisStore.from_url(url).close()
        RedisStore.from_url(url).close()
    warnings = [r for r in caplog.records if "keeps nothing on disk" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    with RedisStore.from_url(url) as store:
        report = store.durability()
    assert (report.rdb, report.aof, report.checked) == (False, False, True)
    assert report.problem is not None and "a restart loses every token" in report.problem


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--appendonly", "yes"), None),
        (("--save", "3600 1"), None),
        (("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"), "allkeys-lru"),
    ],
)
def test_durability_reads_the_server_settings(args: tuple[str, ...], problem: str | None) -> None:
    try:
        server = RedisServer(*args).start()
    except RuntimeError as exc:
        service_missing(str(exc))
    try:
        with RedisStore.from_url(f"redis://127.0.0.1:{server.port}/0") as store:
            report = store.durability()
    finally:
        server.stop()
    assert report.checked
    if problem is None:
        assert report.problem is None
    else:
        assert report.problem is not None and problem in report.problem


# -- an unreachable or failing server ------------------------------------------------------


def test_a_closed_port_is_unavailable_quickly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=rf"cannot reach Redis at 127.0.0.1:{port}"):
        RedisStore.from_url(f"redis://127.0.0.1:{port}/0")
    assert time.monotonic() - started < 3


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"cannot reach Redis"):
            RedisStore.from_url(f"redis://127.0.0.1:{port}/0?timeout=1&connect_timeout=1")
        assert time.monotonic() - started < 5


def test_a_server_gone_while_open_is_unavailable(private_redis: RedisServer) -> None:
    with RedisStore.from_url(f"redis://127.0.0.1:{private_redis.port}/0") as store:
        store.put("alice", make_token())
        private_redis.stop()
        for call in (
            lambda: store.get("alice"),
            lambda: store.put("alice", make_token()),
            store.names,
            lambda: store.update("alice", lambda token: token),
        ):
            with pytest.raises(StoreUnavailable, match=r"cannot reach Redis"):
                call()


def test_a_restarted_server_is_reconnected_to(private_redis: RedisServer) -> None:
    port = private_redis.port
    with RedisStore.from_url(f"redis://127.0.0.1:{port}/0") as store:
        store.put("alice", make_token())
        private_redis.stop()
        private_redis.port = port
        private_redis.start()
        assert store.get("alice") is None  # nothing kept on disk: the warning's point
        store.put("alice", make_token("again"))
        assert store.get("alice") == make_token("again")


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Authority]]:
    """A TLS-only Redis whose certificate (for ``localhost``) comes from a private CA that
    also issues client certificates, which the server demands."""
    authority = Authority(tmp_path)
    server_cert = authority.issue("server", ["localhost"])
    args = (
        "--tls-cert-file",
        str(server_cert.cert),
        "--tls-key-file",
        str(server_cert.key),
        "--tls-ca-cert-file",
        str(authority.ca_file),
        "--tls-auth-clients",
        "yes",
    )
    try:
        server = RedisServer(*args, tls=True).start()
    except RuntimeError as exc:
        service_missing(str(exc))
    yield server, authority
    server.stop()


def test_rediss_checks_the_ca_the_host_name_and_gives_a_client_certificate(
    tls_redis: tuple[RedisServer, Authority],
) -> None:
    server, authority = tls_redis
    client = authority.issue("client", [], client=True)
    base = f"rediss://localhost:{server.port}/0"
    identity = f"cert_file={client.cert}&key_file={client.key}"
    # Not signed by a CA this system trusts:
    with pytest.raises(StoreUnavailable, match=r"TLS certificate of Redis.*\?ca_file=PATH"):
        RedisStore.from_url(f"{base}?{identity}")
    # Signed by the CA, but for another host name than the URL's:
    with pytest.raises(StoreUnavailable, match=r"TLS certificate of Redis.*name the host"):
        RedisStore.from_url(
            f"rediss://127.0.0.1:{server.port}/0?ca_file={authority.ca_file}&{identity}"
        )
    # The server asks for a client certificate:
    with pytest.raises(StoreUnavailable, match=r"TLS|reach"):
        RedisStore.from_url(f"{base}?ca_file={authority.ca_file}")
    with RedisStore.from_url(f"{base}?ca_file={authority.ca_file}&{identity}") as store:
        assert store.tls and store.url.startswith("rediss://localhost:")
        store.put("alice", make_token())
        assert store.get("alice") == make_token()


def test_tls_options_need_rediss(tmp_path: Path) -> None:
    with pytest.raises(InvalidStoreURL, match=r"ca_file.*is for TLS; write rediss://"):
        RedisStore.from_url(f"redis://127.0.0.1/0?ca_file={tmp_path}/ca.pem")
    with pytest.raises(InvalidStoreURL, match=r"option ca_file of .* names no file"):
        RedisStore.from_url(f"rediss://127.0.0.1/0?ca_file={tmp_path}/missing.pem")


# -- bad URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1/0?prefx=a", r"option 'prefx'.* is unknown; the options of this"),
        ("redis://127.0.0.1/0?prefix=a&prefix=b", r"prefix appears twice"),
        ("redis://127.0.0.1/abc", r"names the database '/abc'"),
        ("redis://127.0.0.1/0/1", r"names the database"),
        ("redis://127.0.0.1:notaport/0", r"is not a Redis URL"),
        ("redis:///0", r"names no host"),
        ("redis://127.0.0.1/0#x", r"fragment"),
        ("redis://127.0.0.1/0?prefix=", r"prefix .* is empty"),
        ("redis://127.0.0.1/0?prefix=a:token:b", r"no part named token, lease or names"),
        ("redis://127.0.0.1/0?prefix=app:names", r"no part named token"),
        ("redis://127.0.0.1/0?prefix=a%20b", r"the prefix of .* is not allowed"),
        ("redis://127.0.0.1/0?prefix=a::b", r"is not allowed"),
        (f"redis://127.0.0.1/0?prefix={'x' * 101}", r"at most 100"),
        ("redis://127.0.0.1/0?lease_ttl=0.01", r"lease_ttl.*of at least 0.2"),
        ("redis://127.0.0.1/0?lock_timeout=-1", r"lock_timeout.*positive number"),
        ("redis://127.0.0.1/0?timeout=nan", r"timeout.*positive number"),
    ],
)
def test_bad_urls_are_refused_with_the_fix(url: str, message: str) -> None:
    with pytest.raises(InvalidStoreURL, match=message):
        RedisStore.from_url(url)


def test_url_shows_only_options_that_differ(redis_server: str) -> None:
    url = "redis://127.0.0.1:6379/0?lease_ttl=15&lock_timeout=30&prefix=wt-url-test&timeout=5"
    with RedisStore.from_url(url) as store:
        assert store.url == "redis://127.0.0.1/0?prefix=wt-url-test&lock_timeout=30"
        assert (store.lease_ttl, store.lock_timeout, store.prefix) == (15, 30, "wt-url-test")


def test_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m.startswith("webex_tokens.backends.redis")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'webex-tokens\[redis\]'"):
        open_url("rediss://127.0.0.1/0")
