from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from webex_tokens.backends.fernet import KEY_CHECK_NAME, FernetStore, generate_key, rotate_keys
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.errors import DecryptionError, InvalidName, InvalidStoreURL, StoreCorrupted
from webex_tokens.registry import open_url
from webex_tokens.store import Record
from webex_tokens.testing import StoreConformance, make_token
from webex_tokens.testing.processes import count_of, increment_worker, run_workers

KEY_A = generate_key()
KEY_B = generate_key()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh key in WEBEX_TOKENS_KEY (inherited by spawned workers)."""
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    return KEY_A


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tokens.json"


def _file_tokens(path: Path) -> dict[str, Any]:
    tokens: dict[str, Any] = json.loads(path.read_text())["tokens"]
    return tokens


def _set_file_tokens(path: Path, tokens: dict[str, Any]) -> None:
    path.write_text(json.dumps({"version": 1, "tokens": tokens}))


def insert_worker(url: str, name: str, label: str, start: Any = None) -> None:
    """Put the token ``label`` under ``name`` once, released with the other workers."""
    if start is not None:
        start.wait()
    with open_url(url) as store:
        store.put(name, make_token(label))


class TestFernetMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self, key: str) -> Iterator[Any]:
        with open_url("fernet+memory://") as store:
            yield store


class TestFernetFileStore(StoreConformance):
    @pytest.fixture
    def store(self, key: str, path: Path) -> Iterator[Any]:
        with open_url(f"fernet+file://{path}") as store:
            yield store


# -- opening -------------------------------------------------------------------------


def test_one_registry_call_opens_the_wrapper_and_keeps_inner_options(key: str, path: Path) -> None:
    with open_url(f"fernet+file://{path}?lock_timeout=7") as store:
        assert isinstance(store, FernetStore)
        assert isinstance(store.inner, FileStore)
        assert store.inner.lock_timeout == 7
        assert store.url == f"fernet+file://{path}"


def test_url_names_a_key_source_other_than_the_default(
    monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    monkeypatch.setenv("PROD_KEY", KEY_A)
    with open_url(f"fernet+file://{path}?key_env=PROD_KEY") as store:
        assert store.url == f"fernet+file://{path}?key_env=PROD_KEY"
        store.put("alice", make_token())
    with open_url(store.url) as again:
        assert again.get("alice") == make_token()


def test_plaintext_token_never_reaches_the_file(key: str, path: Path) -> None:
    with open_url(f"fernet+file://{path}") as store:
        store.put("alice", make_token("s3cret-access-value"))
        store.update("bob", lambda current: make_token("an0ther-secret"))
    raw = path.read_bytes()
    for secret in (b"s3cret-access-value", b"refresh-s3cret", b"an0ther-secret", b"C0ffee"):
        assert secret not in raw
    tokens = _file_tokens(path)
    assert sorted(tokens) == [KEY_CHECK_NAME, "alice", "bob"]  # and the key check, encrypted
    assert all(isinstance(value, str) and value.startswith("gAAAA") for value in tokens.values())


def test_expires_at_passes_to_the_inner_store_as_plain_metadata(key: str) -> None:
    seen = []

    class Recording(MemoryStore):
        def _write(self, name: str, record: Any) -> None:
            seen.append(record.expires_at)
            super()._write(name, record)

    with FernetStore(Recording()) as store:
        store.put("alice", make_token())
    assert seen == [make_token().expires_at]


def test_explicit_keys_and_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY_B}\n{KEY_A}\n")
    key_file.chmod(0o600)
    with FernetStore(MemoryStore(), [KEY_A]) as store:
        store.put("alice", make_token())
        rotated = FernetStore(store.inner, key_file=key_file)
        assert rotated.key_source == f"the key file {key_file}"
        assert rotated.get("alice") == make_token()


# -- bad inputs --------------------------------------------------------------------------


def _decryption_error(url: str, name: str = "alice") -> DecryptionError:
    with pytest.raises(DecryptionError) as info, open_url(url) as store:
        store.get(name)
    return info.value


def test_wrong_key_says_which_store_and_key_source(
    monkeypatch: pytest.MonkeyPatch, key: str, path: Path
) -> None:
    url = f"fernet+file://{path}"
    with open_url(url) as store:
        store.put("alice", make_token())
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_B)
    message = str(_decryption_error(url))
    assert "cannot be decrypted with the environment variable WEBEX_TOKENS_KEY" in message
    assert str(path) in message and "the key it was written with" in message
    assert KEY_A not in message and KEY_B not in message


def test_missing_key_says_which_variable_to_set(path: Path) -> None:
    with pytest.raises(DecryptionError, match="WEBEX_TOKENS_KEY is not set") as info:
        open_url(f"fernet+file://{path}")
    assert "webex-tokens keygen" in str(info.value)


def test_malformed_key_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_KEY", f"{KEY_A},not-a-key-at-all")
    with pytest.raises(DecryptionError, match=r"key 2 of 2 .* is not a Fernet key") as info:
        open_url(f"fernet+file://{path}")
    assert "not-a-key-at-all" not in str(info.value) and KEY_A not in str(info.value)


@pytest.mark.parametrize("empty", ["", " , ", "\n"])
def test_empty_key_source(monkeypatch: pytest.MonkeyPatch, path: Path, empty: str) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_KEY", empty)
    with pytest.raises(DecryptionError, match="WEBEX_TOKENS_KEY holds no key"):
        open_url(f"fernet+file://{path}")
    with pytest.raises(DecryptionError, match="keys argument of FernetStore holds no key"):
        FernetStore(MemoryStore(), empty)


def test_missing_key_file(tmp_path: Path, path: Path) -> None:
    with pytest.raises(DecryptionError, match=r"key file .*missing-key does not exist"):
        open_url(f"fernet+file://{path}?key_file={tmp_path}/missing-key")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_key_file_readable_by_others_is_refused(tmp_path: Path, path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY_A)
    key_file.chmod(0o644)
    with pytest.raises(DecryptionError, match=f"run: chmod 600 {key_file}") as info:
        open_url(f"fernet+file://{path}?key_file={key_file}")
    assert KEY_A not in str(info.value)
    key_file.chmod(0o600)
    with open_url(f"fernet+file://{path}?key_file={key_file}") as store:
        store.put("alice", make_token())
        assert store.url.endswith(f"?key_file={key_file}")


@pytest.mark.parametrize("option", ["key", "KEY", "keys", "fernet_key"])
def test_key_in_the_url_is_refused(path: Path, option: str) -> None:
    with pytest.raises(InvalidStoreURL, match="keys never go in a URL") as info:
        open_url(f"fernet+file://{path}?{option}={KEY_A}")
    assert KEY_A not in str(info.value)
    assert "?key_env=NAME" in str(info.value)


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("fernet+:", "wraps no store"),
        ("fernet+:?key_env=X", "wraps no store"),
        ("fernet+fernet+memory://", "encrypts twice"),
        ("fernet+memory://?key_env=A&key_file=/k", "both key_env and key_file"),
        ("fernet+memory://?key_env=", "key_env .* is empty"),
    ],
)
def test_malformed_urls(key: str, url: str, hint: str) -> None:
    with pytest.raises(InvalidStoreURL, match=hint):
        open_url(url)


def test_truncated_ciphertext(key: str, path: Path) -> None:
    with open_url(f"fernet+file://{path}") as store:
        store.put("alice", make_token())
    tokens = _file_tokens(path)
    for cut in (tokens["alice"][:-10], tokens["alice"][:30]):
        _set_file_tokens(path, {"alice": cut})
        message = str(_decryption_error(f"fernet+file://{path}"))
        assert "ciphertext is damaged (truncated or edited)" in message
        assert KEY_A not in message


def test_blob_swapped_between_names_is_refused(key: str, path: Path) -> None:
    url = f"fernet+file://{path}"
    with open_url(url) as store:
        store.put("alice", make_token("alice"))
        store.put("mallory", make_token("mallory"))
    tokens = _file_tokens(path)
    _set_file_tokens(path, {"alice": tokens["mallory"], "mallory": tokens["alice"]})
    message = str(_decryption_error(url))
    assert "holds the encrypted token of 'mallory'" in message
    assert "copied or moved" in message


def test_plaintext_record_is_not_accepted(key: str, path: Path) -> None:
    with FileStore(path) as plain:
        plain.put("alice", make_token())
    message = str(_decryption_error(f"fernet+file://{path}"))
    assert "stored in plaintext" in message and "webex-tokens migrate" in message


def test_failed_decrypt_in_update_neither_calls_fn_nor_writes(
    monkeypatch: pytest.MonkeyPatch, key: str, path: Path
) -> None:
    url = f"fernet+file://{path}"
    with open_url(url) as store:
        store.put("alice", make_token())
    before = path.read_bytes()
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_B)
    called = []
    with open_url(url) as store, pytest.raises(DecryptionError):
        store.update("alice", lambda current: called.append(current) or make_token("new"))
    assert called == []
    assert path.read_bytes() == before


def test_a_record_that_decrypts_to_garbage_is_corrupted(key: str) -> None:
    inner = MemoryStore()
    inner._write("alice", Record(Fernet(KEY_A).encrypt(b"[1, 2]").decode()))
    with FernetStore(inner) as store, pytest.raises(StoreCorrupted, match="delete it"):
        store.get("alice")


def test_only_record_stores_can_be_wrapped() -> None:
    with pytest.raises(TypeError, match="wraps a token store"):
        FernetStore(object(), KEY_A)  # type: ignore[arg-type]


# -- keys -------------------------------------------------------------------------------


def test_generate_key_makes_distinct_usable_keys() -> None:
    first, second = generate_key(), generate_key()
    assert first != second and len(first) == 44
    with FernetStore(MemoryStore(), first) as store:
        store.put("alice", make_token())
        assert store.get("alice") == make_token()


def test_rotate_keys(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    url = f"fernet+file://{path}"
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    with open_url(url) as store:
        for name in ("alice", "bob", "carol"):
            store.put(name, make_token(name))
    monkeypatch.setenv("WEBEX_TOKENS_KEY", f"{KEY_B},{KEY_A}")
    with open_url(url) as store:
        assert isinstance(store, FernetStore)
        assert rotate_keys(store) == 3
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_B)
    with open_url(url) as store:
        assert [(name, token.access_token) for name, token in store.items()] == [
            ("alice", "alice"),
            ("bob", "bob"),
            ("carol", "carol"),
        ]
        assert store.get("alice") == make_token("alice")
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    assert "cannot be decrypted" in str(_decryption_error(url))


# -- a wrong key cannot write ---------------------------------------------------------------


@pytest.mark.parametrize("inner", ["file", "sqlite"])
def test_a_wrong_key_cannot_write_a_new_name(
    inner: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = (
        f"fernet+file://{tmp_path}/t.json"
        if inner == "file"
        else f"fernet+sqlite:///{tmp_path}/t.db"
    )
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    with open_url(url) as store:
        store.put("alice", make_token("alice"))
        assert store.names() == ["alice"]  # the key-check record is not listed
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_B)
    with open_url(url) as wrong:
        for write in (
            lambda: wrong.put("bob", make_token("bob")),
            lambda: wrong.update("carol", lambda current: make_token("carol")),
        ):
            with pytest.raises(
                DecryptionError, match=r"refusing to write to .* nothing was written"
            ):
                write()
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    with open_url(url) as store:
        assert store.names() == ["alice"]  # one key still reads the whole store
        store.put("bob", make_token("bob"))
        assert [name for name, _ in store.items()] == ["alice", "bob"]


def test_a_store_written_before_the_key_check_is_proven_by_its_records(
    monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    url = f"fernet+file://{path}"
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    with open_url(url) as store:
        store.put("alice", make_token("alice"))
    tokens = _file_tokens(path)
    del tokens[KEY_CHECK_NAME]  # as an older version wrote it
    _set_file_tokens(path, tokens)
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_B)
    with open_url(url) as wrong, pytest.raises(DecryptionError, match="does not decrypt 1 of its"):
        wrong.put("bob", make_token("bob"))
    assert sorted(_file_tokens(path)) == ["alice"]
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    with open_url(url) as store:
        store.put("bob", make_token("bob"))
    assert sorted(_file_tokens(path)) == [KEY_CHECK_NAME, "alice", "bob"]


def test_a_new_store_takes_the_first_key_and_refuses_another(
    monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    url = f"fernet+file://{path}"
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    with open_url(url) as store:
        store.update("alice", lambda current: make_token("alice"))
        store.delete("alice")  # empty again, but the key check stays
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_B)
    with open_url(url) as wrong, pytest.raises(DecryptionError, match="its key-check record"):
        wrong.put("bob", make_token("bob"))


def test_the_key_check_name_is_reserved(key: str, path: Path) -> None:
    with open_url(f"fernet+file://{path}") as store:
        for call in (store.get, store.delete, lambda n: store.put(n, make_token())):
            with pytest.raises(InvalidName, match="is reserved for the key check"):
                call(KEY_CHECK_NAME)


def test_after_a_rotation_the_new_key_alone_writes(
    monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    url = f"fernet+file://{path}"
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    with open_url(url) as store:
        store.put("alice", make_token("alice"))
    monkeypatch.setenv("WEBEX_TOKENS_KEY", f"{KEY_B},{KEY_A}")
    with open_url(url) as store:
        assert isinstance(store, FernetStore)
        rotate_keys(store)
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_B)
    with open_url(url) as store:
        store.put("bob", make_token("bob"))
    monkeypatch.setenv("WEBEX_TOKENS_KEY", KEY_A)
    with open_url(url) as old, pytest.raises(DecryptionError, match="its key-check record"):
        old.put("carol", make_token("carol"))


def test_rotate_keys_takes_only_an_encrypted_store() -> None:
    with pytest.raises(TypeError, match="fernet\\+ URL"):
        rotate_keys(MemoryStore())  # type: ignore[arg-type]


# -- real processes ------------------------------------------------------------------------


def test_updates_from_eight_processes_are_all_kept(key: str, path: Path) -> None:
    url = f"fernet+file://{path}"
    run_workers(increment_worker, [(url, "counter", 50)] * 8)
    with open_url(url) as store:
        assert count_of(store.get("counter")) == 400


def test_two_processes_inserting_one_new_name(key: str, path: Path) -> None:
    url = f"fernet+file://{path}"
    run_workers(insert_worker, [(url, "new", "first"), (url, "new", "second")])
    with open_url(url) as store:
        assert store.names() == ["new"]
        token = store.get("new")
        assert token is not None and token.access_token in ("first", "second")
