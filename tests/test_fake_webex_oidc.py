"""FakeWebex's OpenID Connect over real HTTP: discovery, the JWKS, signed ID tokens (checked
here with joserfc, independently of the emulator), userinfo, and each way to break them."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from webex_tokens.testing.fake_webex import DEFAULT_REDIRECT_URI, ID_TOKEN_FAULTS, FakeWebex


def login(fake: FakeWebex, scope: str = "openid email profile", nonce: str | None = "n-1") -> Any:
    """The token answer of a whole authorization-code login with ``scope``."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "client_id": fake.client_id,
        "response_type": "code",
        "redirect_uri": DEFAULT_REDIRECT_URI,
        "scope": scope,
        "state": "s",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **({"nonce": nonce} if nonce else {}),
    }
    location = fake.approve(fake.authorize_url + "?" + urlencode(params))
    code = parse_qs(urlsplit(location).query)["code"][0]
    response = requests.post(
        fake.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def jwks(fake: FakeWebex) -> KeySet:
    document = requests.get(fake.oidc.jwks_url, timeout=10).json()
    keys: KeySet = KeySet.import_key_set(document)
    return keys


def verified_claims(fake: FakeWebex, id_token: str) -> dict[str, Any]:
    """The claims of an ID token whose signature verifies against the served JWKS."""
    claims: dict[str, Any] = jwt.decode(id_token, jwks(fake), algorithms=["RS256"]).claims
    return claims


def unverified_claims(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


def test_discovery_document(fake_webex: FakeWebex) -> None:
    response = requests.get(fake_webex.oidc.discovery_url, timeout=10)
    assert response.status_code == 200
    document = response.json()
    base = fake_webex.base_url
    assert document["issuer"] == fake_webex.oidc.issuer != base
    assert document["authorization_endpoint"] == base + "/authorize"
    assert document["token_endpoint"] == base + "/access_token"
    assert document["userinfo_endpoint"] == base + "/userinfo"
    assert document["jwks_uri"] == base + "/verification"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"openid", "email", "profile"} <= set(document["scopes_supported"])
    assert {"iss", "sub", "aud", "exp", "iat", "nonce", "email", "name"} <= set(
        document["claims_supported"]
    )
    # Also where OpenID Connect Discovery puts it: under the issuer.
    at_issuer = requests.get(document["issuer"] + "/.well-known/openid-configuration", timeout=10)
    assert at_issuer.json() == document


def test_jwks_has_public_rsa_keys_only(fake_webex: FakeWebex) -> None:
    keys = requests.get(fake_webex.oidc.jwks_url, timeout=10).json()["keys"]
    assert len(keys) == 1
    (key,) = keys
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert key["kid"] == fake_webex.oidc.key_ids[0]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_code_exchange_with_openid_answers_a_signed_id_token(fake_webex: FakeWebex) -> None:
    fake_webex.user = "dana.scully@fbi.example"
    answer = login(fake_webex)
    claims = verified_claims(fake_webex, answer["id_token"])
    now = time.time()
    assert claims["iss"] == fake_webex.oidc.issuer
    assert claims["aud"] == fake_webex.client_id
    assert claims["nonce"] == "n-1"
    assert claims["iat"] <= now < claims["exp"] <= now + 3600 + 5
    assert claims["email"] == "dana.scully@fbi.example"
    assert claims["email_verified"] is True
    assert (claims["name"], claims["given_name"], claims["family_name"]) == (
        "Dana Scully",
        "Dana",
        "Scully",
    )
    assert claims["sub"]
    header = json.loads(base64.urlsafe_b64decode(answer["id_token"].split(".")[0] + "=="))
    assert (header["alg"], header["kid"]) == ("RS256", fake_webex.oidc.key_ids[0])


def test_no_openid_no_id_token(fake_webex: FakeWebex) -> None:
    assert "id_token" not in login(fake_webex, scope="spark:all")


def test_claims_follow_the_scopes(fake_webex: FakeWebex) -> None:
    bare = verified_claims(fake_webex, login(fake_webex, scope="openid")["id_token"])
    assert "email" not in bare and "name" not in bare
    email = verified_claims(fake_webex, login(fake_webex, scope="openid email")["id_token"])
    assert "email" in email and "name" not in email
    fake_webex.oidc.claims_follow_scopes = False
    everything = verified_claims(fake_webex, login(fake_webex, scope="openid")["id_token"])
    assert {"email", "name"} <= set(everything)


def test_without_a_nonce_the_id_token_has_none(fake_webex: FakeWebex) -> None:
    claims = verified_claims(fake_webex, login(fake_webex, nonce=None)["id_token"])
    assert "nonce" not in claims


def test_issue_token_with_openid_carries_an_id_token(fake_webex: FakeWebex) -> None:
    answer = fake_webex.issue_token("erin@example.com", scope="openid email")
    assert verified_claims(fake_webex, answer["id_token"])["email"] == "erin@example.com"


def test_the_issuer_can_be_moved(fake_webex: FakeWebex) -> None:
    fake_webex.oidc.issuer = "https://idbroker.example/idb"
    document = requests.get(fake_webex.oidc.discovery_url, timeout=10).json()
    assert document["issuer"] == "https://idbroker.example/idb"
    claims = verified_claims(fake_webex, login(fake_webex)["id_token"])
    assert claims["iss"] == "https://idbroker.example/idb"
    fake_webex.oidc.issuer = None
    assert fake_webex.oidc.issuer.endswith("/idb")


# -- breaking it -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["unknown_key", "bad_signature", "alg_none"])
def test_signature_faults_fail_verification(fake_webex: FakeWebex, fault: str) -> None:
    fake_webex.oidc.break_next_id_token(fault)
    broken = login(fake_webex)["id_token"]
    with pytest.raises((JoseError, ValueError)):
        verified_claims(fake_webex, broken)
    # Only the next one: the one after verifies.
    assert verified_claims(fake_webex, login(fake_webex)["id_token"])["nonce"] == "n-1"


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("wrong_issuer", lambda c, f: c["iss"] != f.oidc.issuer),
        ("wrong_audience", lambda c, f: c["aud"] != f.client_id),
        ("expired", lambda c, f: c["exp"] < time.time() - 60),
        ("wrong_nonce", lambda c, f: c["nonce"] != "n-1"),
        ("missing_nonce", lambda c, f: "nonce" not in c),
    ],
)
def test_claim_faults_are_signed_but_wrong(fake_webex: FakeWebex, fault: str, check: Any) -> None:
    fake_webex.oidc.break_next_id_token(fault)
    claims = verified_claims(fake_webex, login(fake_webex)["id_token"])
    assert check(claims, fake_webex)


