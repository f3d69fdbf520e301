"""Named stores and environments, from ``webex-tokens.toml``, the environment and ``.env``.

The settings file is the first of these that is given or exists (files are never merged):

1. the ``config`` argument (the CLI's ``--config``);
2. the file named by ``WEBEX_TOKENS_CONFIG``;
3. ``./webex-tokens.toml`` in the current directory;
4. ``webex-tokens.toml`` in the user config directory (``platformdirs``).

An example::

    default_store = "dev"

    [stores.dev]
    url = "sqlite:///~/.local/share/webex-tokens/dev.db"

    [stores.prod]
    url = "fernet+postgresql+psycopg://tokens@db.internal/tokens"
    key_env = "WEBEX_TOKENS_PROD_KEY"
    description = "shared by the API hosts"

    [integration]
    client_id = "C0ffee..."
    client_secret_env = "WEBEX_PROD_CLIENT_SECRET"
    scopes = ["spark:all"]

Precedence, highest first: the environment, then ``.env`` in the current directory,
then the settings file, then the built-in defaults. The default store is
``WEBEX_TOKENS_STORE``, else the legacy ``WEBEX_TOKEN_FILE`` (a ``file:`` store), else
the file's ``default_store``, else SQLite in the user data directory.

Loading reads files and the environment only: it opens no store and creates nothing.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import platformdirs

from .errors import ConfigError
from .store import redact_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPES",
    "SETTINGS_FILE_NAME",
    "STORE_ENV",
    "IntegrationSettings",
    "Settings",
    "StoreSettings",
    "default_store_url",
    "find_settings_file",
    "load_settings",
    "user_settings_path",
]

DEFAULT_REDIRECT_URI = "http://localhost:8000/oauth/webex/callback"
DEFAULT_SCOPES = ("spark:all",)
DEFAULT_BASE_URL = "https://webexapis.com/v1"

#: The settings file's name, in the current directory and the user config directory.
SETTINGS_FILE_NAME: Final = "webex-tokens.toml"
#: The variable naming the settings file.
CONFIG_ENV: Final = "WEBEX_TOKENS_CONFIG"
#: The variable naming the default store (a store name or a URL).
STORE_ENV: Final = "WEBEX_TOKENS_STORE"
#: The legacy variable holding the path of a single ``.webex_token.json``.
TOKEN_FILE_ENV: Final = "WEBEX_TOKEN_FILE"  # noqa: S105 - a variable's name, not a secret

_APP: Final = "webex-tokens"
_STORE_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOP_KEYS: Final = ("default_store", "stores", "integration")
_STORE_KEYS: Final = ("url", "key_env", "key_file", "table", "lock_timeout", "description")
_INTEGRATION_KEYS: Final = (
    "client_id",
    "client_secret_env",
    "redirect_uri",
    "scopes",
    "base_url",
    "account",
)
# Built-in schemes that are not SQL: ``table`` means nothing to them.
_NOT_SQL: Final = ("memory", "file", "keyring")


# -- the environment -----------------------------------------------------------------


class _Environment:
    """The process environment over ``.env`` in the current directory (read once)."""

    def __init__(self) -> None:
        self._dotenv = _read_dotenv(Path(".env"))

    def get(self, name: str) -> str | None:
        """The value of ``name``, or None when unset or blank."""
        for values in (os.environ, self._dotenv):
            value = values.get(name)
            if value is not None and value.strip():
                return value.strip()
        return None


def _read_dotenv(path: Path) -> dict[str, str]:
    # A directory called .env is usually a virtual environment (python -m venv .env).
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path)
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path.resolve()} is not UTF-8 text; save it as UTF-8 or remove it"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path.resolve()} ({exc.strerror}); fix its permissions or remove it"
        ) from None
    return {key: value for key, value in values.items() if value is not None}


# -- the integration -------------------------------------------------------------------


@dataclass(frozen=True)
class IntegrationSettings:
    """The Webex integration's credentials and endpoints (``WEBEX_CLIENT_ID`` and friends).

    ``repr()`` never shows the client secret or the access token.

    Attributes:
        client_id: ``WEBEX_CLIENT_ID`` or ``[integration] client_id``.
        client_secret: ``WEBEX_CLIENT_SECRET``, else the variable that
            ``[integration] client_secret_env`` names.
        redirect_uri, scopes, base_url: as their ``WEBEX_*`` variables, with defaults.
        access_token: the legacy ``WEBEX_ACCESS_TOKEN`` (a direct token, no refresh).
        token_file: the legacy ``WEBEX_TOKEN_FILE``.
        account: ``[integration] account``, the account name used when none is given.
        client_secret_env: the variable the settings file names for the secret, if any
            (so a missing secret can be reported by the name the user chose).
    """

    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    base_url: str = DEFAULT_BASE_URL
    access_token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    account: str | None = None
    client_secret_env: str | None = None

    @classmethod
    def from_environment(cls) -> IntegrationSettings:
        """Read ``WEBEX_*`` variables from the environment (a ``.env`` file fills gaps).

        Raises:
            ConfigError: ``.env`` exists but cannot be read.
        """
        return _integration(_Environment(), {}, None)


def _integration(
    env: _Environment, section: Mapping[str, Any], path: Path | None
) -> IntegrationSettings:
    """Combine the environment (and ``.env``) with the file's ``[integration]`` table."""
    secret_env = section.get("client_secret_env")
    secret = env.get("WEBEX_CLIENT_SECRET")
    if secret is None and secret_env is not None:
        secret = env.get(secret_env)
    scopes_text = env.get("WEBEX_SCOPES")
    if scopes_text is not None:
        scopes = tuple(scopes_text.split())
    else:
        scopes = section.get("scopes", DEFAULT_SCOPES)
    return IntegrationSettings(
        client_id=env.get("WEBEX_CLIENT_ID") or section.get("client_id"),
        client_secret=secret,
        redirect_uri=env.get("WEBEX_REDIRECT_URI")
        or section.get("redirect_uri")
        or DEFAULT_REDIRECT_URI,
        scopes=scopes,
        base_url=(env.get("WEBEX_BASE_URL") or section.get("base_url") or DEFAULT_BASE_URL).rstrip(
            "/"
        ),
        access_token=env.get("WEBEX_ACCESS_TOKEN"),
        token_file=env.get(TOKEN_FILE_ENV),
        account=section.get("account"),
        client_secret_env=secret_env,
    )


