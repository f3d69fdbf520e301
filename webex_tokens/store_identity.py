"""Whether two open stores keep their tokens in the same place: :func:`same_store`.

Comparing URLs cannot tell. ``sqlite:////x/t.db`` and ``sqlite:////x/t.db?lock_timeout=30``
are one database, and so are a path through a symlinked directory and the real path,
``localhost`` and ``127.0.0.1``, or a URL with an extra driver option such as
``&connect_timeout=3``. What is compared instead is the resource itself:

- **local files** (file stores, SQLite databases, with or without ``fernet+``): the real
  path of the file and, when it exists, its device and inode numbers; for SQLite also
  the table. Two local stores are told apart this way without writing anything.
- **any other store**: a probe. A token under a random name (:data:`PROBE_PREFIX` and 16
  hex digits) is written into one store, looked for through the other and removed
  again. A record found there, even one that cannot be read (another Fernet key), means
  the two reach the same data.

:func:`~webex_tokens.migration.migrate` asks this before it copies anything, so that a
``move`` onto the same store under another URL never deletes what it would copy.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

from .errors import DecryptionError, InvalidToken, StoreCorrupted
from .store import TokenStore
from .token import Token

__all__ = ["PROBE_PREFIX", "same_file", "same_store"]

#: The names of probe tokens start with this. A process killed between writing a probe
#: and removing it leaves one behind; deleting it is safe.
PROBE_PREFIX: Final = "webex-tokens-probe-"

#: A local store's place: (real path, (device, inode) or None, SQL table or None).
_Place = tuple[str, tuple[int, int] | None, str | None]


def same_store(first: TokenStore, second: TokenStore, *, probe: bool = True) -> bool:
    """True if ``first`` and ``second`` read and write the same tokens.

    Args:
        first: one store (a migration's source).
        second: the other (a migration's target); a probe is written into this one.
        probe: write a probe when the stores are not both local files. False writes
            nothing: stores that are not local files then count as different unless
            they are the same object.

    Raises:
        StoreError: a probe cannot be written or looked for, for instance because the
            first store cannot be read at all (the store's own error).
    """
    if first is second:
        return True
    first_place, second_place = _place(first), _place(second)
    if first_place is not None and second_place is not None:
        return _same_place(first_place, second_place)
    if not probe:
        return False
    return _probe(first, second)


def same_file(first: TokenStore, second: TokenStore) -> bool:
    """True if both stores keep their data in one local file (two SQLite tables, say)."""
    first_place, second_place = _place(first), _place(second)
    if first_place is None or second_place is None:
        return False
    return _same_place((*first_place[:2], None), (*second_place[:2], None))


def _place(store: object) -> _Place | None:
    """Where a store backed by a local file keeps it, seen through any wrappers."""
    while hasattr(store, "inner"):
        store = store.inner
    path = getattr(store, "path", None)
    if not isinstance(path, Path):
        return None
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except (OSError, ValueError):
        identity = None
    else:
        identity = (info.st_dev, info.st_ino)
    table = getattr(store, "table_name", None)
    return real, identity, table if isinstance(table, str) else None


def _same_place(first: _Place, second: _Place) -> bool:
    if first[2] != second[2]:
        return False
    if first[1] is not None and second[1] is not None:
        return first[1] == second[1]  # hard links and bind mounts included
    return first[0] == second[0]


def _probe(first: TokenStore, second: TokenStore) -> bool:
    name = PROBE_PREFIX + secrets.token_hex(8)
    probe = Token(access_token=secrets.token_urlsafe(16), kind="bot")
    second.update(name, lambda current: probe)
    try:
        return _holds(first, name)
    finally:
        second.delete(name)


def _holds(store: TokenStore, name: str) -> bool:
    """True if ``store`` has a record under ``name``, readable or not."""
    try:
        return store.get(name) is not None
    except (StoreCorrupted, DecryptionError, InvalidToken):
        # A record that cannot be read is there (a missing one reads as None), unless the
        # store cannot be read at all: then a name never written fails too, and that
        # error is the store's answer.
        store.get(PROBE_PREFIX + secrets.token_hex(8))
        return True
