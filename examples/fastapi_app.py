"""A FastAPI app where each user logs in with Webex; their token is kept in a token store.

Shaped like the legacy guide's app: it serves ``http://localhost:8000`` with the callback
at ``/oauth/webex/callback``, and reads only the standard settings:

    WEBEX_CLIENT_ID, WEBEX_CLIENT_SECRET      the integration (developer.webex.com)
    WEBEX_REDIRECT_URI                        default http://localhost:8000/oauth/webex/callback
    WEBEX_TOKENS_STORE                        where tokens live, e.g. sqlite:///tokens.db
    WEBEX_TOKENS_SECRET_KEY                   seals the login cookies (set it in production,
                                              the same for every worker and host)

Run it:

    pip install 'webex-tokens[fastapi]' uvicorn
    python examples/fastapi_app.py          # or: uvicorn fastapi_app:app --app-dir examples

then open http://localhost:8000/oauth/webex/login, and afterwards http://localhost:8000/me.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, HTTPException, Request

from webex_tokens.aio import AsyncWebexClient
from webex_tokens.web.starlette import WebexLogin

# One client for the whole app: it serves every user's account from the configured store
# and refreshes each token single-flight (also across worker processes and hosts).
webex = AsyncWebexClient()
login = WebexLogin(webex.store, webex.oauth, success_url="/me")

app = FastAPI(title="Webex login example")
app.include_router(login.api_router())  # /oauth/webex/login, /callback, /logout, /health


@app.get("/me")
async def me(request: Request) -> dict[str, Any]:
    """Call Webex as the user logged in in this browser."""
    account = await login.current_account_async(request)  # None after /logout, everywhere
    if account is None:
        raise HTTPException(401, detail=f"not signed in: open {login.flow.login_path}")
    async with httpx.AsyncClient(auth=webex.auth(account), timeout=10) as http:
        response = await http.get(webex.base_url + "/people/me")
    response.raise_for_status()
    person = response.json()
    return {"account": account, "displayName": person.get("displayName")}


if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    redirect = urlsplit(webex.oauth.redirect_uri)
    # Listen where Webex sends the browser back: the redirect URI's host and port.
    host = "127.0.0.1" if redirect.hostname in (None, "localhost") else redirect.hostname
    uvicorn.run(app, host=host, port=redirect.port or 8000)
