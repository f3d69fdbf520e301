"""webex-tokens: get, keep and refresh Webex OAuth2 tokens in the store of your choice.

The names below are the public API. Modules that pull in heavier dependencies (the
OAuth client, SQLAlchemy, the keyring) are imported on first use of one of their names,
so ``import webex_tokens`` and the ``webex-tokens token`` command start quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AuthorizationDenied,
    BackendUnavailable,
    CallbackError,
    ConfigError,
    DecryptionError,
    DeviceCodeExpired,
    IDTokenInvalid,
    InvalidBundle,
    InvalidName,
    InvalidStoreURL,
    InvalidToken,
    LockLost,
    LockTimeout,
    OAuthError,
    ReauthorizationRequired,
    RedirectURIMismatch,
    StoreCorrupted,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    TokenEndpointError,
    WebexTokensError,
)
from .registry import open_store
from .store import BaseStore, TokenStore
from .token import Token

if TYPE_CHECKING:
    from .aio import AsyncWebexClient
    from .auth import WebexAuth, WebexRequestsAuth
    from .backends.fernet import FernetStore, generate_key, rotate_keys
    from .backends.file import FileStore
    from .backends.keyring import KeyringStore
    from .backends.memory import MemoryStore
    from .backends.redis import RedisStore
    from .backends.sql import SQLStore
    from .backends.vault import VaultStore
    from .bundle import Bundle, read_bundle, write_bundle
    from .callback import CallbackResult, CallbackServer, parse_callback_url
    from .client import WebexClient
    from .device import DeviceAuthorization
    from .keeper import DirectTokenWarning, Keeper, login_name
    from .migration import MigrationReport, migrate
    from .oauth import AuthorizationRequest, WebexOAuth
    from .refresh import ensure_fresh
    from .service_apps import ServiceApp
    from .settings import Settings, load_settings

__version__ = "0.2.0.dev0"

_LAZY = {
    "AsyncWebexClient": ".aio",
    "WebexAuth": ".auth",
    "WebexRequestsAuth": ".auth",
    "AuthorizationRequest": ".oauth",
    "Bundle": ".bundle",
    "CallbackResult": ".callback",
    "CallbackServer": ".callback",
    "DeviceAuthorization": ".device",
    "DirectTokenWarning": ".keeper",
    "FernetStore": ".backends.fernet",
    "FileStore": ".backends.file",
    "Keeper": ".keeper",
    "KeyringStore": ".backends.keyring",
    "MemoryStore": ".backends.memory",
    "MigrationReport": ".migration",
    "RedisStore": ".backends.redis",
    "SQLStore": ".backends.sql",
    "ServiceApp": ".service_apps",
    "Settings": ".settings",
    "VaultStore": ".backends.vault",
    "WebexClient": ".client",
    "WebexOAuth": ".oauth",
    "ensure_fresh": ".refresh",
    "generate_key": ".backends.fernet",
    "load_settings": ".settings",
    "login_name": ".keeper",
    "migrate": ".migration",
    "parse_callback_url": ".callback",
    "read_bundle": ".bundle",
    "rotate_keys": ".backends.fernet",
    "write_bundle": ".bundle",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'webex_tokens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AsyncWebexClient",
    "AuthorizationDenied",
    "AuthorizationRequest",
    "BackendUnavailable",
    "BaseStore",
    "Bundle",
    "CallbackError",
    "CallbackResult",
    "CallbackServer",
    "ConfigError",
    "DecryptionError",
    "DeviceAuthorization",
    "DeviceCodeExpired",
    "DirectTokenWarning",
    "FernetStore",
    "FileStore",
    "IDTokenInvalid",
    "InvalidBundle",
    "InvalidName",
    "InvalidStoreURL",
    "InvalidToken",
    "Keeper",
    "KeyringStore",
    "LockLost",
    "LockTimeout",
    "MemoryStore",
    "MigrationReport",
    "OAuthError",
    "ReauthorizationRequired",
    "RedirectURIMismatch",
    "RedisStore",
    "SQLStore",
    "ServiceApp",
    "Settings",
    "StoreCorrupted",
    "StoreError",
    "StoreNotFound",
    "StoreUnavailable",
    "Token",
    "TokenEndpointError",
    "TokenStore",
    "VaultStore",
    "WebexAuth",
    "WebexClient",
    "WebexOAuth",
    "WebexRequestsAuth",
    "WebexTokensError",
    "__version__",
    "ensure_fresh",
    "generate_key",
    "load_settings",
    "login_name",
    "migrate",
    "open_store",
    "parse_callback_url",
    "read_bundle",
    "rotate_keys",
    "write_bundle",
]
