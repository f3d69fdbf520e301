"""Copy or move tokens from one store to another: :func:`migrate` and its report.

Safety rules:

- Every write to the target goes through ``target.update(name, fn)``, so the decision
  to copy, overwrite or skip is taken under the target's lock, against what the target
  holds at that moment. A copy into a SQL or file store (encrypted or not) applies the
  same functions to :data:`BATCH_SIZE` names at a time in one locked step (one
  transaction or one file write); a batch that fails is redone name by name, so each
  failure is recorded against its name.
- A move deletes a token from the source only after reading it back from the target and
  finding it equal, and only if the source still holds the token that was copied (a
  refresh in the source meanwhile is kept).
- Re-running a finished or interrupted migration is safe: tokens already in the target
  come out as ``unchanged``, and an interrupted move finishes its deletes.
- Source and target are compared as resources, not as URLs
  (:func:`~webex_tokens.store_identity.same_store`): a move onto the same store under
  another URL is refused before anything is written, and a copy onto it does nothing
  and says so (:attr:`MigrationReport.same_store`). A move also checks, after each
  delete, that the target still holds the token, and puts it back if not.

Memory stays flat: tokens are streamed from the source one at a time (SQL stores read
rows in batches), and the report lists at most :data:`MAX_LISTED_OUTCOMES` per-name
outcomes (failures first) while counting all of them. A copy remembers 8 bytes per name
read so that it can continue by name if the stream stops at an unreadable record.
"""

from __future__ import annotations

import bisect
import contextlib
import fnmatch
import hashlib
import logging
from array import array
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from .errors import BackendUnavailable, ConfigError, StoreUnavailable, WebexTokensError
from .store import BaseStore, TokenStore, validate_name
from .store_identity import same_file, same_store
from .token import Token

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "CONFLICT_POLICIES",
    "COPIED",
    "FAILED",
    "MAX_LISTED_OUTCOMES",
    "OVERWRITTEN",
    "SKIPPED",
    "UNCHANGED",
    "MigrationReport",
    "migrate",
]

log = logging.getLogger(__name__)

#: What ``on_conflict`` accepts: keep the target's token, replace it, or keep the newer.
CONFLICT_POLICIES: Final = ("skip", "overwrite", "newer")

#: Outcomes of one name. ``unchanged`` (the target already holds the same token) is a
#: kind of skip: it counts in both :attr:`MigrationReport.skipped` and ``unchanged``.
COPIED: Final = "copied"
OVERWRITTEN: Final = "overwritten"
SKIPPED: Final = "skipped"
UNCHANGED: Final = "unchanged"
FAILED: Final = "failed"

#: How many per-name outcomes a report lists; the counts cover every name.
MAX_LISTED_OUTCOMES: Final = 1000

#: How many tokens a copy writes in one step where the target can batch (one
#: transaction or file write): a killed run loses at most that many, and redoes them.
BATCH_SIZE: Final = 500

# Errors that concern a whole store rather than one record: they end the migration.
# (A ConfigError from a move means source and target proved to be one store.)
_FATAL: Final = (StoreUnavailable, BackendUnavailable, ConfigError)

#: One listed outcome: ``(name, outcome, detail)``.
Outcome = tuple[str, str, str | None]
#: What copying one name came to: ``(outcome, detail, deleted from the source)``.
Result = tuple[str, str | None, bool]


