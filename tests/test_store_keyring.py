"""KeyringStore against the real Secret Service (gnome-keyring in a D-Bus session)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import keyring.core
import platformdirs
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import SecretService, chainer, fail, null
from keyring.compat import properties
from keyring.errors import PasswordDeleteError

from webex_tokens.backends.fernet import FernetStore, generate_key
from webex_tokens.backends.keyring import KeyringStore
from webex_tokens.errors import (
    BackendUnavailable,
    ConfigError,
    InvalidStoreURL,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
)
from webex_tokens.registry import open_url
from webex_tokens.store import TokenStore, interprocess_lock
from webex_tokens.testing import StoreConformance, make_token
from webex_tokens.testing.plugin import service_missing
from webex_tokens.testing.processes import count_of, increment_worker, run_workers

secretstorage = pytest.importorskip("secretstorage", reason="the Secret Service is Linux-only")
secret_util = pytest.importorskip("secretstorage.util")

SMALL = 256  # bytes per entry in the splitting tests: a full test token needs two


class PlaintextFileKeyring(KeyringBackend):
    """A keyring backend that keeps passwords in a plain JSON file, as keyrings.alt's does."""

    @properties.classproperty
    def priority(cls) -> float:
        return 0.5

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _load(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.path.read_text()) if self.path.exists() else {}
        return data

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\n{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\n{username}"] = password
        self.path.write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\n{username}", None) is None:
            raise PasswordDeleteError("no such password")
        self.path.write_text(json.dumps(data))


# Defining a backend registers it with keyring's automatic selection; keep it out.
KeyringBackend._classes.discard(PlaintextFileKeyring)  # type: ignore[attr-defined]


def entries(service: str) -> list[str]:
    """The usernames of every Secret Service item under ``service``, sorted."""
    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        items = collection.search_items({"service": service})
        return sorted(item.get_attributes()["username"] for item in items)


def purge(service: str) -> None:
    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        for item in list(collection.search_items({"service": service})):
            item.delete()


def insert_worker(url: str, name: str, label: str, start: Any = None) -> None:
    """Put the token ``label`` under ``name`` once, released with the other workers."""
    if start is not None:
        start.wait()
    with open_url(url) as store:
        store.put(name, make_token(label))


@pytest.fixture
def service(secret_service: KeyringBackend) -> Iterator[str]:
    """A service name no other test uses; every entry under it is deleted afterwards."""
    name = f"webex-tokens-test-{uuid.uuid4().hex[:12]}"
    yield name
    purge(name)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = generate_key()
    monkeypatch.setenv("WEBEX_TOKENS_KEY", key)
    return key


class KeyringConformance(StoreConformance):
    def update_locks_one_account(self, store: TokenStore) -> bool:
        return False  # update holds the service's lock (see webex_tokens.backends.keyring)


class TestKeyringStore(KeyringConformance):
    @pytest.fixture
    def store(self, service: str) -> Iterator[Any]:
        with open_url(f"keyring://{service}") as store:
            yield store


class TestFernetKeyringStore(KeyringConformance):
    @pytest.fixture
    def store(self, service: str, key: str) -> Iterator[Any]:
        with open_url(f"fernet+keyring://{service}") as store:
            yield store


class TestSplitKeyringStore(KeyringConformance):
    """The whole contract again with every value split over several entries."""

    @pytest.fixture
    def store(self, service: str) -> Iterator[Any]:
        with KeyringStore(service, max_value_bytes=SMALL) as store:
            yield store


# -- URLs and layout ----------------------------------------------------------------------


def test_default_service_and_url_forms(secret_service: KeyringBackend) -> None:
    with open_url("keyring://") as store:
        assert isinstance(store, KeyringStore)
        assert store.service == "webex-tokens" and store.url == "keyring://webex-tokens"
    with open_url(
        "keyring://my%20app?lock_timeout=5&allow_insecure=0&max_value_bytes=300&split=0"
    ) as store:
        assert store.service == "my app" and store.lock_timeout == 5
        assert store.max_value_bytes == 300 and store.split is False
        assert store.url == "keyring://my%20app"


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("keyring:webex", "write keyring:// or keyring://SERVICE"),
        ("keyring://svc?colour=blue", "option 'colour'.* unknown.*lock_timeout, max_value_bytes"),
        ("keyring://svc?max_value_bytes=100", "max_value_bytes .* at least 128"),
        ("keyring://svc?split=sometimes", "split .* must be 1 or 0"),
        ("keyring://svc?lock_timeout=soon", "lock_timeout .* not a positive number of seconds"),
        ("keyring://svc?lock_timeout=0", "lock_timeout .* not a positive number of seconds"),
        ("keyring://svc?allow_insecure=maybe", "allow_insecure .* must be 1 or 0"),
        ("keyring://bad%0Aname", "control character"),
    ],
)
def test_bad_urls(url: str, hint: str) -> None:
    with pytest.raises(InvalidStoreURL, match=hint):
        open_url(url)


