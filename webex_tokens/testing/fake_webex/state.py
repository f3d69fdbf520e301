"""The emulator's shared state: the integration, its clients and every token issued.

Tokens are issued in *families*: every access and refresh token that descends from one
login (a code exchange, a device approval, a Service App mint, a bot or personal token)
belongs to the same family, which remembers whose it is, its scope and its kind.
Reuse of a rotated-away refresh token revokes the whole family, as OAuth 2.0 Security
Best Current Practice asks.

Everything here is guarded by :attr:`Core.lock`; a method whose docstring says "caller
holds the lock" must be called with it held. Lifetimes run on :func:`time.monotonic`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import secrets
import threading
import time
from typing import Any

__all__ = ["KINDS", "Core", "Failure", "Family", "Refusal"]

#: The kinds of token family: how the first token of the family was obtained.
KINDS = ("integration", "service_app", "bot", "personal")


@dataclasses.dataclass
class Family:
    """Every token descended from one login, mint or issue.

    ``user`` is the person's (or bot's) email; for a Service App, the app's name.
    """

    client_id: str
    user: str
    scope: str
    kind: str = "integration"
    org_id: str | None = None
    revoked: bool = False
    refreshes: int = 0  # successful refresh-token grants


@dataclasses.dataclass
class _RefreshRecord:
    family: int
    expires_at: float
    used: bool = False  # rotated away: presenting it again is reuse
    revoked: bool = False


@dataclasses.dataclass
class _AccessRecord:
    family: int
    expires_at: float  # math.inf: never expires (bots)


@dataclasses.dataclass
class Failure:
    """An injected failure of one endpoint (see ``FakeWebex.fail_next``)."""

    status: int
    retry_after: float | None
    body: bytes | None


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a refresh-token grant was refused (answered as ``invalid_grant``)."""

    description: str