@dataclass
class MigrationReport:
    """What :func:`migrate` did (or, in a dry run, would do).

    Attributes:
        copied: names written to a target that did not hold them.
        skipped: names the target already held and kept (``unchanged`` included).
        unchanged: of those skipped, the names whose token was already identical.
        overwritten: names whose target token was replaced.
        deleted: names deleted from the source (a move).
        failed: names that could not be read, written or verified; see ``outcomes``.
        dry_run: True if nothing was written.
        same_store: True if the source and the target turned out to be the same store
            (under two URLs, say): a copy then does nothing at all.
        outcomes: ``(name, outcome, detail)`` per name in processing order, at most
            :data:`MAX_LISTED_OUTCOMES` of them; failures are kept in preference to
            other outcomes when the list is full.
        omitted: how many outcomes were counted but not listed.
    """

    copied: int = 0
    skipped: int = 0
    overwritten: int = 0
    deleted: int = 0
    failed: int = 0
    unchanged: int = 0
    dry_run: bool = False
    same_store: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    omitted: int = 0
    _failures_before: int = field(default=0, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True if no name failed."""
        return self.failed == 0

    @property
    def total(self) -> int:
        """How many names were processed."""
        return self.copied + self.skipped + self.overwritten + self.failed

    def failures(self) -> list[Outcome]:
        """The listed outcomes that failed."""
        return [outcome for outcome in self.outcomes if outcome[1] == FAILED]

    def __str__(self) -> str:
        if self.same_store:
            return "nothing to do: the source and the target are the same store"
        unchanged = f" ({self.unchanged} unchanged)" if self.unchanged else ""
        return (
            f"{self.copied} copied, {self.skipped} skipped{unchanged}, "
            f"{self.overwritten} overwritten, {self.deleted} deleted, {self.failed} failed"
            + (" (dry run: nothing changed)" if self.dry_run else "")
        )

    def _add(self, name: str, outcome: str, detail: str | None) -> None:
        if outcome == COPIED:
            self.copied += 1
        elif outcome == OVERWRITTEN:
            self.overwritten += 1
        elif outcome == UNCHANGED:
            self.skipped += 1
            self.unchanged += 1
        elif outcome == SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1
        self._list((name, outcome, detail))

    def _list(self, entry: Outcome) -> None:
        if len(self.outcomes) < MAX_LISTED_OUTCOMES:
            self.outcomes.append(entry)
            return
        if entry[1] == FAILED:
            # Make room by dropping the oldest listed outcome that is not a failure;
            # everything before ``_failures_before`` is known to be a failure.
            for index in range(self._failures_before, len(self.outcomes)):
                if self.outcomes[index][1] != FAILED:
                    del self.outcomes[index]
                    self._failures_before = index
                    self.outcomes.append(entry)
                    self.omitted += 1
                    return
            self._failures_before = len(self.outcomes)
        self.omitted += 1


def migrate(  # noqa: PLR0917 - the documented signature (names, on_conflict... positional)
    source: TokenStore | str,
    target: TokenStore | str,
    names: Iterable[str] | str | None = None,
    on_conflict: str = "skip",
    move: bool = False,
    dry_run: bool = False,
    *,
    progress: Callable[[str, str], None] | None = None,
    settings: Settings | None = None,
) -> MigrationReport:
    """Copy (or move) tokens from ``source`` to ``target``.

    Args:
        source: the store to read: a :class:`TokenStore`, a store URL or a configured
            store's name. Stores opened here from a URL or name are closed on return.
        target: the store to write, given the same ways.
        names: None for every token, a list of names, or a glob (``"*@acme.com"``,
            case-sensitive).
        on_conflict: when the target already holds a different token under a name:
            ``"skip"`` keeps the target's, ``"overwrite"`` replaces it, ``"newer"`` keeps
            the one saved later (on a tie the target's).
        move: delete each token from the source once the target holds it, verified by
            reading it back; a token the target kept a different one for stays put.
        dry_run: work out and report what would happen; write nothing anywhere.
        progress: called as ``progress(name, outcome)`` after each name.
        settings: the settings to resolve store names with (default: loaded as usual).

    Returns:
        a :class:`MigrationReport`; ``report.ok`` is False if any name failed. A name
        that cannot be read, written or verified is recorded as failed with the reason
        and the migration goes on.

    Raises:
        ConfigError: ``on_conflict`` or ``names`` is invalid, or ``move`` was asked of
            a source and a target that are the same store (under two URLs, say). A copy
            onto itself is no error: it returns a report with ``same_store`` set.
        InvalidName: a listed name is not a valid account name.
        StoreUnavailable, BackendUnavailable: a store cannot be reached (the migration
            stops; running it again later is safe).
        StoreCorrupted: the source cannot be listed at all.
    """
    if on_conflict not in CONFLICT_POLICIES:
        raise ConfigError(
            f"on_conflict must be 'skip', 'overwrite' or 'newer', not {on_conflict!r}"
        )
    selection = _Selection(names)
    report = MigrationReport(dry_run=dry_run)
    with contextlib.ExitStack() as opened:
        from_store = _open(source, settings, opened)
        to_store = _open(target, settings, opened)
        # A dry run writes nothing, so it tells stores apart without a probe.
        if same_store(from_store, to_store, probe=not dry_run):
            if move:
                raise ConfigError(
                    f"refusing to move tokens from {_url(from_store)} to {_url(to_store)}: "
                    "both reach the same store, so the move would delete every token; "
                    "name a different target"
                )
            report.same_store = True
            log.info("%s and %s are the same store: nothing to copy", _url(source), _url(target))
            return report
        # A move deletes from the source as it goes, and an open read cursor on a SQLite
        # file would block those deletes (and writes to another table of the same file).
        stream = not move and not same_file(from_store, to_store)
        step = _Step(from_store, to_store, on_conflict, move, dry_run)
        # Closed before the stores are (an open SQL stream holds a connection).
        entries = opened.enter_context(
            contextlib.closing(_read_source(from_store, selection, stream=stream))
        )
        pending: list[tuple[str, Token]] = []

        def record(name: str, outcome: str, detail: str | None) -> None:
            report._add(name, outcome, detail)
            if progress is not None:
                progress(name, outcome)

        def flush() -> None:
            results = step.run_batch(pending)
            for index, (name, token) in enumerate(pending):
                outcome, detail, deleted = (
                    results[index] if results is not None else step.run_one(name, token)
                )
                report.deleted += deleted
                record(name, outcome, detail)
            pending.clear()

        for name, found in entries:
            if isinstance(found, Token):
                pending.append((name, found))
                if len(pending) >= (BATCH_SIZE if step.batches else 1):
                    flush()
                continue
            flush()
            if isinstance(found, WebexTokensError):
                record(name, FAILED, _one_line(found))
            else:
                record(name, FAILED, "there is no token by this name in the source")
        flush()
    log.info("migrated %s -> %s: %s", _url(source), _url(target), report)
    return report


# -- one name --------------------------------------------------------------------------


class _Step:
    """Copies one token under the target's lock and, for a move, verifies and deletes."""

    def __init__(
        self, source: TokenStore, target: TokenStore, policy: str, move: bool, dry_run: bool
    ) -> None:
        self.source = source
        self.target = target
        self.policy = policy
        self.move = move
        self.dry_run = dry_run
        # A copy writes in batches where the target can; a move verifies and deletes
        # name by name, and a dry run writes nothing.
        self.batches = isinstance(target, BaseStore) and not move and not dry_run

    def decide(self, existing: Token | None, token: Token) -> tuple[str, str | None]:
        if existing is None:
            return COPIED, None
        if existing.to_dict() == token.to_dict():
            return UNCHANGED, "the target already holds this token"
        if self.policy == "overwrite":
            return OVERWRITTEN, None
        if self.policy == "newer":
            if token.saved_at > existing.saved_at:
                return OVERWRITTEN, "the source token is newer"
            return SKIPPED, "the target's token is as new or newer"
        return SKIPPED, "the target holds a different token (on_conflict='skip')"

    def run_batch(self, batch: list[tuple[str, Token]]) -> list[Result] | None:
        """Copy ``batch`` in one step of the target; None if it cannot (nothing written),
        or if the step failed as a whole: each name is then copied alone, so that a
        failure is recorded against the name that caused it."""
        if not self.batches or len(batch) < 2 or not isinstance(self.target, BaseStore):
            return None
        decisions: list[list[tuple[str, str | None]]] = [[] for _ in batch]
        updates = [
            (name, self._writer(token, sink))
            for (name, token), sink in zip(batch, decisions, strict=True)
        ]
        try:
            written = self.target.update_many(updates)
        except _FATAL:
            raise
        except WebexTokensError as exc:
            log.debug("batch write to %s failed (%s); writing name by name", _url(self.target), exc)
            return None
        if written is None:
            return None
        return [(*sink[-1], False) for sink in decisions]

    def run_one(self, name: str, token: Token) -> Result:
        """:meth:`run`, recording a failure to write as the outcome."""
        try:
            return self.run(name, token)
        except _FATAL:
            raise
        except WebexTokensError as exc:
            return FAILED, _one_line(exc), False

    def _writer(
        self, token: Token, decisions: list[tuple[str, str | None]]
    ) -> Callable[[Token | None], Token | None]:
        """The update function that decides, under the target's lock, what to keep."""

        def write(current: Token | None) -> Token | None:
            decisions.append(self.decide(current, token))
            return token if decisions[-1][0] in (COPIED, OVERWRITTEN) else current

        return write

    def run(self, name: str, token: Token) -> Result:
        """Return the outcome, its detail and whether the source token was deleted."""
        if self.dry_run:
            outcome, detail = self.decide(self.target.get(name), token)
        else:
            decisions: list[tuple[str, str | None]] = []
            self.target.update(name, self._writer(token, decisions))
            outcome, detail = decisions[-1]
        if not self.move:
            return outcome, detail, False
        if outcome == SKIPPED:
            return outcome, f"{detail}; the source token was kept", False
        if self.dry_run:
            return outcome, _joined(detail, "would be deleted from the source"), True
        return self._delete_from_source(name, token, outcome, detail)

    def _delete_from_source(
        self, name: str, token: Token, outcome: str, detail: str | None
    ) -> tuple[str, str | None, bool]:
        expected = token.to_dict()
        stored = self.target.get(name)
        if stored is None or stored.to_dict() != expected:
            return (
                FAILED,
                "the token read back from the target differs from the one written; "
                "the source token was kept",
                False,
            )
        state: list[str] = []

        def drop(current: Token | None) -> Token | None:
            if current is None:
                state.append("gone")
                return None
            if current.to_dict() != expected:
                state.append("changed")
                return current
            state.append("deleted")
            return None

        self.source.update(name, drop)
        if state[-1] == "deleted" and self.target.get(name) is None:
            # The delete took the token from the target too: one store after all.
            self.source.put(name, token)
            raise ConfigError(
                f"the token {name!r} vanished from {_url(self.target)} when it was deleted "
                f"from {_url(self.source)}, so both are the same store; it was put back and "
                "the move stopped: name a different target"
            )
        if state[-1] == "changed":
            return (
                FAILED,
                "the source token changed during the move and was kept; run the migration "
                "again with on_conflict='newer' to finish it",
                False,
            )
        if state[-1] == "gone":
            return outcome, _joined(detail, "already gone from the source"), False
        return outcome, detail, True


def _joined(detail: str | None, more: str) -> str:
    return f"{detail}; {more}" if detail else more


# -- reading the source ----------------------------------------------------------------


class _Selection:
    """Which names to migrate: all, a list, or a glob."""

    def __init__(self, names: Iterable[str] | str | None) -> None:
        self.glob: str | None = None
        self.listed: list[str] | None = None
        if names is None:
            return
        if isinstance(names, str):
            if not names:
                raise ConfigError("names is an empty glob; pass None for every token")
            self.glob = names
            return
        if isinstance(names, (bytes, bytearray)) or not isinstance(names, Iterable):
            raise ConfigError(
                f"names must be a list of names or a glob, not {type(names).__name__}"
            )
        self.listed = list(dict.fromkeys(validate_name(name) for name in names))

    def matches(self, name: str) -> bool:
        return self.glob is None or fnmatch.fnmatchcase(name, self.glob)


Found = Token | WebexTokensError | None


def _read_source(
    store: TokenStore, selection: _Selection, *, stream: bool
) -> Generator[tuple[str, Found], None, None]:
    """Yield ``(name, token)`` for the selected names; a token that cannot be read comes
    as the error instead, and a listed name that is absent as None."""
    if selection.listed is not None:
        for name in selection.listed:
            yield name, _get(store, name)
        return
    if not (stream and isinstance(store, BaseStore)):
        for name in store.names():
            if selection.matches(name):
                yield name, _get(store, name)
        return
    # Stream; if the stream stops at an unreadable record, go on name by name, skipping
    # the names already read (remembered as 8-byte hashes to keep memory small).
    read = array("Q")
    records = store.items()
    try:
        for name, token in records:
            read.append(_hash(name))
            if selection.matches(name):
                yield name, token
        return
    except _FATAL:
        raise
    except WebexTokensError as exc:
        log.debug("stream of %s stopped (%s); continuing name by name", store.url, exc)
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()
    done = array("Q", sorted(read))
    del read
    for name in store.names():
        if selection.matches(name) and not _contains(done, _hash(name)):
            yield name, _get(store, name)


def _get(store: TokenStore, name: str) -> Found:
    try:
        return store.get(name)
    except _FATAL:
        raise
    except WebexTokensError as exc:
        return exc


def _hash(name: str) -> int:
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _contains(sorted_hashes: array[int], value: int) -> bool:
    index = bisect.bisect_left(sorted_hashes, value)
    return index < len(sorted_hashes) and sorted_hashes[index] == value


# -- opening and naming stores -----------------------------------------------------------


def _open(
    store: TokenStore | str, settings: Settings | None, opened: contextlib.ExitStack
) -> TokenStore:
    if not isinstance(store, str):
        return store
    from .registry import open_store

    result = open_store(store, settings=settings)
    opened.callback(result.close)
    return result


def _url(store: TokenStore | str) -> str:
    from .store import redact_url

    return redact_url(store if isinstance(store, str) else store.url)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