def test_one_entry_per_account_plus_an_index(service: str) -> None:
    with KeyringStore(service) as store:
        store.put("alice@example.com", make_token("a"))
        store.put("bob", make_token("b"))
        assert entries(service) == ["index", "token:alice@example.com", "token:bob"]
        index = json.loads(secret_service_get(service, "index"))
        assert index == {"version": 1, "names": ["alice@example.com", "bob"]}
        store.delete("alice@example.com")
        store.update("bob", lambda current: None)
        assert entries(service) == []


def test_lock_file_is_named_after_the_service(service: str) -> None:
    with KeyringStore(service) as store:
        store.put("alice", make_token())
        cache = Path(platformdirs.user_cache_dir("webex-tokens", appauthor=False))
        assert store.lock_path == cache / "locks" / f"keyring-{service}.lock"
        assert store.lock_path.exists()
        assert store.lock_path.read_bytes() == b""


def secret_service_get(service: str, username: str) -> str:
    value = SecretService.Keyring().get_password(service, username)
    assert value is not None
    return value


# -- values too large for one entry -------------------------------------------------------


def test_large_value_is_split_reassembled_and_its_stale_parts_deleted(service: str) -> None:
    big = make_token("A" * 900)
    with KeyringStore(service, max_value_bytes=SMALL) as store:
        store.put("alice", big)
        parts = [entry for entry in entries(service) if entry.startswith("chunk:")]
        assert len(parts) >= 5
        assert all(len(secret_service_get(service, part).encode()) <= SMALL for part in parts)
        assert secret_service_get(service, "token:alice").startswith("webex-tokens-chunked:1:")
        assert store.get("alice") == big
        # Another store without a limit reads the split value too.
        with KeyringStore(service) as reader:
            assert reader.get("alice") == big

        store.put("alice", make_token("B" * 300))
        shrunk = [entry for entry in entries(service) if entry.startswith("chunk:")]
        assert 0 < len(shrunk) < len(parts) and not set(shrunk) & set(parts)
        assert store.get("alice") == make_token("B" * 300)

        store.update("alice", lambda current: make_token("C", full=False))
        assert entries(service) == ["index", "token:alice"]
        assert store.get("alice") == make_token("C", full=False)

        store.put("alice", big)
        assert store.delete("alice") is True
        assert entries(service) == []


def test_a_reader_meeting_a_half_written_value_waits_for_the_writer(service: str) -> None:
    token = make_token("A" * 300)
    with KeyringStore(service, max_value_bytes=SMALL) as store:
        store.put("alice", token)
        part = next(entry for entry in entries(service) if entry.startswith("chunk:"))
        saved = secret_service_get(service, part)
        got: list[Any] = []
        reader = threading.Thread(target=lambda: got.append(store.get("alice")))
        with interprocess_lock(store.lock_path):
            # What a reader meets while a writer, holding the lock, replaces the value:
            # the header it read names parts that are already gone.
            SecretService.Keyring().delete_password(service, part)
            reader.start()
            reader.join(1.0)
            assert reader.is_alive(), "the reader did not wait for the writer"
            SecretService.Keyring().set_password(service, part, saved)
        reader.join(30)
        assert got == [token]


def test_oversize_value_is_refused_when_splitting_is_off(service: str) -> None:
    with KeyringStore(service, max_value_bytes=SMALL, split=False) as store:
        with pytest.raises(StoreError, match=r"more than the 256 bytes .* splitting is off"):
            store.put("alice", make_token("A" * 900))
        with pytest.raises(StoreError, match=re.escape("sqlite:///tokens.db")):
            store.update("alice", lambda current: make_token("A" * 900))
        assert store.names() == [] and entries(service) == []


def test_value_too_large_even_split_is_refused(service: str) -> None:
    with KeyringStore(service, max_value_bytes=SMALL, max_chunks=3) as store:
        with pytest.raises(StoreError, match="even split into 3 entries of 256 bytes") as info:
            store.put("alice", make_token("secret-" + "A" * 900))
        assert "secret-" not in str(info.value)
        assert entries(service) == []


def test_split_counts_bytes_not_characters(service: str) -> None:
    token = make_token("é" * 400, account="Zoë 日本語 🎉")
    with KeyringStore(service, max_value_bytes=SMALL) as store:
        store.put("Zoë", token)
        for part in entries(service):
            assert len(secret_service_get(service, part).encode("utf-8")) <= SMALL
        assert store.get("Zoë") == token


# -- broken data ----------------------------------------------------------------------------


