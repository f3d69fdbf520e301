"""FakeWebex over real HTTP on loopback: authorize, token endpoint, people/me and the knobs."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from webex_tokens.errors import OAuthError, RedirectURIMismatch
from webex_tokens.testing.fake_webex import DEFAULT_REDIRECT_URI, FakeWebex

REDIRECT = DEFAULT_REDIRECT_URI


def pkce() -> tuple[str, str]:
    """A (verifier, S256 challenge) pair, computed here independently of the emulator."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(fake: FakeWebex, challenge: str, **overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "client_id": fake.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "spark:all",
        "state": "state-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return fake.authorize_url + "?" + urlencode({k: v for k, v in params.items() if v is not None})


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def login_code(fake: FakeWebex, **overrides: str | None) -> tuple[str, str]:
    """Approve an authorization; returns (code, verifier)."""
    verifier, challenge = pkce()
    return query_of(fake.approve(authorize_url(fake, challenge, **overrides)))["code"], verifier


def token_request(
    fake: FakeWebex, data: dict[str, str], *, basic: bool = False, secret: str | None = None
) -> requests.Response:
    secret = fake.client_secret if secret is None else secret
    if basic:
        return requests.post(fake.token_url, data=data, auth=(fake.client_id, secret), timeout=10)
    body = {**data, "client_id": fake.client_id, "client_secret": secret}
    return requests.post(fake.token_url, data=body, timeout=10)


def exchange(fake: FakeWebex, code: str, verifier: str, **kwargs: Any) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    return token_request(fake, data, **kwargs)


def refresh(fake: FakeWebex, refresh_token: str, **kwargs: Any) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(fake, data, **kwargs)


def me(fake: FakeWebex, access_token: str) -> requests.Response:
    headers = {"Authorization": "Bearer " + access_token}
    return requests.get(fake.people_me_url, headers=headers, timeout=10)


def login(fake: FakeWebex) -> dict[str, Any]:
    code, verifier = login_code(fake)
    response = exchange(fake, code, verifier)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_oauth_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == error


# -- lifecycle -------------------------------------------------------------------------


def test_fixture_serves_on_loopback(fake_webex: FakeWebex) -> None:
    assert fake_webex.base_url == f"http://127.0.0.1:{fake_webex.port}/v1"
    response = requests.get(fake_webex.base_url + "/nothing", timeout=10)
    assert response.status_code == 404


def test_port_before_start_explains_and_stop_frees_the_port() -> None:
    fake = FakeWebex()
    with pytest.raises(RuntimeError, match="start"):
        _ = fake.base_url
    fake.start()
    url = fake.people_me_url
    fake.stop()
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_repr_hides_the_secret() -> None:
    with FakeWebex(client_secret="very-secret-value") as fake:
        assert "very-secret-value" not in repr(fake)
        assert fake.base_url in repr(fake)


# -- authorize ------------------------------------------------------------------------


def test_authorize_redirects_to_the_redirect_uri_with_code_and_state(
    fake_webex: FakeWebex,
) -> None:
    _, challenge = pkce()
    response = requests.get(authorize_url(fake_webex, challenge), allow_redirects=False, timeout=10)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    fields = query_of(location)
    assert fields["state"] == "state-123"
    assert len(fields["code"]) >= 32
    assert fake_webex.calls["authorize"] == 1


def test_codes_are_random(fake_webex: FakeWebex) -> None:
    assert login_code(fake_webex)[0] != login_code(fake_webex)[0]


def test_unregistered_redirect_uri_gets_webex_mismatch_page(fake_webex: FakeWebex) -> None:
    _, challenge = pkce()
    url = authorize_url(fake_webex, challenge, redirect_uri="http://localhost:8001/callback")
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "redirect_uri_mismatch" in response.text
    assert "does not match a pre-registered value" in response.text
    with pytest.raises(RedirectURIMismatch, match="add_redirect_uri"):
        fake_webex.approve(url)


@pytest.mark.parametrize(
    "almost",
    [
        REDIRECT + "/",
        REDIRECT.replace("localhost", "127.0.0.1"),
        REDIRECT.replace("http:", "https:"),
        REDIRECT.upper(),
    ],
)
def test_redirect_uri_must_match_exactly(fake_webex: FakeWebex, almost: str) -> None:
    _, challenge = pkce()
    with pytest.raises(RedirectURIMismatch):
        fake_webex.approve(authorize_url(fake_webex, challenge, redirect_uri=almost))