# -- stores ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSettings:
    """A store configured under ``[stores.NAME]``.

    Attributes:
        name: the store's name.
        url: its URL with the table's options (``key_env``, ``key_file``, ``table``,
            ``lock_timeout``) folded into the query, ready for ``open_store``.
        description: free text shown by ``webex-tokens stores``.
    """

    name: str
    url: str
    description: str | None = None

    def __repr__(self) -> str:
        return f"StoreSettings(name={self.name!r}, url={_shown(self.url)!r})"


def default_store_url() -> str:
    """The embedded default store: SQLite in the user data directory.

    Only the URL is computed; the directory and the database are created on first use.
    """
    directory = Path(platformdirs.user_data_dir(_APP, appauthor=False))
    return f"sqlite:///{directory / 'tokens.db'}"


def user_settings_path() -> Path:
    """Where the user-wide settings file is looked for (it need not exist)."""
    return Path(platformdirs.user_config_dir(_APP, appauthor=False)) / SETTINGS_FILE_NAME


@dataclass(frozen=True)
class Settings:
    """The resolved settings: configured stores by name, the default store, the integration.

    Build one with :func:`load_settings`.

    Attributes:
        stores: the configured stores by name, in file order.
        default_store: the file's ``default_store`` (a store name or URL), or None.
        integration: the integration's credentials (environment over ``.env`` over file).
        path: the settings file that was read, or None when there is none.
        store_override: ``WEBEX_TOKENS_STORE`` (a store name or URL), or None.
    """

    stores: dict[str, StoreSettings] = field(default_factory=dict)
    default_store: str | None = None
    integration: IntegrationSettings = field(default_factory=IntegrationSettings)
    path: Path | None = None
    store_override: str | None = None

    @property
    def default_target(self) -> str | None:
        """What the default store is: a store name or URL, or None for the embedded default.

        ``WEBEX_TOKENS_STORE``, else ``WEBEX_TOKEN_FILE`` (as a ``file:`` URL), else the
        file's ``default_store``.
        """
        return self._default()[0]

    def _default(self) -> tuple[str | None, str]:
        if self.store_override:
            return self.store_override, STORE_ENV
        if self.integration.token_file:
            return _file_url(self.integration.token_file), TOKEN_FILE_ENV
        if self.default_store:
            return self.default_store, f"default_store in {self.path}"
        return None, "the embedded default"

    def store_url(self, target: str | None = None) -> str:
        """The URL of the store ``target`` names.

        Args:
            target: a store URL, the name of a configured store, or None for the default
                store (see :attr:`default_target`; with nothing set, SQLite in the user
                data directory).

        Raises:
            ConfigError: ``target`` (or ``WEBEX_TOKENS_STORE``) is neither a URL nor a
                configured store; the message lists the configured names.
        """
        from .registry import is_store_url

        source = None
        if target is None:
            target, source = self._default()
            if target is None:
                return default_store_url()
        if is_store_url(target):
            return target
        store = self.stores.get(target)
        if store is not None:
            return store.url
        raise self._unknown_store(target, source)

    def origin(self, target: str | None = None) -> str | None:
        """Where the URL of ``target`` was configured (``[stores.NAME] in PATH``), if anywhere."""
        from .registry import is_store_url

        if target is None:
            target = self._default()[0]
        if target is None or is_store_url(target) or target not in self.stores:
            return None
        return f"[stores.{target}] in {self.path}"

    def _unknown_store(self, target: str, source: str | None) -> ConfigError:
        where = f"in {self.path}" if self.path else "(there is no settings file)"
        known = ", ".join(self.stores) or "none"
        said = f"{source} names the store {target!r}" if source else f"the store {target!r}"
        if "/" in target or "\\" in target or target.endswith((".json", ".db")):
            fix = f"to use a file, write a URL such as file:{target} or sqlite:///{target}"
        elif source == STORE_ENV:
            fix = f"set {STORE_ENV} to a configured name or a store URL"
        else:
            fix = f"add [stores.{target}] to the settings file or pass a store URL"
        return ConfigError(f"{said}, which is not configured {where} (configured: {known}); {fix}")


