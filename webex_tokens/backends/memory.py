"""``memory://``: tokens in a dict inside this process, for tests and short-lived use."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from typing import ClassVar, Final
from urllib.parse import urlsplit

from ..errors import InvalidStoreURL
from ..store import BaseStore, Record, Snapshot
from ..urls import shown_url

__all__ = ["MemoryStore"]

_SLOTS: Final = 64


class MemoryStore(BaseStore):
    """Tokens in a process-local dict; ``update`` is exclusive across threads, per account.

    ``memory://`` opens a new, empty store each time; ``memory://LABEL`` opens the one
    store with that label in this process, so separate parts of a program (or a test)
    can share it. Nothing survives the process.
    """

    _shared: ClassVar[dict[str, MemoryStore]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, label: str = "") -> None:
        self.url = f"memory://{label}"
        self._records: dict[str, Record] = {}
        self._lock = threading.RLock()
        self._slots = [threading.RLock() for _ in range(_SLOTS)]

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        """Open ``memory://`` (a fresh store) or ``memory://LABEL`` (shared in-process)."""
        parts = urlsplit(url)
        if parts.scheme != "memory" or parts.path not in ("", "/") or parts.query:
            raise InvalidStoreURL(
                f"bad memory store URL {shown_url(url)}; write memory:// or memory://LABEL"
            )
        label = parts.netloc
        if not label:
            return cls()
        with cls._shared_lock:
            if label not in cls._shared:
                cls._shared[label] = cls(label)
            return cls._shared[label]

    def _read(self, name: str) -> str | None:
        record = self._records.get(name)
        return record.data if record is not None else None

    def _write(self, name: str, record: Record) -> None:
        with self._lock:
            self._records[name] = record

    def _remove(self, name: str) -> bool:
        with self._lock:
            return self._records.pop(name, None) is not None

    def _iter_names(self) -> Iterable[str]:
        with self._lock:
            return list(self._records)

    # -- the optimistic update's hooks (see BaseStore._update_record) ------------------

    def _account_lock(self, name: str) -> contextlib.AbstractContextManager[object]:
        # The account's slot, held while the update's function runs; ``_lock`` only to
        # write, so one account's refresh does not hold up the others.
        return self._slots[hash(name) % _SLOTS]

    def _snapshot(self, name: str) -> Snapshot:
        before = self._records.get(name)
        return Snapshot(before.data if before is not None else None, before)

    def _write_if_unchanged(self, name: str, snapshot: Snapshot, record: Record | None) -> bool:
        with self._lock:
            if self._records.get(name) is not snapshot.version:
                return False
            if record is None:
                self._records.pop(name, None)
            else:
                self._records[name] = record
            return True