def test_add_redirect_uri_registers_another(fake_webex: FakeWebex) -> None:
    other = "http://127.0.0.1:9999/cb"
    fake_webex.add_redirect_uri(other)
    _, challenge = pkce()
    location = fake_webex.approve(authorize_url(fake_webex, challenge, redirect_uri=other))
    assert location.startswith(other + "?code=")
    assert fake_webex.redirect_uris == (REDIRECT, other)


def test_unknown_client_id_gets_an_error_page(fake_webex: FakeWebex) -> None:
    _, challenge = pkce()
    url = authorize_url(fake_webex, challenge, client_id="someone-else")
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "invalid_client" in response.text
    with pytest.raises(OAuthError, match="client ID") as caught:
        fake_webex.approve(url)
    assert not isinstance(caught.value, RedirectURIMismatch)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"scope": None}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_bad_authorize_parameters_redirect_with_an_error(
    fake_webex: FakeWebex, overrides: dict[str, str | None], error: str
) -> None:
    _, challenge = pkce()
    fields = query_of(fake_webex.approve(authorize_url(fake_webex, challenge, **overrides)))
    assert fields["error"] == error
    assert fields["error_description"]
    assert fields["state"] == "state-123"
    assert "code" not in fields


def test_deny_next_authorization_redirects_access_denied_once(fake_webex: FakeWebex) -> None:
    fake_webex.deny_next_authorization()
    _, challenge = pkce()
    fields = query_of(fake_webex.approve(authorize_url(fake_webex, challenge)))
    assert fields["error"] == "access_denied"
    assert fields["error_description"]
    assert fields["state"] == "state-123"
    assert "code" not in fields
    assert "code" in query_of(fake_webex.approve(authorize_url(fake_webex, challenge)))


def test_redirect_uri_with_a_query_keeps_it(fake_webex: FakeWebex) -> None:
    uri = "http://localhost:8000/cb?tenant=a"
    fake_webex.add_redirect_uri(uri)
    _, challenge = pkce()
    location = fake_webex.approve(authorize_url(fake_webex, challenge, redirect_uri=uri))
    assert location.startswith(uri + "&code=")


# -- code exchange --------------------------------------------------------------------


@pytest.mark.parametrize("basic", [False, True], ids=["body-credentials", "http-basic"])
def test_code_exchange_answers_like_webex(fake_webex: FakeWebex, basic: bool) -> None:
    code, verifier = login_code(fake_webex)
    response = exchange(fake_webex, code, verifier, basic=basic)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {
        "access_token",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "token_type",
        "scope",
    }
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 1209600
    assert answer["refresh_token_expires_in"] == 7776000
    assert answer["scope"] == "spark:all"
    assert answer["access_token"] != answer["refresh_token"]
    assert response.headers["Cache-Control"] == "no-store"


def test_lifetimes_and_scope_follow_the_settings() -> None:
    with FakeWebex(expires_in=60, refresh_token_expires_in=600) as fake:
        code, verifier = login_code(fake, scope="spark:people_read  spark:rooms_read")
        answer = exchange(fake, code, verifier).json()
    assert (answer["expires_in"], answer["refresh_token_expires_in"]) == (60, 600)
    assert answer["scope"] == "spark:people_read spark:rooms_read"


def test_wrong_code_verifier_is_invalid_grant_and_spends_the_code(
    fake_webex: FakeWebex,
) -> None:
    code, verifier = login_code(fake_webex)
    other_verifier, _ = pkce()
    assert_oauth_error(exchange(fake_webex, code, other_verifier), 400, "invalid_grant")
    assert_oauth_error(exchange(fake_webex, code, verifier), 400, "invalid_grant")


def test_missing_code_verifier_is_invalid_grant(fake_webex: FakeWebex) -> None:
    code, _ = login_code(fake_webex)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    assert_oauth_error(token_request(fake_webex, data), 400, "invalid_grant")


def test_code_is_single_use(fake_webex: FakeWebex) -> None:
    code, verifier = login_code(fake_webex)
    assert exchange(fake_webex, code, verifier).status_code == 200
    assert_oauth_error(exchange(fake_webex, code, verifier), 400, "invalid_grant")


def test_unknown_code_is_invalid_grant(fake_webex: FakeWebex) -> None:
    verifier, _ = pkce()
    assert_oauth_error(exchange(fake_webex, "made-up", verifier), 400, "invalid_grant")


def test_expired_code_is_invalid_grant() -> None:
    with FakeWebex(code_ttl=0.2) as fake:
        code, verifier = login_code(fake)
        time.sleep(0.3)
        response = exchange(fake, code, verifier)
    assert_oauth_error(response, 400, "invalid_grant")
    assert "expired" in response.json()["error_description"]


