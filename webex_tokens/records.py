"""The record layer for a store that implements only the :class:`TokenStore` protocol.

Wrappers such as ``fernet+`` work on records (JSON text or ciphertext), which a
:class:`~webex_tokens.store.BaseStore` offers through its record layer. A third-party
store that implements only the protocol keeps tokens, not records; :func:`records_of`
gives it the same record layer, built on its public methods alone, so such a store is
wrapped correctly, if more slowly (each record goes through a ``Token`` and the store's
own ``update``, and nothing is batched).

A record that is a token's JSON is kept as that token, so the store stays readable. Any
other record (a ciphertext) is carried in a token of its own: the record is its
``access_token``, its expiry is the record's plain ``expires_at``, and its ``client_id``
is :data:`CARRIER`, which tells the two apart when the record is read back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Final

from .store import BaseStore, Keep, Record, RecordChange, TokenStore
from .token import Token

__all__ = ["CARRIER", "TokenRecords", "records_of"]

#: The ``client_id`` of a token that carries a record (such as a ciphertext).
CARRIER: Final = "webex-tokens:record"
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def records_of(store: TokenStore) -> BaseStore:
    """``store`` itself if it is a :class:`BaseStore`, else its record layer.

    Raises:
        TypeError: ``store`` does not implement the :class:`TokenStore` protocol.
    """
    if isinstance(store, BaseStore):
        return store
    if not isinstance(store, TokenStore):
        raise TypeError(
            f"{type(store).__name__} is not a token store: it lacks the TokenStore methods "
            "(get, put, delete, names, update, close) or its url"
        )
    return TokenRecords(store)


class TokenRecords(BaseStore):
    """The records of a store that only implements the :class:`TokenStore` protocol.

    Every operation is one call of the store's public methods, so its locking and
    atomicity are the store's own: :meth:`update_record` runs in the store's
    ``update``. Closing this closes the store.

    Args:
        store: the store whose tokens hold the records.
    """

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.url = store.url

    def _read(self, name: str) -> str | None:
        return _record_of(self.store.get(name))

    def _write(self, name: str, record: Record) -> None:
        self.store.put(name, _token_of(record))

    def _remove(self, name: str) -> bool:
        return self.store.delete(name)

    def _iter_names(self) -> Iterable[str]:
        return self.store.names()

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        def step(token: Token | None) -> Token | None:
            result = change(_record_of(token))
            if isinstance(result, Keep):
                return token  # the very object: the store writes nothing
            return None if result is None else _token_of(result)

        self.store.update(name, step)

    def _close(self) -> None:
        self.store.close()


def _record_of(token: Token | None) -> str | None:
    if token is None:
        return None
    if token.client_id == CARRIER:
        return token.access_token
    return _ENCODER.encode(token.to_dict())


def _token_of(record: Record) -> Token:
    if record.data.startswith("{"):
        return Token.from_dict(json.loads(record.data))
    return Token(access_token=record.data, expires_at=record.expires_at, client_id=CARRIER)
