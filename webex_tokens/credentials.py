"""Which credentials renew a token, for every kind of Webex credential (DESIGN section 12).

:class:`Credentials` is what the engine (:mod:`webex_tokens.keeper`) hands to
:func:`~webex_tokens.refresh.ensure_fresh`. It makes one decision: what renews *this*
token.

- an ``integration`` token: the integration whose client ID it carries
  (``[integrations.NAME]``), else the default integration (``[integration]``,
  ``WEBEX_CLIENT_ID``);
- a ``service_app`` token: its Service App's own credentials (the ``[integrations.NAME]``
  of kind ``service_app`` with its client ID); and when Webex refuses that refresh,
  :meth:`Credentials.reobtain` obtains a new pair through the Service App's
  ``manager`` account, whose own token is kept valid by the engine (refreshed
  single-flight, like any account). ``ensure_fresh`` calls it inside the account's
  ``store.update``, so many processes make one new pair;
- a ``bot`` or ``personal`` token: nothing; :func:`~webex_tokens.refresh.renewal` says
  what the person must do.

It also says what a direct token (``WEBEX_ACCESS_TOKEN``) is, where Webex can tell
(:func:`direct_token_warning`): a bot's token does not expire, a person's lasts 12 hours.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from .errors import ConfigError, ReauthorizationRequired
from .refresh import DEVELOPER_PORTAL, UNREFRESHABLE, renewal
from .token import Token

if TYPE_CHECKING:
    from .integrations import IntegrationSettings
    from .keeper import Keeper
    from .oauth import WebexOAuth
    from .service_apps import ServiceApp
    from .settings import Settings

__all__ = [
    "Credentials",
    "add_static_token",
    "default_service_app_name",
    "direct_token_warning",
    "obtain_service_app",
    "static_token",
]

log = logging.getLogger(__name__)

_DIRECT: Final = "Using direct access token (no refresh support): WEBEX_ACCESS_TOKEN is set, and "
_SWITCH: Final = (
    "; for long-term use, switch to OAuth2 with WEBEX_CLIENT_ID/SECRET (and unset "
    "WEBEX_ACCESS_TOKEN)"
)


class Credentials:
    """Renews each token with the credentials that own it (see the module's documentation).

    Args:
        settings: the settings holding the integrations.
        default: returns the default integration's OAuth client (called when a token
            of the default integration is renewed first).
        manager_token: returns a valid token of a stored account (the engine's
            ``Keeper.current``: refreshed single-flight when due).
    """

    def __init__(
        self,
        settings: Settings,
        default: Callable[[], WebexOAuth],
        manager_token: Callable[[str], Token],
    ) -> None:
        self._integrations = settings.integrations
        self._default = default
        self._manager_token = manager_token
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Credentials(integrations={len(self._integrations.named) + 1})"

    def integration_of(self, token: Token) -> IntegrationSettings:
        """The integration that owns ``token`` (by its client ID; else the default one).

        Raises:
            ConfigError: a Service App token whose client ID no ``[integrations.NAME]``
                of kind ``service_app`` has.
        """
        integration = self._integrations.for_client(token.client_id)
        if token.kind == "service_app" and integration.kind != "service_app":
            raise ConfigError(
                f"the Service App token of client ID {token.client_id!r} has no Service App in "
                'the settings; add an [integrations.NAME] with kind = "service_app" and that '
                "client_id"
            )
        return integration

    def refresh(self, token: Token) -> Token:
        """Refresh ``token`` with its owner's credentials.

        Raises:
            ReauthorizationRequired: the token cannot be refreshed (a bot's or personal
                token, no refresh token), or Webex refused its refresh token.
            TokenEndpointError: the refresh failed for another reason.
            ConfigError: the owner's credentials are missing.
        """
        if token.kind in ("bot", "personal"):
            what = "a bot's token" if token.kind == "bot" else "a personal access token"
            raise ReauthorizationRequired(
                f"{what} cannot be refreshed; {renewal(token.account or 'NAME', token)}",
                account=token.account,
            )
        integration = self.integration_of(token)
        if integration.kind == "service_app":
            return self._service_app(integration).refresh(token)
        if integration.name is None:
            return self._default().refresh(token)
        return self._oauth(integration).refresh(token)

    def reobtain(self, refused: Token) -> Token | None:
        """A new token to replace ``refused``, whose refresh token Webex refused, or None
        when nothing but a person can replace it.

        A Service App token whose Service App names a ``manager`` gets a new pair
        through the manager's token (kept valid by ``manager_token``); it keeps the
        account label of the refused one.

        Raises:
            ReauthorizationRequired: the manager's token cannot be refreshed.
            TokenEndpointError: Webex refused to make the new pair (the message says who
                must fix what).
            ConfigError: the Service App's credentials are missing.
        """
        if refused.kind != "service_app" or refused.org_id is None:
            return None
        integration = self.integration_of(refused)
        if integration.manager is None:
            return None
        manager = self._manager_token(integration.manager)
        log.info("obtaining a new Service App token for %s through its manager", refused.org_id)
        fresh = self._service_app(integration).obtain(refused.org_id, manager)
        return fresh.replace(account=refused.account, scopes=fresh.scopes or refused.scopes)

    def service_app(self, integration: IntegrationSettings) -> ServiceApp:
        """The :class:`~webex_tokens.service_apps.ServiceApp` of ``integration`` (made once).

        Raises:
            ConfigError: it is not a Service App, or its secret is not set.
        """
        return self._service_app(integration)

    def _service_app(self, integration: IntegrationSettings) -> ServiceApp:
        from .service_apps import ServiceApp

        found = self._made(integration, lambda: ServiceApp.from_settings(integration))
        assert isinstance(found, ServiceApp)
        return found

    def _oauth(self, integration: IntegrationSettings) -> WebexOAuth:
        from .oauth import WebexOAuth

        def make() -> WebexOAuth:
            if not integration.client_secret or not integration.client_id:
                raise ConfigError(
                    f"the client secret of {integration.label} is not set; put it in the "
                    f"environment variable {integration.client_secret_env}"
                )
            return WebexOAuth(
                integration.client_id,
                integration.client_secret,
                redirect_uri=integration.redirect_uri,
                scopes=integration.scopes,
                base_url=integration.base_url,
            )

        found = self._made(integration, make)
        assert isinstance(found, WebexOAuth)
        return found

    def _made(self, integration: IntegrationSettings, make: Callable[[], Any]) -> Any:
        key = integration.name or ""
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = make()
            return client


def direct_token_warning(integration: IntegrationSettings) -> str:
    """The warning for a direct token (``WEBEX_ACCESS_TOKEN``): what kind of token it
    is where Webex says (``/people/me`` answers ``"type": "bot"`` for a bot), and
    that it cannot be refreshed.

    Asks ``{base_url}/people/me`` once, briefly; when that fails, the warning says
    what each kind does.
    """
    kind = _person_type(integration.access_token or "", integration.base_url)
    if kind == "bot":
        message = (
            _DIRECT + "it is a bot's token, which does not expire but cannot be refreshed; "
            "store it with webex-tokens add NAME --kind bot to keep it with your other tokens"
        )
    elif kind == "person":
        message = (
            _DIRECT
            + "direct tokens expire after 12 hours (it is a personal access token)"
            + _SWITCH
        )
    else:
        message = (
            _DIRECT + "direct tokens expire after 12 hours (a personal access token; a bot's "
            "token does not expire)" + _SWITCH
        )
    if integration.client_id:
        message += " (WEBEX_CLIENT_ID is ignored meanwhile)"
    return message


def _person_type(access_token: str, base_url: str) -> str | None:
    """``type`` of ``/people/me`` for ``access_token`` (``person``, ``bot``), or None."""
    answer = _person(access_token, base_url)
    kind = answer[1].get("type") if answer is not None else None
    return kind if kind in ("bot", "person") else None


# -- tokens a person hands over, and Service App pairs ---------------------------------


def _person(access_token: str, base_url: str) -> tuple[int, Mapping[str, Any]] | None:
    """``(status, answer)`` of ``{base_url}/people/me`` for ``access_token``, or None
    when Webex could not be asked (network, timeout, a body that is not JSON)."""
    import requests

    try:
        response = requests.get(
            base_url.rstrip("/") + "/people/me",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=3,
            allow_redirects=False,
        )
        answer = response.json() if response.status_code == 200 else {}
    except (requests.RequestException, ValueError) as exc:
        log.debug("cannot ask Webex who a token belongs to: %s", type(exc).__name__)
        return None
    return response.status_code, answer if isinstance(answer, Mapping) else {}


def static_token(
    access_token: str, kind: str, base_url: str, *, account: str | None = None
) -> tuple[Token, bool]:
    """A bot's or personal access token as it will be stored, checked with Webex
    (``/people/me``) where Webex can be reached.

    Args:
        access_token: the token, as pasted (surrounding spaces are dropped).
        kind: ``"bot"`` or ``"personal"``.
        base_url: the Webex API base.
        account: the account label; default: the email Webex reports.

    Returns:
        The token (a personal one expires 12 hours from now), and whether Webex
        checked it (False: Webex could not be reached, nothing was checked).

    Raises:
        InvalidToken: ``kind`` is not one of the two, the text is no token, Webex
            refused it, or it is the other kind's token; nothing is stored.
    """
    from .errors import InvalidToken
    from .token_answer import token_answer_fields

    if kind not in UNREFRESHABLE:
        raise InvalidToken(f"the kind {kind!r} cannot be added by hand; use bot or personal")
    value = access_token.strip() if isinstance(access_token, str) else ""
    try:
        token_answer_fields({"access_token": value})
    except ValueError:
        raise InvalidToken(
            "what was read is not an access token (empty, or with spaces or other characters "
            "no token has); paste the token alone, on one line"
        ) from None
    answer = _person(value, base_url)
    if answer is not None and answer[0] in (401, 403):
        raise InvalidToken(
            f"Webex refused the token (HTTP {answer[0]}): it is expired, revoked or mistyped; "
            f"copy it again from {DEVELOPER_PORTAL} and retry"
        )
    person = answer[1] if answer is not None else {}
    said = person.get("type")
    if (said == "bot") != (kind == "bot") and said in ("bot", "person"):
        other = "bot" if said == "bot" else "personal"
        raise InvalidToken(
            f"Webex says this is {UNREFRESHABLE[other]}, not {UNREFRESHABLE[kind]}; add it "
            f"with --kind {other}"
        )
    emails = person.get("emails")
    email = emails[0] if isinstance(emails, list) and emails else None
    label = account or (email if isinstance(email, str) and email.isprintable() else None)
    return Token(access_token=value, kind=kind, account=label), answer is not None


def default_service_app_name(app: str, org_id: str) -> str:
    """The name a Service App token is stored under when none is given: ``APP:ORG``
    with the organization's own ID (the UUID inside its Webex ID)."""
    from .service_apps import organization_label

    return f"{app}:{organization_label(org_id)}"


