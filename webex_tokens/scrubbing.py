"""Text from outside made safe for a message: printable, and scrubbed of secrets.

Whatever a server answers can quote what it was sent. :class:`Scrubber` removes every
secret of one request from such text, in the forms a quoting server or proxy produces;
:func:`printable` removes what could drive a terminal or break a log line. The token
endpoint (:mod:`webex_tokens.token_endpoint`) passes every text of an answer through
both before the text is used anywhere; the callback server passes query text through
:func:`printable`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, quote, quote_plus

if TYPE_CHECKING:
    import requests

__all__ = ["Scrubber", "printable"]

_MAX_SHOWN: Final = 200


def printable(text: object, limit: int = _MAX_SHOWN) -> str:
    """Outside text made safe for a message: control characters and runs of white space
    become one space, and the length is capped at ``limit``."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


#: The shortest run of a secret's characters that counts as (part of) the secret.
_PARTIAL: Final = 8
_REDACTED: Final = "[redacted]"
#: Fields of a request body that are not secret (everything else in a body is).
_PUBLIC_FIELDS: Final = frozenset(
    {"grant_type", "client_id", "clientId", "redirect_uri", "scope", "targetOrgId"}
)
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _encodings(secret: str) -> set[str]:
    """The forms in which a secret comes back when a server or a proxy quotes a request:
    as sent in a form body, URL-decoded, JSON-escaped, HTML-escaped, encoded twice."""
    escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote(secret),
        quote(quote(secret, safe=""), safe=""),
        escaped,
        escaped.replace("/", "\\/"),
        html.escape(secret),
    }
    return {form.translate(_ASCII_LOWER) for form in forms}


class Scrubber:
    """Removes every secret of one request from the text of its answer.

    Any run of at least 8 characters of a secret, in any of the forms a quoting server
    or proxy produces (raw, URL-encoded, JSON- or HTML-escaped, in any letter case),
    becomes ``[redacted]``; so does a whole shorter secret. Applied to every text that
    came back (``error``, ``error_description``, ``message``, headers) before the text
    is used anywhere.

    Args:
        secrets: what the request carried that must not be shown.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for secret in secrets if len(secret) >= 4 for form in _encodings(secret)}
        self._whole = sorted((f for f in forms if len(f) < _PARTIAL), key=len, reverse=True)
        self._runs = {
            form[i : i + _PARTIAL] for form in forms for i in range(len(form) - _PARTIAL + 1)
        }

    @classmethod
    def for_request(
        cls, request: requests.PreparedRequest | None, known: Iterable[str] = ()
    ) -> Scrubber:
        """The scrubber of the secrets ``request`` carried (its body's values but the
        public fields, its ``Authorization`` credentials) and of ``known`` ones."""
        secrets = list(known)
        if request is not None:
            secrets += _request_secrets(request)
        return cls(secrets)

    def __call__(self, text: str) -> str:
        if not text or not (self._runs or self._whole):
            return text
        lowered = text.translate(_ASCII_LOWER)
        hit = bytearray(len(text))
        for form in self._whole:
            start = lowered.find(form)
            while start >= 0:
                hit[start : start + len(form)] = b"\x01" * len(form)
                start = lowered.find(form, start + 1)
        if self._runs:
            for i in range(len(lowered) - _PARTIAL + 1):
                if lowered[i : i + _PARTIAL] in self._runs:
                    hit[i : i + _PARTIAL] = b"\x01" * _PARTIAL
        if not any(hit):
            return text
        pieces: list[str] = []
        for i, char in enumerate(text):
            if not hit[i]:
                pieces.append(char)
            elif i == 0 or not hit[i - 1]:
                pieces.append(_REDACTED)
        return "".join(pieces)

    def reveals(self, text: str) -> bool:
        """True when ``text`` holds (part of) a secret."""
        return self(text) != text


def _request_secrets(request: requests.PreparedRequest) -> list[str]:
    found: list[str] = []
    authorization = request.headers.get("Authorization")
    if authorization:
        found += [authorization, authorization.partition(" ")[2]]
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return found
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        pairs = [(str(k), v) for k, v in document.items() if isinstance(v, str)]
    else:
        pairs = parse_qsl(body, keep_blank_values=True)
    found += [value for name, value in pairs if name not in _PUBLIC_FIELDS and value]
    return found
