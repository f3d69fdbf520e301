"""Webex login blueprint for Flask (extra: ``flask``).

::

    login = WebexLogin(store="sqlite:///tokens.db")
    app = Flask(__name__)
    app.register_blueprint(login.blueprint)

    @app.get("/me")
    def me():
        account = login.current_account()            # who logged in, or None

Routes: ``GET /oauth/webex/login``, ``GET /oauth/webex/callback``, ``GET
/oauth/webex/logout`` and (optional) ``GET /health``. The logic is
:class:`~webex_tokens.web.flow.LoginFlow`'s, shared with the Starlette routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import flask
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "webex_tokens.web.flask needs Flask, which is not installed; run: "
        "pip install 'webex-tokens[flask]'"
    ) from None

from ..oauth import WebexOAuth
from ..store import TokenStore
from ..token import Token
from .flow import DEFAULT_PREFIX, LoginFlow, WebResponse

__all__ = ["WebexLogin"]


class WebexLogin:
    """The Webex login blueprint of a Flask app; many users, one store.

    Args:
        store: where tokens are stored (a TokenStore, a store URL or a configured store
            name; default: the default store of the settings).
        oauth: the integration (default: from ``WEBEX_CLIENT_ID`` and friends); its
            redirect URI must be this app's ``{prefix}/callback``.
        account_name: the app's hook ``(token, request) -> name`` choosing the account
            name a new token is stored under (default: the email from ``/people/me``,
            ``token.account``).
        health: also serve ``GET /health``.
        name: the blueprint's name (for ``url_for("webex_tokens.login")``).
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
        account_name: Callable[[Token, flask.Request], str] | None = None,
        health: bool = True,
        prefix: str = DEFAULT_PREFIX,
        name: str = "webex_tokens",
        **options: Any,
    ) -> None:
        self.flow = LoginFlow(store, oauth, prefix=prefix, **options)
        self._account_name = account_name
        blueprint = flask.Blueprint(name, __name__)
        blueprint.add_url_rule(self.flow.login_path, "login", self._login, methods=["GET"])
        blueprint.add_url_rule(self.flow.callback_path, "callback", self._callback, methods=["GET"])
        blueprint.add_url_rule(self.flow.logout_path, "logout", self._logout, methods=["GET"])
        if health:
            blueprint.add_url_rule("/health", "health", self._health, methods=["GET"])
        self.blueprint = blueprint

    def current_account(self) -> str | None:
        """The account the browser of the current request signed in as, or None (see
        :meth:`~webex_tokens.web.flow.LoginFlow.current_account`; it reads the session
        store once)."""
        return self.flow.current_account(flask.request.cookies)

    def current_identity(self) -> dict[str, Any] | None:
        """The verified identity of who signed in with the current request's browser
        ("Login with Webex": the ID token's claims and ``account``), or None (see
        :meth:`~webex_tokens.web.flow.LoginFlow.current_identity`)."""
        return self.flow.current_identity(flask.request.cookies)

    def _login(self) -> flask.Response:
        return _response(self.flow.login(flask.request.cookies))

    def _callback(self) -> flask.Response:
        hook = self._account_name
        request = flask.request
        name_for = (lambda token: hook(token, request)) if hook is not None else None
        query = request.query_string.decode("latin-1")
        return _response(self.flow.callback(query, request.cookies, name_for))

    def _logout(self) -> flask.Response:
        return _response(self.flow.logout(flask.request.cookies))

    def _health(self) -> flask.Response:
        return _response(self.flow.health())


def _response(answer: WebResponse) -> flask.Response:
    response = flask.Response(answer.body, status=answer.status, headers=list(answer.headers))
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
