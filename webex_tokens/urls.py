"""Store URLs as text: their scheme, their options, and how to show one without secrets.

A leaf of the package (it imports only :mod:`webex_tokens.errors`), so the registry, the
settings and every backend read URLs the same way without importing each other.

Two ways to show a URL, for two places:

- :func:`redact_url` for where a URL is *displayed* (``store.url``, ``webex-tokens
  stores``, ``doctor``, reprs): passwords, the values of secret-named options and any
  value shaped like a Fernet key become ``***``; the rest stays as written.
- :func:`shown_url` for error messages: the same, without the query at all, so an error
  never echoes an option value (a mistyped option is as likely to hold a secret as
  anything else).

SQL URLs are read with SQLAlchemy's own parser (``sqlalchemy.engine.make_url``), so a
password is found exactly where the database driver will look for it, even one holding
a raw ``/`` or ``?``. SQLAlchemy is imported only when a SQL URL with credentials is
shown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import InvalidStoreURL

__all__ = [
    "REDACTED",
    "UrlOptions",
    "is_store_url",
    "is_variable_name",
    "looks_like_key",
    "redact_url",
    "scheme_of",
    "shown_url",
    "variable_expected",
]

#: What stands in for a secret in a shown URL.
REDACTED: Final = "***"

_SCHEME: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")
_AUTHORITY: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_FERNET: Final = "fernet+"
_SQL_SCHEMES: Final = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})
#: Schemes whose user name can only be a misplaced secret (a Vault token), never a user.
_SECRET_USER_SCHEMES: Final = frozenset({"vault"})
#: Option names whose values are secrets wherever they appear.
_SECRET_OPTION: Final = re.compile(
    r"(?i)(?:.*_)?(?:password|passwd|pwd|key|keys|secret|token|credentials?)"
)
#: A Fernet key: 32 bytes of URL-safe base64 (43 characters and one ``=``). Standard
#: base64 letters are counted too, for a key pasted in the other alphabet.
_KEY_SHAPE: Final = re.compile(r"[A-Za-z0-9_\-+/]{43}=")
_VARIABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: An option name a message may echo; anything else may be a secret pasted as a name.
_OPTION_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,39}")


def is_store_url(target: str) -> bool:
    """True if ``target`` looks like a URL (``scheme:...``) rather than a store name."""
    return _SCHEME.match(target) is not None


def scheme_of(url: str) -> str:
    """The base scheme of ``url``: ``postgresql`` for ``postgresql+psycopg://...``.

    Raises:
        InvalidStoreURL: ``url`` has no scheme.
    """
    match = _SCHEME.match(url) if isinstance(url, str) else None
    if match is None:
        raise InvalidStoreURL(
            f"{shown_url(url) if isinstance(url, str) else type(url).__name__} is not a "
            "store URL; write e.g. sqlite:///tokens.db, file:///path/tokens.json or keyring://"
        )
    return match.group("scheme").split("+", 1)[0].lower()


def looks_like_key(value: str) -> bool:
    """True if ``value`` holds something shaped like a Fernet key (also %-encoded)."""
    return _KEY_SHAPE.search(value) is not None or _KEY_SHAPE.search(unquote(value)) is not None


def is_variable_name(value: str) -> bool:
    """True if ``value`` can name an environment variable (letters, digits, ``_``)."""
    return _VARIABLE_NAME.fullmatch(value) is not None


def redact_url(url: str) -> str:
    """Return ``url`` as it may be displayed: every secret in it replaced by ``***``.

    Hidden: a password (for SQL URLs, where SQLAlchemy finds it), a user name where it
    can only be a token (``vault``), the value of any option named like a secret
    (``password``, ``key``, ``token``, ...) and any value shaped like a Fernet key. The
    rest is kept as written, so ``sqlite:///x.db`` stays ``sqlite:///x.db``.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}, not a URL>"
    prefix, rest = _split_fernet(url)
    scheme = _base_scheme(rest)
    if scheme in _SQL_SCHEMES:
        rest = _redact_sql_password(rest)
    else:
        try:
            urlsplit(rest)
        except ValueError:
            return "<unparsable URL>"
        rest = _redact_userinfo(rest, hide_user=scheme in _SECRET_USER_SCHEMES)
    base, sep, query = rest.partition("?")
    query, hash_sign, fragment = query.partition("#")
    return prefix + base + (sep + _redact_query(query) if sep else "") + hash_sign + fragment


def shown_url(url: str, *, keep_user: bool = True) -> str:
    """``url`` as an error message shows it, quoted: :func:`redact_url` without the query
    and fragment, so that no option value is ever echoed; the user name is hidden too
    unless ``keep_user``."""
    shown = redact_url(url).partition("?")[0].partition("#")[0]
    if not keep_user:
        shown = _redact_userinfo(shown, hide_user=True)
    return repr(shown)


