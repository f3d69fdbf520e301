"""``file:``: every account in one JSON file, written atomically and locked per write.

Durability rules: each write goes to a 0600 temp file in the same directory, is fsynced,
renamed over the token file with :func:`os.replace`, and the directory is fsynced. Every
lock file lives in one directory beside the token file, ``<file>.locks/``: writers
serialise on its ``store`` file; readers never lock, since a rename is atomic. ``update``
of one account also holds that account's lock there (see
:class:`~webex_tokens.locks.AccountLocks`) while its function runs, and the store lock
only while it writes, so refreshes of different accounts run at once; threads of one
process that write at the same moment share one write of the file (group commit). A
file that cannot be parsed raises :class:`~webex_tokens.errors.StoreCorrupted` and is
never written over. A symlinked token file, one another user owns, and one in a
directory others can write are refused (:mod:`webex_tokens.private_files`).

File format (``version`` 1)::

    {"version": 1, "tokens": {"alice@example.com": {...token...}, "bot": "gAAAA..."}}

Plain records are stored as JSON objects so the file stays readable; encrypted records
(see :mod:`webex_tokens.backends.fernet`) as strings. A legacy ``.webex_token.json``
holding a single token is read as the account ``default`` and rewritten in this format
on the first write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from ..errors import InvalidStoreURL, StoreCorrupted, StoreError
from ..locks import AccountLocks, lock_directory
from ..private_files import check_directories, check_owned, file_error, store_not_found
from ..store import (
    DEFAULT_LOCK_TIMEOUT,
    BaseStore,
    Keep,
    Record,
    RecordChange,
    Snapshot,
    ensure_private_dir,
    interprocess_lock,
)
from ..urls import UrlOptions, shown_url
from .files import atomic_write, json_loads_strict, read_private_file, remove_stale_temp_files

__all__ = ["LEGACY_ACCOUNT", "FileStore"]

log = logging.getLogger(__name__)

#: The account name a legacy single-token ``.webex_token.json`` is read as.
LEGACY_ACCOUNT: Final = "default"
FILE_FORMAT_VERSION: Final = 1


class FileStore(BaseStore):
    """All accounts in one JSON file (``file:///path/tokens.json``).

    Args:
        path: the token file; ``~`` is expanded, relative paths are taken from the
            current directory. Its directory is created 0700 when missing.
        lock_timeout: seconds a writer waits for another before :class:`LockTimeout`.
        create: False to open only a token file that exists (for reading): a missing
            one raises :class:`StoreNotFound` and nothing is created. The file and its
            directory are otherwise created on the first write.

    Raises:
        StoreError: ``path`` is a symlink or a directory, another user owns it, or
            others can write to a directory above it.
        StoreNotFound: the file does not exist and ``create`` is False.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        create: bool = True,
    ):
        self.path = Path(os.path.abspath(os.path.expanduser(path)))
        if self.path.is_symlink():
            raise StoreError(
                f"refusing to use the token file {self.path}: it is a symlink; "
                "point the store at the real file instead"
            )
        if self.path.is_dir():
            raise StoreError(
                f"{self.path} is a directory; give the path of a file "
                f"such as {self.path}/tokens.json"
            )
        check_directories(self.path, "token file")
        try:
            check_owned(self.path, os.lstat(self.path), "token file")
        except FileNotFoundError:
            if not create:
                raise store_not_found("token file", self.path) from None
        except OSError as exc:
            raise file_error(exc, self.path, "open the token file") from None
        lock_files = lock_directory(self.path)
        self.lock_path = lock_files / "store"
        self.lock_timeout = lock_timeout
        self._account_locks = AccountLocks(lock_files, lock_timeout)
        self.url = f"file://{self.path}"
        self._warned_permissions = False
        # The file's bytes and what they parse to: a read that finds the same bytes skips
        # the parse. Keyed on the content itself, so another process's write is never
        # missed (file times and inode numbers can repeat within a clock tick).
        self._cache: tuple[bytes, dict[str, Any]] | None = None
        # Writes waiting to be made, and the turn to make them (see _edit).
        self._queue: list[_Edit] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> FileStore:
        """Open ``file:///abs/path``, ``file:relative/path`` or ``file://~/path``.

        The query may set ``lock_timeout`` (seconds). ``create`` False opens only a
        token file that exists (see the class).
        """
        if not url.startswith("file:"):
            raise InvalidStoreURL(
                f"{shown_url(url)} is not a file store URL; write file:///path.json"
            )
        rest, _, query = url[len("file:") :].partition("?")
        if rest.startswith("//"):
            host, slash, path = rest[2:].partition("/")
            if host == "~":
                rest = "~/" + path
            elif host in ("", "localhost"):
                rest = slash + path
            else:
                raise InvalidStoreURL(
                    f"file store URL {shown_url(url)} names a host; write "
                    "file:///absolute/path.json, file:relative/path.json or file://~/path.json"
                )
        path = unquote(rest)
        if not path or path.endswith("/"):
            raise InvalidStoreURL(
                f"file store URL {shown_url(url)} has no file name; write e.g. file:///var/lib/app/tokens.json"
            )
        if "\x00" in path:
            raise InvalidStoreURL(
                f"file store URL {shown_url(url)} holds a NUL character (%00) in its path; "
                "write the path of the token file, e.g. file:///var/lib/app/tokens.json"
            )
        options = UrlOptions(url, query, ("lock_timeout",))
        return cls(
            path,
            create=create,
            lock_timeout=options.seconds("lock_timeout", DEFAULT_LOCK_TIMEOUT),
        )

    # -- the document -------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        """The accounts in the file. The dict is shared with the cache: copy to change it."""
        raw = read_private_file(self.path)
        if raw is None:
            return {}
        self._check_permissions()
        cached = self._cache
        if cached is not None and cached[0] == raw:
            return cached[1]
        self._cache = None  # let the old document go before the new one is parsed
        tokens = self._parse(raw)
        self._cache = (raw, tokens)
        return tokens

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            document = json_loads_strict(raw)
        except (ValueError, RecursionError):
            raise self._corrupted("it is not valid JSON (truncated or edited by hand?)") from None
        if not isinstance(document, dict):
            raise self._corrupted("it does not hold a JSON object")
        if "tokens" not in document and "access_token" in document:
            return {LEGACY_ACCOUNT: document}
        version = document.get("version")
        tokens = document.get("tokens")
        if version != FILE_FORMAT_VERSION or not isinstance(tokens, dict):
            if isinstance(version, int) and version > FILE_FORMAT_VERSION:
                raise self._corrupted(
                    f"it was written by a newer webex-tokens (format {version}); "
                    "upgrade with: pip install -U webex-tokens"
                )
            raise self._corrupted("it is not a webex-tokens file (no version 1 'tokens' map)")
        return tokens

    def _save(self, tokens: dict[str, Any]) -> None:
        data = _document(tokens)
        ensure_private_dir(self.path.parent)
        remove_stale_temp_files(self.path)
        try:
            atomic_write(self.path, data)
        except OSError as exc:
            raise file_error(exc, self.path, "write the token file") from None
        self._cache = (data, tokens)

    def _corrupted(self, reason: str) -> StoreCorrupted:
        return StoreCorrupted(
            f"the token file {self.path} is unreadable: {reason}; it was left untouched: "
            "restore it from a backup or move it away and log in again"
        )

    def _check_permissions(self) -> None:
        if self._warned_permissions or os.name != "posix":
            return
        try:
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except OSError:
            return
        if mode & 0o077:
            self._warned_permissions = True
            log.warning(
                "token file %s is readable by other users (mode %o); it will be 0600 "
                "after the next write, or run: chmod 600 %s",
                self.path,
                mode,
                self.path,
            )

    def _lock(self) -> Any:
        return interprocess_lock(self.lock_path, self.lock_timeout)

    # -- records -----------------------------------------------------------------

    def _text(self, name: str, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if isinstance(value, str):
            return value
        raise StoreCorrupted(
            f"the token {name!r} in {self.path} is neither an object nor a string; it was "
            "left untouched: fix or delete that entry"
        )

    @staticmethod
    def _value(record: Record) -> Any:
        return json.loads(record.data) if record.data.startswith("{") else record.data

    def _read(self, name: str) -> str | None:
        return self._text(name, self._load().get(name))

    def _write(self, name: str, record: Record) -> None:
        value = self._value(record)

        def put(tokens: dict[str, Any]) -> tuple[None, bool]:
            tokens[name] = value
            return None, True

        self._edit(put)

    def _remove(self, name: str) -> bool:
        def remove(tokens: dict[str, Any]) -> tuple[bool, bool]:
            found = tokens.pop(name, None) is not None
            return found, found

        return bool(self._edit(remove))

    def _edit(self, apply: Callable[[dict[str, Any]], tuple[Any, bool]]) -> Any:
        """Apply ``apply`` to the accounts under the file lock, write the file if it says
        it changed something, and return its result.

        Threads of this process that write at the same moment share one write (group
        commit): the thread whose turn it is applies every edit waiting, in order, and
        writes the file once for all of them. Each caller still returns only once its
        edit is on disk, or raises what stopped the write (nothing of it is written).
        """
        edit = _Edit(apply)
        with self._queue_lock:
            self._queue.append(edit)
        with self._writer:
            if not edit.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._apply_edits(batch)
        if edit.error is not None:
            raise edit.error
        return edit.result

    def _apply_edits(self, batch: list[_Edit]) -> None:
        try:
            with self._lock():
                tokens = dict(self._load())
                changed = False
                for edit in batch:
                    edit.result, edit_changed = edit.apply(tokens)
                    changed = changed or edit_changed
                if changed:
                    self._save(tokens)
        except BaseException as exc:
            for edit in batch:
                edit.error = exc
            raise
        finally:
            for edit in batch:
                edit.done = True

    def _iter_names(self) -> Iterable[str]:
        return list(self._load())

    def _iter_records(self) -> Iterator[tuple[str, str]]:
        tokens = self._load()
        for name in sorted(tokens):
            text = self._text(name, tokens[name])
            if text is not None:
                yield name, text

    def _close(self) -> None:
        self._cache = None

    def _update_records(
        self, changes: Sequence[tuple[str, Callable[[str | None], RecordChange]]]
    ) -> bool:
        """Apply every change under one lock with a single write of the file."""
        with self._account_locks.every_account(), self._lock():
            tokens = dict(self._load())
            changed = False
            for name, change in changes:
                result = change(self._text(name, tokens.get(name)))
                if isinstance(result, Keep):
                    continue
                if result is None:
                    changed = tokens.pop(name, None) is not None or changed
                else:
                    tokens[name] = self._value(result)
                    changed = True
            if changed:
                self._save(tokens)
        return True

    # -- the optimistic update's hooks (see BaseStore._update_record) ------------------

    def _account_lock(self, name: str) -> contextlib.AbstractContextManager[object]:
        # The update's function may wait on the network (a refresh): it runs under the
        # account's lock only, so updates of other accounts go on meanwhile; the file
        # lock is taken for the write alone.
        return self._account_locks.account(name)

    def _snapshot(self, name: str) -> Snapshot:
        stored = self._load().get(name)
        return Snapshot(self._text(name, stored), stored)

    def _write_if_unchanged(self, name: str, snapshot: Snapshot, record: Record | None) -> bool:
        value = None if record is None else self._value(record)

        def write(tokens: dict[str, Any]) -> tuple[bool, bool]:
            # Compared as values: the same token may be written with its keys in another
            # order by another process.
            if tokens.get(name) != snapshot.version:
                return False, False
            if value is None:
                return True, tokens.pop(name, None) is not None
            tokens[name] = value
            return True, True

        return bool(self._edit(write))


#: Keys sorted, no indent: the C encoder, which ``indent`` would turn off.
_ENCODER: Final = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def _document(tokens: dict[str, Any]) -> bytes:
    """The file's bytes: one account per line, keys sorted.

    Each line comes from the C encoder; ``json.dumps(indent=...)`` runs in pure Python
    and takes twice as long, which every write of a large file would pay.
    """
    lines = ",\n".join(
        f"{_ENCODER.encode(name)}: {_ENCODER.encode(tokens[name])}" for name in sorted(tokens)
    )
    body = f"{{\n{lines}\n}}" if lines else "{}"
    return f'{{"tokens": {body}, "version": {FILE_FORMAT_VERSION}}}\n'.encode()


@dataclass
class _Edit:
    """One writer's change to the accounts, waiting for its turn (see FileStore._edit)."""

    apply: Callable[[dict[str, Any]], tuple[Any, bool]]
    done: bool = False
    result: Any = None
    error: BaseException | None = None
