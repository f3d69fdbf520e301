"""FakeWebex's other credential kinds and controls over real HTTP: bots, personal access
tokens, organizations, the consent page, the environment, and the pytest fixtures."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from webex_tokens.testing.fake_webex import DEFAULT_REDIRECT_URI, FakeWebex
from webex_tokens.testing.plugin import ServiceAppSetup


def me(fake: FakeWebex, token: str) -> requests.Response:
    return requests.get(
        fake.people_me_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def as_refresh_token(fake: FakeWebex, token: str) -> requests.Response:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
    }
    return requests.post(fake.token_url, data=data, timeout=10)


def authorize_url(fake: FakeWebex, scope: str = "spark:all") -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "client_id": fake.client_id,
        "response_type": "code",
        "redirect_uri": DEFAULT_REDIRECT_URI,
        "scope": scope,
        "state": "st",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    return fake.authorize_url + "?" + urlencode(params), verifier


def exchange(fake: FakeWebex, location: str, verifier: str) -> requests.Response:
    code = parse_qs(urlsplit(location).query)["code"][0]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": DEFAULT_REDIRECT_URI,
        "code_verifier": verifier,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
    }
    return requests.post(fake.token_url, data=data, timeout=10)


# -- bots and personal access tokens ---------------------------------------------------------


def test_bot_token_is_a_bot_that_never_expires() -> None:
    with FakeWebex(expires_in=0) as fake:
        token = fake.issue_bot_token("hr-bot")
        person = me(fake, token).json()
        assert (person["type"], person["emails"], person["displayName"]) == (
            "bot",
            ["hr-bot@webex.bot"],
            "hr-bot",
        )
        assert person["orgId"] == fake.org_id(fake.user)
        assert me(fake, fake.issue_bot_token(email="ops@acme.webex.bot")).json()["emails"] == [
            "ops@acme.webex.bot"
        ]


def test_personal_token_is_a_person_for_twelve_hours(fake_webex: FakeWebex) -> None:
    token = fake_webex.issue_personal_token("frank@example.com")
    person = me(fake_webex, token).json()
    assert (person["type"], person["emails"]) == ("person", ["frank@example.com"])
    short = fake_webex.issue_personal_token(expires_in=0)
    assert me(fake_webex, short).status_code == 401


@pytest.mark.parametrize("kind", ["bot", "personal"])
def test_bot_and_personal_tokens_cannot_be_refreshed_or_exchanged(
    fake_webex: FakeWebex, kind: str
) -> None:
    token = fake_webex.issue_bot_token() if kind == "bot" else fake_webex.issue_personal_token()
    refused = as_refresh_token(fake_webex, token)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    as_code = requests.post(
        fake_webex.token_url,
        data={
            "grant_type": "authorization_code",
            "code": token,
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "code_verifier": secrets.token_urlsafe(48),
            "client_id": fake_webex.client_id,
            "client_secret": fake_webex.client_secret,
        },
        timeout=10,
    )
    assert as_code.json()["error"] == "invalid_grant"
    assert me(fake_webex, token).status_code == 200  # still fine for the API


def test_expire_access_tokens_reaches_bots_too(fake_webex: FakeWebex) -> None:
    token = fake_webex.issue_bot_token()
    fake_webex.expire_access_tokens()
    assert me(fake_webex, token).status_code == 401


def test_organizations_are_email_domains(fake_webex: FakeWebex) -> None:
    token = fake_webex.issue_token("gina@customer.example")["access_token"]
    assert me(fake_webex, token).json()["orgId"] == fake_webex.org_id("customer.example")
    assert fake_webex.org_id("x@customer.example") == fake_webex.org_id("CUSTOMER.example")
    decoded = base64.b64decode(fake_webex.org_id("customer.example") + "==")
    assert decoded.startswith(b"ciscospark://us/ORGANIZATION/")


# -- the consent page --------------------------------------------------------------------------


@pytest.fixture
def consenting(fake_webex: FakeWebex) -> FakeWebex:
    fake_webex.consent_page = True
    return fake_webex


def consent_form(fake: FakeWebex, scope: str = "spark:all") -> tuple[str, str]:
    """(request id, verifier) of a sign-in page shown for a fresh authorization."""
    url, verifier = authorize_url(fake, scope)
    page = requests.get(url, allow_redirects=False, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    request_id = page.headers["X-Fake-Webex-Consent"]
    assert f"value='{request_id}'" in page.text
    return request_id, verifier


def post_consent(fake: FakeWebex, **form: str) -> requests.Response:
    return requests.post(fake.authorize_url, data=form, allow_redirects=False, timeout=10)


def test_consent_page_signs_in_as_the_typed_email(consenting: FakeWebex) -> None:
    request_id, verifier = consent_form(consenting)
    answer = post_consent(
        consenting, request=request_id, email="hank@example.com", decision="approve"
    )
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(DEFAULT_REDIRECT_URI + "?") and "state=st" in location
    pair = exchange(consenting, location, verifier).json()
    assert me(consenting, pair["access_token"]).json()["emails"] == ["hank@example.com"]
    # The page's request is answered once.
    again = post_consent(consenting, request=request_id, email="x@example.com", decision="approve")
    assert again.status_code == 400


def test_consent_page_deny(consenting: FakeWebex) -> None:
    request_id, _ = consent_form(consenting)
    answer = post_consent(consenting, request=request_id, decision="deny")
    fields = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert fields["error"] == ["access_denied"] and fields["state"] == ["st"]


@pytest.mark.parametrize(
    "form",
    [
        {"request": "made-up", "email": "a@example.com", "decision": "approve"},
        {"request": "{id}", "email": "not an email", "decision": "approve"},
        {"request": "{id}", "email": "a@example.com", "decision": "sure"},
    ],
)
def test_consent_page_refuses_bad_answers(consenting: FakeWebex, form: dict[str, str]) -> None:
    request_id, _ = consent_form(consenting)
    data = {k: v.replace("{id}", request_id) for k, v in form.items()}
    answer = post_consent(consenting, **data)
    assert answer.status_code == 400 and "Location" not in answer.headers


def test_consent_page_escapes_the_scope_and_keeps_the_checks(consenting: FakeWebex) -> None:
    url, _ = authorize_url(consenting, scope="<b>x</b>")
    assert "<b>x</b>" not in requests.get(url, timeout=10).text
    wrong = url.replace("client_id=fake-client-id", "client_id=other")
    assert requests.get(wrong, timeout=10).status_code == 400
    as_json = requests.post(consenting.authorize_url, json={"request": "x"}, timeout=10)
    assert as_json.status_code == 400


def test_approve_and_open_browser_accept_the_page(consenting: FakeWebex) -> None:
    consenting.user = "ivy@example.com"
    url, verifier = authorize_url(consenting)
    location = consenting.approve(url)
    pair = exchange(consenting, location, verifier).json()
    assert me(consenting, pair["access_token"]).json()["emails"] == ["ivy@example.com"]
    assert consenting.calls["authorize_consent"] == 1


# -- environment and the fixtures --------------------------------------------------------------


def test_environment_points_an_app_here(fake_webex: FakeWebex) -> None:
    assert fake_webex.environment() == {
        "WEBEX_BASE_URL": fake_webex.base_url,
        "WEBEX_CLIENT_ID": "fake-client-id",
        "WEBEX_CLIENT_SECRET": "fake-client-secret",
        "WEBEX_REDIRECT_URI": DEFAULT_REDIRECT_URI,
    }
    other = "http://127.0.0.1:9000/cb"
    assert fake_webex.environment(other)["WEBEX_REDIRECT_URI"] == other
    with FakeWebex(redirect_uris=()) as bare:
        assert "WEBEX_REDIRECT_URI" not in bare.environment()


def test_fake_service_app_fixture_mints(fake_service_app: ServiceAppSetup) -> None:
    setup = fake_service_app
    response = requests.post(
        setup.fake.service_apps.token_url(),
        json={
            "clientId": setup.app.client_id,
            "clientSecret": setup.app.client_secret,
            "targetOrgId": setup.org_id,
        },
        headers={"Authorization": f"Bearer {setup.manager_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert setup.fake.service_apps.mints == {setup.org_id: 1}
    assert setup.manager_token not in repr(setup)


def test_fake_bot_and_personal_token_fixtures(
    fake_webex: FakeWebex, fake_bot_token: str, fake_personal_token: str
) -> None:
    assert me(fake_webex, fake_bot_token).json()["type"] == "bot"
    assert me(fake_webex, fake_personal_token).json()["emails"] == [fake_webex.user]


def test_urls_before_start_explain() -> None:
    fake = FakeWebex()
    for read in (
        lambda: fake.device.verification_uri,
        lambda: fake.oidc.jwks_url,
        fake.environment,
    ):
        with pytest.raises(RuntimeError, match="start"):
            read()


def test_get_on_post_only_endpoints_is_405(fake_webex: FakeWebex) -> None:
    assert requests.get(fake_webex.token_url, timeout=10).status_code == 405
    response = requests.post(fake_webex.people_me_url, data=b"x", timeout=10)
    assert response.status_code == 405 and response.headers["Allow"] == "GET"


# -- the package -------------------------------------------------------------------------------


def test_the_emulator_package_is_small_modules_without_import_cycles() -> None:
    import ast
    from pathlib import Path

    import webex_tokens.testing.fake_webex as package

    folder = Path(package.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) < 600, path.name
        tree = ast.parse(text)
        imports[path.stem] = {
            node.module.partition(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        }
    seen: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in seen:
            return
        for imported in imports.get(module, set()):
            visit(imported, (*path, module))
        seen.add(module)

    for module in imports:
        visit(module, ())
    assert {"answers", "state"} <= {m for m, deps in imports.items() if not deps}


def test_the_emulator_is_exported_from_the_testing_package() -> None:
    from webex_tokens import testing
    from webex_tokens.testing.fake_webex import run_emulator

    assert testing.FakeWebex is FakeWebex
    assert testing.run_emulator is run_emulator
