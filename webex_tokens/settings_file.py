"""The settings file's format: reading ``webex-tokens.toml`` and checking every table.

Pure checks over the parsed TOML document: each function either returns the checked
value or raises :class:`~webex_tokens.errors.ConfigError` naming the file and the key
or line at fault. What the values *mean* (which store is the default, which account)
is decided in :mod:`webex_tokens.settings`, which builds its objects from these.
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote

from .errors import ConfigError
from .urls import is_store_url, is_variable_name, looks_like_key, redact_url, scheme_of

__all__ = [
    "INTEGRATION_KEYS",
    "NAMED_INTEGRATION_KEYS",
    "SETTINGS_FILE_NAME",
    "STORE_KEYS",
    "TOP_KEYS",
    "Problems",
    "check_integration_table",
    "check_named_integration",
    "check_store_table",
    "read_toml",
    "shown_url",
]

#: The settings file's name, in the current directory and the user config directory.
SETTINGS_FILE_NAME: Final = "webex-tokens.toml"
#: The keys allowed at the top level, in ``[stores.NAME]`` and in ``[integration]``.
TOP_KEYS: Final = ("default_store", "stores", "integration", "integrations")
STORE_KEYS: Final = ("url", "key_env", "key_file", "table", "lock_timeout", "description")
INTEGRATION_KEYS: Final = (
    "client_id",
    "client_secret_env",
    "redirect_uri",
    "scopes",
    "base_url",
    "cloud",
    "account",
)
#: The keys allowed in ``[integrations.NAME]``.
NAMED_INTEGRATION_KEYS: Final = (
    "kind",
    "client_id",
    "client_secret_env",
    "manager",
    "app_id",
    "redirect_uri",
    "scopes",
    "base_url",
    "cloud",
)

_STORE_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")
# Built-in schemes that are not SQL: ``table`` means nothing to them.
_NOT_SQL: Final = ("memory", "file", "keyring")


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 or is not valid TOML; the
            message names the file (and the line).
    """
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(
            f"the settings file {path} is a directory; point to a {SETTINGS_FILE_NAME} file"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the settings file {path} ({exc.strerror}); fix its permissions"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"the settings file {path} is not UTF-8 text (line {line}); save it as UTF-8"
        ) from None
    # Imported here, as difflib below: ``webex-tokens token`` with no settings file
    # needs neither, and starts sooner without them.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the settings file {path} is not valid TOML: {exc}") from None
    return document


def shown_url(url: str) -> str:
    """``url`` without its secrets.

    .. deprecated::
        Use :func:`webex_tokens.urls.redact_url`, which this calls; it hides secrets in
        host-less URLs too (``sqlite:///t.db?key=...``), which this used to show.
    """
    warnings.warn(
        "webex_tokens.settings_file.shown_url is deprecated; use webex_tokens.urls.redact_url",
        DeprecationWarning,
        stacklevel=2,
    )
    return redact_url(url)


