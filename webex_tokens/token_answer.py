"""What a token answer may hold: the fields of an answer of the token endpoint, checked
before a :class:`~webex_tokens.token.Token` is built from them.

Shared by every request whose success is a token pair: the code exchange, the refresh,
a device-token poll, a Service App mint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from .errors import InvalidToken, TokenEndpointError
from .token import Token

__all__ = ["token_answer_fields", "token_from_answer"]

_MAX_SECRET: Final = 16 * 1024
_MAX_LIFETIME: Final = 10 * 365 * 86400
#: What a token can be made of: visible ASCII, no spaces (RFC 6750's b64token and more).
_TOKEN_CHARACTERS: Final = frozenset(chr(c) for c in range(0x21, 0x7F))


class _Unusable(ValueError):
    """A token answer with a field that cannot be used; the message names the field."""


def _secret_field(answer: Mapping[str, Any], field: str, *, required: bool = False) -> str | None:
    value = answer.get(field)
    if value is None or (value == "" and not required):
        if required:
            raise _Unusable(f"{field} is missing")
        return None
    if not isinstance(value, str):
        raise _Unusable(f"{field} is not text")
    if not value:
        raise _Unusable(f"{field} is empty")
    if len(value) > _MAX_SECRET:
        raise _Unusable(f"{field} is longer than {_MAX_SECRET} characters")
    if not set(value) <= _TOKEN_CHARACTERS:
        raise _Unusable(f"{field} holds characters a token cannot have")
    return value


def _lifetime(answer: Mapping[str, Any], field: str) -> float | None:
    value = answer.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unusable(f"{field} is not a number of seconds")
    if not math.isfinite(value) or not 0 <= value <= _MAX_LIFETIME:
        raise _Unusable(f"{field} is out of range")
    return float(value)


def token_answer_fields(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a token answer, checked: what :meth:`Token.from_response
    <webex_tokens.token.Token.from_response>` is given, and nothing else.

    ``access_token`` is required; ``refresh_token`` and ``id_token`` are optional; all
    three are visible ASCII without spaces, at most 16 KiB. ``token_type`` is Bearer
    when present; ``expires_in`` and ``refresh_token_expires_in`` are seconds (a number
    or a string of digits) up to ten years; ``scope`` is text or a list of text.
    Unknown fields are dropped.

    Raises:
        ValueError: a field is wrong; the message names the field, never its value.
    """
    fields: dict[str, Any] = {
        "access_token": _secret_field(answer, "access_token", required=True),
        "token_type": "Bearer",
    }
    for name in ("refresh_token", "id_token"):
        if (secret := _secret_field(answer, name)) is not None:
            fields[name] = secret
    token_type = answer.get("token_type")
    if token_type is not None and (
        not isinstance(token_type, str) or token_type.lower() != "bearer"
    ):
        raise _Unusable("token_type is not Bearer")
    for name in ("expires_in", "refresh_token_expires_in"):
        if (seconds := _lifetime(answer, name)) is not None:
            fields[name] = seconds
    scope = answer.get("scope")
    if isinstance(scope, list) and all(isinstance(item, str) for item in scope):
        scope = " ".join(scope)
    if scope is not None:
        if not isinstance(scope, str) or len(scope) > 4096 or not scope.isprintable():
            raise _Unusable("scope is not space-separated text")
        fields["scope"] = scope
    return fields


def token_from_answer(
    answer: Mapping[str, Any], *, client_id: str | None, account: str | None, **extra: Any
) -> Token:
    """The :class:`~webex_tokens.token.Token` of a checked answer
    (:func:`token_answer_fields`), for ``client_id`` and ``account``; ``extra`` goes to
    :meth:`Token.from_response <webex_tokens.token.Token.from_response>` (``kind``,
    ``org_id``).

    Raises:
        TokenEndpointError: the answer cannot make a token (what came back is not shown).
    """
    try:
        return Token.from_response(dict(answer), client_id=client_id, account=account, **extra)
    except (InvalidToken, TypeError, ValueError):
        raise TokenEndpointError(
            "the Webex token endpoint answered with a token that is not usable; check "
            "WEBEX_BASE_URL (it should be https://webexapis.com/v1) and try again",
            status=200,
            delivered=None,
        ) from None
