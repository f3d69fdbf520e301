"""What the global options chose (``--config``, ``--store``, ``--debug``), shared by commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import click

from ..store import TokenStore
from . import engine

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["EMBEDDED_DEFAULT_LABEL", "State", "debugging", "state"]

#: How output names the embedded default store (SQLite in the user data directory).
EMBEDDED_DEFAULT_LABEL: Final = "default"


@dataclass
class State:
    """What the group's options chose, shared by every command (``ctx.obj``)."""

    config: str | None = None
    store: str | None = None
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """The settings, loaded on first use (a command that needs none reads no file)."""
        if self._settings is None:
            self._settings = engine.load_settings(self.config)
        return self._settings

    def use_config(self, config: str) -> None:
        """Read the settings from ``config`` (``--config``) from now on."""
        self.config = config
        self._settings = None

    def target(self, target: str | None = None) -> str | None:
        """The store a command works on: its own option, else ``--store``, else default."""
        return target if target is not None else self.store

    def open_existing(self, target: str | None = None) -> TokenStore:
        """Open the store a command works on (:meth:`target`) without creating it."""
        return engine.open_existing(self.target(target), self.settings())

    def open_for_writing(self, target: str | None = None) -> TokenStore:
        """Open the store a command works on (:meth:`target`), creating it if needed."""
        return engine.open_for_writing(self.target(target), self.settings())

    def label(self, store: TokenStore, target: str | None = None) -> str:
        """How to name ``store`` in output: its configured name, else its URL.

        The embedded default store (nothing chose another) is ``default``: its URL is a
        long path in the user data directory, and it would be repeated on every row.
        """
        chosen = self.target(target)
        if chosen is None:
            chosen = engine.active_store(self.settings(), None)
            if chosen is None:
                return EMBEDDED_DEFAULT_LABEL
        if chosen and not engine.is_url(chosen):
            return chosen
        return engine.redact_url(store.url)


def state(ctx: click.Context) -> State:
    """The :class:`State` of the running command."""
    return ctx.ensure_object(State)


def debugging(ctx: click.Context) -> bool:
    """True when ``--debug`` was given."""
    found = ctx.find_object(State)
    return bool(found and found.debug)