def test_code_exchange_needs_the_same_redirect_uri(fake_webex: FakeWebex) -> None:
    code, verifier = login_code(fake_webex)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT + "/",
        "code_verifier": verifier,
    }
    response = token_request(fake_webex, data)
    assert_oauth_error(response, 400, "invalid_grant")
    assert "redirect_uri" in response.json()["error_description"]


def test_code_is_bound_to_the_user_of_its_authorization(fake_webex: FakeWebex) -> None:
    fake_webex.user = "bob@example.com"
    code, verifier = login_code(fake_webex)
    fake_webex.user = "carol@example.com"
    answer = exchange(fake_webex, code, verifier).json()
    assert me(fake_webex, answer["access_token"]).json()["emails"] == ["bob@example.com"]


@pytest.mark.parametrize("basic", [False, True], ids=["body-credentials", "http-basic"])
def test_wrong_client_secret_is_invalid_client(fake_webex: FakeWebex, basic: bool) -> None:
    code, verifier = login_code(fake_webex)
    response = exchange(fake_webex, code, verifier, basic=basic, secret="wrong")
    assert_oauth_error(response, 401, "invalid_client")
    assert ("WWW-Authenticate" in response.headers) is basic
    assert fake_webex.client_secret not in response.text


def test_missing_client_credentials_is_invalid_client(fake_webex: FakeWebex) -> None:
    code, verifier = login_code(fake_webex)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    response = requests.post(fake_webex.token_url, data=data, timeout=10)
    assert_oauth_error(response, 401, "invalid_client")


