"""FakeWebex's Service Apps over real HTTP: minting with a manager token, the checks in
order, refresh with the app's own credentials, rotation, reuse and revocation."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests

from webex_tokens.testing.fake_webex import (
    MANAGER_SCOPE,
    FakeWebex,
    ServiceAppInfo,
    default_app_id,
)

CUSTOMER = "customer.example"


@pytest.fixture
def app(fake_webex: FakeWebex) -> ServiceAppInfo:
    info = fake_webex.service_apps.register("sa-client", "sa-secret", name="Reports")
    fake_webex.service_apps.authorize(fake_webex.org_id(CUSTOMER))
    return info


@pytest.fixture
def manager(fake_webex: FakeWebex) -> str:
    answer = fake_webex.issue_token("admin@developer.example", scope=f"spark:all {MANAGER_SCOPE}")
    token: str = answer["access_token"]
    return token


def mint(
    fake: FakeWebex,
    manager: str | None,
    *,
    app_id: str | None = None,
    body: Any = None,
    **fields: str,
) -> requests.Response:
    url = (
        fake.service_apps.token_url()
        if app_id is None
        else (f"{fake.base_url}/applications/{app_id}/token")
    )
    payload = {
        "clientId": "sa-client",
        "clientSecret": "sa-secret",
        "targetOrgId": fake.org_id(CUSTOMER),
        **fields,
    }
    headers = {"Authorization": f"Bearer {manager}"} if manager else {}
    if body is not None:
        return requests.post(url, data=body, headers=headers, timeout=10)
    return requests.post(url, json=payload, headers=headers, timeout=10)


def refresh(fake: FakeWebex, refresh_token: str, client: tuple[str, str]) -> requests.Response:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client[0],
        "client_secret": client[1],
    }
    return requests.post(fake.token_url, data=data, timeout=10)


def assert_api_error(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert words in body["message"]
    assert body["errors"][0]["description"] == body["message"]
    assert body["trackingId"]


def test_default_app_id_is_base64_of_the_application_uri() -> None:
    decoded = base64.b64decode(default_app_id("C123") + "==")
    assert decoded == b"ciscospark://us/APPLICATION/C123"


def test_register_shows_the_app_without_its_secret(
    fake_webex: FakeWebex, app: ServiceAppInfo
) -> None:
    assert app.app_id == default_app_id("sa-client")
    assert "sa-secret" not in repr(app)
    assert fake_webex.service_apps.apps[0].authorized_orgs == (fake_webex.org_id(CUSTOMER),)
    with pytest.raises(ValueError, match="exists"):
        fake_webex.service_apps.register("sa-client", "other")
    with pytest.raises(ValueError, match="exists"):
        fake_webex.service_apps.register(fake_webex.client_id, "other")
    with pytest.raises(ValueError, match="Webex ID"):
        fake_webex.service_apps.register("x", "y", app_id="not base64!")


def test_mint_answers_a_token_pair(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    response = mint(fake_webex, manager)
    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) == {
        "access_token",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "token_type",
    }
    me = requests.get(
        fake_webex.people_me_url,
        headers={"Authorization": "Bearer " + pair["access_token"]},
        timeout=10,
    ).json()
    assert (me["type"], me["orgId"], me["displayName"]) == (
        "appuser",
        fake_webex.org_id(CUSTOMER),
        "Reports",
    )
    assert fake_webex.service_apps.mints == {fake_webex.org_id(CUSTOMER): 1}


@pytest.mark.parametrize(
    "spelling",
    [
        lambda app_id: app_id,
        lambda app_id: app_id + "=" * (-len(app_id) % 4),  # padded
        lambda app_id: base64.urlsafe_b64encode(
            base64.b64decode(app_id + "==")
        ).decode(),  # URL-safe alphabet, padded
    ],
    ids=["unpadded", "padded", "urlsafe"],
)
def test_the_app_id_is_accepted_padded_or_not(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str, spelling: Any
) -> None:
    assert mint(fake_webex, manager, app_id=spelling(app.app_id)).status_code == 200


def test_the_org_id_is_accepted_padded(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    org = fake_webex.org_id(CUSTOMER)
    assert mint(fake_webex, manager, targetOrgId=org + "=" * (-len(org) % 4)).status_code == 200


def test_refresh_with_the_apps_own_credentials(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    pair = mint(fake_webex, manager).json()
    own = (app.client_id, app.client_secret)
    refreshed = refresh(fake_webex, pair["refresh_token"], own)
    assert refreshed.status_code == 200, refreshed.text
    assert "scope" not in refreshed.json()
    assert refresh(fake_webex, pair["refresh_token"], own).status_code == 200  # no rotation
    assert fake_webex.service_apps.refreshes == {fake_webex.org_id(CUSTOMER): 2}
    # The integration's credentials do not refresh a Service App token.
    integration = (fake_webex.client_id, fake_webex.client_secret)
    assert refresh(fake_webex, pair["refresh_token"], integration).json()["error"] == (
        "invalid_grant"
    )
    assert refresh(fake_webex, pair["refresh_token"], (app.client_id, "wrong")).status_code == 401


def test_rotation_and_reuse_revoke_the_family(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    fake_webex.rotate_refresh_tokens = True
    own = (app.client_id, app.client_secret)
    first = mint(fake_webex, manager).json()
    second = refresh(fake_webex, first["refresh_token"], own).json()
    assert second["refresh_token"] != first["refresh_token"]
    reuse = refresh(fake_webex, first["refresh_token"], own)
    assert reuse.json()["error"] == "invalid_grant"
    assert fake_webex.revoked_families == 1
    assert refresh(fake_webex, second["refresh_token"], own).status_code == 400
    headers = {"Authorization": "Bearer " + second["access_token"]}
    assert requests.get(fake_webex.people_me_url, headers=headers, timeout=10).status_code == 401


def test_revoke_tokens_forces_a_new_mint(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    org = fake_webex.org_id(CUSTOMER)
    fake_webex.service_apps.authorize(fake_webex.org_id("other.example"))
    pair = mint(fake_webex, manager).json()
    other = mint(fake_webex, manager, targetOrgId=fake_webex.org_id("other.example")).json()
    assert fake_webex.service_apps.revoke_tokens(org) == 1
    own = (app.client_id, app.client_secret)
    assert refresh(fake_webex, pair["refresh_token"], own).json()["error"] == "invalid_grant"
    assert refresh(fake_webex, other["refresh_token"], own).status_code == 200
    assert mint(fake_webex, manager).status_code == 200
    assert fake_webex.service_apps.mints[org] == 2


def test_deauthorize_stops_mints_and_revokes(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    pair = mint(fake_webex, manager).json()
    fake_webex.service_apps.deauthorize(fake_webex.org_id(CUSTOMER))
    assert_api_error(mint(fake_webex, manager), 403, "not authorized")
    headers = {"Authorization": "Bearer " + pair["access_token"]}
    assert requests.get(fake_webex.people_me_url, headers=headers, timeout=10).status_code == 401


# -- the checks, in order -----------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "made-up"])
def test_no_valid_manager_token_is_401(
    fake_webex: FakeWebex, app: ServiceAppInfo, token: str | None
) -> None:
    response = mint(fake_webex, token)
    assert_api_error(response, 401, "valid access token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_manager_token_is_401(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    fake_webex.expire_access_tokens()
    assert_api_error(mint(fake_webex, manager), 401, "valid access token")


def test_a_manager_token_without_the_scope_is_403(
    fake_webex: FakeWebex, app: ServiceAppInfo
) -> None:
    token = fake_webex.issue_token("admin@developer.example", scope="spark:all")["access_token"]
    assert_api_error(mint(fake_webex, token), 403, MANAGER_SCOPE)


def test_bot_and_service_app_tokens_cannot_mint(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    assert_api_error(mint(fake_webex, fake_webex.issue_bot_token()), 403, MANAGER_SCOPE)
    app_token = mint(fake_webex, manager).json()["access_token"]
    assert_api_error(mint(fake_webex, app_token), 403, MANAGER_SCOPE)


def test_a_personal_token_can_mint(fake_webex: FakeWebex, app: ServiceAppInfo) -> None:
    assert mint(fake_webex, fake_webex.issue_personal_token("dev@developer.example")).ok


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not json", "application/json"),  # sent as a form, not JSON
        (b'{"clientId": ', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"clientId": "sa-client"}', "required"),
        (b'{"clientId": 1, "clientSecret": "s", "targetOrgId": "o"}', "required"),
        (b'{"clientId": "", "clientSecret": "s", "targetOrgId": "o"}', "empty"),
    ],
)
def test_bad_bodies_are_400(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str, body: Any, words: str
) -> None:
    url = fake_webex.service_apps.token_url()
    headers = {"Authorization": f"Bearer {manager}"}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
    response = requests.post(url, data=body, headers=headers, timeout=10)
    assert_api_error(response, 400, words)
    assert fake_webex.service_apps.mints == {}


def test_an_unknown_app_is_404(fake_webex: FakeWebex, app: ServiceAppInfo, manager: str) -> None:
    assert_api_error(mint(fake_webex, manager, app_id=default_app_id("nobody")), 404, "not found")
    assert_api_error(mint(fake_webex, manager, app_id="%%%"), 404, "not found")


def test_wrong_client_credentials_are_400(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    assert_api_error(mint(fake_webex, manager, clientSecret="wrong"), 400, "clientSecret")
    other = fake_webex.service_apps.register("sa-two", "two-secret")
    # The app at the URL and the credentials in the body must be the same app.
    response = mint(
        fake_webex, manager, app_id=app.app_id, clientId=other.client_id, clientSecret="two-secret"
    )
    assert_api_error(response, 400, "clientId")


def test_a_bad_or_unauthorized_org_is_refused(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    assert_api_error(mint(fake_webex, manager, targetOrgId="nonsense"), 400, "targetOrgId")
    people_id = base64.b64encode(b"ciscospark://us/PEOPLE/x").decode()
    assert_api_error(mint(fake_webex, manager, targetOrgId=people_id), 400, "targetOrgId")
    elsewhere = fake_webex.org_id("elsewhere.example")
    assert_api_error(mint(fake_webex, manager, targetOrgId=elsewhere), 403, "not authorized")


def test_injected_failure_and_counts(
    fake_webex: FakeWebex, app: ServiceAppInfo, manager: str
) -> None:
    fake_webex.fail_next(429, retry_after=3, endpoint="service_app_token")
    response = mint(fake_webex, manager)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")
    assert mint(fake_webex, manager).status_code == 200
    assert fake_webex.calls["service_app_token"] == 2


def test_controls_check_their_arguments(fake_webex: FakeWebex) -> None:
    with pytest.raises(LookupError, match="register"):
        fake_webex.service_apps.authorize(fake_webex.org_id(CUSTOMER))
    fake_webex.service_apps.register("one", "s1")
    fake_webex.service_apps.register("two", "s2")
    with pytest.raises(LookupError, match="client_id"):
        fake_webex.service_apps.authorize(fake_webex.org_id(CUSTOMER))
    with pytest.raises(ValueError, match="org_id"):
        fake_webex.service_apps.authorize(CUSTOMER, "one")
    fake_webex.service_apps.authorize(fake_webex.org_id(CUSTOMER), "two")
    assert [a.authorized_orgs for a in fake_webex.service_apps.apps] == [
        (),
        (fake_webex.org_id(CUSTOMER),),
    ]


def test_wrong_method_is_405(fake_webex: FakeWebex, app: ServiceAppInfo) -> None:
    response = requests.get(fake_webex.service_apps.token_url(), timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
