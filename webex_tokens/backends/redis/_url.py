"""The URL of a Redis store: parsing, checking and showing it (no password, ever)."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from ...errors import InvalidStoreURL, StoreUnavailable
from ...urls import UrlOptions, shown_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "TLS_OPTIONS",
    "ParsedURL",
    "check_prefix",
    "display_url",
    "existing_file",
    "parse_url",
    "password_from",
]

DEFAULT_PREFIX: Final = "webex-tokens"
#: Seconds to wait for the server to accept a connection (and the TLS handshake).
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
#: Seconds to wait for the answer to one command.
DEFAULT_TIMEOUT: Final = 5.0

_DEFAULT_PORT: Final = 6379
_OPTIONS: Final = (
    "prefix",
    "password_env",
    "connect_timeout",
    "timeout",
    "lock_timeout",
    "lease_ttl",
    "ca_file",
    "cert_file",
    "key_file",
)
TLS_OPTIONS: Final = ("ca_file", "cert_file", "key_file")
_PREFIX_PATTERN: Final = re.compile(r"^[A-Za-z0-9._-]+(?::[A-Za-z0-9._-]+)*$")
#: Segments a prefix may not hold: the store's own key parts, so that two stores with
#: different prefixes can never share a key.
_RESERVED_SEGMENTS: Final = frozenset({"token", "lease", "names"})


@dataclass(frozen=True)
class ParsedURL:
    tls: bool
    user: str | None
    host: str
    port: int
    db: int
    options: UrlOptions


def parse_url(url: str) -> ParsedURL:
    """Split a ``redis://`` or ``rediss://`` URL into its parts and checked options.

    Raises:
        InvalidStoreURL: the URL is malformed, holds a password or a bad option.
    """
    if not isinstance(url, str):
        raise InvalidStoreURL(f"a store URL must be text, not {type(url).__name__}")
    shown = shown_url(url)
    example = "redis://HOST:6379/0?password_env=REDIS_PASSWORD"
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        raise InvalidStoreURL(f"{shown} is not a Redis URL; write e.g. {example}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss"):
        raise InvalidStoreURL(
            f"{shown} is not a Redis URL; write redis://... or rediss://... (TLS), e.g. {example}"
        )
    if parts.password is not None or ":" in parts.netloc.rpartition("@")[0]:
        raise InvalidStoreURL(
            f"{shown} holds a password, and passwords never go in a store URL (URLs end up "
            "in settings and logs); put it in an environment variable and name that "
            "variable with ?password_env=NAME"
        )
    if parts.fragment:
        raise InvalidStoreURL(f"{shown} has a #fragment; remove it")
    if not parts.hostname:
        raise InvalidStoreURL(f"{shown} names no host; write e.g. {example}")
    database = parts.path.lstrip("/") or "0"
    if not database.isascii() or not database.isdigit() or "/" in parts.path.strip("/"):
        raise InvalidStoreURL(
            f"{shown} names the database {parts.path!r}; give its number, e.g. redis://HOST/0"
        )
    forbidden = {
        option: (
            f"{shown} holds a password in ?{option}=; put it in an environment variable and "
            "name that variable with ?password_env=NAME"
        )
        for option in ("password", "pass", "passwd", "pwd", "auth")
    }
    options = UrlOptions(url, parts.query, _OPTIONS, forbidden)
    if scheme == "redis":
        for option in TLS_OPTIONS:
            if option in options.values:
                raise InvalidStoreURL(
                    f"{option} in {shown} is for TLS; write rediss:// to connect with TLS"
                )
    user = unquote(parts.username) if parts.username else None
    return ParsedURL(scheme == "rediss", user, parts.hostname, port, int(database), options)


def display_url(parsed: ParsedURL, prefix: str, seconds: dict[str, tuple[float, float]]) -> str:
    """The store's URL: no password (there is none), the options that differ from their
    defaults (``seconds``: option -> (value, default))."""
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    user = quote(parsed.user, safe="") + "@" if parsed.user else ""
    port = f":{parsed.port}" if parsed.port != _DEFAULT_PORT else ""
    shown = {
        "prefix": prefix if prefix != DEFAULT_PREFIX else None,
        "password_env": parsed.options.values.get("password_env"),
        **{key: _differs(*pair) for key, pair in seconds.items()},
        **{option: parsed.options.values.get(option) for option in TLS_OPTIONS},
    }
    query = "&".join(
        f"{key}={quote(value, safe='/~:')}" for key, value in shown.items() if value is not None
    )
    scheme = "rediss" if parsed.tls else "redis"
    return f"{scheme}://{user}{host}{port}/{parsed.db}" + (f"?{query}" if query else "")


def _differs(value: float, default: float) -> str | None:
    return f"{value:g}" if value != default else None


def check_prefix(prefix: str, url: str) -> str:
    """``prefix`` if it is allowed (see the store's options), else :class:`InvalidStoreURL`."""
    segments = prefix.split(":")
    if (
        len(prefix) > 100
        or not _PREFIX_PATTERN.match(prefix)
        or _RESERVED_SEGMENTS.intersection(segments)
    ):
        raise InvalidStoreURL(
            f"the prefix of {shown_url(url)} is not allowed; use letters, "
            "digits, '.', '_' and '-' in parts joined by ':' (at most 100 characters, no part "
            "named token, lease or names), e.g. ?prefix=myapp:webex-tokens"
        )
    return prefix


def password_from(variable: str | None, url: str) -> str | None:
    """The password in the environment variable ``variable`` (None: no password).

    Raises:
        StoreUnavailable: the variable is not set or empty.
    """
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        state = "is not set" if value is None else "is empty"
        raise StoreUnavailable(
            f"cannot log in to {url}: the environment variable {variable} (named by "
            f"password_env) {state}; set it to the Redis password"
        )
    return value


def existing_file(path: str | None, option: str, url: str) -> str | None:
    """``path`` with ``~`` expanded, if it names a file (None stays None).

    Raises:
        InvalidStoreURL: it names no file.
    """
    if path is None:
        return None
    expanded = os.path.expanduser(path)
    with contextlib.suppress(OSError, ValueError):
        if os.path.isfile(expanded):
            return expanded
    raise InvalidStoreURL(
        f"the option {option} of {shown_url(url)} names no file; give the path of one"
    )
