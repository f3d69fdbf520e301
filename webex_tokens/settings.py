"""Named stores, environments and accounts: the one place that decides which store and
which account, from ``webex-tokens.toml``, the environment and ``.env``.

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
    account = "hr-bot"

Precedence, highest first: the environment, then ``.env`` in the current directory,
then the settings file, then the built-in defaults. Two decisions are made here and
nowhere else (every surface asks :class:`Settings`):

- **the store** (:meth:`Settings.choose_store`): the store named explicitly, else
  ``WEBEX_TOKENS_STORE``, else the legacy ``WEBEX_TOKEN_FILE`` (a ``file:`` store), else
  the file's ``default_store``, else SQLite in the user data directory;
- **the default account** (:meth:`Settings.default_account`): the name given, else
  ``WEBEX_TOKENS_ACCOUNT``, else ``[integration] account``, else the only account
  stored, else ``default`` if it is stored.

Loading reads files and the environment only: it opens no store and creates nothing.
The file's format is checked by :mod:`webex_tokens.settings_file`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import platformdirs

from .environment import Environment as _Environment
from .errors import ConfigError, InvalidName
from .integrations import (
    DEFAULT_BASE_URL,
    DEFAULT_REDIRECT_URI,
    DEFAULT_SCOPES,
    Integrations,
    IntegrationSettings,
    default_integration,
    named_integration,
)
from .settings_file import (
    INTEGRATION_KEYS,
    NAMED_INTEGRATION_KEYS,
    SETTINGS_FILE_NAME,
    STORE_KEYS,
    TOP_KEYS,
    Problems,
    check_integration_table,
    check_named_integration,
    check_store_table,
    read_toml,
)
from .store import validate_name
from .urls import is_store_url, redact_url

__all__ = [
    "ACCOUNT_ENV",
    "CONFIG_ENV",
    "DEFAULT_ACCOUNT",
    "DEFAULT_BASE_URL",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPES",
    "SETTINGS_FILE_NAME",
    "STORE_ENV",
    "TOKEN_FILE_ENV",
    "IntegrationSettings",
    "Integrations",
    "Settings",
    "StoreChoice",
    "StoreSettings",
    "StoreSource",
    "default_store_url",
    "find_settings_file",
    "load_settings",
    "user_settings_path",
]

#: The variable naming the settings file.
CONFIG_ENV: Final = "WEBEX_TOKENS_CONFIG"
#: The variable naming the default store (a store name or a URL).
STORE_ENV: Final = "WEBEX_TOKENS_STORE"
#: The legacy variable holding the path of a single ``.webex_token.json``.
TOKEN_FILE_ENV: Final = "WEBEX_TOKEN_FILE"  # noqa: S105 - a variable's name, not a secret
#: The variable naming the account used when none is given.
ACCOUNT_ENV: Final = "WEBEX_TOKENS_ACCOUNT"
#: The account a legacy token file's one token is read as; also the name of a first
#: login when nothing else names it (see :func:`webex_tokens.keeper.login_name`).
DEFAULT_ACCOUNT: Final = "default"

_APP: Final = "webex-tokens"
# The names the documentation tests read (the keys each table accepts).
_TOP_KEYS: Final = TOP_KEYS
_STORE_KEYS: Final = STORE_KEYS
_INTEGRATION_KEYS: Final = INTEGRATION_KEYS
_NAMED_INTEGRATION_KEYS: Final = NAMED_INTEGRATION_KEYS
_SHOWN_ACCOUNTS: Final = 5


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
        return f"StoreSettings(name={self.name!r}, url={redact_url(self.url)!r})"


def default_store_url() -> str:
    """The embedded default store: SQLite in the user data directory.

    Only the URL is computed; the directory and the database are created on first use.
    """
    directory = Path(platformdirs.user_data_dir(_APP, appauthor=False))
    return f"sqlite:///{directory / 'tokens.db'}"


def user_settings_path() -> Path:
    """Where the user-wide settings file is looked for (it need not exist)."""
    return Path(platformdirs.user_config_dir(_APP, appauthor=False)) / SETTINGS_FILE_NAME


class StoreSource(str, enum.Enum):
    """What chose the store a :class:`StoreChoice` names, highest precedence first."""

    ARGUMENT = "argument"  #: named explicitly (``open_store(target)``, ``--store``, ``store=``)
    STORE_ENV = "WEBEX_TOKENS_STORE"  #: the ``WEBEX_TOKENS_STORE`` variable
    TOKEN_FILE = "WEBEX_TOKEN_FILE"  # noqa: S105 - the legacy ``WEBEX_TOKEN_FILE`` variable
    DEFAULT_STORE = "default_store"  #: the settings file's ``default_store``
    EMBEDDED = "embedded default"  #: nothing: SQLite in the user data directory


@dataclass(frozen=True)
class StoreChoice:
    """Which store to open, and what chose it (see :meth:`Settings.choose_store`).

    Attributes:
        url: the URL to open.
        source: what chose it.
        target: the store name or URL as it was given (None for the embedded default).
        name: the configured store's name, when ``target`` names one; else None.
        origin: where the URL was configured (``[stores.NAME] in PATH``), else None.
    """

    url: str
    source: StoreSource
    target: str | None = None
    name: str | None = None
    origin: str | None = None

    @property
    def label(self) -> str:
        """How to name the store to a person: its configured name, else its URL (redacted)."""
        return self.name if self.name is not None else redact_url(self.url)

    @property
    def is_default(self) -> bool:
        """True when nothing named the store explicitly (it is the default store)."""
        return self.source is not StoreSource.ARGUMENT

    def __repr__(self) -> str:
        return (
            f"StoreChoice(url={redact_url(self.url)!r}, source={self.source.value!r}, "
            f"name={self.name!r})"
        )


@dataclass(frozen=True)
class Settings:
    """The resolved settings: configured stores by name, the default store, the integration.

    Build one with :func:`load_settings`. It decides which store (:meth:`choose_store`)
    and which account (:meth:`default_account`) are used when none is named.

    Attributes:
        stores: the configured stores by name, in file order.
        default_store: the file's ``default_store`` (a store name or URL), or None.
        integration: the default integration's credentials (environment over ``.env``
            over ``[integration]``).
        named_integrations: each ``[integrations.NAME]`` by name, in file order (see
            :mod:`webex_tokens.integrations`).
        path: the settings file that was read, or None when there is none.
        store_override: ``WEBEX_TOKENS_STORE`` (a store name or URL), or None.
        account_override: ``WEBEX_TOKENS_ACCOUNT``, or None.
    """

    stores: dict[str, StoreSettings] = field(default_factory=dict)
    default_store: str | None = None
    integration: IntegrationSettings = field(default_factory=IntegrationSettings)
    path: Path | None = None
    store_override: str | None = None
    account_override: str | None = None
    named_integrations: Mapping[str, IntegrationSettings] = field(default_factory=dict)

    @property
    def integrations(self) -> Integrations:
        """Every integration: the default one and each ``[integrations.NAME]``."""
        return Integrations(self.integration, self.named_integrations)

    def __repr__(self) -> str:
        # URLs shown redacted (a store URL may hold a password); no secret of the
        # integration is in its repr.
        def shown(target: str | None) -> str | None:
            return redact_url(target) if target is not None and is_store_url(target) else target

        return (
            f"Settings(stores={self.stores!r}, default_store={shown(self.default_store)!r}, "
            f"integration={self.integration!r}, path={self.path!r}, "
            f"store_override={shown(self.store_override)!r}, "
            f"account_override={self.account_override!r})"
        )

    # -- the store ---------------------------------------------------------------------

    def choose_store(self, target: str | None = None) -> StoreChoice:
        """Decide which store ``target`` means, and say what chose it.

        Precedence: ``target`` (a store URL or a configured store's name), else
        ``WEBEX_TOKENS_STORE``, else ``WEBEX_TOKEN_FILE`` (a ``file:`` store at that
        path), else the settings file's ``default_store``, else the embedded default
        (SQLite in the user data directory).

        Raises:
            ConfigError: the name given (or the one ``WEBEX_TOKENS_STORE`` or
                ``default_store`` gives) is neither a URL nor a configured store; the
                message lists the configured names.
        """
        if target is not None:
            source = StoreSource.ARGUMENT
        elif self.store_override:
            target, source = self.store_override, StoreSource.STORE_ENV
        elif self.integration.token_file:
            target, source = _file_url(self.integration.token_file), StoreSource.TOKEN_FILE
        elif self.default_store:
            target, source = self.default_store, StoreSource.DEFAULT_STORE
        else:
            return StoreChoice(default_store_url(), StoreSource.EMBEDDED)
        if is_store_url(target):
            return StoreChoice(target, source, target)
        store = self.stores.get(target)
        if store is None:
            raise self._unknown_store(target, source)
        return StoreChoice(store.url, source, target, target, f"[stores.{target}] in {self.path}")

    @property
    def default_target(self) -> str | None:
        """What the default store is: a store name or URL, or None for the embedded default.

        ``WEBEX_TOKENS_STORE``, else ``WEBEX_TOKEN_FILE`` (as a ``file:`` URL), else the
        file's ``default_store`` (see :meth:`choose_store`).
        """
        if self.store_override:
            return self.store_override
        if self.integration.token_file:
            return _file_url(self.integration.token_file)
        return self.default_store

    def store_url(self, target: str | None = None) -> str:
        """The URL of the store ``target`` names (``choose_store(target).url``).

        Args:
            target: a store URL, the name of a configured store, or None for the default
                store (see :meth:`choose_store`).

        Raises:
            ConfigError: as :meth:`choose_store`.
        """
        return self.choose_store(target).url

    def origin(self, target: str | None = None) -> str | None:
        """Where the URL of ``target`` was configured (``[stores.NAME] in PATH``), if anywhere."""
        try:
            return self.choose_store(target).origin
        except ConfigError:
            return None

    def _unknown_store(self, target: str, source: StoreSource) -> ConfigError:
        where = f"in {self.path}" if self.path else "(there is no settings file)"
        known = ", ".join(self.stores) or "none"
        said = (
            f"the store {target!r}"
            if source is StoreSource.ARGUMENT
            else f"{source.value} names the store {target!r}"
        )
        if "/" in target or "\\" in target or target.endswith((".json", ".db")):
            fix = f"to use a file, write a URL such as file:{target} or sqlite:///{target}"
        elif source is StoreSource.STORE_ENV:
            fix = f"set {STORE_ENV} to a configured name or a store URL"
        else:
            fix = f"add [stores.{target}] to the settings file or pass a store URL"
        return ConfigError(f"{said}, which is not configured {where} (configured: {known}); {fix}")

    # -- the account -------------------------------------------------------------------

    def default_account(
        self,
        stored: Callable[[], Sequence[str]],
        name: str | None = None,
        *,
        where: str = "the store",
    ) -> str | None:
        """Decide which account to use: the one clients, the CLI and the web flow share.

        Precedence: ``name`` (given explicitly), else ``WEBEX_TOKENS_ACCOUNT``, else
        ``[integration] account``, else the only account stored, else ``default`` if it
        is stored. ``stored`` is called only when the first three say nothing.

        Args:
            stored: returns the account names of the store (``store.names``).
            name: the account given explicitly, if any.
            where: how to name the store in an error (``the store file:///...``).

        Returns:
            The account, or None when nothing names one and the store is empty (the
            first login will name it).

        Raises:
            InvalidName: ``name`` is not a valid account name.
            ConfigError: ``WEBEX_TOKENS_ACCOUNT`` or ``[integration] account`` is not a
                valid account name, or the store holds several accounts and nothing
                chooses one; the message lists them and the ways to choose.
        """
        if name is not None:
            return validate_name(name)
        for value, what in (
            (self.account_override, ACCOUNT_ENV),
            (self.integration.account, f"account in [integration] of {self.path}"),
        ):
            if value is not None:
                try:
                    return validate_name(value)
                except InvalidName as exc:
                    raise ConfigError(f"{what} is not a valid account name: {exc}") from None
        names = list(stored())
        if len(names) == 1:
            return names[0]
        if not names:
            return None
        if DEFAULT_ACCOUNT in names:
            return DEFAULT_ACCOUNT
        shown = ", ".join(repr(n) for n in names[:_SHOWN_ACCOUNTS])
        more = ", ..." if len(names) > _SHOWN_ACCOUNTS else ""
        raise ConfigError(
            f"{where} holds {len(names)} accounts ({shown}{more}) and none is chosen; pass "
            f"the account (name=... in Python, --name on the command line), or set "
            f"{ACCOUNT_ENV} or account in [integration]"
        )


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
    document = read_toml(path) if path is not None else {}
    return _parse(document, path, env)


def _parse(document: dict[str, Any], path: Path | None, env: _Environment) -> Settings:
    problems = Problems(path)
    problems.check_keys(document, TOP_KEYS, "at the top level")

    stores_table = document.get("stores", {})
    if not isinstance(stores_table, dict):
        raise problems.error("stores must be a table of [stores.NAME] sections")
    stores = {}
    for name, table in stores_table.items():
        url, description = check_store_table(name, table, problems)
        stores[name] = StoreSettings(name, url, description)

    default_store = document.get("default_store")
    if default_store is not None:
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
    integration = default_integration(env, check_integration_table(section, problems))
    tables = document.get("integrations", {})
    if not isinstance(tables, dict):
        raise problems.error("integrations must be a table of [integrations.NAME] sections")
    named = {}
    owners = {integration.client_id: "[integration]"} if integration.client_id else {}
    for name, table in tables.items():
        checked = check_named_integration(name, table, problems)
        owner = owners.setdefault(checked["client_id"], f"[integrations.{name}]")
        if owner != f"[integrations.{name}]":
            raise problems.error(
                f"[integrations.{name}] has the client_id of {owner}; a token's client_id "
                "chooses the integration that refreshes it, so each must be different"
            )
        named[name] = named_integration(env, name, checked, integration)
    return Settings(
        stores=stores,
        default_store=default_store,
        integration=integration,
        path=path,
        store_override=env.get(STORE_ENV),
        account_override=env.get(ACCOUNT_ENV),
        named_integrations=named,
    )
