"""The Webex integrations the settings name: ``[integration]``, ``[integrations.NAME]``
and the Webex cloud they talk to.

One settings file may hold several integrations (DESIGN section 12). ``[integration]``
(and ``WEBEX_CLIENT_ID`` and friends) is the default one: it refreshes every token that
no other integration claims. Each ``[integrations.NAME]`` is another one, an integration
or a Service App, and a token's ``client_id`` picks the integration that refreshes it
(:meth:`Integrations.for_client`)::

    [integrations.hr-bot]
    client_id = "C1f..."
    client_secret_env = "HR_BOT_CLIENT_SECRET"

    [integrations.reports]
    kind = "service_app"
    client_id = "C9a..."
    client_secret_env = "REPORTS_CLIENT_SECRET"
    manager = "admin@example.com"

**Clouds.** ``WEBEX_CLOUD`` (or ``cloud`` in a table) chooses the Webex cloud:
``commercial`` (``https://webexapis.com/v1``, the default) or ``usgov``, Webex for
Government (FedRAMP, ``https://api-usgov.webex.com/v1``). ``WEBEX_BASE_URL`` (or
``base_url``) still wins, for emulators and proxies.

The tables' format is checked by :mod:`webex_tokens.settings_file`; this module only
combines the checked tables with the environment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .environment import Environment
from .errors import ConfigError

__all__ = [
    "CLOUDS",
    "CLOUD_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPES",
    "INTEGRATION_KINDS",
    "IntegrationSettings",
    "Integrations",
    "cloud_base_url",
    "default_integration",
    "named_integration",
]

DEFAULT_REDIRECT_URI: Final = "http://localhost:8000/oauth/webex/callback"
DEFAULT_SCOPES: Final = ("spark:all",)
DEFAULT_BASE_URL: Final = "https://webexapis.com/v1"

#: The variable choosing the Webex cloud.
CLOUD_ENV: Final = "WEBEX_CLOUD"
#: The Webex clouds by name, and the API base URL of each.
CLOUDS: Final = {
    "commercial": DEFAULT_BASE_URL,
    "usgov": "https://api-usgov.webex.com/v1",
}
#: What an ``[integrations.NAME]`` can be: an integration or a Service App.
INTEGRATION_KINDS: Final = ("integration", "service_app")


def cloud_base_url(cloud: str, what: str) -> str:
    """The API base URL of the Webex cloud ``cloud`` (``usgov``, ``commercial``).

    Args:
        cloud: the cloud's name, as written (case does not matter).
        what: where it was written, for the error (``WEBEX_CLOUD``).

    Raises:
        ConfigError: ``cloud`` names no Webex cloud.
    """
    url = CLOUDS.get(cloud.strip().lower())
    if url is None:
        shown = cloud if len(cloud) <= 40 and cloud.isprintable() else "that value"
        raise ConfigError(
            f"{what} is {shown!r}, which is not a Webex cloud; use one of "
            f"{', '.join(CLOUDS)} (or set WEBEX_BASE_URL to the API's URL)"
        )
    return url


@dataclass(frozen=True)
class IntegrationSettings:
    """A Webex integration's credentials and endpoints (``WEBEX_CLIENT_ID`` and friends).

    ``repr()`` never shows the client secret or the access token.

    Attributes:
        client_id: ``WEBEX_CLIENT_ID`` or ``client_id``.
        client_secret: ``WEBEX_CLIENT_SECRET`` (the default integration only), else the
            variable that ``client_secret_env`` names.
        redirect_uri, scopes, base_url: as their ``WEBEX_*`` variables, with defaults;
            ``base_url`` follows ``WEBEX_CLOUD`` / ``cloud`` unless it is set itself.
        access_token: the legacy ``WEBEX_ACCESS_TOKEN`` (a direct token, no refresh).
        token_file: the legacy ``WEBEX_TOKEN_FILE``.
        account: ``[integration] account``, the account name used when none is given.
        client_secret_env: the variable the settings file names for the secret, if any
            (so a missing secret can be reported by the name the user chose).
        name: the ``NAME`` of ``[integrations.NAME]``; None for the default integration.
        kind: ``"integration"`` or ``"service_app"``.
        manager: a Service App's manager: the stored account whose token obtains new
            token pairs (``manager``), or None.
        app_id: a Service App's application ID, when it is not the one derived from its
            client ID.
        cloud: the Webex cloud chosen (``usgov``), or None for the default.
    """

    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    base_url: str = DEFAULT_BASE_URL
    access_token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    account: str | None = None
    client_secret_env: str | None = None
    name: str | None = None
    kind: str = "integration"
    manager: str | None = None
    app_id: str | None = None
    cloud: str | None = None

    @classmethod
    def from_environment(cls) -> IntegrationSettings:
        """Read ``WEBEX_*`` variables from the environment (a ``.env`` file fills gaps).

        Raises:
            ConfigError: ``.env`` exists but cannot be read, or ``WEBEX_CLOUD`` names no
                Webex cloud.
        """
        return default_integration(Environment(), {})

    @property
    def label(self) -> str:
        """How to name it to a person: ``[integrations.NAME]`` or ``[integration]``."""
        return f"[integrations.{self.name}]" if self.name is not None else "[integration]"


def _base_url(env: Environment, section: Mapping[str, Any], inherited: str, where: str) -> str:
    """WEBEX_BASE_URL, else ``base_url``, else the cloud chosen, else ``inherited``."""
    url = env.get("WEBEX_BASE_URL") or section.get("base_url")
    if url is None and section.get("cloud") is not None:
        url = cloud_base_url(section["cloud"], f"cloud in {where}")
    return str(url or inherited).rstrip("/")


def default_integration(env: Environment, section: Mapping[str, Any]) -> IntegrationSettings:
    """The default integration: the environment (and ``.env``) over the file's checked
    ``[integration]`` table.

    Raises:
        ConfigError: ``WEBEX_CLOUD`` names no Webex cloud.
    """
    secret_env = section.get("client_secret_env")
    secret = env.get("WEBEX_CLIENT_SECRET")
    if secret is None and secret_env is not None:
        secret = env.get(secret_env)
    scopes_text = env.get("WEBEX_SCOPES")
    if scopes_text is not None:
        scopes = tuple(scopes_text.split())
    else:
        scopes = section.get("scopes", DEFAULT_SCOPES)
    cloud = env.get(CLOUD_ENV)
    if cloud is not None:
        inherited = cloud_base_url(cloud, CLOUD_ENV)
        section = {key: value for key, value in section.items() if key != "cloud"}
    else:
        cloud = section.get("cloud")
        inherited = DEFAULT_BASE_URL
    return IntegrationSettings(
        client_id=env.get("WEBEX_CLIENT_ID") or section.get("client_id"),
        client_secret=secret,
        redirect_uri=env.get("WEBEX_REDIRECT_URI")
        or section.get("redirect_uri")
        or DEFAULT_REDIRECT_URI,
        scopes=scopes,
        base_url=_base_url(env, section, inherited, "[integration]"),
        access_token=env.get("WEBEX_ACCESS_TOKEN"),
        token_file=env.get("WEBEX_TOKEN_FILE"),
        account=section.get("account"),
        client_secret_env=secret_env,
        cloud=cloud.strip().lower() if cloud else None,
    )


def named_integration(
    env: Environment, name: str, table: Mapping[str, Any], default: IntegrationSettings
) -> IntegrationSettings:
    """``[integrations.NAME]`` (checked) with its secret read from the environment; what
    it does not set (redirect URI, scopes, API base URL) is the default integration's."""
    where = f"[integrations.{name}]"
    cloud = table.get("cloud")
    return IntegrationSettings(
        client_id=table["client_id"],
        client_secret=env.get(table["client_secret_env"]),
        redirect_uri=table.get("redirect_uri") or default.redirect_uri,
        scopes=table.get("scopes", default.scopes),
        base_url=_base_url(env, table, default.base_url, where),
        client_secret_env=table["client_secret_env"],
        name=name,
        kind=table.get("kind", "integration"),
        manager=table.get("manager"),
        app_id=table.get("app_id"),
        cloud=cloud.strip().lower() if cloud else default.cloud,
    )


