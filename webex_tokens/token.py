"""The one token model: :class:`Token`, its versioned JSON form and the legacy forms it reads."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from .errors import InvalidToken

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "PERSONAL_TOKEN_LIFETIME",
    "UNKNOWN_TIME",
    "Token",
    "fingerprint",
]

#: Version written in :meth:`Token.to_dict`; :meth:`Token.from_dict` refuses newer ones.
FORMAT_VERSION = 1

#: The ``saved_at`` of stored data that does not say when it was saved (the epoch): it
#: keeps reads of the same data equal, and counts as older than any dated token.
UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)

_TOKEN_TYPES = {"bearer": "Bearer"}

#: The kinds of Webex credentials a token can be (DESIGN section 12): an integration's
#: OAuth token, a Service App's token for one organization, a bot's static token, or a
#: personal access token.
KINDS: Final = ("integration", "service_app", "bot", "personal")
#: How long a personal access token lasts when nothing else says (Webex: 12 hours).
PERSONAL_TOKEN_LIFETIME: Final = timedelta(hours=12)


def fingerprint(secret: str) -> str:
    """Return a short, non-reversible label for a secret, safe to log (``sha256:1a2b3c4d``)."""
    import hashlib  # here: loading OpenSSL slows every start-up, and few need a label

    return "sha256:" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _parse_time(value: Any, field: str) -> datetime | None:
    """Read a time stored as ISO 8601 text or epoch seconds; naive times are local time."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidToken(f"token field {field!r} must be a time, not a boolean")
    if isinstance(value, (int, float)):
        # Compare before converting: a huge int does not fit in a float.
        if (isinstance(value, float) and not math.isfinite(value)) or not (
            0 <= value < 253402300800
        ):
            raise InvalidToken(f"token field {field!r} is not a valid epoch time")
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, ValueError, OSError):
            raise InvalidToken(f"token field {field!r} is not a valid epoch time") from None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidToken(
                f"token field {field!r} is not an ISO 8601 time; "
                "write it like 2025-10-31T22:54:13+00:00"
            ) from None
    else:
        raise InvalidToken(f"token field {field!r} must be a time, not {type(value).__name__}")
    try:
        return parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError, OSError):
        raise InvalidToken(f"token field {field!r} is out of range") from None