def _shown(url: str) -> str:
    """``url`` without its password (a URL with no host, like sqlite:///x.db, has none)."""
    try:
        has_host = bool(urlsplit(url).netloc)
    except ValueError:
        return "<unparsable URL>"
    return redact_url(url) if has_host else url


def _file_url(path: str) -> str:
    return "file:" + quote(path, safe="/~:\\")


# -- loading ---------------------------------------------------------------------------


def find_settings_file(config: str | os.PathLike[str] | None = None) -> Path | None:
    """The settings file to read: ``config``, ``WEBEX_TOKENS_CONFIG``, ``./webex-tokens.toml``,
    then the user config directory; None when none of them exists.

    Raises:
        ConfigError: ``config`` or ``WEBEX_TOKENS_CONFIG`` names a file that does not exist.
    """
    return _find_settings_file(config, _Environment())


def _find_settings_file(config: str | os.PathLike[str] | None, env: _Environment) -> Path | None:
    if config is not None:
        path = Path(os.path.expanduser(config))
        if not path.exists():
            raise ConfigError(
                f"the settings file {path.absolute()} does not exist; check the path given "
                "as config (--config), or create it"
            )
        return path.absolute()
    named = env.get(CONFIG_ENV)
    if named is not None:
        path = Path(os.path.expanduser(named))
        if not path.exists():
            raise ConfigError(
                f"{CONFIG_ENV} names the settings file {path.absolute()}, which does not "
                f"exist; fix the path or unset {CONFIG_ENV}"
            )
        return path.absolute()
    for path in (Path.cwd() / SETTINGS_FILE_NAME, user_settings_path()):
        if path.exists():
            return path
    return None


def load_settings(config: str | os.PathLike[str] | None = None) -> Settings:
    """Load the settings: the settings file, the environment and ``.env``.

    Args:
        config: the settings file to read; when None it is looked for as
            :func:`find_settings_file` says (having none at all is fine).

    Raises:
        ConfigError: the settings file is missing (when named), unreadable, not valid
            TOML, or holds an unknown key, a bad value or a secret; the message names the
            file and the key or line.
    """
    env = _Environment()
    path = _find_settings_file(config, env)
    document = _read_toml(path) if path is not None else {}
    return _parse(document, path, env)


def _read_toml(path: Path) -> dict[str, Any]:
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
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the settings file {path} is not valid TOML: {exc}") from None
    return document


