"""The URL of a Vault store: parsing, checking and showing it (never a token)."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from ...errors import InvalidStoreURL, StoreUnavailable
from ...urls import UrlOptions, shown_url

__all__ = [
    "CA_VARIABLES",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "TOKEN_VARIABLES",
    "ParsedURL",
    "display_url",
    "parse_url",
    "token_from",
    "warn_plain_http",
]

log = logging.getLogger("webex_tokens.backends.vault")

#: Seconds to wait for the server to accept a connection.
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
#: Seconds to wait for the answer to one request.
DEFAULT_TIMEOUT: Final = 10.0
#: Where the token is looked for when the URL names no variable, in order.
TOKEN_VARIABLES: Final = ("VAULT_TOKEN", "BAO_TOKEN")
#: Where the CA of a ``vault+https://`` server is looked for when the URL names none.
CA_VARIABLES: Final = ("VAULT_CACERT", "BAO_CACERT")
_DEFAULT_PORT: Final = 8200
_OPTIONS: Final = (
    "token_env",
    "namespace",
    "connect_timeout",
    "timeout",
    "lock_timeout",
    "lease_ttl",
    "ca_file",
)
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


@dataclass(frozen=True)
class ParsedURL:
    tls: bool
    host: str
    port: int
    mount: str
    path: str
    options: UrlOptions


def parse_url(url: str) -> ParsedURL:
    """Split a ``vault+https://`` or ``vault+http://`` URL into its parts and options.

    Raises:
        InvalidStoreURL: the URL is malformed, holds a credential or a bad option.
    """
    if not isinstance(url, str):
        raise InvalidStoreURL(f"a store URL must be text, not {type(url).__name__}")
    shown = shown_url(url, keep_user=False)
    example = "vault+https://vault.example.com:8200/secret/webex-tokens"
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        raise InvalidStoreURL(f"{shown} is not a Vault URL; write e.g. {example}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("vault+https", "vault+http"):
        raise InvalidStoreURL(
            f"{shown} is not a Vault URL; write vault+https://... (or vault+http://... for a "
            f"local development server), e.g. {example}"
        )
    if "@" in parts.netloc:
        raise InvalidStoreURL(
            f"{shown} holds credentials before '@', and tokens never go in a store URL (URLs "
            "end up in settings and logs); put the token in VAULT_TOKEN, or in a variable "
            "named with ?token_env=NAME"
        )
    if parts.fragment:
        raise InvalidStoreURL(f"{shown} has a #fragment; remove it")
    if not parts.hostname:
        raise InvalidStoreURL(f"{shown} names no host; write e.g. {example}")
    segments = [unquote(segment) for segment in parts.path.strip("/").split("/")]
    mount_parts = segments[0].split("/") if segments else []
    if len(segments) < 2 or not all(
        _SEGMENT.match(part) and part.strip(".") for part in mount_parts + segments[1:]
    ):
        raise InvalidStoreURL(
            f"{shown} must name a KV version 2 mount and a folder in it, each made of "
            "letters, digits, '.', '_' and '-' (no empty, '.' or '..' parts), e.g. "
            f"{example} (a nested mount: team%2Fkv)"
        )
    forbidden = {
        option: (
            f"{shown} holds a token in ?{option}=, and tokens never go in a store URL; put it "
            "in VAULT_TOKEN, or in a variable named with ?token_env=NAME"
        )
        for option in ("token", "vault_token", "x-vault-token", "password")
    }
    options = UrlOptions(url, parts.query, _OPTIONS, forbidden, keep_user=False)
    return ParsedURL(
        scheme == "vault+https",
        parts.hostname,
        port,
        segments[0],
        "/".join(segments[1:]),
        options,
    )


def display_url(
    parsed: ParsedURL, namespace: str | None, seconds: dict[str, tuple[float, float]]
) -> str:
    """The store's URL, with the options that differ from their defaults (``seconds``:
    option -> (value, default))."""
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port != _DEFAULT_PORT else ""
    shown = {
        "token_env": parsed.options.values.get("token_env"),
        "namespace": namespace,
        **{key: _differs(*pair) for key, pair in seconds.items()},
        "ca_file": parsed.options.values.get("ca_file"),
    }
    query = "&".join(
        f"{key}={quote(value, safe='/~:')}" for key, value in shown.items() if value is not None
    )
    scheme = "vault+https" if parsed.tls else "vault+http"
    mount = quote(parsed.mount, safe="")
    return f"{scheme}://{host}{port}/{mount}/{parsed.path}" + (f"?{query}" if query else "")


def _differs(value: float, default: float) -> str | None:
    return f"{value:g}" if value != default else None


def token_from(given: str | None, variable: str | None, url: str) -> tuple[str, str]:
    """The token and a description of where it came from (never the token itself)."""
    if given is not None:
        if not given.strip():
            raise StoreUnavailable(f"the token given for {url} is empty; pass a Vault token")
        return given.strip(), "the token argument"
    candidates = (variable,) if variable is not None else TOKEN_VARIABLES
    for name in candidates:
        value = os.environ.get(name, "").strip()
        if value:
            return value, f"the environment variable {name}"
    if variable is not None:
        raise StoreUnavailable(
            f"no Vault token for {url}: the environment variable {variable} (named by "
            "token_env) is not set; set it to a token whose policy allows the store"
        )
    raise StoreUnavailable(
        f"no Vault token for {url}: neither VAULT_TOKEN nor BAO_TOKEN is set; set one of them "
        "to a token whose policy allows the store, or name another variable with "
        "?token_env=NAME"
    )


def warn_plain_http(host: str, url: str) -> None:
    """Say once per host that a token sent over plain HTTP beyond this machine is exposed."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return
    with _WARNED_LOCK:
        if host in _WARNED:
            return
        _WARNED.add(host)
    log.warning(
        "%s sends the Vault token and the tokens unencrypted over the network; use "
        "vault+https:// outside a development machine",
        url,
    )
