"""The :class:`TokenStore` protocol and the pieces every backend shares.

A backend subclasses :class:`BaseStore` and implements a few small record-level methods
(``_read``, ``_write``, ``_remove``, ``_iter_names``, ``_update_record``). The public
methods validate their arguments, turn tokens into records and back, and never let a
backend see a bad name. Records are JSON text; wrappers such as encryption work on
records, so they wrap any backend.

Name validation (:func:`validate_name`) lives here once. Store URLs are read and shown
by :mod:`webex_tokens.urls` (``redact_url`` is re-exported here), the cross-process
locks are in :mod:`webex_tokens.locks`, and durable files in
:mod:`webex_tokens.backends.files`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import unicodedata
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from .errors import InvalidName, InvalidToken, StoreCorrupted
from .locks import DEFAULT_LOCK_TIMEOUT, ensure_private_dir, interprocess_lock
from .token import Token
from .urls import redact_url

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "KEEP",
    "MAX_NAME_LENGTH",
    "BaseStore",
    "Keep",
    "Record",
    "RecordChange",
    "Snapshot",
    "TokenStore",
    "TokenUpdate",
    "ensure_private_dir",
    "interprocess_lock",
    "log_superseded",
    "redact_url",
    "validate_name",
]

log = logging.getLogger(__name__)

MAX_NAME_LENGTH: Final = 255

TokenUpdate = Callable[[Token | None], Token | None]


@runtime_checkable
class TokenStore(Protocol):
    """Where tokens live: a mapping from account name to :class:`Token`.

    ``update`` is the concurrency primitive: it reads, calls ``fn`` and writes as one
    step, exclusive across threads and processes (and hosts, for SQL).
    """

    url: str

    def get(self, name: str) -> Token | None:
        """Return the token stored under ``name``, or None if there is none.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            StoreError: the store cannot be read (``StoreCorrupted``, ``DecryptionError``,
                ``StoreUnavailable``); a failure is never turned into None.
        """
        ...

    def put(self, name: str, token: Token) -> None:
        """Store ``token`` under ``name``, replacing any previous token atomically.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            TypeError: ``token`` is not a :class:`~webex_tokens.token.Token`.
            StoreError: the store cannot be written (``LockTimeout``, ``StoreUnavailable``).
        """
        ...

    def delete(self, name: str) -> bool:
        """Delete the token stored under ``name``; True if there was one.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            StoreError: the store cannot be written.
        """
        ...

    def names(self) -> list[str]:
        """Return every account name in the store, sorted.

        Raises:
            StoreError: the store cannot be read.
        """
        ...

    def update(self, name: str, fn: TokenUpdate) -> Token | None:
        """Read the token, call ``fn`` with it and store what ``fn`` returns, as one step.

        The step is exclusive across threads and processes (and hosts, for SQL), so
        ``fn`` may refresh the token over the network. ``fn`` returning None deletes the
        token; returning the very object it was given writes nothing. Exclusion is per
        account: updates of other accounts may run meanwhile. A ``put`` or ``delete`` of
        the same account that lands while ``fn`` runs may stand instead of ``fn``'s
        result, as if it had come after the update.

        Args:
            name: the account name.
            fn: called once with the current token (or None); its result is stored.

        Returns:
            what ``fn`` returned.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            LockTimeout: another writer held the lock for longer than the timeout.
            StoreError: the stored data cannot be read (``fn`` is not called) or written.
        """
        ...

    def close(self) -> None:
        """Release the store's connections and files; it cannot be used afterwards."""
        ...

    def __enter__(self) -> TokenStore: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# -- names and URLs ------------------------------------------------------------------


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid account name, else raise :class:`InvalidName`.

    Valid: a non-empty string of at most 255 characters with no control characters.
    """
    if not isinstance(name, str):
        raise InvalidName(f"account name must be text, not {type(name).__name__}")
    if not name:
        raise InvalidName("account name is empty; use a label such as alice@example.com")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"account name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if name.isascii() and name.isprintable():  # the common case, without a loop over it
        return name
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidName(f"account name holds the control character {char!r}; remove it")
    return name


def log_superseded(url: str, name: str) -> None:
    """Note an ``update`` whose write was dropped because a ``put`` or ``delete`` of the
    same account landed while its function ran: that later write stands, as if the
    update had come first."""
    log.info(
        "update of %r in %s not written: a put or delete replaced the token meanwhile, "
        "and that later change stands",
        name,
        redact_url(url),
    )


# -- records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """A token as a backend stores it: JSON text (or ciphertext) plus plain metadata."""

    data: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Snapshot:
    """A record as an optimistic update read it (see :meth:`BaseStore._snapshot`).

    Attributes:
        data: the record text, or None when there was none.
        version: what the backend compares to tell whether the record changed since (the
            stored object, a row version, ...); opaque to everything else.
    """

    data: str | None
    version: object = None


class Keep:
    """Type of :data:`KEEP`: an update that leaves the record exactly as it is."""

    _instance: Keep | None = None

    def __new__(cls) -> Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()

#: What a record-level update returns: a new record, None (delete) or KEEP (no write).
RecordChange = Record | None | Keep


_StoreT = TypeVar("_StoreT", bound="BaseStore")
#: Compact JSON for records, made once (``json.dumps`` with options builds one per call).
_RECORD_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: How many decoded tokens ``get`` keeps per store, to return unchanged ones unparsed.
_DECODED_LIMIT: Final = 256


class BaseStore(ABC):
    """Base class of the built-in backends: validation and token coding in one place.

    A backend implements the record hooks: ``_read``, ``_write``, ``_remove`` and
    ``_iter_names``, and makes ``update`` exclusive in one of two ways:

    - **optimistic** (the file and memory stores): implement ``_account_lock``,
      ``_snapshot`` and ``_write_if_unchanged``, and the update written here once takes
      the account's lock, reads a snapshot, runs the caller's function outside any write
      lock, and writes only if the record is still the snapshot (else a ``put`` or
      ``delete`` landed meanwhile, which stands, and the dropped write is logged);
    - **its own way** (row locks, leases): override ``_update_record``, which must run
      the read, the call of ``change`` and the write as one exclusive step.

    ``_iter_records`` and ``_update_records`` are optional fast paths; the defaults are
    correct, only slower. Wrappers (``fernet+``) and bulk work (``migrate``) use the
    public record layer: :meth:`read_record`, :meth:`write_record`,
    :meth:`iter_records`, :meth:`update_record`, :meth:`update_records` and
    :meth:`update_many`.
    """

    url: str = ""
    _decoded: dict[str, tuple[str, Token]] | None = None  # see get()

    # -- the record hooks backends implement ------------------------------------

    @abstractmethod
    def _read(self, name: str) -> str | None:
        """Return the stored record text for ``name``, or None."""

    @abstractmethod
    def _write(self, name: str, record: Record) -> None:
        """Store ``record`` under ``name``, replacing any previous one."""

    @abstractmethod
    def _remove(self, name: str) -> bool:
        """Delete ``name``; True if something was deleted."""

    @abstractmethod
    def _iter_names(self) -> Iterable[str]:
        """Yield every stored name, in any order."""

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        """Read ``name``, call ``change`` with it and apply the result, exclusively.

        The optimistic update, over the three hooks below: ``change`` runs under the
        account's lock only, so updates of other accounts go on meanwhile, and its
        result is written only if the record is still the one it was given.
        """
        with self._account_lock(name):
            snapshot = self._snapshot(name)
            result = change(snapshot.data)
            if isinstance(result, Keep):
                return
            if not self._write_if_unchanged(name, snapshot, result):
                log_superseded(self.url, name)

    def _account_lock(self, name: str) -> contextlib.AbstractContextManager[object]:
        """The lock that makes updates of ``name`` exclusive, across threads and
        processes (hook of the optimistic update)."""
        raise self._no_update()

    def _snapshot(self, name: str) -> Snapshot:
        """The record of ``name`` as the update's function will see it, with whatever the
        backend needs to tell later whether it changed (hook of the optimistic update)."""
        raise self._no_update()

    def _write_if_unchanged(self, name: str, snapshot: Snapshot, record: Record | None) -> bool:
        """Atomically: if the record of ``name`` is still ``snapshot``, write ``record``
        (None deletes) and return True; else write nothing and return False (hook of
        the optimistic update)."""
        raise self._no_update()

    def _no_update(self) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} implements neither _update_record nor the hooks of the "
            "optimistic update (_account_lock, _snapshot, _write_if_unchanged)"
        )

    def _iter_records(self) -> Iterator[tuple[str, str]]:
        """Yield ``(name, record text)`` pairs; backends that can stream override this."""
        for name in sorted(self._iter_names()):
            data = self._read(name)
            if data is not None:
                yield name, data

    def _update_records(
        self, changes: Sequence[tuple[str, Callable[[str | None], RecordChange]]]
    ) -> bool:
        """Apply ``_update_record`` to several distinct names as one atomic step (one lock,
        one transaction or file write), or do nothing and return False if the backend
        cannot; if a ``change`` raises, nothing of the batch is written."""
        return False

    def _close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing
        """Release connections and handles; called once by :meth:`close`."""

    # -- token coding -------------------------------------------------------------

    def _encode(self, token: Token) -> Record:
        return Record(_RECORD_ENCODER.encode(token.to_dict()), token.expires_at)

    def _decode(self, name: str, data: str | None) -> Token | None:
        if data is None:
            return None
        try:
            return Token.from_dict(json.loads(data))
        except (ValueError, InvalidToken, TypeError, RecursionError) as exc:
            reason = exc if isinstance(exc, InvalidToken) else "it is not valid JSON"
            raise StoreCorrupted(
                f"the token {name!r} in {self.url} is unreadable ({reason}); it was left "
                "untouched: restore it from a backup or delete it and log in again"
            ) from None

    # -- the public API -----------------------------------------------------------

    def get(self, name: str) -> Token | None:
        """Return the token stored under ``name``, or None if there is none.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            StoreCorrupted: the stored data cannot be read (it is left untouched).
        """
        validate_name(name)
        data = self._read(name)
        if data is None:
            return None
        # Tokens are immutable, so the token decoded from the very same record text can
        # be handed out again: a service re-reading its token skips the parse.
        decoded = self._decoded
        if decoded is None:
            decoded = self._decoded = {}
        known = decoded.get(name)
        if known is not None and known[0] == data:
            return known[1]
        token = self._decode(name, data)
        if token is not None:
            if len(decoded) >= _DECODED_LIMIT:
                decoded.clear()  # no iteration: other threads may be adding meanwhile
            decoded[name] = (data, token)
        return token

    def put(self, name: str, token: Token) -> None:
        """Store ``token`` under ``name``, replacing any previous token atomically.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            TypeError: ``token`` is not a :class:`Token`.
        """
        validate_name(name)
        if not isinstance(token, Token):
            raise TypeError(f"put() takes a Token, not {type(token).__name__}")
        self._write(name, self._encode(token))

    def delete(self, name: str) -> bool:
        """Delete the token stored under ``name``; True if there was one."""
        validate_name(name)
        return self._remove(name)

    def names(self) -> list[str]:
        """Return every account name in the store, sorted."""
        return sorted(self._iter_names())

    def items(self) -> Iterator[tuple[str, Token]]:
        """Yield ``(name, token)`` for every account, streaming where the backend can."""
        for name, data in self._iter_records():
            token = self._decode(name, data)
            if token is not None:
                yield name, token

    def update(self, name: str, fn: TokenUpdate) -> Token | None:
        """Read the token, call ``fn`` with it and store what it returns, atomically.

        ``fn`` returning None deletes the token; returning the very object it was given
        writes nothing. The step is exclusive across threads and processes, so ``fn`` may
        safely refresh the token over the network. Exclusion is per account: updates of
        other accounts may run meanwhile. A ``put`` or ``delete`` of the same account
        that lands while ``fn`` runs may stand instead of ``fn``'s result, as if it had
        come after the update.

        Returns:
            what ``fn`` returned.

        Raises:
            LockTimeout: another writer held the lock for longer than the timeout.
            StoreCorrupted: the stored data cannot be read (``fn`` is not called).
        """
        validate_name(name)
        outcome: list[Token | None] = []
        self._update_record(name, self._token_change(name, fn, outcome))
        return outcome[-1] if outcome else None

    def update_many(self, updates: Sequence[tuple[str, TokenUpdate]]) -> list[Token | None] | None:
        """Like :meth:`update` for several distinct names, as one atomic step.

        Much faster than one ``update`` per name where the backend can batch (one lock
        and one write for the lot); used by :func:`~webex_tokens.migrate`.

        Returns:
            what each ``fn`` returned, in order; or None, having called no ``fn`` and
            written nothing, if the backend cannot batch or a name appears twice
            (update name by name instead).

        Raises:
            StoreError: as :meth:`update`; if a ``fn`` raises, nothing of the batch is
                written.
        """
        outcomes: list[list[Token | None]] = [[] for _ in updates]
        changes = [
            (name, self._token_change(name, fn, outcome))
            for (name, fn), outcome in zip(updates, outcomes, strict=True)
        ]
        if not self.update_records(changes):
            return None
        return [outcome[-1] if outcome else None for outcome in outcomes]

    def _token_change(
        self, name: str, fn: TokenUpdate, outcome: list[Token | None]
    ) -> Callable[[str | None], RecordChange]:
        """The record-level change that runs ``fn`` on tokens, noting its result."""

        def change(data: str | None) -> RecordChange:
            current = self._decode(name, data)
            new = fn(current)
            outcome.append(new)
            if new is current:
                return KEEP
            if new is None:
                return None
            if not isinstance(new, Token):
                raise TypeError(f"update() function returned {type(new).__name__}, not Token")
            return self._encode(new)

        return change

    # -- the record layer: for wrappers and bulk work ---------------------------------

    def read_record(self, name: str) -> str | None:
        """The record stored under ``name`` (JSON text, or ciphertext under ``fernet+``),
        or None; nothing is decoded.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            StoreError: the store cannot be read.
        """
        return self._read(validate_name(name))

    def write_record(self, name: str, record: Record) -> None:
        """Store ``record`` under ``name``, replacing any previous one, as ``put`` does.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            StoreError: the store cannot be written.
        """
        self._write(validate_name(name), record)

    def iter_records(self) -> Iterator[tuple[str, str]]:
        """Yield ``(name, record)`` for every account, in name order, streaming where the
        backend can.

        Raises:
            StoreError: the store cannot be read.
        """
        return self._iter_records()

    def update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        """Like :meth:`update`, on records: call ``change`` with the record of ``name``
        (or None) and apply what it returns (a :class:`Record`, None to delete, or
        :data:`KEEP` to write nothing), as one step exclusive for the account.

        Raises:
            InvalidName: ``name`` is not a valid account name.
            LockTimeout: another writer held the lock for longer than the timeout.
            StoreError: the store cannot be read (``change`` is not called) or written.
        """
        self._update_record(validate_name(name), change)

    def update_records(
        self, changes: Sequence[tuple[str, Callable[[str | None], RecordChange]]]
    ) -> bool:
        """:meth:`update_record` for several distinct names as one atomic step (one
        lock, one transaction or one write of a file), where the backend can.

        Returns:
            True when done; False, having called no ``change`` and written nothing, if
            the backend cannot batch or a name appears twice (update one by one then).

        Raises:
            StoreError: as :meth:`update_record`; if a ``change`` raises, nothing of the
                batch is written.
        """
        names = [validate_name(name) for name, _ in changes]
        if len(set(names)) != len(names):
            return False
        return self._update_records(changes)

    def close(self) -> None:
        """Release the store's resources; the store cannot be used afterwards."""
        self._close()

    def __enter__(self: _StoreT) -> _StoreT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"


#: Helpers that moved to :mod:`webex_tokens.backends.files`; still importable from here.
_MOVED: Final = frozenset(
    {
        "atomic_write",
        "fsync_directory",
        "glob_escape",
        "json_loads_strict",
        "read_private_file",
        "remove_stale_temp_files",
    }
)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"webex_tokens.store.{name} moved to webex_tokens.backends.files.{name}; "
            "import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        from .backends import files

        return getattr(files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
