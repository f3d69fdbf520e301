"""Service Apps: one token pair per customer organization, for multi-tenant services.

A Service App is a client of its own (client ID and secret) that an administrator of
each customer organization authorizes once in Control Hub. A *manager* (a person of the
Service App's own organization whose token has the ``spark:applications_token`` scope)
then obtains the organization's token pair::

    POST {base_url}/applications/{app_id}/token
    Authorization: Bearer <the manager's access token>
    {"clientId": "...", "clientSecret": "...", "targetOrgId": "..."}

The pair refreshes at ``{base_url}/access_token`` with the Service App's own credentials,
like an integration's. When Webex refuses that refresh (the refresh token expired or the
organization's authorization was renewed), only a new pair through the manager helps:
:class:`~webex_tokens.credentials.Credentials` obtains it inside the account's
``store.update``, so however many processes find the refused token, one pair is
obtained (DESIGN section 12).

Nothing here logs or puts in a message the client secret, the manager's token or a
token of the pair.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import requests

from .errors import ConfigError, TokenEndpointError
from .integrations import DEFAULT_BASE_URL
from .token import Token
from .token_answer import token_from_answer
from .token_endpoint import PORTAL, RequestKind, RetryPolicy, TokenEndpoint

if TYPE_CHECKING:
    from .integrations import IntegrationSettings

__all__ = [
    "MANAGER_SCOPE",
    "OBTAIN",
    "ServiceApp",
    "default_app_id",
    "organization_id",
    "organization_label",
]

log = logging.getLogger(__name__)

#: The scope a manager's token needs to obtain Service App tokens.
MANAGER_SCOPE: Final = "spark:applications_token"
#: The request that obtains a token pair. It presents no single-use credential, so a
#: request whose answer was lost may be sent again (the lost pair is simply never used).
OBTAIN: Final = RequestKind(
    "Service App token request", "applications endpoint", resend_when_unknown=True
)
_CONTROL_HUB: Final = "https://admin.webex.com"


def default_app_id(client_id: str) -> str:
    """A Service App's application ID as Webex derives it from its client ID: base64 of
    ``ciscospark://us/APPLICATION/{client_id}``, without padding, as Webex writes IDs."""
    raw = f"ciscospark://us/APPLICATION/{client_id}".encode()
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _decoded(text: str) -> str:
    """What a Webex ID says (``ciscospark://us/KIND/VALUE``), or ``""``."""
    value = text.strip() if isinstance(text, str) else ""
    if not value or len(value) > 512:
        return ""
    body = value.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return ""


def organization_label(org_id: str) -> str:
    """The organization's own ID inside its Webex ID (a UUID), for tables; ``org_id``
    itself when it is not a Webex ID."""
    said = _decoded(org_id)
    return said.rsplit("/", 1)[-1] if said.count("/") >= 4 and said[-1] != "/" else org_id


def organization_id(text: str) -> str:
    """``text`` checked as a Webex organization ID (base64 of
    ``ciscospark://.../ORGANIZATION/...``, padded or not), stripped of spaces.

    Raises:
        ConfigError: it is not an organization ID; the message says where to find one.
    """
    value = text.strip() if isinstance(text, str) else ""
    said = _decoded(value)
    kind, _, rest = said.removeprefix("ciscospark://").partition("/")[2].partition("/")
    if not said.startswith("ciscospark://") or kind != "ORGANIZATION" or not rest:
        raise ConfigError(
            "that is not a Webex organization ID (base64 of ciscospark://us/ORGANIZATION/...); "
            f"copy the organization's ID from Control Hub ({_CONTROL_HUB}) or from "
            "GET /v1/organizations"
        )
    return value