def _parse(document: dict[str, Any], path: Path | None, env: _Environment) -> Settings:
    problems = _Problems(path)
    problems.check_keys(document, _TOP_KEYS, "at the top level")

    stores_table = document.get("stores", {})
    if not isinstance(stores_table, dict):
        raise problems.error("stores must be a table of [stores.NAME] sections")
    stores = {name: _parse_store(name, table, problems) for name, table in stores_table.items()}

    default_store = document.get("default_store")
    if default_store is not None:
        from .registry import is_store_url

        problems.check_text(default_store, "default_store")
        if not is_store_url(default_store) and default_store not in stores:
            known = ", ".join(stores) or "none"
            raise problems.error(
                f"default_store names the store {default_store!r}, which has no "
                f"[stores.{default_store}] section (configured: {known}); add it or fix "
                "the name"
            )

    section = document.get("integration", {})
    if not isinstance(section, dict):
        raise problems.error("integration must be a table: write it as an [integration] section")
    return Settings(
        stores=stores,
        default_store=default_store,
        integration=_integration(env, _check_integration(section, problems), path),
        path=path,
        store_override=env.get(STORE_ENV),
    )


def _parse_store(name: str, table: Any, problems: _Problems) -> StoreSettings:
    from .registry import is_store_url, scheme_of

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
    problems.check_keys(table, _STORE_KEYS, f"in {where}")
    if "url" not in table:
        raise problems.error(f'{where} has no url; add e.g. url = "sqlite:///tokens.db"')
    url = table["url"]
    problems.check_text(url, f"url in {where}")
    if not is_store_url(url):
        raise problems.error(
            f"the url in {where} is not a store URL; write e.g. sqlite:///tokens.db, "
            "file:///path/tokens.json or keyring://"
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
                f"{key} in {where} applies only to encrypted stores; write the url as "
                f"fernet+{_shown(url)} or remove {key}"
            )
        if key == "key_env" and not _ENV_NAME.fullmatch(value):
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
    return StoreSettings(name, _fold_options(url, options, where, problems), description)


def _fold_options(
    url: str, options: Iterable[tuple[str, str]], where: str, problems: _Problems
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


def _check_integration(section: dict[str, Any], problems: _Problems) -> dict[str, Any]:
    """Validate the ``[integration]`` table; return it with ``scopes`` as a tuple."""
    if "client_secret" in section:
        raise problems.error(
            "[integration] holds client_secret inline, and secrets never go in the settings "
            "file; put it in an environment variable and name that variable with "
            'client_secret_env = "WEBEX_CLIENT_SECRET"'
        )
    for token_key in ("access_token", "refresh_token"):
        if token_key in section:
            raise problems.error(
                f"[integration] holds {token_key}, and tokens never go in the settings file; "
                "remove it and store tokens with webex-tokens login or import"
            )
    problems.check_keys(section, _INTEGRATION_KEYS, "in [integration]")
    for key in ("client_id", "client_secret_env", "redirect_uri", "base_url", "account"):
        if key in section:
            problems.check_text(section[key], f"{key} in [integration]")
    secret_env = section.get("client_secret_env")
    if secret_env is not None and not _ENV_NAME.fullmatch(secret_env):
        raise problems.error(
            "client_secret_env in [integration] must be the name of an environment variable "
            "(such as WEBEX_CLIENT_SECRET), never the secret itself"
        )
    for key in ("redirect_uri", "base_url"):
        value = section.get(key)
        if value is not None and not value.startswith(("http://", "https://")):
            raise problems.error(f"{key} in [integration] must be an http:// or https:// URL")
    checked = dict(section)
    if "scopes" in section:
        scopes = section["scopes"]
        if isinstance(scopes, str):
            checked["scopes"] = tuple(scopes.split())
        elif isinstance(scopes, list) and all(isinstance(scope, str) for scope in scopes):
            checked["scopes"] = tuple(part for scope in scopes for part in scope.split())
        else:
            raise problems.error(
                'scopes in [integration] must be a list of text, e.g. ["spark:all"], or '
                "space-separated text"
            )
        if not checked["scopes"]:
            raise problems.error('scopes in [integration] is empty; list e.g. ["spark:all"]')
    return checked


class _Problems:
    """Builds the errors of one settings file, each naming the file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {message}")

    def check_keys(self, table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
                raise self.error(f"unknown key {key!r} {where}; {hint}")

    def check_text(self, value: Any, what: str) -> None:
        if not isinstance(value, str) or not value.strip():
            shown = "empty" if isinstance(value, str) else f"a {type(value).__name__}"
            raise self.error(f"{what} must be non-empty text, not {shown}")
