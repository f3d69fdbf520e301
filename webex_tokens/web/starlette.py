"""Webex login routes for Starlette and FastAPI (extra: ``fastapi``).

::

    login = WebexLogin(store="sqlite:///tokens.db")
    app = FastAPI()
    app.include_router(login.api_router())          # FastAPI
    app = Starlette(routes=login.routes)             # or plain Starlette

    @app.get("/me")
    async def me(request: Request):
        account = await login.current_account_async(request)  # who signed in, or None

Routes: ``GET /oauth/webex/login``, ``GET /oauth/webex/callback``, ``GET
/oauth/webex/logout`` and (optional) ``GET /health``. The logic is
:class:`~webex_tokens.web.flow.LoginFlow`'s; the blocking part of the callback (code
exchange, store) runs in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

try:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute, Route, Router
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "webex_tokens.web.starlette needs Starlette, which is not installed; run: "
        "pip install 'webex-tokens[fastapi]'"
    ) from None

from ..oauth import WebexOAuth
from ..store import TokenStore
from ..token import Token
from .flow import DEFAULT_PREFIX, LoginFlow, WebResponse

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["WebexLogin"]


class WebexLogin:
    """The Webex login routes of a Starlette or FastAPI app; many users, one store.

    Args:
        store: where tokens are stored (a TokenStore, a store URL or a configured store
            name; default: the default store of the settings).
        oauth: the integration (default: from ``WEBEX_CLIENT_ID`` and friends); its
            redirect URI must be this app's ``{prefix}/callback``.
        account_name: the app's hook ``(token, request) -> name`` choosing the account
            name a new token is stored under (default: the email from ``/people/me``,
            ``token.account``). It runs in a worker thread.
        health: also serve ``GET /health``.
        options: the other options of :class:`~webex_tokens.web.flow.LoginFlow`
            (``secret_key``, ``prefix``, ``success_url``, ``pending_ttl``,
            ``account_max_age``, ``cookie_secure``, ``session_store``,
            ``max_logins_per_browser``).

    Raises:
        ConfigError: see :class:`~webex_tokens.web.flow.LoginFlow`.
    """

    def __init__(
        self,
        store: TokenStore | str | None = None,
        oauth: WebexOAuth | None = None,
        *,
        account_name: Callable[[Token, Request], str] | None = None,
        health: bool = True,
        prefix: str = DEFAULT_PREFIX,
        **options: Any,
    ) -> None:
        self.flow = LoginFlow(store, oauth, prefix=prefix, **options)
        self._account_name = account_name
        routes: list[BaseRoute] = [
            Route(self.flow.login_path, self._login, methods=["GET"], name="webex_login"),
            Route(self.flow.callback_path, self._callback, methods=["GET"], name="webex_callback"),
            Route(self.flow.logout_path, self._logout, methods=["GET"], name="webex_logout"),
        ]
        if health:
            routes.append(Route("/health", self._health, methods=["GET"], name="webex_health"))
        self.routes = routes

    @property
    def router(self) -> Router:
        """A Starlette ``Router`` with the routes (``Mount("/", app=login.router)``)."""
        return Router(routes=self.routes)

    def api_router(self) -> APIRouter:
        """A FastAPI ``APIRouter`` with the routes: ``app.include_router(login.api_router())``.

        Raises:
            ImportError: FastAPI is not installed.
        """
        from fastapi import APIRouter

        return APIRouter(routes=self.routes)

    def current_account(self, request: Request) -> str | None:
        """The account this browser signed in as, or None (see
        :meth:`~webex_tokens.web.flow.LoginFlow.current_account`).

        Blocking: it reads the session store once. In ``async`` endpoints prefer
        :meth:`current_account_async`, which does that in a worker thread.
        """
        return self.flow.current_account(request.cookies)

    async def current_account_async(self, request: Request) -> str | None:
        """:meth:`current_account`, reading the session store in a worker thread."""
        return await asyncio.to_thread(self.flow.current_account, dict(request.cookies))

    def current_identity(self, request: Request) -> dict[str, Any] | None:
        """The verified identity of who signed in ("Login with Webex": the ID token's
        claims and ``account``), or None (see
        :meth:`~webex_tokens.web.flow.LoginFlow.current_identity`). Blocking like
        :meth:`current_account`; prefer :meth:`current_identity_async`."""
        return self.flow.current_identity(request.cookies)

    async def current_identity_async(self, request: Request) -> dict[str, Any] | None:
        """:meth:`current_identity`, reading the session store in a worker thread."""
        return await asyncio.to_thread(self.flow.current_identity, dict(request.cookies))

    async def _login(self, request: Request) -> Response:
        return _response(self.flow.login(request.cookies))

    async def _callback(self, request: Request) -> Response:
        hook = self._account_name
        name_for = (lambda token: hook(token, request)) if hook is not None else None
        answer = await asyncio.to_thread(
            self.flow.callback,
            request.url.query,
            dict(request.cookies),
            name_for,
        )
        return _response(answer)

    async def _logout(self, request: Request) -> Response:
        return _response(await asyncio.to_thread(self.flow.logout, dict(request.cookies)))

    async def _health(self, request: Request) -> Response:
        return _response(self.flow.health())


def _response(answer: WebResponse) -> Response:
    response = Response(answer.body, status_code=answer.status, headers=dict(answer.headers))
    for cookie in answer.cookies:
        if cookie.value is None:
            response.delete_cookie(
                cookie.name,
                path=cookie.path,
                secure=cookie.secure,
                httponly=cookie.httponly,
                samesite=cookie.samesite,
            )
        else:
            response.set_cookie(
                cookie.name,
                cookie.value,
                max_age=cookie.max_age,
                path=cookie.path,
                secure=cookie.secure,
                httponly=cookie.httponly,
                samesite=cookie.samesite,
            )
    return response
