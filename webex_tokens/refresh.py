"""Single-flight refresh: many threads, processes or hosts, one call to the token endpoint.

:func:`ensure_fresh` runs inside ``store.update``, which holds the store's lock across
threads, processes and (for SQL) hosts. Under the lock it re-reads the token: when
another process has refreshed it in the meantime, that token is used as it is; otherwise
the token endpoint is called and the answer saved before the lock is released. So
however many processes find the same expired token at once, Webex sees one refresh, and
a rotating refresh token is never presented twice.

The decisions are pure functions with no I/O (:func:`decide`, :func:`decide_after_refusal`,
:func:`merge_refreshed`), in the manner of httpx's auth flows: :func:`ensure_fresh` drives
them with blocking calls, and an asynchronous client can drive the same functions with
awaits and reach the same answers.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Final

from .errors import ReauthorizationRequired
from .store import TokenStore, redact_url
from .token import Token

if TYPE_CHECKING:
    from .oauth import WebexOAuth

__all__ = [
    "DEFAULT_LEEWAY",
    "Action",
    "Decision",
    "decide",
    "decide_after_refusal",
    "ensure_fresh",
    "merge_refreshed",
    "reauthorization_required",
]

log = logging.getLogger(__name__)

#: Seconds before expiry from which a token counts as due for a refresh.
DEFAULT_LEEWAY: Final = 120.0


class Action(enum.Enum):
    """What to do with the stored token."""

    ADOPT = "adopt"  #: use the stored token as it is
    REFRESH = "refresh"  #: call the token endpoint with its refresh token
    REAUTHORIZE = "reauthorize"  #: nothing can be done without a new login


@dataclasses.dataclass(frozen=True)
class Decision:
    """An :class:`Action` and why it was chosen (safe to log: no secret in it)."""

    action: Action
    reason: str


def _same(a: Token, b: Token) -> bool:
    return a.access_token == b.access_token


def decide(
    current: Token | None,
    *,
    force: bool = False,
    leeway: float = DEFAULT_LEEWAY,
    seen: Token | None = None,
    now: datetime | None = None,
) -> Decision:
    """Decide what to do with the token read under the lock.

    Args:
        current: the stored token, read under the lock.
        force: refresh even if the token is not due, unless another process already
            replaced the token the caller saw.
        leeway: seconds before expiry from which the token is due.
        seen: the token the caller held before taking the lock; a stored token that
            differs from it (and is not due) was refreshed by someone else.
        now: the current time (for tests).
    """
    if current is None:
        return Decision(Action.REAUTHORIZE, "no token is stored")
    due = current.is_expired(leeway=leeway, now=now)
    if seen is not None and not _same(current, seen) and not due:
        return Decision(Action.ADOPT, "another process refreshed it already")
    if not force and not due:
        return Decision(Action.ADOPT, "it is still valid")
    if current.refresh_token is None:
        return Decision(Action.REAUTHORIZE, "the token has no refresh token")
    refresh_left = current.refresh_expires_in(now)
    if refresh_left is not None and refresh_left <= 0:
        return Decision(Action.REAUTHORIZE, "its refresh token has expired")
    return Decision(Action.REFRESH, "forced" if force and not due else "it is due")


def decide_after_refusal(
    refused: Token,
    current: Token | None,
    *,
    leeway: float = DEFAULT_LEEWAY,
    now: datetime | None = None,
) -> Decision:
    """Decide again after Webex refused ``refused``'s refresh token (``invalid_grant``).

    ``current`` is the token read once more from the store: if someone else stored a
    different, valid token meanwhile (a login, a refresh outside the lock), use it.
    """
    if (
        current is not None
        and not _same(current, refused)
        and not current.is_expired(leeway=leeway, now=now)
    ):
        return Decision(Action.ADOPT, "a new token was stored meanwhile")
    return Decision(Action.REAUTHORIZE, "Webex refused the refresh token (expired or revoked)")


def merge_refreshed(old: Token, new: Token) -> Token:
    """The token to keep after a refresh: ``new``, with what the answer left out of it.

    The one rule, used wherever a refresh answer is turned into the token to store:

    - no refresh token in the answer: keep the old one and its expiry;
    - the same refresh token again without an expiry: keep the old expiry;
    - no scopes, account or client ID in the answer: keep the old ones;
    - no ID token in the answer: keep the old one (it names who logged in);
    - the kind and the organization never change with a refresh.
    """
    kept: dict[str, object] = {}
    if new.refresh_token is None and old.refresh_token is not None:
        kept["refresh_token"] = old.refresh_token
    if (
        new.refresh_token in (None, old.refresh_token)
        and new.refresh_token_expires_at is None
        and old.refresh_token is not None
    ):
        kept["refresh_token_expires_at"] = old.refresh_token_expires_at
    if new.account is None and old.account is not None:
        kept["account"] = old.account
    if new.client_id is None and old.client_id is not None:
        kept["client_id"] = old.client_id
    if not new.scopes and old.scopes:
        kept["scopes"] = old.scopes
    if new.id_token is None and old.id_token is not None:
        kept["id_token"] = old.id_token
    if new.kind != old.kind:
        kept["kind"] = old.kind
    if new.org_id != old.org_id:
        kept["org_id"] = old.org_id
    return new.replace(**kept) if kept else new


def reauthorization_required(
    name: str, reason: str, store_url: str | None = None
) -> ReauthorizationRequired:
    """The error that tells the user to log ``name`` in again, with the exact command."""
    from .oauth import login_command

    where = f" in {redact_url(store_url)}" if store_url else ""
    return ReauthorizationRequired(
        f"the token of {name!r}{where} cannot be refreshed ({reason}), so the account must "
        f"log in again: {login_command(name)}",
        account=name,
    )


def ensure_fresh(
    store: TokenStore,
    name: str,
    oauth: WebexOAuth,
    *,
    force: bool = False,
    leeway: float = DEFAULT_LEEWAY,
    seen: Token | None = None,
) -> Token:
    """Return a valid token for ``name``, refreshing it single-flight when it is due.

    Inside ``store.update`` (exclusive across threads, processes and SQL hosts): re-read
    the token; if another process already refreshed it, return that one; otherwise
    refresh it through ``oauth`` and save the result before the lock is released.

    Args:
        store: where the token lives.
        name: the account.
        oauth: the integration's OAuth client.
        force: refresh even if the token is not due (unless it differs from ``seen``).
        leeway: seconds before expiry from which the token is due.
        seen: the token the caller already holds; if the store holds another one that
            is not due, it is used without a refresh.

    Raises:
        ReauthorizationRequired: no token is stored, it has no usable refresh token, or
            Webex refused the refresh token; the message names the account and
            ``webex-tokens login --name NAME``.
        TokenEndpointError: Webex could not refresh it (credentials, outage, network).
        LockTimeout: another process held the lock for too long.
    """
    decisions: list[Decision] = []
    refused: list[Token] = []

    def step(current: Token | None) -> Token | None:
        decision = decide(current, force=force, leeway=leeway, seen=seen)
        decisions.append(decision)
        if decision.action is Action.REAUTHORIZE:
            raise reauthorization_required(name, decision.reason, store.url)
        assert current is not None
        if decision.action is Action.ADOPT:
            return current  # the same object: the store writes nothing
        try:
            fresh = oauth.refresh(current)
        except ReauthorizationRequired:
            refused.append(current)
            return current
        return merge_refreshed(current, fresh)

    result = store.update(name, step)
    if refused:
        # Re-read once outside the lock: a token stored by a login or by a process that
        # does not share this lock (another store path, another host) may have replaced it.
        current = store.get(name)
        decision = decide_after_refusal(refused[0], current, leeway=leeway)
        log.info("refresh of %r refused by Webex: %s", name, decision.reason)
        if decision.action is Action.ADOPT and current is not None:
            return current
        raise reauthorization_required(name, decision.reason, store.url)
    assert result is not None
    log.debug("token of %r: %s (%s)", name, decisions[-1].action.value, decisions[-1].reason)
    return result
