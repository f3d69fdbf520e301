"""A store whose writes fail after the update's function ran: the write that follows a
refresh breaks, whatever the backend underneath (a real store, written through)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from webex_tokens.errors import StoreUnavailable
from webex_tokens.store import BaseStore, Keep, Record, RecordChange


class WriteFails(BaseStore):
    """``inner`` with its next ``failures`` writes refused.

    An ``update`` runs the inner store's real read, lock and function; then, instead of
    its write, raises :class:`StoreUnavailable`, so the inner store rolls back and keeps
    what it had, as when the connection drops before the commit. A ``put`` fails the
    same way. The URL is the inner store's: the rescue journal takes it for that store.
    """

    def __init__(self, inner: BaseStore, failures: int = 1) -> None:
        self.inner = inner
        self.url = inner.url
        self.failures = failures
        self.refused = 0

    def _refuse(self) -> bool:
        if self.failures <= 0:
            return False
        self.failures -= 1
        self.refused += 1
        return True

    def _error(self) -> StoreUnavailable:
        return StoreUnavailable(f"the write to {self.url} failed (injected fault)")

    def _read(self, name: str) -> str | None:
        return self.inner._read(name)

    def _write(self, name: str, record: Record) -> None:
        if self._refuse():
            raise self._error()
        self.inner._write(name, record)

    def _remove(self, name: str) -> bool:
        return self.inner._remove(name)

    def _iter_names(self) -> Iterable[str]:
        return self.inner._iter_names()

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        def failing(data: str | None) -> RecordChange:
            result = change(data)
            if not isinstance(result, Keep) and self._refuse():
                raise self._error()
            return result

        self.inner._update_record(name, failing)

    def _close(self) -> None:
        self.inner.close()
