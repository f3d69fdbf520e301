"""Sealed cookies: small JSON payloads encrypted and authenticated under the app's key.

The web login keeps what it needs in the browser, not in the server: a login in progress
(state, PKCE verifier, nonce, when it started, the new session's id) and, afterwards, the
session naming the account. Both travel in cookies that :class:`CookieSealer` seals:

- **Key.** One 256-bit AES key per purpose (``"login"``, ``"account"``), derived from the
  app's secret key with HKDF-SHA256 and the purpose as the label, so a cookie sealed for
  one purpose never opens as another, and the secret key itself is never used directly.
- **Cipher.** AES-256-GCM with a random 96-bit nonce per cookie: the payload is secret
  (the PKCE verifier must not be readable) and any change to it is detected. Random
  nonces stay safe for about 2**32 cookies per key; a new secret key starts afresh.
- **Context.** Associated data binds each cookie to the integration it was made for
  (client ID and, for logins, the redirect URI): an app that happens to share the secret
  key but not the integration cannot use another's cookies.
- **Form.** ``1.`` followed by unpadded URL-safe base64 of nonce, ciphertext and tag:
  cookie-safe text that never needs quoting. Anything else, anything longer than
  :data:`MAX_COOKIE_LENGTH`, and anything that fails authentication opens as None.

What each cookie holds is a ticket: :class:`LoginTicket` (a login in progress) and
:class:`SessionTicket` (a signed-in browser). Their expiry is the flow's business
(:mod:`webex_tokens.web.flow`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "IDENTITY_CLAIMS",
    "MAX_COOKIE_LENGTH",
    "Cookie",
    "CookieSealer",
    "LoginTicket",
    "SessionTicket",
    "identity_of",
]

#: The longest cookie value opened; longer ones are refused unread (browsers keep at most
#: about 4 KB per cookie; a login cookie is under 300 characters).
MAX_COOKIE_LENGTH: Final = 1024

_VERSION: Final = "1."
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_SALT: Final = b"webex-tokens web cookies"
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


@dataclasses.dataclass(frozen=True)
class Cookie:
    """A cookie to set (``value`` not None) or to clear (``value`` None).

    Never has a ``Domain``: a cookie is for the exact host that set it.
    """

    name: str
    value: str | None = dataclasses.field(repr=False)  # a sealed credential
    path: str
    max_age: int
    secure: bool
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] = "lax"


class CookieSealer:
    """Seal and open JSON objects for one purpose under a key derived from the secret key.

    Args:
        secret_key: the app's secret key (text or bytes).
        purpose: the label the key is derived with (``"login"``, ``"account"``).
        context: associated data every sealed value is bound to (who it is for).
    """

    def __init__(self, secret_key: str | bytes, purpose: str, context: bytes) -> None:
        material = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=_SALT,
            info=b"webex-tokens " + purpose.encode("ascii") + b" cookie v1",
        )
        self._aead = AESGCM(hkdf.derive(material))
        self._context = purpose.encode("ascii") + b"\0" + context

    def __repr__(self) -> str:
        return "CookieSealer(<key hidden>)"

    def seal(self, payload: dict[str, Any]) -> str:
        """The cookie value holding ``payload`` (a JSON object), encrypted and signed."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, _ENCODER.encode(payload).encode(), self._context)
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, value: object) -> dict[str, Any] | None:
        """The payload sealed in ``value``, or None if it is not a value this sealer made
        (forged, altered, truncated, another key or purpose or integration, too long)."""
        if not isinstance(value, str) or len(value) > MAX_COOKIE_LENGTH:
            return None
        if not value.startswith(_VERSION):
            return None
        text = value[len(_VERSION) :]
        if not _BASE64URL.fullmatch(text):
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= _NONCE_BYTES + _TAG_BYTES:
            return None
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._context)
        except InvalidTag:
            return None
        try:
            payload = json.loads(plain)
        except ValueError:  # pragma: no cover - only this sealer's own output decrypts
            return None
        return payload if isinstance(payload, dict) else None


@dataclasses.dataclass(frozen=True, repr=False)
class LoginTicket:
    """What a login cookie holds: a login in progress. ``repr()`` shows none of it.

    Attributes:
        state: the authorization request's ``state``.
        verifier: its PKCE code verifier.
        session: the id of the session the login opens when it succeeds (fresh at each
            login).
        started: when ``/login`` made it, seconds since the epoch, to the millisecond
            (which orders a browser's logins in progress).
        nonce: the OpenID Connect nonce, when the request had one.
    """

    state: str
    verifier: str
    session: str
    started: float
    nonce: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON object to seal."""
        return {
            "s": self.state,
            "v": self.verifier,
            "i": self.session,
            "t": self.started,
            "n": self.nonce,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None) -> LoginTicket | None:
        """The ticket in an opened payload, or None if it is not one."""
        if payload is None:
            return None
        state, verifier, session = payload.get("s"), payload.get("v"), payload.get("i")
        started, nonce = payload.get("t"), payload.get("n")
        if not (_text(state) and _text(verifier) and _text(session) and _time(started)):
            return None
        if nonce is not None and not _text(nonce):
            return None
        return cls(state, verifier, session, started, nonce)


@dataclasses.dataclass(frozen=True, repr=False)
class SessionTicket:
    """What an account cookie holds: who the browser signed in as, in which session.

    Attributes:
        account: the account name the token is stored under.
        session: the session's id (the login's; ``/logout`` ends it by this id).
        issued: when the session began, seconds since the epoch.
        identity: the person's claims from the login's verified ID token (``sub``,
            ``email``, ``name``...; :data:`IDENTITY_CLAIMS`), when ``openid`` was asked.
    """

    account: str
    session: str
    issued: float
    identity: dict[str, Any] | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON object to seal."""
        payload: dict[str, Any] = {"a": self.account, "i": self.session, "t": self.issued}
        if self.identity is not None:
            payload["o"] = self.identity
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None) -> SessionTicket | None:
        """The ticket in an opened payload, or None if it is not one."""
        if payload is None:
            return None
        account, session, issued = payload.get("a"), payload.get("i"), payload.get("t")
        if not (_text(account) and _text(session) and _time(issued)):
            return None
        identity = payload.get("o")
        if identity is not None and not isinstance(identity, dict):
            return None
        return cls(account, session, issued, identity)


#: The claims of a verified ID token an account cookie keeps (the person, not the token).
IDENTITY_CLAIMS = (
    "sub",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "iss",
)


def identity_of(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`IDENTITY_CLAIMS` of verified ID-token claims."""
    return {name: claims[name] for name in IDENTITY_CLAIMS if name in claims}


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _time(value: object) -> TypeGuard[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value >= 0