def _refuse_other_kind(keeper: Keeper, name: str, kind: str) -> None:
    """Refuse to replace a stored token of another kind under ``name``."""
    existing = keeper.stored(name)
    if existing is not None and existing.kind != kind:
        raise ConfigError(
            f"{name!r} already holds {_KIND_WORDS[existing.kind]} token; delete it first "
            f"(webex-tokens delete {name}) or choose another name"
        )


_KIND_WORDS: Final = {
    "integration": "an integration's",
    "service_app": "a Service App",
    "bot": "a bot's",
    "personal": "a personal access",
}


def add_static_token(keeper: Keeper, name: str, access_token: str, kind: str) -> tuple[Token, bool]:
    """Check and store a bot's or personal access token under ``name``
    (``webex-tokens add NAME --kind bot|personal``); see :func:`static_token`.

    Returns:
        The token stored, and whether Webex checked it.

    Raises:
        InvalidName: ``name`` is not a valid account name.
        InvalidToken: the token is not one, Webex refused it, or it is the other kind's.
        ConfigError: ``name`` holds a token of another kind.
        StoreError: the store cannot be written.
    """
    from .store import validate_name

    validate_name(name)
    token, checked = static_token(access_token, kind, keeper.base_url)
    _refuse_other_kind(keeper, name, kind)
    keeper.store.put(name, token)
    keeper.remember(name, token)
    return token, checked


