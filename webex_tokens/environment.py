"""The process environment over ``.env`` in the current directory: where every setting
that comes from a variable (``WEBEX_*``) is read, by :mod:`webex_tokens.settings` and
:mod:`webex_tokens.integrations`, and nowhere else."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

__all__ = ["Environment"]


class Environment:
    """The process environment over ``.env`` in the current directory (read once).

    Raises:
        ConfigError: ``.env`` exists but cannot be read or is not UTF-8.
    """

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
