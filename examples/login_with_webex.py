"""A Flask app with "Login with Webex": OpenID Connect tells the app who signed in.

With ``openid``, ``email`` and ``profile`` in ``WEBEX_SCOPES``, each login
returns an ID token that webex-tokens verifies (signature against Webex's keys, issuer,
audience, nonce, expiry) before anything is stored. The app then knows the person's
verified identity, ``login.current_identity()``: ``sub`` (their Webex ID), ``email``,
``name``, ... It reads only the standard settings:

    WEBEX_CLIENT_ID, WEBEX_CLIENT_SECRET      the integration (developer.webex.com)
    WEBEX_SCOPES                              spark:all openid email profile
    WEBEX_REDIRECT_URI                        default http://localhost:8000/oauth/webex/callback
    WEBEX_TOKENS_STORE                        where tokens live, e.g. sqlite:///tokens.db
    WEBEX_TOKENS_SECRET_KEY                   seals the login cookies (set it in production)

Run it:

    pip install 'webex-tokens[flask]'
    python examples/login_with_webex.py

then open http://localhost:8000/ and sign in.
"""

from __future__ import annotations

import html
import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from webex_tokens.web.flask import WebexLogin

login = WebexLogin(success_url="/")  # the default store and the WEBEX_* integration
if "openid" not in login.flow.oauth.scopes:
    raise SystemExit(
        "Login with Webex needs the openid scope: set WEBEX_SCOPES='spark:all openid email "
        "profile' (and give the integration those scopes at developer.webex.com)"
    )

app = Flask(__name__)
app.register_blueprint(login.blueprint)  # /oauth/webex/login, /callback, /logout, /health


@app.get("/")
def home() -> str:
    """Greet the person signed in in this browser, by their verified name."""
    person = login.current_identity()
    if person is None:
        return f'<a href="{login.flow.login_path}">Login with Webex</a>'
    name = html.escape(str(person.get("name") or person.get("email")))
    return f'<p>Hello {name}</p><a href="{login.flow.logout_path}">Sign out</a>'


@app.get("/whoami")
def whoami() -> tuple[dict[str, Any], int]:
    """The verified identity as JSON (401 when nobody is signed in)."""
    person = login.current_identity()
    if person is None:
        return {"error": "not signed in"}, 401
    return person, 200


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    redirect = urlsplit(login.flow.oauth.redirect_uri)
    # Listen where Webex sends the browser back: the redirect URI's host and port.
    host = "127.0.0.1" if redirect.hostname in (None, "localhost") else redirect.hostname
    app.run(host=host, port=redirect.port or 8000)