class Core:
    """The integration's settings, the registered clients and the token book, under one lock.

    ``FakeWebex`` keeps one and forwards its settings; each part of the emulator (device
    grant, Service Apps, OpenID Connect) works on it through the methods here.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        user: str,
        expires_in: int,
        refresh_token_expires_in: int,
        rotate_refresh_tokens: bool,
        code_ttl: float,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.user = user
        self.expires_in = expires_in
        self.refresh_token_expires_in = refresh_token_expires_in
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.code_ttl = code_ttl
        self.consent_page = False
        self.delay = 0.0
        self.calls: collections.Counter[str] = collections.Counter()
        self.revoked_families = 0
        # Re-entrant: a control may call another control.
        self.lock = threading.RLock()
        self._origin: str | None = None
        self._other_clients: dict[str, str] = {}  # client_id -> secret (Service Apps)
        self._families: dict[int, Family] = {}
        self._refresh: dict[str, _RefreshRecord] = {}
        self._access: dict[str, _AccessRecord] = {}
        self._failures: dict[str, collections.deque[Failure]] = collections.defaultdict(
            collections.deque
        )

    # -- where it serves ----------------------------------------------------------------

    def serve_at(self, origin: str | None) -> None:
        """Say where the emulator serves (``http://HOST:PORT``), or that it stopped (None)."""
        self._origin = origin

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``, the root every URL of the emulator starts with.

        Raises:
            RuntimeError: the emulator has not been started.
        """
        if self._origin is None:
            raise RuntimeError("FakeWebex is not running: call start() or use it as a context")
        return self._origin

    # -- clients -------------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str) -> None:
        """Register another OAuth client (a Service App). Caller holds the lock."""
        self._other_clients[client_id] = secret

    def client_secret_of(self, client_id: str) -> str | None:
        """The secret of a registered client, or None. Caller holds the lock."""
        if client_id == self.client_id:
            return self.client_secret
        return self._other_clients.get(client_id)

    def is_client(self, client_id: str) -> bool:
        """Whether ``client_id`` is registered (the integration or a Service App)."""
        with self.lock:
            return self.client_secret_of(client_id) is not None

    # -- injected failures ----------------------------------------------------------------

    def add_failures(self, endpoint: str, failure: Failure, times: int) -> None:
        """Queue ``times`` failures of ``endpoint``."""
        with self.lock:
            self._failures[endpoint].extend([failure] * times)

    def next_failure(self, endpoint: str) -> Failure | None:
        """The next injected failure of ``endpoint``, used up. Caller holds the lock."""
        queue = self._failures.get(endpoint)
        return queue.popleft() if queue else None

    # -- the token book (caller holds the lock) ---------------------------------------------

    def new_family(
        self,
        client_id: str,
        user: str,
        scope: str,
        *,
        kind: str = "integration",
        org_id: str | None = None,
    ) -> int:
        """Open a family of tokens; returns its number."""
        family_id = len(self._families)
        self._families[family_id] = Family(client_id, user, scope, kind=kind, org_id=org_id)
        return family_id

    def family(self, family_id: int) -> Family:
        """The family numbered ``family_id``."""
        return self._families[family_id]

    def families(self) -> list[Family]:
        """Every family, in the order they were opened."""
        return list(self._families.values())

    def grant(self, family_id: int, *, refresh_token: str | None = None) -> dict[str, Any]:
        """Issue an access token (and a refresh token unless one is kept) for a family.

        Returns:
            The token pair as the token endpoint answers it. ``scope`` is left out for a
            Service App, whose mint answer has none.
        """
        now = time.monotonic()
        access_token = self.issue_access(family_id, self.expires_in)
        if refresh_token is None:
            refresh_token = secrets.token_urlsafe(48)
            self._refresh[refresh_token] = _RefreshRecord(
                family_id, now + self.refresh_token_expires_in
            )
        record = self._refresh[refresh_token]
        family = self._families[family_id]
        answer: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": self.expires_in,
            "refresh_token": refresh_token,
            "refresh_token_expires_in": max(0, round(record.expires_at - now)),
            "token_type": "Bearer",
        }
        if family.kind != "service_app":
            answer["scope"] = family.scope
        return answer

    def issue_access(self, family_id: int, lifetime: float | None) -> str:
        """A new access token of a family, valid ``lifetime`` seconds (None: for ever)."""
        token = secrets.token_urlsafe(48)
        expires_at = math.inf if lifetime is None else time.monotonic() + lifetime
        self._access[token] = _AccessRecord(family_id, expires_at)
        return token

    def valid_access(self, token: str | None) -> Family | None:
        """The family of a valid (known, unexpired, unrevoked) access token, else None."""
        record = self._access.get(token) if token else None
        if record is None or time.monotonic() > record.expires_at:
            return None
        family = self._families[record.family]
        return None if family.revoked else family

    def refresh(self, presented: str, client_id: str) -> dict[str, Any] | Refusal:
        """Run a refresh-token grant for an authenticated ``client_id``.

        With :attr:`rotate_refresh_tokens`, the refresh token is replaced and presenting
        the old one again revokes the whole family; otherwise the same refresh token
        comes back with its lifetime renewed (what Webex does).
        """
        record = self._refresh.get(presented)
        invalid = Refusal("The refresh token is invalid, expired or revoked.")
        if record is None:
            return invalid
        family = self._families[record.family]
        if family.revoked or record.revoked or family.client_id != client_id:
            return invalid
        if time.monotonic() > record.expires_at:
            return invalid
        if record.used:
            family.revoked = True
            self.revoked_families += 1
            return Refusal(
                "The refresh token was already used; every token of this login is revoked."
            )
        family.refreshes += 1
        if self.rotate_refresh_tokens:
            record.used = True
            return self.grant(record.family)
        record.expires_at = time.monotonic() + self.refresh_token_expires_in
        return self.grant(record.family, refresh_token=presented)

    def revoke_refresh_records(
        self, *, org_id: str | None = None, client_id: str | None = None
    ) -> int:
        """Revoke refresh tokens (those of one organization / client, or all); returns how many."""
        count = 0
        for record in self._refresh.values():
            family = self._families[record.family]
            if org_id is not None and family.org_id != org_id:
                continue
            if client_id is not None and family.client_id != client_id:
                continue
            if not record.revoked:
                record.revoked = True
                count += 1
        return count

    def revoke_families(self, *, org_id: str, client_id: str) -> None:
        """Revoke every token of one client for one organization."""
        for family in self._families.values():
            if family.org_id == org_id and family.client_id == client_id:
                family.revoked = True

    def expire_access_records(self) -> None:
        """Make every access token issued so far stop working."""
        now = time.monotonic()
        for record in self._access.values():
            record.expires_at = min(record.expires_at, now - 1)
