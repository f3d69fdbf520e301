"""``fernet+<url>``: Fernet encryption wrapped around any token store.

:class:`FernetStore` is a decorator, not a backend: it encrypts each record before the
inner store writes it and decrypts it after the inner store reads it, so locking,
durability and atomic updates stay the inner store's job. The account names and the
plain ``expires_at`` metadata stay readable; the token itself (access and refresh
token, scopes, account) is only stored encrypted.

Each ciphertext is bound to its record name: the plaintext is the envelope
``{"n": name, "d": record}``, and a record whose envelope names another account is
refused, so a blob copied or moved to another name cannot be passed off as that
account's token.

A wrong key cannot write: before the first write through a store object, the key is
proven against the store. The proof is the key-check record (:data:`KEY_CHECK_NAME`, a
fixed text encrypted like any record, never listed by ``names()``), or, in a store
written before there was one, an existing record; a key that opens neither raises
:class:`~webex_tokens.errors.DecryptionError` and nothing is written. A store without
either (a new one) takes the key, and the key-check record is written.

Keys come from ``WEBEX_TOKENS_KEY`` (comma-separated; the first key encrypts, all of
them decrypt, as :class:`cryptography.fernet.MultiFernet` does), from another variable
(``?key_env=NAME``) or from a file only its owner can read (``?key_file=PATH``). A key is
never accepted inside the URL, since URLs end up in settings files and logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote

from cryptography.fernet import Fernet, MultiFernet
from cryptography.fernet import InvalidToken as FernetInvalidToken

from ..errors import DecryptionError, InvalidName, InvalidStoreURL, StoreCorrupted
from ..records import records_of
from ..store import KEEP, BaseStore, Keep, Record, RecordChange, TokenStore
from ..urls import is_variable_name, looks_like_key, redact_url, shown_url, variable_expected

__all__ = ["DEFAULT_KEY_ENV", "KEY_CHECK_NAME", "FernetStore", "generate_key", "rotate_keys"]

#: The environment variable that holds the keys when the URL names no other source.
DEFAULT_KEY_ENV: Final = "WEBEX_TOKENS_KEY"

#: The record that proves a key before the first write; the name is reserved.
KEY_CHECK_NAME: Final = ".webex-tokens-key-check"
_KEY_CHECK_TEXT: Final = "webex-tokens key check"

_PREFIX: Final = "fernet+"
_KEY_OPTIONS: Final = ("key_env", "key_file")
_FORBIDDEN_OPTIONS: Final = ("key", "keys", "fernet_key", "secret")
_KEYGEN_HINT: Final = "create one with: webex-tokens keygen"
# A Fernet token is version (1 byte) + time (8) + IV (16) + AES-CBC blocks (16 each)
# + HMAC (32); anything else cannot be a whole token.
_FERNET_OVERHEAD: Final = 57
_FERNET_BLOCK: Final = 16


def generate_key() -> str:
    """Return a new random Fernet key: 44 characters of URL-safe base64.

    Keep it in ``WEBEX_TOKENS_KEY`` (or the variable or file the store URL names).
    """
    return Fernet.generate_key().decode("ascii")


class FernetStore(BaseStore):
    """Fernet encryption around another store (``fernet+file:///path/tokens.json``).

    Args:
        inner: the store that keeps the ciphertext, through its record layer: any
            :class:`BaseStore`, or any :class:`TokenStore` (see
            :func:`~webex_tokens.records.records_of`: correct, but slower).
        keys: the keys themselves (a comma-separated string or a sequence), first key
            encrypting. When omitted they are read from ``key_file`` if given, else from
            the environment variable ``key_env``.
        key_env: the environment variable holding the keys (default ``WEBEX_TOKENS_KEY``).
        key_file: a file holding the keys (comma- or newline-separated); it must not be
            readable by group or others.

    Raises:
        DecryptionError: no key is available, a key is malformed or the key file is
            readable by other users. The message names the key source, never a key.
        TypeError: ``inner`` is not a token store.
    """

    def __init__(
        self,
        inner: TokenStore,
        keys: str | bytes | Sequence[str | bytes] | None = None,
        *,
        key_env: str | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(inner, TokenStore):
            raise TypeError(
                f"FernetStore wraps a token store, not {type(inner).__name__}; "
                "open the inner store with webex_tokens.open_store() or a backend class"
            )
        inner = records_of(inner)
        _check_key_source(key_env, key_file)
        self.inner = inner
        self._key_env = key_env or DEFAULT_KEY_ENV
        self._key_file = Path(os.path.expanduser(key_file)) if key_file is not None else None
        option = ""
        if self._key_file is not None:
            option = "key_file=" + quote(str(self._key_file), safe="/~")
        elif key_env is not None and key_env != DEFAULT_KEY_ENV:
            option = "key_env=" + quote(key_env, safe="")
        inner_url = redact_url(inner.url)
        joiner = "&" if "?" in inner_url else "?"
        self.url = _PREFIX + inner_url + (joiner + option if option else "")
        if keys is not None:
            self.key_source = "the keys argument of FernetStore"
            raw_keys = _split_keys(keys)
        elif self._key_file is not None:
            self.key_source = f"the key file {self._key_file}"
            raw_keys = _split_keys(self._read_key_file(self._key_file))
        else:
            self.key_source = f"the environment variable {self._key_env}"
            raw_keys = _split_keys(os.environ.get(self._key_env, ""))
        if not raw_keys:
            unset = keys is None and self._key_file is None and self._key_env not in os.environ
            raise DecryptionError(
                f"no Fernet key for {self.url}: {self.key_source} "
                f"{'is not set' if unset else 'holds no key'}; set it to the key the tokens "
                f"were encrypted with, or {_KEYGEN_HINT}"
            )
        fernets = []
        for position, raw in enumerate(raw_keys, start=1):
            try:
                fernets.append(Fernet(raw))
            except (ValueError, TypeError):
                raise DecryptionError(
                    f"key {position} of {len(raw_keys)} in {self.key_source} is not a Fernet "
                    f"key (44 characters of URL-safe base64) for {self.url}; {_KEYGEN_HINT}"
                ) from None
        self._encrypter = fernets[0]
        self._fernet = MultiFernet(fernets)
        self._key_proven = False

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> FernetStore:
        """Open ``fernet+<store URL>``, e.g. ``fernet+file:///var/lib/app/tokens.json``.

        The options ``key_env=NAME`` and ``key_file=PATH`` choose the key source and are
        removed before the inner URL is opened; the inner store's own options stay.
        ``create`` is passed on to the inner store (False: create nothing).

        Raises:
            InvalidStoreURL: the URL holds a key, names two key sources, wraps nothing,
                or wraps a fernet+ store.
            DecryptionError: the key source is missing, empty or unsafe.
        """
        from ..registry import is_store_url, open_url

        if not url[: len(_PREFIX)].lower() == _PREFIX:
            raise InvalidStoreURL(
                f"{shown_url(url)} is not an encrypted store URL; write fernet+<store URL>, "
                "e.g. fernet+file:///var/lib/app/tokens.json"
            )
        inner_url, options = _take_key_options(url, url[len(_PREFIX) :])
        if not is_store_url(inner_url):
            raise InvalidStoreURL(
                f"{shown_url(url)} wraps no store; write fernet+<store URL>, "
                "e.g. fernet+file:///var/lib/app/tokens.json"
            )
        if inner_url[: len(_PREFIX)].lower() == _PREFIX:
            raise InvalidStoreURL(
                f"{shown_url(url)} encrypts twice; use a single fernet+ prefix "
                "(list several keys in one key source to rotate)"
            )
        _check_key_source(options.get("key_env"), options.get("key_file"))
        inner = open_url(inner_url, create=create)
        try:
            return cls(inner, **options)
        except BaseException:
            inner.close()
            raise

    # -- keys ---------------------------------------------------------------------

    def _read_key_file(self, path: Path) -> str:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise DecryptionError(
                f"no Fernet key for {self.url}: the key file {path} does not exist; write "
                f"the key into it (chmod 600), or {_KEYGEN_HINT}"
            ) from None
        except OSError as exc:
            raise DecryptionError(
                f"cannot read the key file {path} of {self.url}: {exc.strerror}"
            ) from None
        except ValueError:  # a NUL character, which no file name can hold
            raise DecryptionError(
                f"the key file path {str(path)!r} of {self.url} holds a NUL character; "
                "point key_file at the file that holds the key"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise DecryptionError(
                f"the key file {path} of {self.url} is not a regular file; point key_file "
                "at the file that holds the key"
            )
        if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
            raise DecryptionError(
                f"refusing the key file {path} of {self.url}: other users can read it (mode "
                f"{stat.S_IMODE(info.st_mode):o}); run: chmod 600 {path}"
            )
        try:
            return path.read_text(encoding="ascii")
        except UnicodeDecodeError:
            raise DecryptionError(
                f"the key file {path} of {self.url} holds no Fernet key (not ASCII); {_KEYGEN_HINT}"
            ) from None
        except OSError as exc:
            raise DecryptionError(
                f"cannot read the key file {path} of {self.url}: {exc.strerror}"
            ) from None

    # -- encryption ---------------------------------------------------------------

    def _encrypt(self, name: str, data: str) -> str:
        envelope = json.dumps({"n": name, "d": data}, separators=(",", ":"), ensure_ascii=False)
        return self._encrypter.encrypt(envelope.encode("utf-8")).decode("ascii")

    def encrypt_text(self, name: str, text: str) -> str:
        """Encrypt ``text`` bound to the account ``name``, exactly as a record is (the
        rescue journal keeps a token for this store this way)."""
        return self._encrypt(name, text)

    def decrypt_text(self, name: str, ciphertext: str, *, where: str) -> str:
        """Decrypt what :meth:`encrypt_text` made for ``name``; ``where`` names it in errors.

        Raises:
            DecryptionError: the keys cannot decrypt it, or it is bound to another name.
            StoreCorrupted: it decrypts to something else than :meth:`encrypt_text` made.
        """
        data = self._decrypt(name, ciphertext, where=where)
        assert data is not None
        return data

    def _decrypt(self, name: str, ciphertext: str | None, *, where: str = "") -> str | None:
        if ciphertext is None:
            return None
        where = where or f"the token {name!r} in {self.url}"
        if ciphertext.lstrip().startswith("{"):
            raise DecryptionError(
                f"{where} is stored in plaintext, not encrypted; copy plain tokens in with "
                "webex-tokens migrate (which encrypts them) or delete this one and log in again"
            )
        if _truncated(ciphertext):
            raise DecryptionError(
                f"{where} cannot be decrypted: the ciphertext is damaged (truncated or "
                "edited); restore it from a backup or delete it and log in again"
            )
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode("ascii"))
        except (FernetInvalidToken, UnicodeEncodeError):
            raise DecryptionError(
                f"{where} cannot be decrypted with {self.key_source}: the key is wrong or the "
                "data was altered; use the key it was written with (when rotating, list the "
                "new key first and the old one after it)"
            ) from None
        try:
            envelope = json.loads(plaintext.decode("utf-8"))
            owner, data = envelope["n"], envelope["d"]
            if not isinstance(owner, str) or not isinstance(data, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise StoreCorrupted(
                f"{where} decrypts to something that is not a webex-tokens record; it was "
                "left untouched: delete it and log in again"
            ) from None
        if owner != name:
            raise DecryptionError(
                f"{where} holds the encrypted token of {owner!r}: it was copied or moved "
                "from that entry; restore the right record from a backup or delete this one"
            )
        return data

    def _seal(self, name: str, record: Record) -> Record:
        return Record(self._encrypt(name, record.data), record.expires_at)

    def _opens(self, ciphertext: str) -> bool | None:
        """True if one of the keys decrypts ``ciphertext``, False if none does, None if
        it is no Fernet token at all (plaintext, damaged)."""
        if ciphertext.lstrip().startswith("{") or _truncated(ciphertext):
            return None
        try:
            self._fernet.decrypt(ciphertext.encode("ascii"))
        except (FernetInvalidToken, UnicodeEncodeError):
            return False
        return True

    # -- proving the key before the first write ---------------------------------------

    def _prove_key(self) -> None:
        """Refuse to write unless the keys open what the store already holds (once per
        store object): the key-check record, else an existing record. A store with
        neither takes the key, and its key-check record is written.

        Raises:
            DecryptionError: the keys open neither; nothing was written.
        """
        if self._key_proven:
            return
        check = self.inner.read_record(KEY_CHECK_NAME)
        if check is None:
            self._prove_against_records()

            def write_check(current: str | None) -> RecordChange:
                if current is None:
                    return Record(self._encrypt(KEY_CHECK_NAME, _KEY_CHECK_TEXT))
                self._check_key_record(current)  # written by another process meanwhile
                return KEEP

            self.inner.update_record(KEY_CHECK_NAME, write_check)
        else:
            self._check_key_record(check)
        self._key_proven = True

    def _check_key_record(self, ciphertext: str) -> None:
        if not self._opens(ciphertext):
            raise self._wrong_key_error("its key-check record")

    def _prove_against_records(self) -> None:
        records = self.inner.iter_records()
        refused = 0
        try:
            for name, ciphertext in records:
                if name == KEY_CHECK_NAME:
                    continue
                opened = self._opens(ciphertext)
                if opened:
                    return
                refused += opened is False
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()
        if refused:
            raise self._wrong_key_error(f"{refused} of its tokens")

    def _wrong_key_error(self, what: str) -> DecryptionError:
        return DecryptionError(
            f"refusing to write to {self.url}: {self.key_source} does not decrypt {what}, "
            "so the store was written with another key and nothing was written; use the key "
            "it was written with (to rotate, list the new key first and the old one after it)"
        )

    @staticmethod
    def _check_name(name: str) -> None:
        if name == KEY_CHECK_NAME:
            raise InvalidName(
                f"the account name {KEY_CHECK_NAME!r} is reserved for the key check of an "
                "encrypted store; choose another name"
            )

    # -- records, delegated to the inner store's record layer --------------------------------------

    def _read(self, name: str) -> str | None:
        self._check_name(name)
        return self._decrypt(name, self.inner.read_record(name))

    def _write(self, name: str, record: Record) -> None:
        self._check_name(name)
        self._prove_key()
        self.inner.write_record(name, self._seal(name, record))

    def _remove(self, name: str) -> bool:
        self._check_name(name)
        return self.inner.delete(name)

    def _iter_names(self) -> Iterable[str]:
        return [name for name in self.inner.names() if name != KEY_CHECK_NAME]

    def _iter_records(self) -> Iterator[tuple[str, str]]:
        records = self.inner.iter_records()
        try:
            for name, ciphertext in records:
                if name == KEY_CHECK_NAME:
                    continue
                data = self._decrypt(name, ciphertext)
                if data is not None:
                    yield name, data
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        self._check_name(name)
        self._prove_key()
        self.inner.update_record(name, self._encrypted(name, change))

    def _update_records(
        self, changes: Sequence[tuple[str, Callable[[str | None], RecordChange]]]
    ) -> bool:
        for name, _ in changes:
            self._check_name(name)
        self._prove_key()
        return self.inner.update_records(
            [(name, self._encrypted(name, change)) for name, change in changes]
        )

    def _encrypted(
        self, name: str, change: Callable[[str | None], RecordChange]
    ) -> Callable[[str | None], RecordChange]:
        """``change`` working on the inner store's ciphertext."""

        def encrypted_change(ciphertext: str | None) -> RecordChange:
            # Decrypting first means a wrong key raises before ``change`` (the caller's
            # function) runs, so nothing is computed from or written over unread data.
            result = change(self._decrypt(name, ciphertext))
            if result is None or isinstance(result, Keep):
                return result
            return self._seal(name, result)

        return encrypted_change

    def _reseal_key_check(self) -> None:
        """Encrypt the key-check record under the first key (the end of a rotation)."""
        self._prove_key()

        def reseal(current: str | None) -> RecordChange:
            if current is not None:
                self._check_key_record(current)
            return Record(self._encrypt(KEY_CHECK_NAME, _KEY_CHECK_TEXT))

        self.inner.update_record(KEY_CHECK_NAME, reseal)

    def _close(self) -> None:
        self.inner.close()


def rotate_keys(store: FernetStore) -> int:
    """Re-encrypt every token of ``store`` under its first key; return how many.

    Open the store with the new key first and the old key(s) after it (for example
    ``WEBEX_TOKENS_KEY="NEW,OLD"``). Each token is rewritten through ``update``, so
    writers running at the same time lose nothing; afterwards the new key alone reads
    the store. Running it again is safe.

    Raises:
        TypeError: ``store`` is not a :class:`FernetStore`.
        DecryptionError: a token cannot be decrypted with any of the keys; the tokens
            before it are already re-encrypted and still readable with the same keys.
    """
    if not isinstance(store, FernetStore):
        raise TypeError(
            f"rotate_keys() takes a FernetStore, not {type(store).__name__}; open the store "
            "with a fernet+ URL"
        )
    rotated = 0
    for name in store.names():
        # A new but equal Token makes update() write, which encrypts under the first key.
        if store.update(name, lambda token: token.replace() if token else None) is not None:
            rotated += 1
    store._reseal_key_check()
    return rotated


def _check_key_source(key_env: str | None, key_file: str | os.PathLike[str] | None) -> None:
    """Refuse a key source that holds a key instead of naming where keys are (never
    showing what it holds).

    Raises:
        InvalidStoreURL: both sources, a ``key_env`` that is no variable name, or a
            ``key_file`` shaped like a key.
    """
    if key_env is not None and key_file is not None:
        raise InvalidStoreURL("give the Fernet keys by key_env or by key_file, not both")
    if key_env is not None and not is_variable_name(key_env):
        raise InvalidStoreURL(variable_expected("key_env", "the fernet+ store"))
    if key_file is not None and looks_like_key(os.fspath(key_file)):
        raise InvalidStoreURL(
            "the option key_file of the fernet+ store holds what looks like a Fernet key, "
            "not a path; write the key into a chmod 600 file and give that file's path"
        )


def _split_keys(keys: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    if isinstance(keys, (str, bytes)):
        text = keys.decode("ascii", "replace") if isinstance(keys, bytes) else keys
        parts: Sequence[str | bytes] = text.replace("\n", ",").split(",")
    else:
        parts = keys
    found = []
    for part in parts:
        raw = part.encode("ascii", "replace") if isinstance(part, str) else part
        raw = raw.strip()
        if raw:
            found.append(raw)
    return found


def _truncated(ciphertext: str) -> bool:
    """True if ``ciphertext`` cannot be a whole Fernet token, whatever the key."""
    try:
        raw = base64.urlsafe_b64decode(ciphertext.encode("ascii"))
    except (binascii.Error, ValueError):  # also UnicodeEncodeError: not base64 at all
        return True
    body = len(raw) - _FERNET_OVERHEAD
    return body < _FERNET_BLOCK or body % _FERNET_BLOCK != 0


def _take_key_options(url: str, inner_url: str) -> tuple[str, dict[str, str]]:
    """Split the key options off ``inner_url``, leaving the inner store's options as written."""
    base, sep, query = inner_url.partition("?")
    if not sep:
        return base, {}
    kept: list[str] = []
    options: dict[str, str] = {}
    for field in query.split("&"):
        key, _, value = field.partition("=")
        key = unquote(key)
        if key.lower() in _FORBIDDEN_OPTIONS:
            raise InvalidStoreURL(
                f"the store URL holds a Fernet key ({key}=...), and keys never go in a URL "
                f"(URLs end up in settings and logs); put the key in {DEFAULT_KEY_ENV}, "
                "or name a variable with ?key_env=NAME or a chmod 600 file with ?key_file=PATH"
            )
        if key in _KEY_OPTIONS:
            if key in options:
                raise InvalidStoreURL(f"{key} appears twice in {shown_url(url)}; keep one")
            if not value:
                raise InvalidStoreURL(f"{key} in {shown_url(url)} is empty; give a value")
            options[key] = unquote(value)
        elif field:
            kept.append(field)
    if len(options) > 1:
        raise InvalidStoreURL(
            f"{shown_url(url)} names both key_env and key_file; keep the one that holds the keys"
        )
    return base + ("?" + "&".join(kept) if kept else ""), options
