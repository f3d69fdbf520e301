"""OpenID Connect (webex_tokens.oidc) against FakeWebex over real HTTP: the nonce, the ID
token verified before anything is stored, each hostile ID token refused, userinfo."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from webex_tokens import Keeper, open_store
from webex_tokens.callback import parse_callback_url
from webex_tokens.errors import IDTokenInvalid
from webex_tokens.oauth import WebexOAuth
from webex_tokens.testing.fake_webex import ID_TOKEN_FAULTS, FakeWebex

OPENID = ("spark:all", "openid", "email", "profile")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_oauth(fake: FakeWebex, scopes: tuple[str, ...] = OPENID) -> WebexOAuth:
    uri = f"http://localhost:{free_port()}/oauth/webex/callback"
    fake.add_redirect_uri(uri)
    return WebexOAuth(
        fake.client_id,
        fake.client_secret,
        redirect_uri=uri,
        scopes=scopes,
        base_url=fake.base_url,
        timeout=5,
        backoff=0.01,
    )


@pytest.fixture
def oauth(fake_webex: FakeWebex) -> WebexOAuth:
    return make_oauth(fake_webex)


def test_openid_login_verifies_the_id_token_and_labels_the_account_with_its_email(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    fake_webex.user = "carol@example.com"
    request = oauth.authorization_request()
    query = parse_qs(urlsplit(request.url).query)
    assert request.nonce is not None and query["nonce"] == [request.nonce]
    assert request.nonce not in repr(request)

    token = oauth.exchange_code(
        parse_callback_url(fake_webex.approve(request.url), request.state).code, request
    )
    assert token.id_token is not None and token.id_token not in repr(token)
    assert token.account == "carol@example.com"
    assert fake_webex.calls["people_me"] == 0  # the ID token named the person
    claims = oauth.verify_id_token(token.id_token, nonce=request.nonce)
    assert claims["email"] == "carol@example.com" and claims["aud"] == fake_webex.client_id
    assert oauth.userinfo(token)["email"] == "carol@example.com"


def test_without_openid_there_is_no_nonce_and_no_discovery(fake_webex: FakeWebex) -> None:
    oauth = make_oauth(fake_webex, ("spark:all",))
    request = oauth.authorization_request()
    assert request.nonce is None and "nonce" not in parse_qs(urlsplit(request.url).query)
    token = oauth.login(open_browser=fake_webex.open_browser, timeout=10, notify=lambda n: None)
    assert token.id_token is None and token.account == fake_webex.user
    assert fake_webex.calls["openid_configuration"] == 0


@pytest.mark.parametrize("fault", ID_TOKEN_FAULTS)
def test_hostile_id_token_is_refused_and_nothing_is_stored(
    oauth: WebexOAuth, fake_webex: FakeWebex, fault: str
) -> None:
    fake_webex.oidc.break_next_id_token(fault)
    with open_store("memory://") as store, Keeper(store, oauth=oauth) as keeper:
        with pytest.raises(IDTokenInvalid) as caught:
            keeper.login(open_browser=fake_webex.open_browser, timeout=10, notify=lambda n: None)
        assert store.names() == []
    message = str(caught.value)
    assert "nothing was stored" in message and "\n" not in message
    expected = {
        "unknown_key": "key that is not among",
        "bad_signature": "signature does not match",
        "alg_none": "not signed with an algorithm allowed",
        "wrong_issuer": "issuer is not the expected one",
        "wrong_audience": "audience is not the expected one",
        "expired": "expired",
        "wrong_nonce": "nonce is not the expected one",
        "missing_nonce": "no nonce claim",
    }[fault]
    assert expected in message


def test_the_issuer_comes_from_the_discovery_document(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    fake_webex.oidc.issuer = "https://idbroker.example/idb"
    token = oauth.login(open_browser=fake_webex.open_browser, timeout=10, notify=lambda n: None)
    assert token.account == fake_webex.user
    assert fake_webex.calls["openid_configuration"] == 1


def test_rotated_keys_are_fetched_again_once(oauth: WebexOAuth, fake_webex: FakeWebex) -> None:
    oauth.login(open_browser=fake_webex.open_browser, timeout=10, notify=lambda n: None)
    fake_webex.oidc.rotate_key(keep_old=False)
    token = oauth.login(open_browser=fake_webex.open_browser, timeout=10, notify=lambda n: None)
    assert token.id_token is not None
    assert fake_webex.calls["jwks"] == 2 and fake_webex.calls["openid_configuration"] == 1


def test_a_login_answer_without_the_id_token_asked_for_is_refused(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    # The integration asks for openid; the login granted (here: the URL sent) lacks it.
    request = oauth.authorization_request()
    url = request.url.replace("openid", "spark%3Aall")
    code = parse_callback_url(fake_webex.approve(url), request.state).code
    with pytest.raises(IDTokenInvalid, match="without an ID token"):
        oauth.exchange_code(code, request)


def test_device_login_with_openid_verifies_the_id_token(fake_webex: FakeWebex) -> None:
    fake_webex.device.interval = 0.1
    fake_webex.device.auto_approve_as = "dana@example.com"
    oauth = make_oauth(fake_webex)
    token = oauth.device_login(notify=lambda n: None, timeout=10)
    assert token.id_token is not None and token.account == "dana@example.com"
    assert fake_webex.calls["people_me"] == 0

    fake_webex.oidc.break_next_id_token("wrong_audience")
    with pytest.raises(IDTokenInvalid, match="audience"):
        oauth.device_login(notify=lambda n: None, timeout=10)


def test_verify_id_token_refuses_garbage(oauth: WebexOAuth) -> None:
    for garbage in ("", "abc", "a.b.c", "x" * 20000):
        with pytest.raises(IDTokenInvalid):
            oauth.verify_id_token(garbage)


def test_a_named_openid_login_records_the_email_of_the_id_token(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    fake_webex.user = "gina@example.com"
    with open_store("memory://") as store, Keeper(store, oauth=oauth) as keeper:
        name, token = keeper.login(
            name="ops", open_browser=fake_webex.open_browser, timeout=10, notify=lambda n: None
        )
        assert name == "ops" and store.names() == ["ops"]
    assert token.account == "gina@example.com" and fake_webex.calls["people_me"] == 0