def obtain_service_app(
    keeper: Keeper, app: str, org_id: str, name: str | None = None
) -> tuple[str, Token]:
    """Obtain and store the token pair of the organization ``org_id`` for the Service App
    ``[integrations.APP]``, through its manager's stored token (``webex-tokens
    service-app add ORG_ID --app APP [--name N]``).

    Every input is checked before Webex is asked: the integration, its kind, its
    manager and secret, the organization ID and the name.

    Args:
        keeper: the engine over the store the token goes to (and the manager is in).
        app: the ``NAME`` of the Service App's ``[integrations.NAME]``.
        org_id: the customer organization's Webex ID.
        name: the account name; default :func:`default_service_app_name`.

    Returns:
        The name the token was stored under, and the token.

    Raises:
        ConfigError: no such Service App, no manager named, no secret, a bad
            organization ID, or ``name`` holds a token of another kind.
        InvalidName: ``name`` is not a valid account name.
        ReauthorizationRequired: the manager's token is not stored or cannot be
            refreshed.
        TokenEndpointError: Webex refused to make the pair (the message says why).
    """
    from .service_apps import organization_id
    from .store import validate_name

    integration = keeper.settings.integrations.get(app)
    if integration.kind != "service_app":
        raise ConfigError(
            f'{integration.label} is an integration, not a Service App; add kind = "service_app" '
            "to it, or use webex-tokens login for an integration"
        )
    if integration.manager is None:
        raise ConfigError(
            f"{integration.label} names no manager; add manager = ACCOUNT, the stored account "
            "of an administrator logged in with the spark:applications_token scope"
        )
    org = organization_id(org_id)
    label = validate_name(name) if name is not None else default_service_app_name(app, org)
    service_app = keeper.credentials.service_app(integration)
    _refuse_other_kind(keeper, label, "service_app")
    manager = keeper.current(integration.manager)
    token = service_app.obtain(org, manager)
    keeper.store.put(label, token)
    keeper.remember(label, token)
    return label, token