def test_corrupt_token_raises_and_is_left_untouched(service: str) -> None:
    with KeyringStore(service) as store:
        store.put("alice", make_token())
        SecretService.Keyring().set_password(service, "token:alice", "{not json")
        with pytest.raises(StoreCorrupted, match="left untouched"):
            store.get("alice")
        called = []
        with pytest.raises(StoreCorrupted):
            store.update("alice", lambda current: called.append(1) or make_token())
        assert called == []
        assert secret_service_get(service, "token:alice") == "{not json"


def test_corrupt_index_is_reported_at_open(service: str) -> None:
    for bad in ("[1, 2", '{"version": 1, "names": "alice"}', '{"version": 9, "names": []}'):
        SecretService.Keyring().set_password(service, "index", bad)
        with pytest.raises(StoreCorrupted, match=f"python -m keyring del {service} index"):
            KeyringStore(service)
        assert secret_service_get(service, "index") == bad


def test_missing_part_of_a_split_value(service: str) -> None:
    with KeyringStore(service, max_value_bytes=SMALL) as store:
        store.put("alice", make_token())
        part = next(entry for entry in entries(service) if entry.startswith("chunk:"))
        SecretService.Keyring().delete_password(service, part)
        with pytest.raises(StoreCorrupted, match="some of its parts are missing") as info:
            store.get("alice")
        assert f"keyring del {service} token:alice" in str(info.value)
        SecretService.Keyring().set_password(service, "token:alice", "webex-tokens-chunked:1:x")
        with pytest.raises(StoreCorrupted, match="header of split parts is malformed"):
            store.get("alice")


# -- backends that are missing or unsafe ------------------------------------------------------

_OPEN_SCRIPT = """
import json, sys
from webex_tokens.errors import WebexTokensError
from webex_tokens.registry import open_url
try:
    open_url(sys.argv[1]).close()
    print(json.dumps(["opened", ""]))
except WebexTokensError as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


@pytest.mark.parametrize(
    ("bus", "pinned"),
    [("unix:path=/nonexistent/dbus-socket", False), (None, True), (None, False)],
    ids=["bus-elsewhere", "no-bus-secretservice-pinned", "no-bus-auto"],
)
def test_no_dbus_session_is_backend_unavailable(
    tmp_path: Path, bus: str | None, pinned: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "PYTHON_KEYRING"))}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)  # no bus socket here either
    env["HOME"] = str(tmp_path)
    if bus is not None:
        env["DBUS_SESSION_BUS_ADDRESS"] = bus
    if pinned:
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.SecretService.Keyring"
    result = subprocess.run(
        [sys.executable, "-c", _OPEN_SCRIPT, "keyring://webex-tokens-no-bus"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kind, message = json.loads(result.stdout)
    assert kind == "BackendUnavailable"
    assert "dbus-run-session" in message and "gnome-keyring-daemon --unlock" in message


def test_fail_backend_is_refused(secret_service: KeyringBackend) -> None:
    with pytest.raises(BackendUnavailable, match="keyring found no backend") as info:
        KeyringStore("x", backend=fail.Keyring())
    assert "gnome-keyring-daemon --start --components=secrets" in str(info.value)
    assert "fernet+file://" in str(info.value)


def test_null_backend_is_refused(secret_service: KeyringBackend) -> None:
    with pytest.raises(BackendUnavailable, match=r"switched off.*unset PYTHON_KEYRING_BACKEND"):
        KeyringStore("x", backend=null.Keyring())


def test_chained_backends_use_the_first_one_directly(service: str) -> None:
    with KeyringStore(service, backend=chainer.ChainerBackend()) as store:
        assert isinstance(store.backend, SecretService.Keyring)
        store.put("alice", make_token())
        assert entries(service) == ["index", "token:alice"]


@pytest.fixture
def plaintext_keyring(secret_service: KeyringBackend, tmp_path: Path) -> Iterator[Path]:
    """Make a plaintext file backend keyring's active backend for this test."""
    path = tmp_path / "plaintext-keyring.json"
    keyring.core.set_keyring(PlaintextFileKeyring(path))
    yield path
    keyring.core.set_keyring(secret_service)


def test_insecure_backend_is_refused(plaintext_keyring: Path) -> None:
    with pytest.raises(BackendUnavailable, match="not a protected OS keyring") as info:
        open_url("keyring://app")
    message = str(info.value)
    assert "PlaintextFileKeyring" in message
    assert "?allow_insecure=1" in message and "WEBEX_TOKENS_KEYRING_ALLOW_INSECURE=1" in message
    assert "gnome-keyring-daemon" in message
    assert not plaintext_keyring.exists()