def test_two_client_authentication_methods_are_refused(fake_webex: FakeWebex) -> None:
    data = {"grant_type": "refresh_token", "refresh_token": "x", "client_secret": "s"}
    response = requests.post(
        fake_webex.token_url,
        data=data,
        auth=(fake_webex.client_id, fake_webex.client_secret),
        timeout=10,
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_token_endpoint_wants_a_form(fake_webex: FakeWebex) -> None:
    body = {
        "grant_type": "refresh_token",
        "refresh_token": "x",
        "client_id": fake_webex.client_id,
        "client_secret": fake_webex.client_secret,
    }
    response = requests.post(fake_webex.token_url, json=body, timeout=10)
    assert_oauth_error(response, 400, "invalid_request")


def test_unknown_grant_type_is_refused(fake_webex: FakeWebex) -> None:
    response = token_request(fake_webex, {"grant_type": "password"})
    assert_oauth_error(response, 400, "unsupported_grant_type")


# -- refresh --------------------------------------------------------------------------


def test_refresh_without_rotation_returns_the_same_refresh_token(fake_webex: FakeWebex) -> None:
    first = login(fake_webex)
    second = refresh(fake_webex, first["refresh_token"]).json()
    third = refresh(fake_webex, first["refresh_token"], basic=True).json()
    assert second["refresh_token"] == third["refresh_token"] == first["refresh_token"]
    assert len({first["access_token"], second["access_token"], third["access_token"]}) == 3
    for answer in (first, second, third):
        assert me(fake_webex, answer["access_token"]).status_code == 200
    assert fake_webex.revoked_families == 0


def test_refresh_with_rotation_issues_a_new_refresh_token() -> None:
    with FakeWebex(rotate_refresh_tokens=True) as fake:
        first = login(fake)
        second = refresh(fake, first["refresh_token"]).json()
        assert second["refresh_token"] != first["refresh_token"]
        third = refresh(fake, second["refresh_token"]).json()
        assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
        assert fake.revoked_families == 0


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family() -> None:
    with FakeWebex(rotate_refresh_tokens=True) as fake:
        bystander = login(fake)
        first = login(fake)
        second = refresh(fake, first["refresh_token"]).json()
        reuse = refresh(fake, first["refresh_token"])
        assert_oauth_error(reuse, 400, "invalid_grant")
        assert fake.revoked_families == 1
        # The newer refresh token and every access token of that login are dead too.
        assert_oauth_error(refresh(fake, second["refresh_token"]), 400, "invalid_grant")
        assert me(fake, second["access_token"]).status_code == 401
        assert me(fake, first["access_token"]).status_code == 401
        # Another login is untouched.
        assert me(fake, bystander["access_token"]).status_code == 200
        assert refresh(fake, bystander["refresh_token"]).status_code == 200
        assert fake.revoked_families == 1


def test_unknown_refresh_token_is_invalid_grant(fake_webex: FakeWebex) -> None:
    assert_oauth_error(refresh(fake_webex, "made-up"), 400, "invalid_grant")


def test_revoke_refresh_tokens(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    fake_webex.revoke_refresh_tokens()
    assert_oauth_error(refresh(fake_webex, answer["refresh_token"]), 400, "invalid_grant")
    assert me(fake_webex, answer["access_token"]).status_code == 200
    assert refresh(fake_webex, login(fake_webex)["refresh_token"]).status_code == 200


def test_expired_refresh_token_is_invalid_grant() -> None:
    with FakeWebex(refresh_token_expires_in=0) as fake:
        answer = login(fake)
        time.sleep(0.05)
        assert_oauth_error(refresh(fake, answer["refresh_token"]), 400, "invalid_grant")


def test_refresh_needs_the_client_secret(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    response = refresh(fake_webex, answer["refresh_token"], secret="wrong")
    assert_oauth_error(response, 401, "invalid_client")


# -- injected failures and delay -------------------------------------------------------


def test_fail_next_429_sends_retry_after_then_recovers(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    fake_webex.fail_next(429, times=2, retry_after=2)
    for _ in range(2):
        response = refresh(fake_webex, answer["refresh_token"])
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert "message" in response.json()
    assert refresh(fake_webex, answer["refresh_token"]).status_code == 200
    assert fake_webex.calls["refresh_token"] == 3


def test_fractional_retry_after(fake_webex: FakeWebex) -> None:
    fake_webex.fail_next(429, retry_after=0.5)
    assert refresh(fake_webex, "x").headers["Retry-After"] == "0.5"


@pytest.mark.parametrize("status", [500, 503])
def test_fail_next_server_errors(fake_webex: FakeWebex, status: int) -> None:
    answer = login(fake_webex)
    fake_webex.fail_next(status)
    response = refresh(fake_webex, answer["refresh_token"])
    assert response.status_code == status
    assert "Retry-After" not in response.headers
    assert response.json()["trackingId"]
    assert refresh(fake_webex, answer["refresh_token"]).status_code == 200


def test_fail_next_garbage_body(fake_webex: FakeWebex) -> None:
    fake_webex.fail_next(502, body=b"<html>garbage</html>")
    response = refresh(fake_webex, "x")
    assert response.status_code == 502
    assert response.content == b"<html>garbage</html>"
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_fail_next_with_status_200_and_garbage(fake_webex: FakeWebex) -> None:
    code, verifier = login_code(fake_webex)
    fake_webex.fail_next(200, body=b"garbage")
    response = exchange(fake_webex, code, verifier)
    assert (response.status_code, response.content) == (200, b"garbage")


def test_fail_next_needs_a_positive_count(fake_webex: FakeWebex) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fake_webex.fail_next(500, times=0)


def test_failures_do_not_touch_other_endpoints(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    fake_webex.fail_next(500)
    assert me(fake_webex, answer["access_token"]).status_code == 200
    assert refresh(fake_webex, answer["refresh_token"]).status_code == 500


def test_delay_slows_the_token_endpoint_only(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    fake_webex.delay = 0.4
    started = time.monotonic()
    assert refresh(fake_webex, answer["refresh_token"]).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert me(fake_webex, answer["access_token"]).status_code == 200
    assert time.monotonic() - started < 0.4
    with pytest.raises(requests.Timeout):
        requests.post(fake_webex.token_url, data={"grant_type": "x"}, timeout=0.1)


def test_delay_does_not_block_other_requests(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    fake_webex.delay = 0.5
    started = time.monotonic()
    threads = [
        threading.Thread(target=refresh, args=(fake_webex, answer["refresh_token"]))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 1.5  # 4 x 0.5 s would be 2 s if serialised


# -- people/me ------------------------------------------------------------------------


def test_people_me_shape(fake_webex: FakeWebex) -> None:
    fake_webex.user = "dana.scully@fbi.example"
    response = me(fake_webex, login(fake_webex)["access_token"])
    assert response.status_code == 200
    person = response.json()
    assert person["emails"] == ["dana.scully@fbi.example"]
    assert person["displayName"] == "Dana Scully"
    assert base64.b64decode(person["id"] + "==").startswith(b"ciscospark://us/PEOPLE/")
    assert person["type"] == "person"
    assert person["orgId"]


def test_people_me_is_readable_by_webexpythonsdk(fake_webex: FakeWebex) -> None:
    webexpythonsdk = pytest.importorskip("webexpythonsdk")
    token = fake_webex.issue_token("erin@example.com")["access_token"]
    api = webexpythonsdk.WebexAPI(access_token=token, base_url=fake_webex.base_url + "/")
    person = api.people.me()
    assert person.emails == ["erin@example.com"]
    assert person.displayName == "Erin"


@pytest.mark.parametrize("authorization", [None, "Bearer made-up", "Basic Zm9vOmJhcg==", "Bearer "])
def test_people_me_without_a_valid_token_is_401(
    fake_webex: FakeWebex, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(fake_webex.people_me_url, headers=headers, timeout=10)
    assert response.status_code == 401
    assert "valid access token" in response.json()["message"]


def test_expire_access_tokens(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    fake_webex.expire_access_tokens()
    assert me(fake_webex, answer["access_token"]).status_code == 401
    fresh = refresh(fake_webex, answer["refresh_token"]).json()
    assert me(fake_webex, fresh["access_token"]).status_code == 200


def test_access_token_expires_by_itself() -> None:
    with FakeWebex(expires_in=0) as fake:
        answer = login(fake)
        time.sleep(0.05)
        assert me(fake, answer["access_token"]).status_code == 401


def test_issue_token_mints_a_working_login(fake_webex: FakeWebex) -> None:
    answer = fake_webex.issue_token("frank@example.com")
    assert answer["token_type"] == "Bearer"
    assert me(fake_webex, answer["access_token"]).json()["emails"] == ["frank@example.com"]
    assert refresh(fake_webex, answer["refresh_token"]).status_code == 200
    default = fake_webex.issue_token()
    assert me(fake_webex, default["access_token"]).json()["emails"] == [fake_webex.user]


# -- bookkeeping ----------------------------------------------------------------------


def test_calls_are_counted_by_kind(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    refresh(fake_webex, answer["refresh_token"])
    refresh(fake_webex, "made-up")
    me(fake_webex, answer["access_token"])
    token_request(fake_webex, {"grant_type": "password"})
    assert dict(fake_webex.calls) == {
        "authorize": 1,
        "access_token": 4,
        "authorization_code": 1,
        "refresh_token": 2,
        "people_me": 1,
    }


def test_concurrent_refreshes_are_consistent(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    results: list[int] = []
    tokens: list[str] = []
    guard = threading.Lock()

    def hammer() -> None:
        with requests.Session() as session:
            for _ in range(10):
                response = session.post(
                    fake_webex.token_url,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": answer["refresh_token"],
                        "client_id": fake_webex.client_id,
                        "client_secret": fake_webex.client_secret,
                    },
                    timeout=10,
                )
                with guard:
                    results.append(response.status_code)
                    tokens.append(response.json()["access_token"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 40
    assert len(set(tokens)) == 40
    assert fake_webex.calls["refresh_token"] == 40


def test_concurrent_reuse_with_rotation_lets_exactly_one_win() -> None:
    with FakeWebex(rotate_refresh_tokens=True) as fake:
        answer = login(fake)
        barrier = threading.Barrier(5)
        statuses: list[int] = []

        def racer() -> None:
            barrier.wait()
            statuses.append(refresh(fake, answer["refresh_token"]).status_code)

        threads = [threading.Thread(target=racer) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 400, 400, 400, 400]
        assert fake.revoked_families == 1


def test_secrets_stay_out_of_the_logs(
    fake_webex: FakeWebex, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="webex_tokens")
    code, verifier = login_code(fake_webex)
    answer = exchange(fake_webex, code, verifier).json()
    refresh(fake_webex, answer["refresh_token"])
    me(fake_webex, answer["access_token"])
    logged = caplog.text
    assert "/v1/authorize" in logged  # the paths are logged...
    for secret in (code, verifier, answer["access_token"], answer["refresh_token"]):
        assert secret not in logged  # ...but never a secret
    assert fake_webex.client_secret not in logged


def test_connections_are_kept_open_and_an_unread_body_closes_one(fake_webex: FakeWebex) -> None:
    import http.client

    host, port = fake_webex.base_url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        # Two requests on one connection, as Webex serves them.
        for _ in range(2):
            connection.request("GET", "/v1/nowhere")
            response = connection.getresponse()
            response.read()
            assert response.status == 404 and not response.will_close
        # A POST whose body the emulator does not read must not be taken for a request.
        connection.request("POST", "/v1/nowhere", body=b"GET /v1/people/me HTTP/1.1\r\n\r\n")
        response = connection.getresponse()
        response.read()
        assert response.status == 404 and response.will_close
    finally:
        connection.close()