def _split_fernet(url: str) -> tuple[str, str]:
    prefix, rest = "", url
    while rest[: len(_FERNET)].lower() == _FERNET:
        prefix, rest = prefix + rest[: len(_FERNET)], rest[len(_FERNET) :]
    return prefix, rest


def _base_scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group("scheme").split("+", 1)[0].lower() if match else None


def _redact_sql_password(url: str) -> str:
    """Hide the password SQLAlchemy would read from ``url``; else hide what looks like one."""
    if "@" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _redact_userinfo(url, hide_user=False)
    if parsed.password is None:
        return _redact_userinfo(url, hide_user=False)
    # Rebuilt with our options kept in the query; a password rendered as *** only.
    return parsed.render_as_string(hide_password=True)


def _redact_userinfo(url: str, *, hide_user: bool) -> str:
    """Hide the password (and with ``hide_user`` the user) of ``scheme://user:pw@host``.

    A password may hold a raw ``/``, ``?`` or ``@``, so the user information is taken to
    end at the *last* ``@`` after which no user name could start: shown too little
    rather than too much.
    """
    match = _AUTHORITY.match(url)
    if match is None:
        return url
    start = match.end()
    after = url[start:]
    if after.startswith("/"):
        return url  # no authority: file:///path, sqlite:///path
    for at in reversed([index for index, char in enumerate(after) if char == "@"]):
        userinfo = after[:at]
        user, colon, _ = userinfo.partition(":")
        if any(char in user for char in "/?#"):
            continue
        if hide_user:
            return url[:start] + REDACTED + after[at:]
        if colon:
            return url[:start] + user + ":" + REDACTED + after[at:]
        return url
    return url


def _redact_query(query: str) -> str:
    fields = []
    for field in query.split("&"):
        key, equals, value = field.partition("=")
        name = unquote(key)
        if equals and value and _secret_value(name, unquote(value)):
            fields.append(key + equals + REDACTED)
        elif looks_like_key(field):
            fields.append(REDACTED)  # a key pasted as the option's name
        else:
            fields.append(field)
    return "&".join(fields)


def _secret_value(name: str, value: str) -> bool:
    """True if the value of the option ``name`` must not be shown."""
    return (
        _SECRET_OPTION.fullmatch(name) is not None
        or looks_like_key(value)
        or (name.endswith("_env") and not is_variable_name(value))
    )


def variable_expected(option: str, shown: str) -> str:
    """The message for an option that must name an environment variable but holds
    something else (most likely the secret itself, which is therefore not shown)."""
    return (
        f"the option {option} of {shown} must name an environment variable (letters, digits "
        "and underscores, such as WEBEX_TOKENS_KEY), never hold the secret itself; put the "
        "secret in that variable and write its name"
    )


def _shown_option(key: str) -> str:
    """An option's name as a message may show it (a key-shaped name is a pasted secret)."""
    return f"the option {key!r}" if _OPTION_NAME.fullmatch(key) else "an option"


class UrlOptions:
    """The options in the query of ``url``, of which only ``known`` are allowed.

    Messages about a bad option name the option, show the URL without its query (see
    :func:`shown_url`) and never its value.

    Args:
        url: the whole store URL (shown, redacted, in error messages).
        query: its query string (after ``?``).
        known: the option names the backend accepts.
        forbidden: option names refused with their own message (``{name: message}``),
            such as an inline password.
        keep_user: show the URL's user name in messages (see :func:`shown_url`).

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
                    f"{_shown_option(key)} in {self.shown} is unknown; the options of this "
                    f"store are {', '.join(self.known) or 'none'}"
                )
            if key in self.values:
                raise InvalidStoreURL(f"the option {key} appears twice in {self.shown}; keep one")
            if key.endswith("_env") and value and not is_variable_name(value):
                raise InvalidStoreURL(variable_expected(key, self.shown))
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

    def flag(self, key: str) -> bool | None:
        """The option as a yes/no flag (``1``/``0``, ``true``/``false``, ``yes``/``no``);
        None when absent.

        Raises:
            InvalidStoreURL: the value is none of these.
        """
        value = self.values.get(key)
        if value is None:
            return None
        value = value.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off", ""):
            return False
        raise InvalidStoreURL(f"the option {key} in {self.shown} must be 1 or 0")

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
                f"the option {key} in {self.shown} is not a positive number of seconds"
                f"{floor}; write e.g. ?{key}={max(default, minimum):g}"
            )
        return value
