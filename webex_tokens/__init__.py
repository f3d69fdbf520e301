"""webex-tokens: get, keep and refresh Webex OAuth2 tokens in the store of your choice."""

from __future__ import annotations

from .errors import (
    AuthorizationDenied,
    BackendUnavailable,
    CallbackError,
    ConfigError,
    DecryptionError,
    InvalidName,
    InvalidStoreURL,
    InvalidToken,
    LockTimeout,
    OAuthError,
    ReauthorizationRequired,
    RedirectURIMismatch,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
    TokenEndpointError,
    WebexTokensError,
)
from .registry import open_store
from .store import BaseStore, TokenStore
from .token import Token

__version__ = "0.1.0.dev0"

__all__ = [
    "AuthorizationDenied",
    "BackendUnavailable",
    "BaseStore",
    "CallbackError",
    "ConfigError",
    "DecryptionError",
    "InvalidName",
    "InvalidStoreURL",
    "InvalidToken",
    "LockTimeout",
    "OAuthError",
    "ReauthorizationRequired",
    "RedirectURIMismatch",
    "StoreCorrupted",
    "StoreError",
    "StoreUnavailable",
    "Token",
    "TokenEndpointError",
    "TokenStore",
    "WebexTokensError",
    "__version__",
    "open_store",
]