def test_every_fault_is_tested() -> None:
    assert set(ID_TOKEN_FAULTS) == {
        "unknown_key",
        "bad_signature",
        "alg_none",
        "wrong_issuer",
        "wrong_audience",
        "expired",
        "wrong_nonce",
        "missing_nonce",
    }


def test_an_unknown_fault_is_refused(fake_webex: FakeWebex) -> None:
    with pytest.raises(ValueError, match="fault"):
        fake_webex.oidc.break_next_id_token("gremlins")


def test_key_rotation(fake_webex: FakeWebex) -> None:
    old_token = login(fake_webex)["id_token"]
    (old,) = fake_webex.oidc.key_ids
    new = fake_webex.oidc.rotate_key()
    assert fake_webex.oidc.key_ids == (new, old)
    assert len(requests.get(fake_webex.oidc.jwks_url, timeout=10).json()["keys"]) == 2
    new_token = login(fake_webex)["id_token"]
    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == new
    verified_claims(fake_webex, old_token)
    verified_claims(fake_webex, new_token)
    fake_webex.oidc.rotate_key(keep_old=False)
    with pytest.raises((JoseError, ValueError)):
        verified_claims(fake_webex, old_token)


# -- userinfo ------------------------------------------------------------------------------


def userinfo(fake: FakeWebex, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(fake.oidc.userinfo_url, headers=headers, timeout=10)


def test_userinfo_answers_the_claims(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex, scope="openid email")
    response = userinfo(fake_webex, answer["access_token"])
    assert response.status_code == 200
    info = response.json()
    assert info["email"] == fake_webex.user
    assert info["sub"] == verified_claims(fake_webex, answer["id_token"])["sub"]
    assert "name" not in info


@pytest.mark.parametrize("token", [None, "made-up"])
def test_userinfo_without_a_valid_token_is_401(fake_webex: FakeWebex, token: str | None) -> None:
    assert userinfo(fake_webex, token).status_code == 401


def test_userinfo_needs_the_openid_scope(fake_webex: FakeWebex) -> None:
    response = userinfo(fake_webex, login(fake_webex, scope="spark:all")["access_token"])
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    assert userinfo(fake_webex, fake_webex.issue_bot_token()).status_code == 403


def test_userinfo_after_expiry_is_401(fake_webex: FakeWebex) -> None:
    token = login(fake_webex)["access_token"]
    fake_webex.expire_access_tokens()
    assert userinfo(fake_webex, token).status_code == 401
    assert fake_webex.calls["userinfo"] == 1


def test_refresh_answers_no_id_token(fake_webex: FakeWebex) -> None:
    answer = login(fake_webex)
    refreshed = requests.post(
        fake_webex.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": answer["refresh_token"],
            "client_id": fake_webex.client_id,
            "client_secret": fake_webex.client_secret,
        },
        timeout=10,
    ).json()
    assert "id_token" not in refreshed
    assert refreshed["scope"] == "openid email profile"