def check_store_table(name: str, table: Any, problems: Problems) -> tuple[str, str | None]:
    """Check ``[stores.NAME]``; return its URL (with the table's options folded into the
    query, ready for ``open_store``) and its description.

    Raises:
        ConfigError: a bad name, key or value; the message names the section.
    """
    where = f"[stores.{name}]"
    if not _STORE_NAME.fullmatch(name):
        raise problems.error(
            f"the store name {name!r} is not allowed; use letters, digits, '-', '_' and '.'"
        )
    if not isinstance(table, dict):
        raise problems.error(f"stores.{name} must be a table: write it as a {where} section")
    if "key" in table or "keys" in table:
        raise problems.error(
            f"{where} holds a Fernet key, and keys never go in the settings file; put it in "
            "an environment variable named by key_env, or in a chmod 600 file named by key_file"
        )
    problems.check_keys(table, STORE_KEYS, f"in {where}")
    if "url" not in table:
        raise problems.error(f'{where} has no url; add e.g. url = "sqlite:///tokens.db"')
    url = table["url"]
    problems.check_text(url, f"url in {where}")
    if not is_store_url(url):
        raise problems.error(
            f"the url in {where} is not a store URL; write e.g. sqlite:///tokens.db, "
            "file:///path/tokens.json or keyring://"
        )
    if looks_like_key(url.partition("?")[2]):
        raise problems.error(
            f"the url in {where} holds what looks like a Fernet key in its options, and keys "
            "never go in the settings file; put the key in an environment variable named by "
            "key_env, or in a chmod 600 file named by key_file"
        )
    description = table.get("description")
    if description is not None:
        problems.check_text(description, f"description in {where}")

    encrypted = url[: len("fernet+")].lower() == "fernet+"
    options: list[tuple[str, str]] = []
    for key in ("key_env", "key_file"):
        if key not in table:
            continue
        value = table[key]
        problems.check_text(value, f"{key} in {where}")
        if not encrypted:
            raise problems.error(
                f"{key} in {where} applies only to encrypted stores; put fernet+ before "
                f"the url or remove {key}"
            )
        if key == "key_file" and looks_like_key(value):
            raise problems.error(
                f"key_file in {where} holds what looks like a Fernet key, not a path; write "
                "the key into a chmod 600 file and give that file's path"
            )
        if key == "key_env" and not is_variable_name(value):
            raise problems.error(
                f"key_env in {where} must be the name of an environment variable (such as "
                "WEBEX_TOKENS_PROD_KEY), never the key itself"
            )
        options.append((key, value))
    if len(options) > 1:
        raise problems.error(
            f"{where} sets both key_env and key_file; keep the one holding the keys"
        )
    if "table" in table:
        value = table["table"]
        problems.check_text(value, f"table in {where}")
        inner = url[len("fernet+") :] if encrypted else url
        if scheme_of(inner) in _NOT_SQL:
            raise problems.error(
                f"table in {where} applies only to SQL stores (sqlite, postgresql, mysql); "
                "remove it"
            )
        options.append(("table", value))
    if "lock_timeout" in table:
        value = table["lock_timeout"]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise problems.error(
                f"lock_timeout in {where} must be a positive number of seconds, e.g. 30"
            )
        options.append(("lock_timeout", f"{value:g}"))
    return _fold_options(url, options, where, problems), description


def _fold_options(
    url: str, options: Iterable[tuple[str, str]], where: str, problems: Problems
) -> str:
    """Append ``options`` to the query of ``url``, refusing one the URL sets already."""
    base, _, query = url.partition("?")
    fields = [field for field in query.split("&") if field]
    present = {unquote(field.partition("=")[0]) for field in fields}
    for key, value in options:
        if key in present:
            raise problems.error(
                f"{where} sets {key} both in its url and as a key; keep one of them"
            )
        fields.append(f"{key}={quote(value, safe='/~:')}")
    return base + ("?" + "&".join(fields) if fields else "")


