"""From a store URL to a backend: the scheme registry, entry-point plugins and ``open_store``.

Built-in schemes map to a dotted path and the command that installs what they need, so a
backend's module is imported only when its scheme is used. Third-party backends register
under the entry-point group ``webex_tokens.backends`` (``scheme = "package.module:Class"``);
they are looked up only for schemes the built-ins do not know, and cannot replace one.
Every backend class has a ``from_url(url)`` class method. One that can open a store
without creating anything takes ``create=False`` too (the file, SQLite and ``fernet+``
backends): the read-only commands open stores that way, so a mistyped path raises
:class:`~webex_tokens.errors.StoreNotFound` instead of becoming an empty store.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, cast

from .errors import BackendUnavailable, InvalidStoreURL
from .store import TokenStore
from .urls import is_store_url, scheme_of, shown_url

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendSpec",
    "backend_class",
    "install_hint",
    "is_store_url",
    "known_schemes",
    "open_store",
    "open_url",
    "read_record_quickly",
    "registry",
    "scheme_of",
]

ENTRY_POINT_GROUP: Final = "webex_tokens.backends"


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend class lives and what to install when it cannot be imported.

    ``quick_read``, if any, is a function ``(url, name) -> record text or None`` that
    reads one record without opening the store (see :func:`read_record_quickly`).
    """

    target: str
    install: str | None = None
    quick_read: str | None = None


_SQL = "webex_tokens.backends.sql:SQLStore"
_REDIS = "webex_tokens.backends.redis:RedisStore"
_VAULT = "webex_tokens.backends.vault:VaultStore"
_BUILTIN: Final[dict[str, BackendSpec]] = {
    "memory": BackendSpec("webex_tokens.backends.memory:MemoryStore"),
    "file": BackendSpec("webex_tokens.backends.file:FileStore"),
    "fernet": BackendSpec("webex_tokens.backends.fernet:FernetStore", "pip install cryptography"),
    "keyring": BackendSpec("webex_tokens.backends.keyring:KeyringStore", "pip install keyring"),
    "sqlite": BackendSpec(
        _SQL, "pip install sqlalchemy", "webex_tokens.backends.sql._sqlite:quick_read"
    ),
    "postgresql": BackendSpec(_SQL, "pip install 'webex-tokens[postgres]'"),
    "mysql": BackendSpec(_SQL, "pip install 'webex-tokens[mysql]'"),
    "mariadb": BackendSpec(_SQL, "pip install 'webex-tokens[mysql]'"),
    "redis": BackendSpec(_REDIS, "pip install 'webex-tokens[redis]'"),
    "rediss": BackendSpec(_REDIS, "pip install 'webex-tokens[redis]'"),
    "vault": BackendSpec(_VAULT, "pip install 'webex-tokens[vault]'"),
}

#: The built-in schemes, read-only. Plugins come from entry points.
registry: Final[Mapping[str, BackendSpec]] = MappingProxyType(_BUILTIN)

_MISTAKES: Final = {
    "postgres": "write postgresql+psycopg://USER@HOST/DB (SQLAlchemy does not accept postgres://)",
    "sqlite3": "write sqlite:///path/to/tokens.db",
    "http": "a store URL names where tokens are kept, not a web address",
    "https": "a store URL names where tokens are kept, not a web address",
}


def _plugins() -> dict[str, Any]:
    # Imported here: importlib.metadata costs more than the rest of the registry, and
    # only a scheme the built-ins do not know needs it.
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> list[str]:
    """Every scheme that can be opened here: built-ins and installed plugins, sorted."""
    return sorted(set(_BUILTIN) | set(_plugins()))


def install_hint(url_or_scheme: str) -> str | None:
    """The command that installs what the backend of this URL or scheme needs, if known."""
    scheme = scheme_of(url_or_scheme) if ":" in url_or_scheme else url_or_scheme
    spec = _BUILTIN.get(scheme)
    return spec.install if spec else None


