"""Single-flight refresh: many threads, processes or hosts, one call to the token endpoint.

:func:`ensure_fresh` runs inside ``store.update``, which holds the store's lock across
threads, processes and (for SQL) hosts. Under the lock it re-reads the token: when
another process has refreshed it in the meantime, that token is used as it is; otherwise
the token endpoint is called and the answer saved before the lock is released. So
however many processes find the same expired token at once, Webex sees one refresh, and
racing processes never present a rotating refresh token twice. The answer is kept in
the rescue journal (:mod:`webex_tokens.journal`) until the store has committed it, so a
failed write does not leave the spent refresh token to be presented again.

The decisions are pure functions with no I/O (:func:`decide`, :func:`decide_after_refusal`,
:func:`merge_refreshed`), in the manner of httpx's auth flows: :func:`ensure_fresh` drives
them with blocking calls, and an asynchronous client can drive the same functions with
awaits and reach the same answers.

When a token is **due** is defined here too, once (:func:`is_due`, :func:`token_status`,
:func:`expiries`): the engine (:mod:`webex_tokens.keeper`) refreshes a token due within
its leeway, and ``webex-tokens list`` and ``refresh --all`` use the same functions with
their windows. A record that carries no expiry at all (one imported from a legacy
``.webex_token.json``) is given Webex's documented lifetimes counted from its
``saved_at``: the access token lasts 14 days and the refresh token 90 days
(https://developer.webex.com/docs/integrations), so the keep-alive refreshes it in time.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Final, Protocol

from .errors import ReauthorizationRequired, StoreError, TokenEndpointError
from .journal import JournalEntry, RescueJournal, default_journal
from .store import TokenStore, redact_url
from .token import Token

__all__ = [
    "ACCESS_TOKEN_LIFETIME",
    "DEFAULT_LEEWAY",
    "REFRESH_DUE_WINDOW",
    "REFRESH_TOKEN_LIFETIME",
    "Action",
    "Decision",
    "Expiries",
    "Refresher",
    "decide",
    "decide_after_refusal",
    "ensure_fresh",
    "expiries",
    "is_due",
    "merge_refreshed",
    "reauthorization_required",
    "renewal",
    "serve_until",
    "token_status",
    "unanswered_refresh",
]

log = logging.getLogger(__name__)

#: Seconds before expiry from which a token counts as due for a refresh.
DEFAULT_LEEWAY: Final = 120.0
#: Seconds before its refresh token expires from which ``list`` shows a token as due.
REFRESH_DUE_WINDOW: Final = 7 * 86400.0
#: How long Webex says an integration's access token lasts (developer.webex.com).
ACCESS_TOKEN_LIFETIME: Final = timedelta(days=14)
#: How long Webex says an integration's refresh token lasts unused (developer.webex.com).
REFRESH_TOKEN_LIFETIME: Final = timedelta(days=90)


#: Where Webex developers find their apps, bots and personal access tokens.
DEVELOPER_PORTAL: Final = "https://developer.webex.com"
#: The kinds of token that nothing can refresh: a bot's (it does not expire) and a
#: personal access token (it lasts 12 hours); a person stores a new one.
UNREFRESHABLE: Final = {"bot": "a bot's token", "personal": "a personal access token"}


class Refresher(Protocol):
    """What renews a token: :class:`~webex_tokens.oauth.WebexOAuth` for one integration,
    :class:`~webex_tokens.credentials.Credentials` for every kind and integration."""

    def refresh(self, token: Token) -> Token:
        """A new token for ``token``'s refresh token.

        Raises:
            ReauthorizationRequired: Webex refused the refresh token.
            TokenEndpointError: the refresh failed for another reason.
        """
        ...


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


# -- when a token is due ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Expiries:
    """When a token's access and refresh tokens expire, as recorded or estimated.

    Attributes:
        access_at: when the access token expires, or None when nobody can tell.
        refresh_at: when the refresh token expires, or None (unknown, or no refresh token).
        estimated: True when the times are estimated from ``saved_at`` (the record
            carried no expiry, as a legacy ``.webex_token.json`` does).
    """

    access_at: datetime | None
    refresh_at: datetime | None
    estimated: bool = False


def expiries(token: Token) -> Expiries:
    """When ``token`` expires: its recorded times, or, for a record that carries no
    expiry at all but can be refreshed (the legacy form), Webex's documented lifetimes
    counted from ``saved_at`` (:data:`ACCESS_TOKEN_LIFETIME`, :data:`REFRESH_TOKEN_LIFETIME`).

    A legacy record without ``saved_at`` reads as saved at the epoch, so its estimate is
    long past: it is due at once.
    """
    if (
        token.expires_at is None
        and token.refresh_token_expires_at is None
        and token.refresh_token is not None
        and token.kind in ("integration", "service_app")
    ):
        return Expiries(
            token.saved_at + ACCESS_TOKEN_LIFETIME, token.saved_at + REFRESH_TOKEN_LIFETIME, True
        )
    refresh_at = token.refresh_token_expires_at if token.refresh_token is not None else None
    return Expiries(token.expires_at, refresh_at)


def _left(when: datetime | None, now: datetime) -> float | None:
    return None if when is None else (when - now).total_seconds()


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(timezone.utc)


def is_due(token: Token, within: float, now: datetime | None = None) -> bool:
    """True when ``token`` should be refreshed now to stay usable ``within`` seconds.

    A token is due within a window when its access token or its refresh token expires
    within it (see :func:`expiries` for a record without expiry). A token whose expiry
    nobody can tell (a bot's, or an access token saved alone) is not due: nothing
    could refresh it.

    Args:
        token: the token.
        within: the window, in seconds (the engine's leeway; ``refresh --all
            --due-within``).
        now: the current time (for tests).
    """
    when = expiries(token)
    moment = _now(now)
    left = _left(when.access_at, moment)
    refresh_left = _left(when.refresh_at, moment)
    return (left is not None and left <= within) or (
        refresh_left is not None and refresh_left <= within
    )


def serve_until(token: Token, leeway: float) -> float:
    """When a cached ``token`` stops being served because :func:`is_due` turns true
    within ``leeway``, in :func:`time.time` seconds (infinity: never); a dead refresh
    token counts no more (it cannot renew anything)."""
    when = expiries(token)
    now = datetime.now(timezone.utc)
    times = [when.access_at]
    if when.refresh_at is not None and when.refresh_at > now:
        times.append(when.refresh_at)
    known = [moment.timestamp() for moment in times if moment is not None]
    return min(known) - leeway if known else math.inf


def token_status(
    token: Token,
    leeway: float = DEFAULT_LEEWAY,
    refresh_window: float = REFRESH_DUE_WINDOW,
    now: datetime | None = None,
    *,
    refused: bool = False,
) -> str:
    """How ``token`` stands, as ``webex-tokens list`` and ``show`` print it.

    Args:
        token: the token.
        leeway: seconds before its expiry from which the access token is due.
        refresh_window: seconds before its expiry from which the refresh token is due.
        now: the current time (for tests).
        refused: Webex refused this token's refresh token (revoked, or expired early),
            as the caller remembers it: whatever its recorded expiry says, only a new
            login helps.

    Returns:
        ``"refused"`` (``refused``: only a new login helps),
        ``"expired"`` (the access token is dead, a refresh can renew it),
        ``"refresh expired"`` (only a new login helps), ``"due"`` (the access token
        expires within ``leeway`` or the refresh token within ``refresh_window``),
        ``"unknown"`` (no expiry is recorded or can be estimated, and it is not a bot's
        token, which never expires) or ``"ok"``. A personal access token, which
        nothing can renew, is ``"due"`` as soon as it expires within ``refresh_window``
        (so always: it lasts 12 hours).
    """
    if refused and token.refresh_token is not None:
        return "refused"
    when = expiries(token)
    moment = _now(now)
    left = _left(when.access_at, moment)
    refresh_left = _left(when.refresh_at, moment)
    refresh_dead = token.refresh_token is None or (refresh_left is not None and refresh_left <= 0)
    if left is not None and left <= 0:
        return "refresh expired" if refresh_dead else "expired"
    if refresh_dead and token.refresh_token is not None:
        return "refresh expired"
    if left is not None and left <= (refresh_window if token.kind == "personal" else leeway):
        return "due"
    if refresh_left is not None and refresh_left <= refresh_window:
        return "due"
    if left is None and token.kind != "bot":
        return "unknown"
    return "ok"


# -- what to do under the lock ------------------------------------------------------------


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
    due = is_due(current, leeway, now)
    if current.kind in UNREFRESHABLE and (force or _access_due(current, leeway, now)):
        return Decision(Action.REAUTHORIZE, f"{UNREFRESHABLE[current.kind]} cannot be refreshed")
    if seen is not None and not _same(current, seen) and not due:
        return Decision(Action.ADOPT, "another process refreshed it already")
    if not force and not due:
        return Decision(Action.ADOPT, "it is still valid")
    refresh_left = _left(expiries(current).refresh_at, _now(now))
    renewable = current.refresh_token is not None and not (
        refresh_left is not None and refresh_left <= 0
    )
    if not renewable and not force and not _access_due(current, leeway, now):
        # Due only because its refresh token is dead: the access token still serves.
        return Decision(Action.ADOPT, "its access token is still valid")
    if current.refresh_token is None:
        return Decision(Action.REAUTHORIZE, "the token has no refresh token")
    if not renewable:
        return Decision(Action.REAUTHORIZE, "its refresh token has expired")
    return Decision(Action.REFRESH, "forced" if force and not due else "it is due")


def _access_due(token: Token, leeway: float, now: datetime | None) -> bool:
    left = _left(expiries(token).access_at, _now(now))
    return left is not None and left <= leeway


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
    if current is not None and not _same(current, refused) and not is_due(current, leeway, now):
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


def renewal(name: str, token: Token | None) -> str:
    """What renews the account ``name`` once its token can no longer be refreshed: the
    end of the sentence of a :class:`~webex_tokens.errors.ReauthorizationRequired`."""
    from .login import login_command

    kind = token.kind if token is not None else "integration"
    if kind == "bot":
        return (
            "store it again: a bot's token does not expire, so if Webex refused it, "
            f"regenerate it at {DEVELOPER_PORTAL}/my-apps and run: "
            f"webex-tokens add {name} --kind bot"
        )
    if kind == "personal":
        return (
            "store a new one: copy a new personal access token from "
            f"{DEVELOPER_PORTAL}/docs/getting-started and run: "
            f"webex-tokens add {name} --kind personal"
        )
    if kind == "service_app":
        org = token.org_id if token is not None and token.org_id else "ORG_ID"
        return (
            "a new pair must be obtained: name the Service App's manager (manager = ...) in "
            f"its [integrations.NAME], or run: webex-tokens service-app add {org} --app NAME "
            f"--name {name}"
        )
    return f"the account must log in again: {login_command(name)}"


def reauthorization_required(
    name: str, reason: str, store_url: str | None = None, token: Token | None = None
) -> ReauthorizationRequired:
    """The error that tells the user how to renew ``name`` (for ``token``'s kind: log in
    again, store a new bot or personal token, obtain a new Service App pair), with the
    exact command."""
    where = f" in {redact_url(store_url)}" if store_url else ""
    return ReauthorizationRequired(
        f"the token of {name!r}{where} cannot be refreshed ({reason}), so {renewal(name, token)}",
        account=name,
    )


def unanswered_refresh(
    name: str, error: TokenEndpointError, store_url: str | None = None
) -> TokenEndpointError:
    """The error for a refresh whose answer never came: Webex may have used the refresh
    token, so it is not sent again; the message says what the user should expect."""
    from .login import login_command
    from .token_endpoint import REFRESH

    where = f" in {redact_url(store_url)}" if store_url else ""
    said = str(error).removesuffix(f", and {REFRESH.if_unknown}")  # said below, once
    return TokenEndpointError(
        f"the refresh of the token of {name!r}{where} got no answer ({said}), and Webex may "
        "have used its refresh token, so it was not sent again; if Webex did, the next "
        f"refresh will be refused and the account must log in again ({login_command(name)}); "
        "if not, the next attempt refreshes it normally",
        status=error.status,
        error=error.error,
        description=error.description,
        delivered=None,
    )


def _after_failed_write(
    store: TokenStore,
    name: str,
    journal: RescueJournal,
    error: StoreError,
    *,
    entry: JournalEntry,
    leeway: float,
) -> Token:
    """The store refused the refreshed token that waits in ``entry``: replay it at once
    (a dropped connection or a lost lease often lets the next write through), else say
    where it waits."""
    try:
        journal.replay(store, name)
        current = store.get(name)
    except StoreError:
        raise journal.kept_error(error, name, entry) from None
    if current is None or is_due(current, leeway):
        raise journal.kept_error(error, name, entry) from None
    log.warning("the refreshed token of %r was stored on a second attempt (%s)", name, error)
    return current


def ensure_fresh(  # noqa: PLR0915
    store: TokenStore,
    name: str,
    oauth: Refresher,
    *,
    force: bool = False,
    leeway: float = DEFAULT_LEEWAY,
    seen: Token | None = None,
    journal: RescueJournal | None = None,
    reobtain: Callable[[Token], Token | None] | None = None,
) -> Token:
    """Return a valid token for ``name``, refreshing it single-flight when it is due.

    Inside ``store.update`` (exclusive across threads, processes and SQL hosts): re-read
    the token; if another process already refreshed it, return that one; otherwise
    refresh it through ``oauth`` and save the result before the lock is released.

    Webex's answer is written to the rescue journal (:mod:`webex_tokens.journal`) before
    the store writes it and removed after the commit; a token a failed write left there
    is taken, under the lock, before anything is decided, so its spent predecessor is
    never presented again.

    Args:
        store: where the token lives.
        name: the account.
        oauth: what refreshes the token: the integration's OAuth client, or the
            engine's :class:`~webex_tokens.credentials.Credentials`.
        force: refresh even if the token is not due (unless it differs from ``seen``).
        leeway: seconds before expiry from which the token is due.
        seen: the token the caller already holds; if the store holds another one that
            is not due, it is used without a refresh.
        journal: the rescue journal (default: the user's, :func:`default_journal`).
        reobtain: called, still under the lock, with a token whose refresh Webex
            refused; the token it returns (a Service App's new pair) is stored instead,
            so that many processes make one. None (or its None) leaves the refusal as
            it is.

    Raises:
        ReauthorizationRequired: no token is stored, it has no usable refresh token, or
            Webex refused the refresh token; the message names the account and
            ``webex-tokens login --name NAME``.
        TokenEndpointError: Webex could not refresh it (credentials, outage, network).
            When nobody can tell whether the request reached Webex (``delivered`` is
            None: the answer timed out), the refresh token is not presented again: the
            store is read once more (another process or host may have stored a token
            meanwhile, which is then returned), else this error says what to expect.
        LockTimeout: another process held the lock for too long.
        StoreError: the store could not write the new token; it waits in the rescue
            journal, and the next operation on the account stores it.
    """
    journal = journal if journal is not None else default_journal()
    decisions: list[Decision] = []
    refused: list[Token] = []
    unanswered: list[tuple[Token, TokenEndpointError]] = []
    kept: list[JournalEntry] = []
    rescued: list[JournalEntry] = []

    def step(current: Token | None) -> Token | None:
        current, found = journal.rescue(store, name, current)
        rescued.extend(found)
        decision = decide(current, force=force, leeway=leeway, seen=seen)
        decisions.append(decision)
        if decision.action is Action.REAUTHORIZE:
            raise reauthorization_required(name, decision.reason, store.url, current)
        assert current is not None
        if decision.action is Action.ADOPT:
            return current  # the same object: the store writes nothing
        try:
            fresh = oauth.refresh(current)
        except ReauthorizationRequired:
            replacement = reobtain(current) if reobtain is not None else None
            if replacement is not None:
                return replacement
            refused.append(current)
            return current
        except TokenEndpointError as exc:
            if exc.delivered is not None:
                raise
            unanswered.append((current, exc))
            return current  # nothing is written; the refresh token is never sent again
        new = merge_refreshed(current, fresh)
        entry = journal.keep(store, name, new, previous=current)
        if entry is not None:
            kept.append(entry)
        return new

    try:
        result = store.update(name, step)
    except StoreError as exc:
        if not kept:
            raise
        return _after_failed_write(store, name, journal, exc, entry=kept[-1], leeway=leeway)
    journal.discard(*kept, *rescued)
    if unanswered:
        presented, error = unanswered[0]
        current = store.get(name)
        if current is not None and not _same(current, presented) and not is_due(current, leeway):
            log.warning(
                "the refresh of %r got no answer, but a token stored meanwhile is used", name
            )
            return current
        raise unanswered_refresh(name, error, store.url)
    if refused:
        # Re-read once outside the lock: a token stored by a login or by a process that
        # does not share this lock (another store path, another host) may have replaced it.
        current = store.get(name)
        decision = decide_after_refusal(refused[0], current, leeway=leeway)
        log.info("refresh of %r refused by Webex: %s", name, decision.reason)
        if decision.action is Action.ADOPT and current is not None:
            return current
        raise reauthorization_required(name, decision.reason, store.url, refused[0])
    assert result is not None
    log.debug("token of %r: %s (%s)", name, decisions[-1].action.value, decisions[-1].reason)
    return result