@dataclass(frozen=True)
class Integrations:
    """Every integration of the settings: the default one and the named ones.

    Attributes:
        default: ``[integration]`` and the ``WEBEX_*`` variables.
        named: ``[integrations.NAME]`` by name, in file order.
    """

    default: IntegrationSettings = field(default_factory=IntegrationSettings)
    named: Mapping[str, IntegrationSettings] = field(default_factory=dict)

    def __iter__(self) -> Iterator[IntegrationSettings]:
        yield self.default
        yield from self.named.values()

    def for_client(self, client_id: str | None) -> IntegrationSettings:
        """The integration that refreshes a token of ``client_id``: the named one with
        that client ID, else the default integration (a token that names no client,
        such as a legacy record, belongs to the default one)."""
        if client_id is not None and client_id != self.default.client_id:
            for integration in self.named.values():
                if integration.client_id == client_id:
                    return integration
        return self.default

    def get(self, name: str) -> IntegrationSettings:
        """The integration ``[integrations.NAME]``.

        Raises:
            ConfigError: there is no such integration; the message lists the known ones.
        """
        found = self.named.get(name)
        if found is None:
            known = ", ".join(self.named) or "none"
            raise ConfigError(
                f"there is no [integrations.{name}] in the settings (configured: {known}); "
                "add it to webex-tokens.toml or fix the name"
            )
        return found
