"""``python -m webex_tokens``: the same as the ``webex-tokens`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
