"""Keep the authorization code and state of the callback out of web servers' request logs.

The callback's query holds the one-time code and the state, and web servers log request
lines. :func:`redact_request_logs` installs a filter on the request loggers of the
servers the routes are tested with (uvicorn's ``uvicorn.access`` and werkzeug's), which
writes ``{callback path}?[redacted]`` instead of the query. Other access logs (a reverse
proxy, gunicorn's or hypercorn's) must be configured not to log that query.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

__all__ = ["redact_request_logs"]


class _RedactQueries(logging.Filter):
    """Replace the query of the callback paths in web servers' request logs: it holds
    the authorization code and the state."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, path: str) -> None:
        self.paths.add(path)
        alternatives = "|".join(re.escape(p) for p in sorted(self.paths, key=len, reverse=True))
        self._pattern = re.compile(rf"({alternatives})\?[^\s\"']*")

    def _redact(self, value: Any) -> Any:
        if isinstance(value, str) and self._pattern is not None:
            return self._pattern.sub(r"\1?[redacted]", value)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(arg) for arg in record.args)
        return True


_REDACT = _RedactQueries()
#: The request loggers of the servers the routes are tested with (others: see the docs).
_REQUEST_LOGGERS: Final = ("uvicorn.access", "werkzeug")


def redact_request_logs(path: str) -> None:
    """Write ``path?[redacted]`` for requests of ``path`` in the servers' request logs."""
    _REDACT.add(path)
    for name in _REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)
