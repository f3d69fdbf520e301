"""Named stores and environments, from ``webex-tokens.toml``, the environment and ``.env``.

(Minimal form: the embedded default and ``WEBEX_TOKENS_STORE``; the settings file
comes with the configuration work.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from .errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPES",
    "IntegrationSettings",
    "Settings",
    "default_store_url",
    "load_settings",
]

DEFAULT_REDIRECT_URI = "http://localhost:8000/oauth/webex/callback"
DEFAULT_SCOPES = ("spark:all",)
DEFAULT_BASE_URL = "https://webexapis.com/v1"


@dataclass(frozen=True)
class IntegrationSettings:
    """The Webex integration's credentials and endpoints (``WEBEX_CLIENT_ID`` and friends).

    ``repr()`` never shows the client secret.
    """

    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    base_url: str = DEFAULT_BASE_URL
    access_token: str | None = field(default=None, repr=False)
    token_file: str | None = None

    @classmethod
    def from_environment(cls) -> IntegrationSettings:
        """Read ``WEBEX_*`` variables from the environment (a ``.env`` file fills gaps)."""
        from dotenv import dotenv_values

        values = {k: v for k, v in dotenv_values(".env").items() if v is not None}
        values.update(os.environ)

        def get(name: str) -> str | None:
            value = values.get(name, "").strip()
            return value or None

        return cls(
            client_id=get("WEBEX_CLIENT_ID"),
            client_secret=get("WEBEX_CLIENT_SECRET"),
            redirect_uri=get("WEBEX_REDIRECT_URI") or DEFAULT_REDIRECT_URI,
            scopes=tuple((get("WEBEX_SCOPES") or " ".join(DEFAULT_SCOPES)).split()),
            base_url=(get("WEBEX_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            access_token=get("WEBEX_ACCESS_TOKEN"),
            token_file=get("WEBEX_TOKEN_FILE"),
        )


def default_store_url() -> str:
    """The embedded default store: SQLite in the user data directory."""
    directory = Path(platformdirs.user_data_dir("webex-tokens", appauthor=False))
    return f"sqlite:///{directory / 'tokens.db'}"


@dataclass
class Settings:
    """The resolved settings: configured stores by name and the default store."""

    stores: dict[str, str] = field(default_factory=dict)
    default_store: str | None = None
    integration: IntegrationSettings = field(default_factory=IntegrationSettings)

    def store_url(self, target: str | None = None) -> str:
        """The URL of the store ``target`` names (a URL, a store name or None: the default)."""
        from .registry import is_store_url

        if target is None:
            target = os.environ.get("WEBEX_TOKENS_STORE") or self.default_store
            if not target:
                return default_store_url()
        if is_store_url(target):
            return target
        if target in self.stores:
            return self.stores[target]
        known = ", ".join(sorted(self.stores)) or "none"
        raise ConfigError(
            f"no store named {target!r} is configured (configured: {known}); "
            "add [stores." + target + "] to webex-tokens.toml or pass a store URL"
        )


def load_settings() -> Settings:
    """Load the settings from the environment."""
    return Settings(integration=IntegrationSettings.from_environment())
