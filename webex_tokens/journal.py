"""The rescue journal: refreshed tokens that the store has not taken yet.

Once the token endpoint has answered a refresh, the refresh token that was presented may
be spent: Webex can rotate it, and an emulator or a server with reuse detection revokes
the whole login when a spent refresh token is presented again. So the answer must not be
lost between the token endpoint and the store's commit, whatever fails in that window (a
database connection killed, a lease lost, a full disk, the process killed).

The journal closes that window. The token to keep is written here, durably, *before*
the store is asked to write it, and removed once the store has committed it:

1. :meth:`RescueJournal.keep` writes one file per answer in the user's state directory
   (``$XDG_STATE_HOME/webex-tokens/journal`` on Linux, through ``platformdirs``): a 0600
   file written to a temp file, fsynced, renamed into place, and the directory fsynced.
   The token in it is encrypted with the store's Fernet keys when the store is
   ``fernet+``, as the store itself would keep it; for other stores it is as readable as
   the store's own file is to its owner. The account's name, the store's URL (passwords
   redacted) and the time are in plain text, so ``webex-tokens doctor`` can list what
   waits without reading a secret.
2. :meth:`RescueJournal.discard` removes the file after the commit.
3. :meth:`RescueJournal.rescue` runs under the account's lock (inside ``store.update``)
   before anything else is decided: a token waiting for this store and account that is
   newer than the stored one takes its place and is written by that update. The keeper
   runs :meth:`RescueJournal.replay` (the same step) before every operation on an
   account (its ``prepare`` seam), so the next operation on that account, in any
   process of the user, stores the token; :func:`~webex_tokens.refresh.ensure_fresh`
   runs it inside its own update, so a refresh never presents the refresh token a
   rescued token replaced.

A waiting token never overwrites a newer one (:func:`supersedes`): it is written when
the store holds nothing, or still holds the very token it was refreshed from, or holds
one saved earlier; a file whose token is already stored, or older than the stored one,
is simply removed.

What it does not cover: the journal is per user and per machine, so a process on
another host (or under another user) does not see it; and a store is recognised by its
URL, so a process that opens the same store under another URL does not replay it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import platformdirs

from .backends.files import atomic_write, read_private_file
from .errors import InvalidToken, StoreCorrupted, StoreError
from .locks import ensure_private_dir
from .store import TokenStore, validate_name
from .token import Token
from .urls import redact_url

if TYPE_CHECKING:
    from .backends.fernet import FernetStore

__all__ = [
    "JournalEntry",
    "RescueJournal",
    "default_journal",
    "journal_directory",
    "supersedes",
]

log = logging.getLogger(__name__)

#: The version of a journal file's format.
JOURNAL_VERSION: Final = 1
_SUFFIX: Final = ".json"
#: A temp file older than this was left by a writer killed while writing it.
_STALE_TEMP_SECONDS: Final = 60.0


def journal_directory() -> Path:
    """Where the journal lives: ``journal`` in the user's state directory
    (``$XDG_STATE_HOME/webex-tokens/journal``, by default
    ``~/.local/state/webex-tokens/journal`` on Linux)."""
    return Path(platformdirs.user_state_dir("webex-tokens", appauthor=False)) / "journal"


def _fingerprint(token: Token) -> str:
    """A one-way digest of the access token: tells tokens apart, reveals nothing."""
    return hashlib.sha256(token.access_token.encode("utf-8")).hexdigest()


def supersedes(waiting: Token, previous: str | None, stored: Token | None) -> bool:
    """Whether a token waiting in the journal replaces the ``stored`` one.

    Args:
        waiting: the token in the journal.
        previous: the digest of the token it was refreshed from (None for a login).
        stored: the token the store holds now.

    Returns:
        True when the store holds nothing, or still holds the token ``waiting`` was
        refreshed from, or a token saved before ``waiting`` was; False when the store
        holds ``waiting`` already or a newer token (which must never be overwritten).
    """
    if stored is None:
        return True
    if stored.access_token == waiting.access_token:
        return False
    if previous is not None and previous == _fingerprint(stored):
        return True
    return waiting.saved_at > stored.saved_at


@dataclass(frozen=True)
class JournalEntry:
    """One token waiting in the journal; what it says holds no secret.

    Attributes:
        path: the journal file.
        store: the URL of the store it is for (passwords redacted).
        account: the account's name.
        written_at: when the token endpoint's answer was written here.
        reason: ``"refresh"``, ``"login"`` or ``"mint"``.
        encrypted: whether the token in it is Fernet-encrypted.
    """

    path: Path
    store: str
    account: str
    written_at: datetime
    reason: str
    encrypted: bool

    def age(self, now: datetime | None = None) -> float:
        """Seconds since the entry was written."""
        moment = now if now is not None else datetime.now(timezone.utc)
        return max(0.0, (moment - self.written_at).total_seconds())


def _fernet_of(store: TokenStore) -> FernetStore | None:
    from .backends.fernet import FernetStore

    return store if isinstance(store, FernetStore) else None


def _in_process_only(store: TokenStore) -> bool:
    """A store that dies with its process (``memory://``): nothing could replay into it,
    and every such store has the same URL."""
    return store.url.partition(":")[0].lower() == "memory"


class RescueJournal:
    """The rescue journal in ``directory`` (default: :func:`journal_directory`, looked up
    each time, so a changed ``XDG_STATE_HOME`` is followed).

    An instance is an :class:`~webex_tokens.keeper.AccountHook`: calling it with a store
    and an account name replays what waits for them (:meth:`replay`).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._directory = Path(directory) if directory is not None else None

    @property
    def directory(self) -> Path:
        """The journal's directory."""
        return self._directory if self._directory is not None else journal_directory()

    def __repr__(self) -> str:
        return f"RescueJournal({str(self.directory)!r})"

    # -- writing -------------------------------------------------------------------

    def keep(
        self,
        store: TokenStore,
        name: str,
        token: Token,
        *,
        previous: Token | None = None,
        reason: str = "refresh",
    ) -> JournalEntry | None:
        """Write ``token`` for ``name`` in ``store`` durably, before the store writes it.

        Args:
            store: the store the token is for.
            name: the account.
            token: the token to keep (what the store is about to write).
            previous: the token it was refreshed from, if any.
            reason: what produced it (``"refresh"``, ``"login"``, ``"mint"``).

        Returns:
            The entry, to :meth:`discard` once the store has committed the token; None
            when the store lives in this process only, or the journal cannot be
            written (a warning is logged, and the store write goes ahead: it is the
            token's other chance).
        """
        if _in_process_only(store):
            return None
        url = redact_url(store.url)
        payload = json.dumps(
            {
                "token": token.to_dict(),
                "previous": None if previous is None else _fingerprint(previous),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        fernet = _fernet_of(store)
        if fernet is not None:
            payload = fernet.encrypt_text(name, payload)
        written_at = datetime.now(timezone.utc)
        document = {
            "version": JOURNAL_VERSION,
            "store": url,
            "account": name,
            "written_at": written_at.isoformat(),
            "reason": reason,
            "encrypted": fernet is not None,
            "payload": payload,
        }
        directory = self.directory
        path = directory / f"{_key(url, name)}.{secrets.token_hex(8)}{_SUFFIX}"
        try:
            ensure_private_dir(directory)
            atomic_write(path, json.dumps(document, ensure_ascii=False).encode("utf-8"))
        except (OSError, StoreError) as exc:
            log.warning(
                "could not write the rescue journal in %s (%s); the token of %r is written "
                "to the store without it",
                directory,
                getattr(exc, "strerror", None) or exc,
                name,
            )
            return None
        return JournalEntry(path, url, name, written_at, reason, fernet is not None)

    def discard(self, *entries: JournalEntry | None) -> None:
        """Remove ``entries`` (their tokens are in the store, or superseded there)."""
        for entry in entries:
            if entry is not None:
                with contextlib.suppress(FileNotFoundError):
                    entry.path.unlink()

    def put(self, store: TokenStore, name: str, token: Token, *, reason: str = "login") -> None:
        """``store.put(name, token)`` with the token kept in the journal until it is
        stored: for a token that cannot be obtained twice (a login, a Service App mint).

        Raises:
            StoreError: the store cannot be written; the token waits in the journal and
                the next operation on the account stores it.
        """
        entry = self.keep(store, name, token, reason=reason)
        try:
            store.put(name, token)
        except StoreError as exc:
            raise self.kept_error(exc, name, entry) from None
        self.discard(entry)

    # -- reading -------------------------------------------------------------------

    def entries(self, unreadable: list[str] | None = None) -> list[JournalEntry]:
        """Every entry waiting in the journal, oldest first (for ``doctor``).

        Reads only what the files say in plain text, never a token.

        Args:
            unreadable: where to append the error message of each file that cannot be
                read (else such files are skipped; their account reports them when used).

        Raises:
            StoreError: the journal's directory cannot be read.
        """
        found = []
        for path in self._files(None):
            try:
                found.append(self._entry(path)[0])
            except FileNotFoundError:
                continue  # stored and removed meanwhile
            except StoreError as exc:
                if unreadable is not None:
                    unreadable.append(str(exc))
        return sorted(found, key=lambda entry: entry.written_at)

    def is_empty(self) -> bool:
        """True when nothing waits in the journal, for any store (one directory read).

        Raises:
            StoreError: the journal's directory cannot be read.
        """
        return next(self._files(None), None) is None

    def waiting(self, store: TokenStore, name: str) -> list[Path]:
        """The journal files waiting for ``name`` in ``store`` (usually none)."""
        if _in_process_only(store):
            return []
        return list(self._files(_key(redact_url(store.url), name)))

    def rescue(
        self, store: TokenStore, name: str, current: Token | None
    ) -> tuple[Token | None, list[JournalEntry]]:
        """Under the account's lock: the token to hold from now on, and the entries read.

        Returns ``current`` itself when nothing waits or nothing waiting supersedes it
        (see :func:`supersedes`), else the waiting token that does. The caller writes the
        result (it is a new object when it changed) and then :meth:`discard`\\ s the
        entries, whose tokens are then stored or superseded.

        Raises:
            DecryptionError: a waiting token cannot be decrypted with the store's keys.
            StoreCorrupted: a journal file cannot be read; the message names it.
        """
        paths = self.waiting(store, name)
        if not paths:
            return current, []
        loaded = []
        for path in paths:
            try:
                entry, document = self._entry(path)
            except FileNotFoundError:
                continue  # its writer or another replay removed it meanwhile
            if entry.account != name:
                continue  # a digest collision, in theory
            loaded.append((entry, *self._token(store, entry, document)))
        best = current
        for entry, token, previous in sorted(loaded, key=lambda item: item[1].saved_at):
            if supersedes(token, previous, best):
                log.warning(
                    "the token of %r refreshed at %s and never stored (%s) is written to %s "
                    "now, from the rescue journal",
                    name,
                    entry.written_at.isoformat(timespec="seconds"),
                    entry.reason,
                    entry.store,
                )
                best = token
        return best, [entry for entry, _, _ in loaded]

    def replay(self, store: TokenStore, name: str) -> bool:
        """Store what waits for ``name`` in ``store``, under the account's lock.

        Does nothing (no lock, one directory read) when nothing waits.

        Returns:
            True when something waited (stored, or removed as superseded).

        Raises:
            StoreError: the store cannot be written (the entries stay), or a waiting
                token cannot be read (see :meth:`rescue`).
        """
        if not self.waiting(store, name):
            return False
        validate_name(name)
        read: list[JournalEntry] = []

        def step(current: Token | None) -> Token | None:
            best, entries = self.rescue(store, name, current)
            read.extend(entries)
            return best

        store.update(name, step)
        self.discard(*read)
        return bool(read)

    def __call__(self, store: TokenStore, name: str) -> None:
        """Replay what waits for ``name`` in ``store`` (the keeper's account hook)."""
        self.replay(store, name)

    def kept_error(self, error: StoreError, name: str, entry: JournalEntry | None) -> StoreError:
        """``error`` (a store write that failed after Webex answered) saying where the
        token waits and what stores it; ``error`` itself when nothing was kept."""
        if entry is None:
            return error
        log.warning(
            "the new token of %r could not be stored (%s); it waits in the rescue journal "
            "%s until the next operation on the account stores it",
            name,
            error,
            entry.path,
        )
        message = (
            f"{error}; the new token is not lost: it waits in the rescue journal "
            f"({entry.path.parent}) and the next operation on {name!r} stores it, for "
            f"example: webex-tokens refresh {name}"
        )
        try:
            return type(error)(message)
        except TypeError:  # a third-party error class that takes other arguments
            return StoreError(message)

    # -- files ---------------------------------------------------------------------

    def _files(self, key: str | None) -> Iterator[Path]:
        try:
            listing = os.scandir(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            return  # no journal directory (a file where one should be): nothing waits
        except OSError as exc:
            raise StoreError(
                f"cannot read the rescue journal {self.directory}: {exc.strerror}; make it "
                "readable by its owner (chmod 700)"
            ) from None
        with listing:
            for item in listing:
                if item.name.startswith("."):
                    _remove_stale_temp(item, key)
                    continue
                if item.name.endswith(_SUFFIX) and (key is None or item.name.startswith(key)):
                    yield Path(item.path)

    def _entry(self, path: Path) -> tuple[JournalEntry, dict[str, Any]]:
        data = read_private_file(path)
        if data is None:
            raise FileNotFoundError(path)
        try:
            document = json.loads(data)
        except ValueError:
            raise _unreadable(path, "it is not JSON") from None
        try:
            if document.get("version") != JOURNAL_VERSION:
                raise ValueError("unknown version")
            entry = JournalEntry(
                path,
                str(document["store"]),
                str(document["account"]),
                datetime.fromisoformat(document["written_at"]),
                str(document["reason"]),
                bool(document["encrypted"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _unreadable(path, "it is not a journal file of this version") from None
        return entry, document

    def _token(
        self, store: TokenStore, entry: JournalEntry, document: dict[str, Any]
    ) -> tuple[Token, str | None]:
        payload = document.get("payload")
        if not isinstance(payload, str):
            raise _unreadable(entry.path, "it holds no token")
        fernet = _fernet_of(store)
        if entry.encrypted != (fernet is not None):
            state = "encrypted but the store is not" if entry.encrypted else "not encrypted"
            raise _unreadable(entry.path, f"it is {state}")
        if fernet is not None:
            payload = fernet.decrypt_text(
                entry.account, payload, where=f"the rescue journal file {entry.path}"
            )
        try:
            data = json.loads(payload)
            token = Token.from_dict(data["token"])
            previous = data.get("previous")
            if previous is not None and not isinstance(previous, str):
                raise TypeError
        except (ValueError, KeyError, TypeError, InvalidToken):
            raise _unreadable(entry.path, "its token is unreadable") from None
        return token, previous


def _key(url: str, name: str) -> str:
    """The file-name prefix of a store and account: a digest, so any name is safe."""
    return hashlib.sha256(f"{url}\0{name}".encode()).hexdigest()[:32]


def _remove_stale_temp(item: os.DirEntry[str], key: str | None) -> None:
    """Delete a temp file that a writer killed in :func:`atomic_write` left behind."""
    if not item.name.endswith(".tmp") or (key is not None and not item.name[1:].startswith(key)):
        return
    with contextlib.suppress(OSError):
        if time.time() - item.stat(follow_symlinks=False).st_mtime > _STALE_TEMP_SECONDS:
            os.unlink(item.path)


def _unreadable(path: Path, why: str) -> StoreCorrupted:
    return StoreCorrupted(
        f"the rescue journal file {path} cannot be read ({why}); it was left untouched: "
        "move it away to let the account be used without it"
    )


_DEFAULT: Final = RescueJournal()


def default_journal() -> RescueJournal:
    """The journal in the user's state directory, which every surface uses by default."""
    return _DEFAULT