def test_insecure_backend_with_the_url_opt_in(plaintext_keyring: Path) -> None:
    with open_url("keyring://app?allow_insecure=1") as store:
        store.put("alice", make_token("visible"))
        assert store.get("alice") == make_token("visible")
    assert "visible" in plaintext_keyring.read_text()


def test_insecure_backend_with_the_environment_opt_in(
    monkeypatch: pytest.MonkeyPatch, plaintext_keyring: Path
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_KEYRING_ALLOW_INSECURE", "1")
    with open_url("keyring://app") as store:
        store.put("alice", make_token())
    # An explicit 0 in the URL wins over the environment.
    with pytest.raises(BackendUnavailable):
        open_url("keyring://app?allow_insecure=0")
    monkeypatch.setenv("WEBEX_TOKENS_KEYRING_ALLOW_INSECURE", "perhaps")
    with pytest.raises(ConfigError, match="must be 1"):
        open_url("keyring://app")


# -- a locked or vanished keyring ----------------------------------------------------------

_GNOME_KEYRING = "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface"


def gnome_keyring(connection: Any) -> Any:
    """gnome-keyring's own D-Bus interface, which creates and unlocks without a prompt."""
    return secret_util.DBusAddressWrapper("/org/freedesktop/secrets", _GNOME_KEYRING, connection)


def as_secret(connection: Any, password: bytes) -> Any:
    return secret_util.format_secret(secret_util.open_session(connection), password, "text/plain")


@pytest.fixture
def own_collection(secret_service: KeyringBackend) -> Iterator[tuple[KeyringBackend, str]]:
    """A new gnome-keyring collection with a known password, and a backend that uses it."""
    password = uuid.uuid4().hex.encode()
    with closing(secretstorage.dbus_init()) as connection:
        internal = gnome_keyring(connection)
        try:
            (path,) = internal.call(
                "CreateWithMasterPassword",
                "a{sv}(oayays)",
                {"org.freedesktop.Secret.Collection.Label": ("s", "webex-tokens-test")},
                as_secret(connection, password),
            )
        except Exception as exc:
            service_missing(f"the Secret Service is not gnome-keyring: {exc}")
    backend = SecretService.Keyring()
    backend.preferred_collection = path  # type: ignore[attr-defined]
    yield backend, path
    with closing(secretstorage.dbus_init()) as connection:
        try:
            collection = secretstorage.Collection(connection, path)
        except secretstorage.ItemNotFoundException:
            return  # the test deleted it
        internal = gnome_keyring(connection)
        if collection.is_locked():
            internal.call(
                "UnlockWithMasterPassword",
                "o(oayays)",
                path,
                as_secret(connection, password),
            )
        collection.delete()


def test_locked_keyring_is_store_unavailable(own_collection: tuple[KeyringBackend, str]) -> None:
    backend, path = own_collection
    store = KeyringStore(f"webex-tokens-test-{uuid.uuid4().hex[:12]}", backend=backend)
    store.put("alice", make_token())
    with closing(secretstorage.dbus_init()) as connection:
        secretstorage.Collection(connection, path).lock()
    with pytest.raises(StoreUnavailable, match=r"is locked; unlock it .*gnome-keyring-daemon"):
        store.get("alice")
    with pytest.raises(StoreUnavailable, match="is locked"):
        KeyringStore(store.service, backend=backend)


def test_vanished_keyring_is_store_unavailable(own_collection: tuple[KeyringBackend, str]) -> None:
    backend, path = own_collection
    store = KeyringStore(f"webex-tokens-test-{uuid.uuid4().hex[:12]}", backend=backend)
    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.Collection(connection, path)
        collection.delete()
    with pytest.raises(StoreUnavailable, match=r"failed to read an entry .*running and unlocked"):
        store.get("alice")


# -- real processes -----------------------------------------------------------------------------


def test_updates_from_eight_processes_are_all_kept(service: str) -> None:
    url = f"keyring://{service}"
    run_workers(increment_worker, [(url, "counter", 50)] * 8)
    with open_url(url) as store:
        assert count_of(store.get("counter")) == 400
        assert store.names() == ["counter"]


def test_two_processes_inserting_one_new_name(service: str) -> None:
    url = f"keyring://{service}"
    run_workers(insert_worker, [(url, "new", "first"), (url, "new", "second")])
    with open_url(url) as store:
        assert store.names() == ["new"]
        token = store.get("new")
        assert token is not None and token.access_token in ("first", "second")
    assert entries(service) == ["index", "token:new"]


def test_encrypted_keyring_holds_no_plaintext(service: str, key: str) -> None:
    with open_url(f"fernet+keyring://{service}") as store:
        assert isinstance(store, FernetStore)
        store.put("alice", make_token("s3cret-value"))
    assert "s3cret" not in secret_service_get(service, "token:alice")
    assert secret_service_get(service, "token:alice").startswith("gAAAA")
