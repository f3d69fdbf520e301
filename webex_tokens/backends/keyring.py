"""``keyring://[SERVICE]``: tokens in the operating system's keyring.

The store uses the :mod:`keyring` package: the Secret Service on Linux (GNOME Keyring,
KeePassXC, KWallet), the Keychain on macOS and the Credential Manager on Windows. All
entries live under one service name (default ``webex-tokens``):

- ``token:<account>`` holds one account's token record;
- ``index`` holds the sorted list of account names (``{"version": 1, "names": [...]}``),
  since a keyring cannot list its entries;
- ``chunk:<generation>:<i>:<entry>`` holds piece ``i`` of a value too large for one
  entry. The entry itself then holds only a header,
  ``webex-tokens-chunked:1:<count>:<generation>:<digest>``. Each write picks a new random
  generation, so a new value never overwrites (or reuses the name of) a piece a reader
  may still be assembling, and the digest (SHA-256 of the whole value) proves that the
  pieces read belong together.

Writers (``put``, ``delete``, ``update``) serialise on a lock file named after the service
in the user cache directory, which also keeps the index consistent with the entries:
a token is written before its name joins the index and leaves the index before it is
deleted. Readers take no lock, except to re-read a split value that changed under them.
``update`` holds that lock while its function runs, for every account of the service:
keyring calls take milliseconds each and the keyring daemon answers them one at a time,
so a lock per account would gain little, and under heavy contention a writer holding an
account's lock while it waits for the service's would hold up every other writer of
that account.

At open the active keyring backend is checked: no backend (``fail``), the ``null``
backend and backends that keep secrets in plaintext or that keyring itself ranks as a
fallback (priority below 1) are refused with :class:`BackendUnavailable`, unless the
insecure ones are accepted explicitly (``?allow_insecure=1`` or
``WEBEX_TOKENS_KEYRING_ALLOW_INSECURE=1``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar
from urllib.parse import quote, unquote

import keyring
import keyring.errors
import platformdirs
from keyring.backend import KeyringBackend

from ..errors import (
    BackendUnavailable,
    ConfigError,
    InvalidStoreURL,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
    WebexTokensError,
)
from ..store import (
    DEFAULT_LOCK_TIMEOUT,
    BaseStore,
    Keep,
    Record,
    RecordChange,
    interprocess_lock,
)
from ..urls import UrlOptions, shown_url

__all__ = ["ALLOW_INSECURE_ENV", "DEFAULT_SERVICE", "PLATFORM_MAX_VALUE_BYTES", "KeyringStore"]

log = logging.getLogger(__name__)

DEFAULT_SERVICE: Final = "webex-tokens"
#: Set to 1 to accept a plaintext or fallback keyring backend.
ALLOW_INSECURE_ENV: Final = "WEBEX_TOKENS_KEYRING_ALLOW_INSECURE"
#: The largest value one entry holds on this platform, in bytes as the platform stores
#: it (a Windows credential blob holds 2560 bytes of UTF-16); None where there is no
#: practical limit.
PLATFORM_MAX_VALUE_BYTES: Final[int | None] = 2560 if sys.platform == "win32" else None
_PLATFORM_ENCODING: Final = "utf-16-le" if sys.platform == "win32" else "utf-8"

_INDEX: Final = "index"
_TOKEN_PREFIX: Final = "token:"  # noqa: S105 - an entry name prefix, not a secret
_CHUNK_MARK: Final = "webex-tokens-chunked:1:"
_HEADER = re.compile(
    r"^webex-tokens-chunked:1:(?P<count>[1-9][0-9]{0,5}):(?P<generation>[0-9a-f]{16}):"
    r"(?P<digest>[0-9a-f]{16})$"
)
_INDEX_VERSION: Final = 1
_MIN_VALUE_BYTES: Final = 128
_URL_OPTIONS: Final = ("allow_insecure", "lock_timeout", "max_value_bytes", "split")
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off", "")
# Backends that keep secrets encrypted under the user's login; anything else with a
# priority of 1 or more (keyring's own "recommended" threshold) is trusted as well.
_TRUSTED_MODULES: Final = (
    "keyring.backends.SecretService",
    "keyring.backends.libsecret",
    "keyring.backends.kwallet",
    "keyring.backends.macOS",
    "keyring.backends.Windows",
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Entry:
    """A value read from the keyring and the chunk entries that held it, if it was split."""

    value: str
    chunks: tuple[str, ...] = ()


class _TornRead(Exception):
    """A value changed while its parts were read without the lock."""


class KeyringStore(BaseStore):
    """Tokens in the OS keyring under one service name (``keyring://SERVICE``).

    Args:
        service: the keyring service name; every entry of the store lives under it.
        max_value_bytes: the largest value one entry may hold, in bytes as the platform
            stores it (UTF-16 on Windows, UTF-8 elsewhere); None for no limit. Defaults
            to the platform's limit.
        split: store a larger value in several entries (True) or refuse it (False).
        max_chunks: the most entries one value may be split into.
        allow_insecure: accept a plaintext or fallback keyring backend; None reads
            ``WEBEX_TOKENS_KEYRING_ALLOW_INSECURE``.
        lock_timeout: seconds a writer waits for another before :class:`LockTimeout`.
        lock_path: the lock file; defaults to one named after the service in the user
            cache directory.
        backend: the keyring backend to use; defaults to the one :mod:`keyring` selects
            (``PYTHON_KEYRING_BACKEND`` or its configuration file choose another).

    Raises:
        BackendUnavailable: no usable keyring backend (no Secret Service, no D-Bus
            session), or an insecure one without the opt-in; the message says how to
            start a Secret Service.
        StoreUnavailable: the keyring is locked or its daemon failed (also later, from
            any method).
        StoreCorrupted: the index of names cannot be read (it is left untouched).
        ConfigError: ``WEBEX_TOKENS_KEYRING_ALLOW_INSECURE`` is neither 1 nor 0.

    Writes raise :class:`StoreError` for a value larger than ``max_value_bytes`` when
    ``split`` is off or it would need more than ``max_chunks`` entries; nothing is written.
    """

    DEFAULT_SERVICE: ClassVar[str] = DEFAULT_SERVICE
    MAX_CHUNKS: ClassVar[int] = 64

    def __init__(
        self,
        service: str = DEFAULT_SERVICE,
        *,
        max_value_bytes: int | None = PLATFORM_MAX_VALUE_BYTES,
        split: bool = True,
        max_chunks: int = MAX_CHUNKS,
        allow_insecure: bool | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        lock_path: str | os.PathLike[str] | None = None,
        backend: KeyringBackend | None = None,
    ) -> None:
        _check_service(service)
        if max_value_bytes is not None and max_value_bytes < _MIN_VALUE_BYTES:
            raise ValueError(f"max_value_bytes must be at least {_MIN_VALUE_BYTES}")
        if max_chunks < 1:
            raise ValueError("max_chunks must be at least 1")
        self.service = service
        self.url = "keyring://" + quote(service, safe="")
        self.max_value_bytes = max_value_bytes
        self.split = split
        self.max_chunks = max_chunks
        self.lock_timeout = lock_timeout
        self.lock_path = Path(lock_path) if lock_path is not None else _default_lock_path(service)
        if allow_insecure is None:
            allow_insecure = _env_flag(ALLOW_INSECURE_ENV)
        self.backend = _usable_backend(backend, allow_insecure, self.url)
        self._backend_name = _backend_name(self.backend)
        # Reading the index proves now, not at the first call, that the keyring answers
        # (unlocked) and that the store is readable.
        self._load_index()

    @classmethod
    def from_url(cls, url: str) -> KeyringStore:
        """Open ``keyring://`` (service ``webex-tokens``) or ``keyring://SERVICE``.

        The query may set ``allow_insecure`` (1 or 0), ``lock_timeout`` (seconds),
        ``max_value_bytes`` (bytes per entry) and ``split`` (1 or 0); see the class.

        Raises:
            InvalidStoreURL: the URL is malformed or has an unknown option.
            BackendUnavailable, StoreUnavailable: see :class:`KeyringStore`.
        """
        if url[: len("keyring://")].lower() != "keyring://":
            raise InvalidStoreURL(
                f"bad keyring store URL {shown_url(url)}; write keyring:// or keyring://SERVICE"
            )
        rest, _, query = url[len("keyring://") :].partition("?")
        service = unquote(rest.rstrip("/")) or DEFAULT_SERVICE
        try:
            _check_service(service)
        except ValueError as exc:
            raise InvalidStoreURL(f"bad keyring store URL {shown_url(url)}: {exc}") from None
        parsed = UrlOptions(url, query, _URL_OPTIONS)
        options: dict[str, Any] = {
            key: parsed.flag(key) for key in ("allow_insecure", "split") if key in parsed.values
        }
        if "lock_timeout" in parsed.values:
            options["lock_timeout"] = parsed.seconds("lock_timeout", DEFAULT_LOCK_TIMEOUT)
        if "max_value_bytes" in parsed.values:
            value = parsed.values["max_value_bytes"].strip()
            if not value.isascii() or not value.isdigit() or int(value) < _MIN_VALUE_BYTES:
                raise InvalidStoreURL(
                    f"the option max_value_bytes in {parsed.shown} must be a whole number of "
                    f"bytes, at least {_MIN_VALUE_BYTES}"
                )
            options["max_value_bytes"] = int(value)
        return cls(service, **options)

    # -- calls into the keyring ---------------------------------------------------------

    def _call(self, action: str, fn: Callable[..., _T], *args: str) -> _T:
        try:
            return fn(self.service, *args)
        except keyring.errors.KeyringLocked as exc:
            raise StoreUnavailable(
                f"the keyring holding {self.url} is locked; unlock it ({_unlock_hint()}) "
                "and try again"
            ) from exc
        except WebexTokensError:
            raise
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
            raise StoreUnavailable(
                f"the keyring ({self._backend_name}) failed to {action} in {self.url} "
                f"({detail}); check that it is running and unlocked ({_unlock_hint()})"
            ) from exc

    def _get(self, username: str) -> str | None:
        return self._call("read an entry", self.backend.get_password, username)

    def _set(self, username: str, value: str) -> None:
        self._call("write an entry", self.backend.set_password, username, value)

    def _delete(self, username: str) -> None:
        self._call("delete an entry", self._delete_if_present, username)

    def _delete_if_present(self, service: str, username: str) -> None:
        # Already gone (a writer died half-way) is the state we want.
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            self.backend.delete_password(service, username)

    def _lock(self) -> Any:
        return interprocess_lock(self.lock_path, self.lock_timeout)

    # -- values, split over several entries when too large ------------------------------

    def _fetch(self, username: str, what: str, *, locked: bool) -> _Entry | None:
        """Read a value, joining its parts if it was split.

        ``locked`` says the caller holds the lock. Without it, a writer may replace or
        delete the value (or its parts) while they are read; then the read is done again
        under the lock, where it either succeeds or reports a real fault.
        """
        if locked:
            return self._assemble(username, what, locked=True)
        try:
            return self._assemble(username, what, locked=False)
        except (_TornRead, StoreUnavailable) as exc:
            if isinstance(exc.__cause__, keyring.errors.KeyringLocked):
                raise  # asking again would only prompt the user again
            with self._lock():
                return self._assemble(username, what, locked=True)

    def _assemble(self, username: str, what: str, *, locked: bool) -> _Entry | None:
        raw = self._get(username)
        if raw is None:
            return None
        if not raw.startswith(_CHUNK_MARK):
            return _Entry(raw)
        header = _HEADER.match(raw)
        if header is None:
            raise self._corrupted(what, username, "its header of split parts is malformed")
        digest, generation = header["digest"], header["generation"]
        count = int(header["count"])
        users = tuple(_chunk_user(generation, i, username) for i in range(count))
        parts = [self._get(user) for user in users]
        value = "".join(part for part in parts if part is not None)
        if None in parts or _digest(value) != digest:
            if not locked:
                raise _TornRead
            missing = "some of its parts are missing" if None in parts else "its parts differ"
            raise self._corrupted(what, username, missing)
        return _Entry(value, users)

    def _plan(self, value: str, what: str) -> list[str] | None:
        """The parts ``value`` must be split into, or None if it fits in one entry."""
        limit = self.max_value_bytes
        if limit is None:
            return None
        size = len(value.encode(_PLATFORM_ENCODING))
        if size <= limit:
            return None
        if not self.split:
            raise StoreError(
                f"{what} is {size} bytes, more than the {limit} bytes one entry of "
                f"{self.url} holds, and splitting is off; turn splitting on or keep the "
                "tokens in another store such as sqlite:///tokens.db"
            )
        parts = _split(value, limit)
        if len(parts) > self.max_chunks:
            raise StoreError(
                f"{what} is {size} bytes, more than {self.url} holds even split into "
                f"{self.max_chunks} entries of {limit} bytes; keep the tokens in another "
                "store such as sqlite:///tokens.db"
            )
        return parts

    def _store(
        self, username: str, value: str, parts: list[str] | None, old: _Entry | None
    ) -> None:
        """Write ``value`` (planned by :meth:`_plan`) over ``old``; call under the lock."""
        new_chunks: tuple[str, ...] = ()
        if parts is None:
            self._set(username, value)
        else:
            generation = secrets.token_hex(8)
            new_chunks = tuple(_chunk_user(generation, i, username) for i in range(len(parts)))
            for user, part in zip(new_chunks, parts, strict=True):
                self._set(user, part)
            self._set(username, f"{_CHUNK_MARK}{len(parts)}:{generation}:{_digest(value)}")
        for user in old.chunks if old else ():
            self._delete(user)

    def _erase(self, username: str, old: _Entry) -> None:
        """Delete the entry and its parts; call under the lock."""
        self._delete(username)
        for user in old.chunks:
            self._delete(user)

    def _corrupted(self, what: str, username: str, reason: str) -> StoreCorrupted:
        command = shlex.join(["python", "-m", "keyring", "del", self.service, username])
        return StoreCorrupted(
            f"{what} in {self.url} is unreadable ({reason}); it was left untouched: "
            f"delete it with: {command}"
        )

    # -- the index of names -----------------------------------------------------------

    def _load_index(self, *, locked: bool = False) -> tuple[_Entry | None, list[str]]:
        what = "the index of account names"
        entry = self._fetch(_INDEX, what, locked=locked)
        if entry is None:
            return None, []
        try:
            document = json.loads(entry.value)
            names = document["names"]
            if (
                document.get("version") != _INDEX_VERSION
                or not isinstance(names, list)
                or not all(isinstance(name, str) for name in names)
            ):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StoreCorrupted(
                f"{what} in {self.url} is unreadable; it was left untouched: delete it with: "
                f"{shlex.join(['python', '-m', 'keyring', 'del', self.service, _INDEX])} (the "
                "tokens stay readable by name and rejoin the list when next saved)"
            ) from None
        return entry, list(names)

    def _index_update(self, *, add: str | None = None, discard: str | None = None) -> None:
        """Add or remove one name in the index; call under the lock."""
        old, names = self._load_index(locked=True)
        if add is not None and add not in names:
            names.append(add)
        elif discard is not None and discard in names:
            names.remove(discard)
        else:
            return
        if not names and old is not None:
            self._erase(_INDEX, old)
            return
        value = json.dumps(
            {"version": _INDEX_VERSION, "names": sorted(names)},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        self._store(_INDEX, value, self._plan(value, "the index of account names"), old)

    # -- records ---------------------------------------------------------------------
    #
    # The index may name more accounts than hold tokens, never fewer: a name joins it
    # before its token is written and leaves it after its token is deleted. A writer
    # that dies half-way thus leaves at worst a listed name whose token is missing
    # (get() returns None; the next put or delete tidies it), never a token that no
    # listing shows.

    def _read(self, name: str) -> str | None:
        entry = self._fetch(_token_user(name), _what(name), locked=False)
        return entry.value if entry else None

    def _write(self, name: str, record: Record) -> None:
        parts = self._plan(record.data, _what(name))
        with self._lock():
            old = self._fetch(_token_user(name), _what(name), locked=True)
            self._index_update(add=name)
            self._store(_token_user(name), record.data, parts, old)

    def _remove(self, name: str) -> bool:
        with self._lock():
            old = self._fetch(_token_user(name), _what(name), locked=True)
            if old is not None:
                self._erase(_token_user(name), old)
            self._index_update(discard=name)
            return old is not None

    def _iter_names(self) -> Iterable[str]:
        return self._load_index()[1]

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        user = _token_user(name)
        with self._lock():
            old = self._fetch(user, _what(name), locked=True)
            result = change(old.value if old else None)
            if isinstance(result, Keep):
                return
            if result is None:
                if old is not None:
                    self._erase(user, old)
                self._index_update(discard=name)
                return
            parts = self._plan(result.data, _what(name))
            if old is None:
                self._index_update(add=name)
            self._store(user, result.data, parts, old)


# -- helpers ---------------------------------------------------------------------------


def _token_user(name: str) -> str:
    return _TOKEN_PREFIX + name


def _chunk_user(generation: str, index: int, username: str) -> str:
    return f"chunk:{generation}:{index}:{username}"


def _what(name: str) -> str:
    return f"the token {name!r}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def _split(value: str, limit: int) -> list[str]:
    """Cut ``value`` into pieces of at most ``limit`` bytes in the platform's encoding."""
    if value.isascii():
        step = limit // len("a".encode(_PLATFORM_ENCODING))
        return [value[i : i + step] for i in range(0, len(value), step)]
    parts: list[str] = []
    start, size = 0, 0
    for position, char in enumerate(value):
        width = len(char.encode(_PLATFORM_ENCODING))
        if size + width > limit:
            parts.append(value[start:position])
            start, size = position, 0
        size += width
    parts.append(value[start:])
    return parts


def _check_service(service: object) -> None:
    if not isinstance(service, str) or not service:
        raise ValueError("the keyring service name must be non-empty text")
    if len(service) > 255:
        raise ValueError("the keyring service name is longer than 255 characters")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in service):
        raise ValueError("the keyring service name holds a control character")