def _seconds(value: Any, field: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidToken(f"token field {field!r} must be a number of seconds")
    try:
        seconds = float(value)
    except OverflowError:
        raise InvalidToken(f"token field {field!r} is out of range") from None
    except (TypeError, ValueError):
        raise InvalidToken(f"token field {field!r} must be a number of seconds") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= 10 * 365 * 86400:
        raise InvalidToken(f"token field {field!r} is out of range ({seconds!r} seconds)")
    return seconds


def _after(start: datetime, seconds: float, field: str) -> datetime:
    """``start`` plus ``seconds``, refusing a time past the year 9999."""
    try:
        return start + timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidToken(f"token field {field!r} puts the expiry out of range") from None


def _aware(now: datetime | None) -> datetime:
    """``now`` in UTC (default: the current time); a naive time is refused, not guessed."""
    if now is None:
        return _utcnow()
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise InvalidToken("now must be a timezone-aware datetime; use datetime.now(timezone.utc)")
    return now.astimezone(timezone.utc)


def _text(value: Any, field: str, *, required: bool = False) -> str | None:
    if value is None or (value == "" and not required):
        if required:
            raise InvalidToken(
                f"token has no {field!r}; pass the token endpoint's whole JSON answer"
            )
        return None
    if not isinstance(value, str):
        raise InvalidToken(f"token field {field!r} must be text, not {type(value).__name__}")
    if required and not value.strip():
        raise InvalidToken(f"token field {field!r} is empty")
    return value


def _token_type(value: Any) -> str:
    if value is None:
        return "Bearer"
    if not isinstance(value, str) or value.lower() not in _TOKEN_TYPES:
        shown = value if isinstance(value, str) and len(value) < 40 else type(value).__name__
        raise InvalidToken(f"unsupported token type {shown!r}: Webex issues Bearer tokens only")
    return _TOKEN_TYPES[value.lower()]


def _kind(value: Any) -> str:
    if value is None:
        return "integration"
    if not isinstance(value, str) or value not in KINDS:
        shown = value if isinstance(value, str) and len(value) < 40 else type(value).__name__
        raise InvalidToken(f"unknown token kind {shown!r}; a token is one of: {', '.join(KINDS)}")
    return value


def _scopes(value: Any, field: str = "scope") -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        return tuple(s for scope in value for s in scope.split())
    raise InvalidToken(f"token field {field!r} must be space-separated text or a list of text")


@dataclasses.dataclass(frozen=True, eq=True, repr=False)
class Token:
    """An immutable Webex OAuth2 token, with when it expires and whose it is.

    Build one from a token-endpoint answer with :meth:`from_response`, or from stored
    data with :meth:`from_dict`. ``repr()`` and ``str()`` never show a secret: they show
    a fingerprint of the access token instead.

    ``kind`` says what sort of Webex credential it is (one of :data:`KINDS`):
    ``"integration"`` (the default: an OAuth token of an integration), ``"service_app"``
    (a Service App's token for the organization ``org_id``), ``"bot"`` (a bot's token,
    which never expires) or ``"personal"`` (a personal access token; without an
    ``expires_at`` it expires 12 hours after ``saved_at``). ``id_token`` is the OpenID
    Connect ID token of the login, when ``openid`` was asked for; like the access and
    refresh tokens it is never shown.
    """

    access_token: str
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    client_id: str | None = None
    account: str | None = None
    saved_at: datetime = dataclasses.field(default_factory=_utcnow)
    kind: str = "integration"
    org_id: str | None = None
    id_token: str | None = None

    def __post_init__(self) -> None:
        _text(self.access_token, "access_token", required=True)
        _text(self.refresh_token, "refresh_token")
        object.__setattr__(self, "token_type", _token_type(self.token_type))
        for field in ("expires_at", "refresh_token_expires_at", "saved_at"):
            value = getattr(self, field)
            if value is not None:
                if not isinstance(value, datetime):
                    raise InvalidToken(f"token field {field!r} must be a datetime")
                if value.tzinfo is None:
                    raise InvalidToken(
                        f"token field {field!r} must be timezone-aware (use timezone.utc)"
                    )
                object.__setattr__(self, field, value.astimezone(timezone.utc))
        if self.saved_at is None:
            raise InvalidToken("token field 'saved_at' is required")
        object.__setattr__(self, "scopes", _scopes(self.scopes, "scopes"))
        _text(self.client_id, "client_id")
        _text(self.account, "account")
        object.__setattr__(self, "kind", _kind(self.kind))
        _text(self.org_id, "org_id")
        _text(self.id_token, "id_token")
        if self.kind == "personal" and self.expires_at is None:
            # Webex personal access tokens last 12 hours from when they were made.
            object.__setattr__(
                self,
                "expires_at",
                _after(self.saved_at, PERSONAL_TOKEN_LIFETIME.total_seconds(), "saved_at"),
            )

    # -- construction ----------------------------------------------------------------

    @classmethod
    def from_response(
        cls,
        response: Mapping[str, Any],
        now: datetime | None = None,
        *,
        client_id: str | None = None,
        account: str | None = None,
        kind: str = "integration",
        org_id: str | None = None,
    ) -> Token:
        """Build a token from the JSON answer of the Webex token endpoint.

        ``expires_in`` and ``refresh_token_expires_in`` are turned into absolute times
        from ``now`` (default: the current UTC time; a naive ``now`` is refused).

        Raises:
            InvalidToken: no ``access_token``, an unknown ``token_type``, a bad field or
                a naive ``now``.
        """
        if not isinstance(response, Mapping):
            raise InvalidToken("a token endpoint answer must be a JSON object")
        now = _aware(now)
        expires_in = _seconds(response.get("expires_in"), "expires_in")
        refresh_in = _seconds(response.get("refresh_token_expires_in"), "refresh_token_expires_in")
        expires_at = _parse_time(response.get("expires_at"), "expires_at")
        if expires_in is not None:
            expires_at = _after(now, expires_in, "expires_in")
        return cls(
            access_token=_text(response.get("access_token"), "access_token", required=True) or "",
            refresh_token=_text(response.get("refresh_token"), "refresh_token"),
            token_type=_token_type(response.get("token_type")),
            expires_at=expires_at,
            refresh_token_expires_at=(
                _after(now, refresh_in, "refresh_token_expires_in")
                if refresh_in is not None
                else None
            ),
            scopes=_scopes(response.get("scope")),
            client_id=client_id,
            account=account,
            saved_at=now,
            kind=kind,
            org_id=org_id,
            id_token=_text(response.get("id_token"), "id_token"),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """Read a token from its stored JSON form.

        Accepts the versioned form written by :meth:`to_dict`, the legacy
        ``.webex_token.json`` form (``access_token``, ``refresh_token``, ``saved_at``)
        and Authlib ``OAuth2Token`` dicts (``expires_at`` in epoch seconds, ``scope``).

        Raises:
            InvalidToken: the data is not a token, or was written by a newer version.
        """
        if not isinstance(data, Mapping):
            raise InvalidToken(f"a stored token must be a JSON object, not {type(data).__name__}")
        version = data.get("version")
        if version is None:
            return cls._from_foreign_dict(data)
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidToken("token field 'version' must be an integer")
        if version > FORMAT_VERSION:
            raise InvalidToken(
                f"token was written by a newer webex-tokens (format {version}); "
                "upgrade with: pip install -U webex-tokens"
            )
        if version < 1:
            raise InvalidToken(f"unknown token format version {version}")
        saved_at = _parse_time(data.get("saved_at"), "saved_at")
        return cls(
            access_token=_text(data.get("access_token"), "access_token", required=True) or "",
            refresh_token=_text(data.get("refresh_token"), "refresh_token"),
            token_type=_token_type(data.get("token_type")),
            expires_at=_parse_time(data.get("expires_at"), "expires_at"),
            refresh_token_expires_at=_parse_time(
                data.get("refresh_token_expires_at"), "refresh_token_expires_at"
            ),
            scopes=_scopes(data.get("scopes"), "scopes"),
            client_id=_text(data.get("client_id"), "client_id"),
            account=_text(data.get("account"), "account"),
            saved_at=saved_at or UNKNOWN_TIME,
            kind=_kind(data.get("kind")),
            org_id=_text(data.get("org_id"), "org_id"),
            id_token=_text(data.get("id_token"), "id_token"),
        )

    @classmethod
    def _from_foreign_dict(cls, data: Mapping[str, Any]) -> Token:
        """Read the legacy ``.webex_token.json`` form or an Authlib token dict."""
        saved_at = _parse_time(data.get("saved_at"), "saved_at")
        if saved_at is None:
            issued = data.get("issued_at")
            saved_at = _parse_time(issued, "issued_at") if issued is not None else None
        expires_at = _parse_time(data.get("expires_at"), "expires_at")
        expires_in = _seconds(data.get("expires_in"), "expires_in")
        if expires_at is None and expires_in is not None and saved_at is not None:
            expires_at = _after(saved_at, expires_in, "expires_in")
        refresh_at = _parse_time(data.get("refresh_token_expires_at"), "refresh_token_expires_at")
        refresh_in = _seconds(data.get("refresh_token_expires_in"), "refresh_token_expires_in")
        if refresh_at is None and refresh_in is not None and saved_at is not None:
            refresh_at = _after(saved_at, refresh_in, "refresh_token_expires_in")
        return cls(
            access_token=_text(data.get("access_token"), "access_token", required=True) or "",
            refresh_token=_text(data.get("refresh_token"), "refresh_token"),
            token_type=_token_type(data.get("token_type")),
            expires_at=expires_at,
            refresh_token_expires_at=refresh_at,
            scopes=_scopes(data.get("scope", data.get("scopes"))),
            client_id=_text(data.get("client_id"), "client_id"),
            account=_text(data.get("account"), "account"),
            saved_at=saved_at or UNKNOWN_TIME,
            id_token=_text(data.get("id_token"), "id_token"),
        )

    # -- serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the stable, versioned JSON form (``"version": 1``).

        ``kind``, ``org_id`` and ``id_token`` are written only when they say something
        (a kind other than ``"integration"``, a value that is set), so the record of an
        integration token is exactly what earlier releases wrote and read.
        """
        data = {
            "version": FORMAT_VERSION,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "expires_at": _iso(self.expires_at),
            "refresh_token_expires_at": _iso(self.refresh_token_expires_at),
            "scopes": list(self.scopes),
            "client_id": self.client_id,
            "account": self.account,
            "saved_at": _iso(self.saved_at),
        }
        if self.kind != "integration":
            data["kind"] = self.kind
        if self.org_id is not None:
            data["org_id"] = self.org_id
        if self.id_token is not None:
            data["id_token"] = self.id_token
        return data

    def to_authlib(self) -> dict[str, Any]:
        """Return the dict form Authlib's ``OAuth2Session(token=...)`` expects."""
        data: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
        }
        if self.refresh_token is not None:
            data["refresh_token"] = self.refresh_token
        if self.expires_at is not None:
            data["expires_at"] = int(self.expires_at.timestamp())
        if self.scopes:
            data["scope"] = " ".join(self.scopes)
        return data

    # -- questions -------------------------------------------------------------------

    @property
    def issued_at(self) -> datetime:
        """When the token was received or saved (the same as :attr:`saved_at`)."""
        return self.saved_at

    @property
    def fingerprint(self) -> str:
        """A short label of the access token, safe to show (``sha256:1a2b3c4d``)."""
        return fingerprint(self.access_token)

    def expires_in(self, now: datetime | None = None) -> float | None:
        """Seconds until the access token expires (negative once past), or None if unknown.

        Raises:
            InvalidToken: ``now`` is a naive datetime.
        """
        now = _aware(now)
        if self.expires_at is None:
            return None
        return (self.expires_at - now).total_seconds()

    def refresh_expires_in(self, now: datetime | None = None) -> float | None:
        """Seconds until the refresh token expires, or None if unknown or absent.

        Raises:
            InvalidToken: ``now`` is a naive datetime.
        """
        now = _aware(now)
        if self.refresh_token_expires_at is None:
            return None
        return (self.refresh_token_expires_at - now).total_seconds()

    def is_expired(self, leeway: float = 0, now: datetime | None = None) -> bool:
        """True when the access token expires within ``leeway`` seconds (or already has).

        A token whose expiry is unknown is taken as valid.

        Raises:
            InvalidToken: ``now`` is a naive datetime.
        """
        left = self.expires_in(now)
        return left is not None and left <= leeway

    def replace(self, **changes: Any) -> Token:
        """Return a copy with some fields changed (the token itself is immutable)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        parts = [f"account={self.account!r}", f"fingerprint={self.fingerprint!r}"]
        parts.append(f"expires_at={_iso(self.expires_at)!r}")
        parts.append(f"refresh_token={'present' if self.refresh_token else 'absent'}")
        if self.scopes:
            parts.append(f"scopes={' '.join(self.scopes)!r}")
        if self.kind != "integration":
            parts.append(f"kind={self.kind!r}")
        if self.org_id is not None:
            parts.append(f"org_id={self.org_id!r}")
        return f"Token({', '.join(parts)})"

    __str__ = __repr__


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
