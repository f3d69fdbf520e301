"""Service Apps: ``POST /v1/applications/{appId}/token`` mints a token pair per organization.

A Service App is a client of its own (client ID and secret) that an administrator of each
customer organization authorizes. A *manager* then obtains the organization's token pair:

    POST /v1/applications/{appId}/token
    Authorization: Bearer <the manager's access token, with spark:applications_token>
    Content-Type: application/json
    {"clientId": "...", "clientSecret": "...", "targetOrgId": "..."}

The answer is ``access_token``, ``expires_in``, ``refresh_token``,
``refresh_token_expires_in`` and ``token_type`` (no ``scope``). The pair refreshes through
``/v1/access_token`` with the Service App's own credentials, with the same rotation and
reuse detection as an integration's tokens.

Checked in this order, each with Webex's error shape: the manager token (``401``), its
kind and scope (``403``), the JSON body (``400``), the application (``404``), the
client credentials (``400``), the organization ID (``400``) and the organization's
authorization of the app (``403``).
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any

from .answers import (
    Answer,
    api_error,
    bearer_token,
    json_answer,
    normal_webex_id,
    same,
    webex_id,
)
from .oauth import failure_answer
from .people import presented, unauthorized
from .state import Core

__all__ = ["MANAGER_SCOPE", "ServiceAppInfo", "ServiceApps", "default_app_id"]

#: The scope a manager's token needs to mint Service App tokens.
MANAGER_SCOPE = "spark:applications_token"
_ORG_PREFIX = "ciscospark://us/ORGANIZATION/"


def default_app_id(client_id: str) -> str:
    """A Service App's ID as Webex derives it: base64 of ``ciscospark://us/APPLICATION/{client_id}``.

    Written without ``=`` padding, like every Webex ID; the endpoint accepts it padded too.
    """
    return webex_id("APPLICATION", client_id)


def _org(org_id: str) -> str | None:
    """The canonical (unpadded) form of an organization ID, or None if it is not one."""
    said = normal_webex_id(org_id)
    if said is None or not said.startswith(_ORG_PREFIX) or len(said) == len(_ORG_PREFIX):
        return None
    return webex_id("ORGANIZATION", said[len(_ORG_PREFIX) :])


@dataclasses.dataclass(frozen=True)
class ServiceAppInfo:
    """A registered Service App (a snapshot).

    Attributes:
        client_id, client_secret: its credentials (the secret is not shown by ``repr``).
        app_id: its application ID, as in ``/applications/{app_id}/token``.
        name: its display name.
        authorized_orgs: the organizations whose administrators authorized it.
    """

    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    app_id: str = ""
    name: str = ""
    authorized_orgs: tuple[str, ...] = ()


@dataclasses.dataclass
class _App:
    client_id: str
    client_secret: str
    app_id: str
    name: str
    orgs: set[str] = dataclasses.field(default_factory=set)

    def info(self) -> ServiceAppInfo:
        return ServiceAppInfo(
            self.client_id, self.client_secret, self.app_id, self.name, tuple(sorted(self.orgs))
        )


class ServiceApps:
    """The Service Apps of the emulator, reached as ``fake.service_apps``."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._apps: dict[str, _App] = {}  # by the decoded application ID

    # -- controls ---------------------------------------------------------------------------

    def register(
        self,
        client_id: str = "fake-service-app-id",
        client_secret: str = "fake-service-app-secret",
        *,
        name: str = "Fake Service App",
        app_id: str | None = None,
    ) -> ServiceAppInfo:
        """Register a Service App (as its developer does on developer.webex.com).

        Args:
            client_id: its client ID.
            client_secret: its client secret.
            name: its display name (the ``/people/me`` name of its tokens).
            app_id: its application ID; default :func:`default_app_id` of ``client_id``.

        Raises:
            ValueError: the client ID is taken, or ``app_id`` is not a Webex ID.
        """
        app_id = app_id or default_app_id(client_id)
        key = normal_webex_id(app_id)
        if key is None:
            raise ValueError(
                "app_id must be a Webex ID (base64 of ciscospark://us/APPLICATION/...)"
            )
        with self._core.lock:
            if self._core.client_secret_of(client_id) is not None or key in self._apps:
                raise ValueError(f"a client with ID {client_id!r} (or that app ID) exists already")
            self._apps[key] = _App(client_id, client_secret, app_id, name)
            self._core.add_client(client_id, client_secret)
            return self._apps[key].info()

    @property
    def apps(self) -> list[ServiceAppInfo]:
        """Every registered Service App."""
        with self._core.lock:
            return [app.info() for app in self._apps.values()]

    def token_url(self, client_id: str | None = None) -> str:
        """``{base_url}/applications/{app_id}/token`` of a Service App (default: the only one)."""
        with self._core.lock:
            app_id = self._app(client_id).app_id
        return f"{self._core.origin}/v1/applications/{app_id}/token"

    def authorize(self, org_id: str, client_id: str | None = None) -> None:
        """Authorize a Service App for an organization, as its administrator does in Control Hub.

        Args:
            org_id: the organization's Webex ID (``fake.org_id("customer.example")``).
            client_id: the Service App; default the only one registered.

        Raises:
            ValueError: ``org_id`` is not an organization ID.
            LookupError: no such Service App (or several, and none named).
        """
        org = self._valid_org(org_id)
        with self._core.lock:
            self._app(client_id).orgs.add(org)

    def deauthorize(self, org_id: str, client_id: str | None = None) -> None:
        """Withdraw an organization's authorization: no more mints, its tokens revoked.

        Raises:
            ValueError, LookupError: as :meth:`authorize`.
        """
        org = self._valid_org(org_id)
        with self._core.lock:
            app = self._app(client_id)
            app.orgs.discard(org)
            self._core.revoke_families(org_id=org, client_id=app.client_id)

    def revoke_tokens(self, org_id: str, client_id: str | None = None) -> int:
        """Revoke an organization's Service App refresh tokens: a refresh then answers
        ``invalid_grant`` and the client must mint again. Access tokens keep working.

        Returns:
            How many refresh tokens were revoked.

        Raises:
            ValueError, LookupError: as :meth:`authorize`.
        """
        org = self._valid_org(org_id)
        with self._core.lock:
            app = self._app(client_id)
            return self._core.revoke_refresh_records(org_id=org, client_id=app.client_id)

    @property
    def mints(self) -> collections.Counter[str]:
        """Successful mints, by organization ID."""
        return self._count(refreshes=False)

    @property
    def refreshes(self) -> collections.Counter[str]:
        """Successful refreshes of Service App tokens, by organization ID."""
        return self._count(refreshes=True)

    def _count(self, *, refreshes: bool) -> collections.Counter[str]:
        """Each mint (one family per mint), or each family's refreshes, by organization."""
        counter: collections.Counter[str] = collections.Counter()
        with self._core.lock:
            for family in self._core.families():
                if family.kind == "service_app" and family.org_id:
                    counter[family.org_id] += family.refreshes if refreshes else 1
        return +counter

    @staticmethod
    def _valid_org(org_id: str) -> str:
        org = _org(org_id)
        if org is None:
            raise ValueError(
                "org_id must be a Webex organization ID; get one with fake.org_id('domain')"
            )
        return org

    def _app(self, client_id: str | None) -> _App:
        """Caller holds the lock."""
        apps = [app for app in self._apps.values() if client_id in (None, app.client_id)]
        if len(apps) != 1:
            raise LookupError(
                "register a Service App first" if not apps else "name the Service App's client_id"
            )
        return apps[0]

    # -- POST /applications/{appId}/token -----------------------------------------------------

    def mint(
        self, app_id: str, authorization: str | None, content_type: str | None, body: bytes
    ) -> Answer:
        """``POST /v1/applications/{appId}/token``: a token pair for one organization."""
        token = bearer_token(authorization)
        core = self._core
        with core.lock:
            core.calls["service_app_token"] += 1
            failure = core.next_failure("service_app_token")
            if failure is not None:
                return failure_answer(failure)
            manager = core.valid_access(token)
            if manager is None:
                return unauthorized().noting(credential=presented(token))
            answer = self._mint(app_id, manager.kind, manager.scope, content_type, body)
            return answer.noting(credential=presented(token), user=manager.user)

    def _mint(
        self, app_id: str, kind: str, scope: str, content_type: str | None, body: bytes
    ) -> Answer:
        """Caller holds the lock; the manager's token is valid."""
        if kind not in ("integration", "personal") or MANAGER_SCOPE not in scope.split():
            return api_error(
                403,
                f"The access token does not have the {MANAGER_SCOPE} scope needed to "
                "obtain Service App tokens.",
                log_error="insufficient_scope",
            )
        request = _json_fields(content_type, body)
        if isinstance(request, str):
            return api_error(400, request, log_error="invalid_request")
        client_id, secret, target = request
        app = self._apps.get(normal_webex_id(app_id) or "")
        if app is None:
            return api_error(404, "The requested application was not found.", log_error="not_found")
        shown = client_id if self._core.is_client(client_id) else None
        if client_id != app.client_id or not same(secret, app.client_secret):
            return api_error(
                400,
                "The clientId or clientSecret is not the one of this application.",
                log_error="invalid_client",
            ).noting(client_id=shown)
        org = _org(target)
        if org is None:
            return api_error(
                400, "targetOrgId is not a valid organization ID.", log_error="invalid_request"
            ).noting(client_id=app.client_id)
        if org not in app.orgs:
            return api_error(
                403,
                "The application is not authorized by the target organization's administrator.",
                log_error="not_authorized",
            ).noting(client_id=app.client_id, org_id=org)
        family_id = self._core.new_family(
            app.client_id, app.name, "", kind="service_app", org_id=org
        )
        answer = json_answer(200, self._core.grant(family_id), **{"Cache-Control": "no-store"})
        return answer.noting(client_id=app.client_id, org_id=org)


def _json_fields(content_type: str | None, body: bytes) -> tuple[str, str, str] | str:
    """(clientId, clientSecret, targetOrgId) from the JSON body, or what is wrong with it."""
    if (content_type or "").partition(";")[0].strip().lower() != "application/json":
        return "Send the request body as application/json."
    try:
        document: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "The request body is not valid JSON."
    if not isinstance(document, dict):
        return "The request body must be a JSON object."
    client_id, secret, org = (document.get(n) for n in ("clientId", "clientSecret", "targetOrgId"))
    if not (isinstance(client_id, str) and isinstance(secret, str) and isinstance(org, str)):
        return "clientId, clientSecret and targetOrgId are required strings."
    if not (client_id and secret and org):
        return "clientId, clientSecret and targetOrgId must not be empty."
    return client_id, secret, org