def _default_lock_path(service: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", service)
    if slug != service or len(slug) > 64:
        slug = f"{slug[:48]}-{hashlib.sha256(service.encode('utf-8')).hexdigest()[:12]}"
    cache = Path(platformdirs.user_cache_dir("webex-tokens", appauthor=False))
    return cache / "locks" / f"keyring-{slug}.lock"


def _env_flag(variable: str) -> bool:
    value = os.environ.get(variable, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{variable} must be 1 (accept an insecure keyring backend) or 0")


def _backend_name(backend: KeyringBackend) -> str:
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def _start_hint() -> str:
    if sys.platform == "darwin":
        return "log in to a macOS session so the login Keychain is available"
    if sys.platform == "win32":
        return "run as a user with a loaded profile so the Credential Manager is available"
    return (
        "start a Secret Service (a desktop login starts one; on a headless host run the "
        "program under dbus-run-session after `echo -n PASSWORD | gnome-keyring-daemon "
        "--unlock` and `gnome-keyring-daemon --start --components=secrets`, or install "
        "gnome-keyring or KeePassXC with its Secret Service integration)"
    )


def _unlock_hint() -> str:
    if sys.platform == "darwin":
        return "security unlock-keychain"
    if sys.platform == "win32":
        return "log in to the Windows session"
    return "log in to the desktop, or run: echo -n PASSWORD | gnome-keyring-daemon --unlock"


def _usable_backend(
    backend: KeyringBackend | None, allow_insecure: bool, url: str
) -> KeyringBackend:
    """Return the backend to use, or raise :class:`BackendUnavailable` saying why not."""
    from keyring.backends import chainer, fail, null

    opt_in = f"add ?allow_insecure=1 to {url} or set {ALLOW_INSECURE_ENV}=1"
    if backend is None:
        try:
            backend = keyring.get_keyring()
        except Exception as exc:
            raise BackendUnavailable(
                f"the keyring backend chosen by PYTHON_KEYRING_BACKEND or keyringrc.cfg cannot "
                f"run here ({type(exc).__name__}: {exc}); {_start_hint()}; or choose another "
                "keyring backend there"
            ) from None
    chosen: KeyringBackend | None = backend
    if isinstance(backend, chainer.ChainerBackend):
        # Writes go to the first chained backend; using it directly means nothing can
        # fall through to a plaintext backend further down the chain.
        chosen = next(iter(backend.backends), None)
    if chosen is None or isinstance(chosen, fail.Keyring):
        raise BackendUnavailable(
            f"no usable OS keyring for {url} (keyring found no backend); {_start_hint()}; "
            "or keep the tokens in fernet+file:// instead"
        )
    backend = chosen
    name = _backend_name(backend)
    if isinstance(backend, null.Keyring):
        raise BackendUnavailable(
            f"the keyring is switched off for {url} (backend {name}); unset "
            "PYTHON_KEYRING_BACKEND or choose another store"
        )
    try:
        priority = float(type(backend).priority)
    except Exception as exc:
        raise BackendUnavailable(
            f"the keyring backend {name} cannot run here ({exc}); {_start_hint()}"
        ) from None
    if type(backend).__module__.startswith(_TRUSTED_MODULES):
        return backend
    insecure = (
        type(backend).__module__.startswith("keyrings.alt")
        or "plaintext" in type(backend).__name__.lower()
        or priority < 1
    )
    if not insecure:
        return backend
    if not allow_insecure:
        raise BackendUnavailable(
            f"the keyring backend {name} (priority {priority:g}) is not a protected OS "
            f"keyring and may keep secrets in plaintext, so {url} refuses it; "
            f"{_start_hint()}; or, to use it anyway, {opt_in}"
        )
    log.warning("using the insecure keyring backend %s for %s, as allowed", name, url)
    return backend
