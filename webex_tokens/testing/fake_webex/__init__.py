"""FakeWebex: an emulator of Webex's OAuth2, device grant, Service Apps, OpenID Connect and
people endpoints, served over real HTTP.

It listens on 127.0.0.1 (an ephemeral port by default) and answers like
``https://webexapis.com/v1`` does for:

- ``GET  /v1/authorize``     the consent step; the simulated user approves at once
  (or denies after :meth:`FakeWebex.deny_next_authorization`; or, with ``consent_page``,
  a sign-in page asks) and the answer is a 302 to the registered redirect URI with
  ``code`` and ``state``;
- ``POST /v1/access_token``  ``authorization_code`` (PKCE S256 checked; an ``id_token``
  with ``openid``) and ``refresh_token`` grants, with optional refresh-token rotation and
  reuse detection, for the integration and every Service App;
- ``POST /v1/device/authorize``, ``POST /v1/device/token``, ``GET|POST /verify``  the
  device grant (``fake.device``);
- ``POST /v1/applications/{appId}/token``  Service App tokens (``fake.service_apps``);
- ``GET  /v1/.well-known/openid-configuration``, ``/v1/verification`` (the JWKS),
  ``/v1/userinfo``  OpenID Connect (``fake.oidc``);
- ``GET  /v1/people/me``     the signed-in person, bot or Service App.

Use it as a context manager or through the ``fake_webex`` pytest fixture::

    with FakeWebex() as fake:
        oauth = WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url)

:func:`run_emulator` runs one in the foreground for developing an app against it.
See ``docs/emulator.md`` for every knob and for what it does not emulate.

The package is one module per concern: :mod:`.answers` (HTTP shapes), :mod:`.state`
(settings and the token book), :mod:`.server` (HTTP and the request record),
:mod:`.oauth`, :mod:`.device`, :mod:`.service_apps`, :mod:`.oidc`, :mod:`.people`,
:mod:`.emulator` (FakeWebex) and :mod:`.run` (the foreground emulator).
"""

from __future__ import annotations

from .device import DEVICE_GRANT_TYPE, PENDING_STYLES, DeviceFlow, DeviceGrant, DevicePoll
from .emulator import DEFAULT_REDIRECT_URI, FAILING_ENDPOINTS, PERSONAL_TOKEN_SCOPES, FakeWebex
from .oidc import ID_TOKEN_FAULTS, OpenIDConnect
from .run import DEFAULT_EMULATOR_PORT, EmulatorReady, run_emulator
from .server import RequestRecord
from .service_apps import MANAGER_SCOPE, ServiceAppInfo, ServiceApps, default_app_id

__all__ = [
    "DEFAULT_EMULATOR_PORT",
    "DEFAULT_REDIRECT_URI",
    "DEVICE_GRANT_TYPE",
    "FAILING_ENDPOINTS",
    "ID_TOKEN_FAULTS",
    "MANAGER_SCOPE",
    "PENDING_STYLES",
    "PERSONAL_TOKEN_SCOPES",
    "DeviceFlow",
    "DeviceGrant",
    "DevicePoll",
    "EmulatorReady",
    "FakeWebex",
    "OpenIDConnect",
    "RequestRecord",
    "ServiceAppInfo",
    "ServiceApps",
    "default_app_id",
    "run_emulator",
]
