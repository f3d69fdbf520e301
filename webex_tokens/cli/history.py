"""What the last refresh of each account ended with, remembered between runs.

A refresh token that Webex refused (revoked, or expired early) looks like any other in
the store: its recorded expiry is still ahead. So when ``refresh``, ``refresh --all`` or
``token`` sees a refusal, it notes it here, and ``list`` shows the account as ``refused``
("log in again" on a terminal) instead of ``expired``, which a refresh would fix.
``metrics`` reports the last result and its time per account.

The notes are one small JSON file, ``refresh-history.json`` in the user state directory
(``$XDG_STATE_HOME/webex-tokens`` on Linux), 0600, written atomically under a lock. Each
note names the store (its redacted URL), the account, the result, the time and the
fingerprint of the refresh token it concerns: never a secret. A refusal applies only to
the refresh token it was seen with, so a new login clears it without anyone deleting
the note. The file is a convenience: when it cannot be read it counts as empty, and when
it cannot be written the command still succeeds (with a warning).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from ..errors import ReauthorizationRequired, WebexTokensError
from ..token import Token, fingerprint

__all__ = [
    "FAILED",
    "HISTORY_FILE",
    "REFRESHED",
    "REFUSED",
    "LastRefresh",
    "history_path",
    "outcome_of",
    "read_history",
    "record",
]

log = logging.getLogger(__name__)

#: The file the notes are kept in, in the user state directory.
HISTORY_FILE: Final = "refresh-history.json"
#: The refresh worked.
REFRESHED: Final = "refreshed"
#: Webex refused the refresh token (or it had expired): only a new login helps.
REFUSED: Final = "refused"
#: The refresh failed for another reason (network, credentials, the store).
FAILED: Final = "failed"

_VERSION: Final = 1
_RESULTS: Final = (REFRESHED, REFUSED, FAILED)
# Schemes whose stores do not outlive the process: nothing to remember about them.
_EPHEMERAL: Final = ("memory",)


@dataclasses.dataclass(frozen=True)
class LastRefresh:
    """How the last refresh of one account ended.

    Attributes:
        result: :data:`REFRESHED`, :data:`REFUSED` or :data:`FAILED`.
        at: when (UTC).
        refresh_fingerprint: the fingerprint of the refresh token it concerns: the one
            refused, or the one a successful refresh left; None when there was none.
    """

    result: str
    at: datetime
    refresh_fingerprint: str | None = None

    def refuses(self, token: Token) -> bool:
        """True when this is a refusal of ``token``'s own refresh token."""
        return (
            self.result == REFUSED
            and token.refresh_token is not None
            and self.refresh_fingerprint == fingerprint(token.refresh_token)
        )


def history_path() -> Path:
    """Where the notes are kept: ``refresh-history.json`` in the user state directory."""
    import platformdirs

    return Path(platformdirs.user_state_dir("webex-tokens", appauthor=False)) / HISTORY_FILE


def outcome_of(
    before: Token | None, after: Token | None, error: BaseException | None
) -> tuple[str, str | None]:
    """The result to note and the refresh-token fingerprint it concerns.

    Args:
        before: the token the refresh started from (whose refresh token was presented).
        after: the token it produced, or None when it failed.
        error: why it failed, or None.
    """
    if error is None and after is not None:
        return REFRESHED, _fingerprint(after)
    if isinstance(error, ReauthorizationRequired):
        return REFUSED, _fingerprint(before)
    return FAILED, _fingerprint(before)


def _fingerprint(token: Token | None) -> str | None:
    if token is None or token.refresh_token is None:
        return None
    return fingerprint(token.refresh_token)


def _key(store_url: str) -> str | None:
    from ..store import redact_url
    from .engine import backend_of

    try:
        if backend_of(store_url) in _EPHEMERAL:
            return None
    except WebexTokensError:
        return None
    return redact_url(store_url)


def _load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.debug("the refresh history %s cannot be read (%s); it counts as empty", path, exc)
        return {}
    if not isinstance(document, dict) or document.get("version") != _VERSION:
        return {}
    stores = document.get("stores")
    return stores if isinstance(stores, dict) else {}


def read_history(store_url: str, path: Path | None = None) -> dict[str, LastRefresh]:
    """The notes about the accounts of the store at ``store_url``, by account name."""
    key = _key(store_url)
    if key is None:
        return {}
    notes = _load(path or history_path()).get(key)
    if not isinstance(notes, dict):
        return {}
    found: dict[str, LastRefresh] = {}
    for name, note in notes.items():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if note["result"] not in _RESULTS:
                continue
            at = datetime.fromisoformat(note["at"])
            if at.tzinfo is None:
                continue
            seen = note.get("refresh_fingerprint")
            found[name] = LastRefresh(note["result"], at, seen if isinstance(seen, str) else None)
    return found


def record(
    store_url: str,
    outcomes: Iterable[tuple[str, str, str | None]],
    *,
    now: datetime | None = None,
    path: Path | None = None,
) -> None:
    """Note how refreshes of accounts of the store at ``store_url`` ended.

    Args:
        store_url: the store's URL (it is kept redacted).
        outcomes: ``(name, result, refresh_fingerprint)`` per account (see
            :func:`outcome_of`).
        now: the time to note (for tests); default now.
        path: the file (for tests); default :func:`history_path`.

    Never raises for a file that cannot be written: it logs a warning instead, since
    the refresh itself is done.
    """
    key = _key(store_url)
    notes = list(outcomes)
    if key is None or not notes:
        return
    from ..backends.files import atomic_write
    from ..locks import ensure_private_dir, interprocess_lock

    target = path or history_path()
    at = (now or datetime.now(timezone.utc)).replace(microsecond=0).isoformat()
    try:
        ensure_private_dir(target.parent)
        with interprocess_lock(target.with_name(target.name + ".lock")):
            stores = _load(target)
            kept = stores.get(key)
            kept = kept if isinstance(kept, dict) else {}
            for name, result, seen in notes:
                kept[name] = {"result": result, "at": at, "refresh_fingerprint": seen}
            stores[key] = kept
            document = {"version": _VERSION, "stores": stores}
            atomic_write(target, json.dumps(document, indent=1, sort_keys=True).encode())
    except (OSError, WebexTokensError) as exc:
        log.warning(
            "the result of the refresh could not be noted in %s (%s); list may show a refused "
            "account as expired",
            target,
            exc,
        )