class ServiceApp:
    """A Webex Service App: obtains and refreshes the token pair of each organization.

    Args:
        client_id: the Service App's client ID.
        client_secret: its client secret.
        app_id: its application ID; default :func:`default_app_id` of ``client_id``.
        base_url: the Webex API base (``https://webexapis.com/v1``).
        timeout: seconds to wait for each HTTP answer.
        max_retries: how many times a failure worth retrying is retried.

    Raises:
        ConfigError: a credential is empty, or the URL is invalid.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        app_id: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
    ) -> None:
        from .oauth import WebexOAuth

        # The refresh is an integration's refresh with the Service App's credentials;
        # building it checks the credentials and the URL.
        self._oauth = WebexOAuth(
            client_id, client_secret, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        if app_id is not None and (not isinstance(app_id, str) or not app_id.strip()):
            raise ConfigError("the Service App's app_id is empty; remove it or set it")
        self.client_id = self._oauth.client_id
        self.app_id = app_id.strip() if app_id else default_app_id(self.client_id)
        self.base_url = self._oauth.base_url
        self._client_secret = client_secret.strip()
        self._policy = RetryPolicy(timeout=float(timeout), max_retries=int(max_retries))

    @classmethod
    def from_settings(cls, integration: IntegrationSettings) -> ServiceApp:
        """The Service App of ``[integrations.NAME]`` (with ``kind = "service_app"``).

        Raises:
            ConfigError: it is not a Service App, or its secret is not set.
        """
        if integration.kind != "service_app":
            raise ConfigError(
                f'{integration.label} is not a Service App; add kind = "service_app" to it'
            )
        if not integration.client_secret or not integration.client_id:
            raise ConfigError(
                f"the client secret of the Service App {integration.label} is not set; put it "
                f"in the environment variable {integration.client_secret_env} (see {PORTAL})"
            )
        return cls(
            integration.client_id,
            integration.client_secret,
            app_id=integration.app_id,
            base_url=integration.base_url,
        )

    def __repr__(self) -> str:
        return f"ServiceApp(client_id={self.client_id!r}, base_url={self.base_url!r})"

    @property
    def token_url(self) -> str:
        """``{base_url}/applications/{app_id}/token``."""
        return f"{self.base_url}/applications/{quote(self.app_id, safe='=')}/token"

    def obtain(
        self, org_id: str, manager_token: str | Token, *, account: str | None = None
    ) -> Token:
        """Obtain a new token pair for the organization ``org_id`` through a manager.

        Args:
            org_id: the customer organization's Webex ID; its administrator must have
                authorized the Service App.
            manager_token: an access token (or :class:`~webex_tokens.token.Token`) of
                the manager, with the ``spark:applications_token`` scope.
            account: the label to give the token (default: none).

        Returns:
            The token, with ``kind="service_app"``, ``org_id`` and ``client_id`` set.

        Raises:
            ConfigError: ``org_id`` is not an organization ID, or ``manager_token`` is empty.
            TokenEndpointError: Webex refused the request (the message says why: the
                manager's token, its scope, the Service App's credentials, or an
                organization that has not authorized it) or kept failing.
        """
        org = organization_id(org_id)
        access = manager_token.access_token if isinstance(manager_token, Token) else manager_token
        if not isinstance(access, str) or not access.strip():
            raise ConfigError("the manager's access token is empty; pass the manager's token")
        endpoint = TokenEndpoint(
            self.base_url, self._policy, secrets=(self._client_secret, access.strip())
        )
        body = {"clientId": self.client_id, "clientSecret": self._client_secret, "targetOrgId": org}
        headers = {"Authorization": f"Bearer {access.strip()}", "Accept": "application/json"}
        log.debug("obtaining a Service App token for %s at %s", org, self.base_url)
        try:
            answer = endpoint.call(
                OBTAIN,
                lambda: requests.post(  # noqa: S113 - request_options() has the timeout
                    self.token_url, json=body, headers=headers, **endpoint.request_options()
                ),
                url=self.token_url,
            )
        except TokenEndpointError as exc:
            raise self._refused(exc, org) from None
        token = token_from_answer(
            answer, client_id=self.client_id, account=account, kind="service_app", org_id=org
        )
        log.info("obtained Service App token %s for %s", token.fingerprint, org)
        return token

    def refresh(self, token: Token) -> Token:
        """Refresh a token of this Service App with its own credentials.

        Raises:
            ReauthorizationRequired: Webex refused the refresh token: only a new pair
                (:meth:`obtain`) helps.
            TokenEndpointError: the credentials were refused, or Webex kept failing.
        """
        return self._oauth.refresh(token)

    def _refused(self, exc: TokenEndpointError, org: str) -> TokenEndpointError:
        """``exc`` said in the Service App's terms: which party must fix what."""
        said = f" ({exc.description}, HTTP {exc.status})" if exc.description else ""
        status, text = exc.status, (exc.description or "").lower()
        if status == 401:
            message = (
                f"Webex refused the manager's access token{said}; refresh the manager's token "
                "or log the manager in again"
            )
        elif status == 403 and "scope" in text:
            message = (
                f"the manager's token lacks the {MANAGER_SCOPE} scope{said}; log the manager "
                f"(a person of the Service App's organization) in with {MANAGER_SCOPE} in "
                "the scopes"
            )
        elif status == 403:
            message = (
                f"the organization {org} has not authorized the Service App{said}; an "
                f"administrator of that organization must authorize it in Control Hub "
                f"({_CONTROL_HUB}, Apps > Service Apps)"
            )
        elif status == 404:
            message = (
                f"Webex knows no Service App with the application ID {self.app_id}{said}; "
                f"check the Service App's client_id (and app_id) against {PORTAL}"
            )
        elif exc.error == "invalid_client" or "client" in text:
            message = (
                f"Webex refused the Service App's client ID or secret{said}; check client_id "
                f"and the variable client_secret_env names against {PORTAL}"
            )
        else:
            return exc
        return TokenEndpointError(
            message,
            status=exc.status,
            error=exc.error,
            description=exc.description,
            delivered=exc.delivered,
        )
