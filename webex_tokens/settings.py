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

__all__ = ["Settings", "default_store_url", "load_settings"]


def default_store_url() -> str:
    """The embedded default store: SQLite in the user data directory."""
    directory = Path(platformdirs.user_data_dir("webex-tokens", appauthor=False))
    return f"sqlite:///{directory / 'tokens.db'}"


@dataclass
class Settings:
    """The resolved settings: configured stores by name and the default store."""

    stores: dict[str, str] = field(default_factory=dict)
    default_store: str | None = None

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
    return Settings()