def check_integration_table(section: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """Check the ``[integration]`` table; return it with ``scopes`` as a tuple.

    Raises:
        ConfigError: a secret written inline, an unknown key or a bad value.
    """
    return _check_integration(section, "[integration]", INTEGRATION_KEYS, problems)


def check_named_integration(name: str, table: Any, problems: Problems) -> dict[str, Any]:
    """Check ``[integrations.NAME]``; return it with ``scopes`` as a tuple.

    ``client_id`` and ``client_secret_env`` are required; ``kind`` is ``integration``
    (the default) or ``service_app``; ``manager`` and ``app_id`` belong to Service Apps.

    Raises:
        ConfigError: a bad name, a secret written inline, an unknown or missing key, or
            a bad value; the message names the section.
    """
    from .integrations import INTEGRATION_KINDS
    from .store import validate_name

    where = f"[integrations.{name}]"
    if not _STORE_NAME.fullmatch(name):
        raise problems.error(
            f"the integration name {name!r} is not allowed; use letters, digits, '-', '_' and '.'"
        )
    if not isinstance(table, dict):
        raise problems.error(f"integrations.{name} must be a table: write it as a {where} section")
    checked = _check_integration(table, where, NAMED_INTEGRATION_KEYS, problems)
    for key in ("client_id", "client_secret_env"):
        if key not in table:
            example = "C1f..." if key == "client_id" else "HR_BOT_CLIENT_SECRET"
            raise problems.error(f'{where} has no {key}; add e.g. {key} = "{example}"')
    kind = table.get("kind", "integration")
    if kind not in INTEGRATION_KINDS:
        raise problems.error(
            f"kind in {where} must be one of {', '.join(map(repr, INTEGRATION_KINDS))}, "
            f"not {printable_value(kind)}"
        )
    for key in ("manager", "app_id"):
        if key not in table:
            continue
        problems.check_text(table[key], f"{key} in {where}")
        if kind != "service_app":
            raise problems.error(
                f'{key} in {where} applies only to Service Apps; add kind = "service_app" '
                f"or remove {key}"
            )
    if "manager" in table:
        try:
            validate_name(table["manager"])
        except ValueError as exc:
            raise problems.error(f"manager in {where} is not a valid account name: {exc}") from None
    return checked


def printable_value(value: Any) -> str:
    """``value`` as an error shows it: short text quoted, anything else by its type."""
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return repr(value)
    return "text" if isinstance(value, str) else f"a {type(value).__name__}"


def _check_integration(
    section: dict[str, Any], where: str, known: tuple[str, ...], problems: Problems
) -> dict[str, Any]:
    """The checks ``[integration]`` and ``[integrations.NAME]`` share."""
    from .integrations import CLOUDS

    if "client_secret" in section:
        raise problems.error(
            f"{where} holds client_secret inline, and secrets never go in the settings "
            "file; put it in an environment variable and name that variable with "
            'client_secret_env = "WEBEX_CLIENT_SECRET"'
        )
    for token_key in ("access_token", "refresh_token"):
        if token_key in section:
            raise problems.error(
                f"{where} holds {token_key}, and tokens never go in the settings file; "
                "remove it and store tokens with webex-tokens login or import"
            )
    problems.check_keys(section, known, f"in {where}")
    texts = ("client_id", "client_secret_env", "redirect_uri", "base_url", "account", "cloud")
    for key in texts:
        if key in section:
            problems.check_text(section[key], f"{key} in {where}")
    secret_env = section.get("client_secret_env")
    if secret_env is not None and not is_variable_name(secret_env):
        raise problems.error(
            f"client_secret_env in {where} must be the name of an environment variable "
            "(such as WEBEX_CLIENT_SECRET), never the secret itself"
        )
    for key in ("redirect_uri", "base_url"):
        value = section.get(key)
        if value is not None and not value.startswith(("http://", "https://")):
            raise problems.error(f"{key} in {where} must be an http:// or https:// URL")
    cloud = section.get("cloud")
    if cloud is not None:
        if cloud.strip().lower() not in CLOUDS:
            raise problems.error(
                f"cloud in {where} is {printable_value(cloud)}, which is not a Webex cloud; "
                f"use one of {', '.join(CLOUDS)}"
            )
        if "base_url" in section:
            raise problems.error(
                f"{where} sets both cloud and base_url; keep cloud for a Webex cloud, or "
                "base_url for another API root"
            )
    checked = dict(section)
    if "scopes" in section:
        scopes = section["scopes"]
        if isinstance(scopes, str):
            checked["scopes"] = tuple(scopes.split())
        elif isinstance(scopes, list) and all(isinstance(scope, str) for scope in scopes):
            checked["scopes"] = tuple(part for scope in scopes for part in scope.split())
        else:
            raise problems.error(
                f'scopes in {where} must be a list of text, e.g. ["spark:all"], or '
                "space-separated text"
            )
        if not checked["scopes"]:
            raise problems.error(f'scopes in {where} is empty; list e.g. ["spark:all"]')
    return checked


class Problems:
    """Builds the errors of one settings file, each naming the file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def error(self, message: str) -> ConfigError:
        """The error for ``message``, prefixed with the file's path."""
        return ConfigError(f"{self.path}: {message}")

    def check_keys(self, table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
        """Refuse a key of ``table`` that is not ``known``, suggesting the closest."""
        for key in table:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
                raise self.error(f"unknown key {key!r} {where}; {hint}")

    def check_text(self, value: Any, what: str) -> None:
        """Refuse a ``value`` that is not non-empty text."""
        if not isinstance(value, str) or not value.strip():
            shown = "empty" if isinstance(value, str) else f"a {type(value).__name__}"
            raise self.error(f"{what} must be non-empty text, not {shown}")
