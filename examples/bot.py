"""A standalone bot script: one Webex account, its token always valid, kept in a store.

Log the bot's account in once (on any machine with a browser, into the same store):

    webex-tokens login --name hr-bot

then run the bot wherever the store is reachable; it refreshes the token when due,
single-flight with every other process using the same store:

    WEBEX_TOKENS_STORE=sqlite:///tokens.db WEBEX_TOKENS_ACCOUNT=hr-bot python examples/bot.py

Settings: WEBEX_CLIENT_ID, WEBEX_CLIENT_SECRET (for refreshes), WEBEX_TOKENS_STORE,
WEBEX_TOKENS_ACCOUNT (needed only when the store holds several accounts).
"""

from __future__ import annotations

import sys

import requests

from webex_tokens import WebexTokensError
from webex_tokens.auth import WebexRequestsAuth
from webex_tokens.client import WebexClient


def main() -> int:
    """Say who the bot is, through the Webex API; exit 1 with the fix on any problem."""
    try:
        # auto_auth=False: a bot on a server has no browser; a missing or dead token is
        # reported with the command that logs it in again.
        with WebexClient(auto_auth=False) as client, requests.Session() as http:
            # Every request carries a valid token; a 401 refreshes it once and replays.
            http.auth = WebexRequestsAuth(client)
            response = http.get(client.base_url + "/people/me", timeout=10)
            response.raise_for_status()
            person = response.json()
            print(f"bot {client.name} is {person['displayName']} <{person['emails'][0]}>")
    except WebexTokensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
