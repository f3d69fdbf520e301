"""The HTTP sessions every request to Webex's OAuth endpoints goes through.

One Authlib ``OAuth2Session`` per thread and integration (Authlib keeps the last token on
the session, so threads sharing one would read each other's answers), with:

- the client's credentials sent in the form body (``client_secret_post``) and PKCE S256;
- Authlib's compliance hooks handing every token answer to
  :class:`~webex_tokens.token_endpoint.TokenEndpoint` before Authlib parses it
  (:func:`~webex_tokens.token_endpoint.hand_over`);
- the proxy and CA-bundle settings of the environment read once, not on every request.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session

from .token_endpoint import hand_over

__all__ = ["SessionPerThread", "read_environment_once"]


def read_environment_once(session: requests.Session, base_url: str) -> None:
    """Apply the proxy (``HTTPS_PROXY``, ``NO_PROXY``...) and CA bundle
    (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) settings of the environment to
    ``session`` once, as requests would, instead of on every request: requests reads
    them (and ``~/.netrc``) again for each one, about a tenth of a millisecond a time.
    Every request of the session goes to ``base_url``'s host, so the answer is the same.
    """
    proxies = requests.utils.get_environ_proxies(base_url)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    session.trust_env = False
    session.proxies.update(proxies)
    if bundle:
        session.verify = bundle


class SessionPerThread:
    """This thread's ``OAuth2Session`` of one integration, made on first use.

    Args:
        client_id: the integration's client ID.
        client_secret: its client secret.
        base_url: the Webex API base every request goes to.
    """

    def __init__(self, client_id: str, client_secret: str, base_url: str) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._base_url = base_url
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SessionPerThread({self._client_id!r}, {self._base_url!r})"

    def get(self) -> Any:
        """This thread's session (Authlib's class is untyped)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = OAuth2Session(
                self._client_id,
                self._client_secret,
                token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
                code_challenge_method="S256",
            )
            session.register_compliance_hook("access_token_response", hand_over)
            session.register_compliance_hook("refresh_token_response", hand_over)
            read_environment_once(session, self._base_url)
            self._local.session = session
        return session
