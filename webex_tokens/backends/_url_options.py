"""The query options of a server store's URL (``?lock_timeout=30&lease_ttl=10``), checked.

Shared by the Redis and Vault backends: every option is known, given once and
well-formed, and a message about a bad one names the option, shows the URL without
secrets and says what to write instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from urllib.parse import parse_qsl

from ..errors import InvalidStoreURL

__all__ = ["UrlOptions", "shown_url"]


def shown_url(url: str, *, keep_user: bool = True) -> str:
    """``url`` as a message may show it, quoted: without its query (where a mistyped
    option may hold a secret), any password replaced by ``***``, and the user name too
    unless ``keep_user`` (for URLs where a user name can only be a misplaced token)."""
    base = url.partition("?")[0].partition("#")[0]
    scheme, sep, rest = base.partition("://")
    authority, slash, path = rest.partition("/")
    if sep and "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if not keep_user:
            user = "***"
        authority = f"{user}{':***' if colon and keep_user else ''}@{host}"
    return repr(scheme + sep + authority + slash + path)


class UrlOptions:
    """The options in the query of ``url``, of which only ``known`` are allowed.

    Args:
        url: the whole store URL (shown, redacted, in error messages).
        query: its query string (after ``?``).
        keep_user: show the URL's user name in messages (see :func:`shown_url`).
        known: the option names the backend accepts.
        forbidden: option names refused with their own message (``{name: message}``),
            such as an inline password.

    Raises:
        InvalidStoreURL: an unknown, repeated or forbidden option.
    """

    def __init__(
        self,
        url: str,
        query: str,
        known: Iterable[str],
        forbidden: dict[str, str] | None = None,
        *,
        keep_user: bool = True,
    ) -> None:
        self.url = url
        self.keep_user = keep_user
        self.known = tuple(known)
        self.values: dict[str, str] = {}
        forbidden = forbidden or {}
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise InvalidStoreURL(
                f"the options of {self.shown} are malformed; write them as ?name=value&name=value"
            ) from None
        for key, value in pairs:
            if key.lower() in forbidden:
                raise InvalidStoreURL(forbidden[key.lower()])
            if key not in self.known:
                raise InvalidStoreURL(
                    f"unknown option {key!r} in {self.shown}; the options of this store are "
                    f"{', '.join(self.known)}"
                )
            if key in self.values:
                raise InvalidStoreURL(f"the option {key} appears twice in {self.shown}; keep one")
            self.values[key] = value

    @property
    def shown(self) -> str:
        """The URL as error messages show it (see :func:`shown_url`)."""
        return shown_url(self.url, keep_user=self.keep_user)

    def text(self, key: str, given: str | None = None) -> str | None:
        """The value of ``key`` (``given`` wins when not None); None when absent.

        Raises:
            InvalidStoreURL: the option is present but empty.
        """
        value = given if given is not None else self.values.get(key)
        if value is not None and not value:
            raise InvalidStoreURL(f"the option {key} in {self.shown} is empty; give a value")
        return value

    def seconds(
        self, key: str, default: float, given: float | None = None, minimum: float = 0.0
    ) -> float:
        """A positive, finite number of seconds (at least ``minimum``).

        Raises:
            InvalidStoreURL: the value is not such a number.
        """
        raw: object = given if given is not None else self.values.get(key, default)
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0 and value >= minimum):
            floor = f" of at least {minimum:g}" if minimum else ""
            raise InvalidStoreURL(
                f"{key} for {self.shown} is {raw!r}; give a positive number of seconds{floor}, "
                f"e.g. ?{key}={default:g}"
            )
        return value
