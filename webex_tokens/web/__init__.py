"""Webex login for web apps: many users log in through the app, each token stored by name.

- :mod:`webex_tokens.web.starlette`: ``WebexLogin`` routes for Starlette and FastAPI
  (extra ``fastapi``);
- :mod:`webex_tokens.web.flask`: ``WebexLogin`` blueprint for Flask (extra ``flask``);
- :mod:`webex_tokens.web.flow`: the framework-neutral logic both use (:class:`LoginFlow`).

The framework modules are imported on demand, so this package needs neither framework.
"""

from __future__ import annotations

from .flow import (
    ACCOUNT_COOKIE,
    DEFAULT_PREFIX,
    LOGIN_COOKIE,
    SECRET_KEY_ENV,
    LoginFlow,
    PendingLogins,
    WebResponse,
)

__all__ = [
    "ACCOUNT_COOKIE",
    "DEFAULT_PREFIX",
    "LOGIN_COOKIE",
    "SECRET_KEY_ENV",
    "LoginFlow",
    "PendingLogins",
    "WebResponse",
]