def backend_class(url: str) -> type[Any]:
    """Import and return the backend class that serves ``url``.

    Raises:
        InvalidStoreURL: no backend knows the scheme; the message lists the known ones.
        BackendUnavailable: the backend's module cannot be imported (says what to install).
    """
    scheme = scheme_of(url)
    spec = _BUILTIN.get(scheme)
    if spec is not None:
        return _import(spec.target, spec.install, scheme)
    plugin = _plugins().get(scheme)
    if plugin is not None:
        try:
            return cast(type[Any], plugin.load())
        except (ImportError, AttributeError) as exc:
            raise BackendUnavailable(
                f"the {scheme}:// backend from {plugin.value} cannot be imported ({exc}); "
                "reinstall the package that provides it"
            ) from None
    hint = _MISTAKES.get(scheme)
    raise InvalidStoreURL(
        f"unknown store scheme {scheme!r} in {shown_url(url)}"
        + (f": {hint}" if hint else "")
        + f"; known schemes: {', '.join(known_schemes())}"
    )


def _import(target: str, install: str | None, scheme: str) -> type[Any]:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise BackendUnavailable(
            f"the {scheme} backend needs {missing!r}, which is not installed; run: "
            f"{install or 'pip install webex-tokens'}"
        ) from None
    return cast(type[Any], getattr(module, attribute))


def read_record_quickly(url: str, name: str) -> str | None:
    """The record of ``name`` in the store at ``url``, read without opening the store,
    where its backend can do that for a plain store at little cost (a SQLite file:
    with ``sqlite3`` alone, without importing SQLAlchemy).

    None whenever it cannot, for any reason (another backend, an option in the URL, no
    such record, any failure): open the store then, which gives the full answer. Nothing
    is checked or created, so only a caller that falls back to opening the store on None
    may use this.
    """
    spec = _BUILTIN.get(scheme_of(url)) if is_store_url(url) else None
    if spec is None or spec.quick_read is None:
        return None
    module_name, _, attribute = spec.quick_read.partition(":")
    read: Callable[[str, str], str | None] = getattr(
        importlib.import_module(module_name), attribute
    )
    return read(url, name)


def open_url(url: str, *, create: bool = True) -> TokenStore:
    """Open the store at ``url`` (see the URL table in the docs).

    Args:
        url: the store URL.
        create: False to create nothing: a store whose file or table does not exist
            raises :class:`~webex_tokens.errors.StoreNotFound`. Backends whose
            ``from_url`` has no ``create`` argument create nothing on opening anyway.

    Raises:
        InvalidStoreURL, BackendUnavailable, StoreUnavailable: see :func:`backend_class`
            and the backend.
        StoreNotFound: ``create`` is False and there is no store at ``url`` yet.
    """
    cls = backend_class(url)
    if not create and _takes_create(cls):
        return cast(TokenStore, cls.from_url(url, create=False))
    return cast(TokenStore, cls.from_url(url))


def _takes_create(cls: type[Any]) -> bool:
    try:
        parameters = inspect.signature(cls.from_url).parameters
    except (TypeError, ValueError):
        return False
    return "create" in parameters


def open_store(
    target: str | None = None, *, settings: Settings | None = None, create: bool = True
) -> TokenStore:
    """Open a store from a URL, the name of a configured store, or the default store.

    ``target`` None means ``WEBEX_TOKENS_STORE`` if set, else the legacy
    ``WEBEX_TOKEN_FILE``, else the settings' ``default_store``, else the embedded default
    (SQLite in the user data directory).

    Args:
        target: a store URL, a configured store's name, or None.
        settings: the settings to resolve names with; by default :func:`load_settings`.
        create: False to create nothing (see :func:`open_url`).

    Raises:
        ConfigError: ``target`` is neither a URL nor a configured store, or the settings
            are invalid.
        InvalidStoreURL, BackendUnavailable, StoreUnavailable: the store cannot be opened.
        StoreNotFound: ``create`` is False and the store does not exist yet.
    """
    if target is not None and is_store_url(target):
        return open_url(target, create=create)
    if settings is None:
        from .settings import load_settings

        settings = load_settings()
    url = settings.store_url(target)
    try:
        return open_url(url, create=create)
    except InvalidStoreURL as exc:
        origin = settings.origin(target)
        if origin is None:
            raise
        raise InvalidStoreURL(f"{exc} (the url of {origin})") from None
