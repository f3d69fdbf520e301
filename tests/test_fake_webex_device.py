"""FakeWebex's device grant over real HTTP: authorize, polling, slow_down, expiry, denial,
the verification page and the record of polls."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from webex_tokens.testing.fake_webex import DEVICE_GRANT_TYPE, FakeWebex


def device_authorize(fake: FakeWebex, scope: str = "spark:all", **extra: str) -> dict[str, Any]:
    response = requests.post(
        fake.device.authorize_url,
        data={"client_id": fake.client_id, "scope": scope, **extra},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    answer: dict[str, Any] = response.json()
    return answer


def poll(fake: FakeWebex, code: str, **overrides: str | None) -> requests.Response:
    data: dict[str, str | None] = {
        "grant_type": DEVICE_GRANT_TYPE,
        "device_code": code,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
    }
    data.update(overrides)
    body = {k: v for k, v in data.items() if v is not None}
    return requests.post(fake.device.token_url, data=body, timeout=10)


def assert_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


@pytest.fixture
def fast(fake_webex: FakeWebex) -> FakeWebex:
    """An emulator whose device codes are polled every 0.2 s."""
    fake_webex.device.interval = 0.2
    return fake_webex


# -- /device/authorize ---------------------------------------------------------------------


def test_authorize_answers_the_rfc8628_fields(fake_webex: FakeWebex) -> None:
    answer = device_authorize(fake_webex)
    assert set(answer) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert (answer["expires_in"], answer["interval"]) == (300, 5)
    assert answer["verification_uri"] == fake_webex.device.verification_uri
    assert answer["verification_uri_complete"] == (
        f"{answer['verification_uri']}?userCode={answer['user_code']}"
    )
    assert len(answer["device_code"]) >= 32
    assert answer["user_code"] != device_authorize(fake_webex)["user_code"]
    flow = fake_webex.device.latest
    assert (flow.status, flow.scope, flow.client_id) == ("pending", "spark:all", "fake-client-id")
    assert answer["device_code"] not in repr(flow)


def test_interval_can_be_left_out_and_then_five_seconds_apply(fake_webex: FakeWebex) -> None:
    fake_webex.device.interval = None
    answer = device_authorize(fake_webex)
    assert "interval" not in answer
    assert poll(fake_webex, answer["device_code"]).status_code == 428
    time.sleep(0.3)
    assert_error(poll(fake_webex, answer["device_code"]), 400, "slow_down")
    assert fake_webex.device.latest.interval == 10


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"client_id": "someone-else", "scope": "spark:all"}, 401, "invalid_client"),
        ({"client_id": "fake-client-id"}, 400, "invalid_scope"),
        (
            {"client_id": "fake-client-id", "scope": "spark:all", "client_secret": "no"},
            401,
            "invalid_client",
        ),
    ],
)
def test_authorize_refuses_bad_requests(
    fake_webex: FakeWebex, data: dict[str, str], status: int, error: str
) -> None:
    response = requests.post(fake_webex.device.authorize_url, data=data, timeout=10)
    assert_error(response, status, error)
    assert fake_webex.device.flows == []


def test_authorize_wants_a_form_and_post(fake_webex: FakeWebex) -> None:
    body = {"client_id": fake_webex.client_id, "scope": "spark:all"}
    response = requests.post(fake_webex.device.authorize_url, json=body, timeout=10)
    assert_error(response, 400, "invalid_request")
    assert requests.get(fake_webex.device.authorize_url, timeout=10).status_code == 405


def test_a_service_app_cannot_use_the_device_grant(fake_webex: FakeWebex) -> None:
    app = fake_webex.service_apps.register()
    data = {"client_id": app.client_id, "client_secret": app.client_secret, "scope": "spark:all"}
    response = requests.post(fake_webex.device.authorize_url, data=data, timeout=10)
    assert_error(response, 401, "invalid_client")


# -- polling -------------------------------------------------------------------------------


@pytest.mark.parametrize("basic", [False, True], ids=["body-credentials", "http-basic"])
def test_pending_then_approved_gives_the_pair_once(fast: FakeWebex, basic: bool) -> None:
    answer = device_authorize(fast)
    code = answer["device_code"]

    def go() -> requests.Response:
        if not basic:
            return poll(fast, code)
        data = {"grant_type": DEVICE_GRANT_TYPE, "device_code": code}
        auth = (fast.client_id, fast.client_secret)
        return requests.post(fast.device.token_url, data=data, auth=auth, timeout=10)

    pending = go()
    assert pending.status_code == 428
    assert "error" not in pending.json()  # Webex's shape: the status says it
    assert pending.json()["message"]
    fast.device.approve(answer["user_code"], "bob@example.com")
    assert fast.device.latest.status == "approved"
    time.sleep(0.25)
    granted = go()
    assert granted.status_code == 200, granted.text
    pair = granted.json()
    assert set(pair) == {
        "access_token",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "token_type",
        "scope",
    }
    headers = {"Authorization": "Bearer " + pair["access_token"]}
    me = requests.get(fast.people_me_url, headers=headers, timeout=10)
    assert me.json()["emails"] == ["bob@example.com"]
    time.sleep(0.25)
    assert_error(go(), 400, "invalid_grant")  # a device code is good for one pair
    flow = fast.device.latest
    assert flow.status == "used" and flow.user == "bob@example.com"
    assert [p.outcome for p in flow.polls] == ["authorization_pending", "issued", "invalid_grant"]
    refreshed = requests.post(
        fast.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": pair["refresh_token"],
            "client_id": fast.client_id,
            "client_secret": fast.client_secret,
        },
        timeout=10,
    )
    assert refreshed.status_code == 200


def test_rfc8628_pending_style(fast: FakeWebex) -> None:
    fast.device.pending_style = "rfc8628"
    response = poll(fast, device_authorize(fast)["device_code"])
    assert_error(response, 400, "authorization_pending")
    with pytest.raises(ValueError, match="pending_style"):
        fast.device.pending_style = "teapot"


def test_polling_too_fast_is_slow_down_and_the_interval_grows(fast: FakeWebex) -> None:
    code = device_authorize(fast)["device_code"]
    assert poll(fast, code).status_code == 428
    assert_error(poll(fast, code), 400, "slow_down")
    assert fast.device.latest.interval == pytest.approx(5.2)
    time.sleep(0.3)  # enough for the old interval, not for the grown one
    assert_error(poll(fast, code), 400, "slow_down")
    assert fast.device.latest.interval == pytest.approx(10.2)


def test_after_slow_down_the_grown_interval_is_enough(fast: FakeWebex) -> None:
    fast.device.slow_down_step = 0.2
    code = device_authorize(fast)["device_code"]
    poll(fast, code)
    assert_error(poll(fast, code), 400, "slow_down")
    time.sleep(0.45)
    assert poll(fast, code).status_code == 428


def test_the_first_poll_may_come_at_once_unless_told(fast: FakeWebex) -> None:
    assert poll(fast, device_authorize(fast)["device_code"]).status_code == 428
    fast.device.first_poll_waits = True
    assert_error(poll(fast, device_authorize(fast)["device_code"]), 400, "slow_down")


def test_expiry_answers_expired_token(fast: FakeWebex) -> None:
    fast.device.expires_in = 0.3
    answer = device_authorize(fast)
    assert answer["expires_in"] == 0.3
    time.sleep(0.35)
    assert_error(poll(fast, answer["device_code"]), 400, "expired_token")
    flow = fast.device.latest
    assert flow.status == "expired"
    assert flow.polls_after_expiry == 1
    with pytest.raises(ValueError, match="expired"):
        fast.device.approve(answer["user_code"])


def test_expire_control(fast: FakeWebex) -> None:
    first, second = device_authorize(fast), device_authorize(fast)
    fast.device.expire(first["user_code"])
    assert_error(poll(fast, first["device_code"]), 400, "expired_token")
    assert poll(fast, second["device_code"]).status_code == 428
    fast.device.expire()
    time.sleep(0.25)
    assert_error(poll(fast, second["device_code"]), 400, "expired_token")


def test_an_approved_code_that_expires_before_the_poll_gives_nothing(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    fast.device.approve(answer["user_code"])
    fast.device.expire(answer["user_code"])
    assert_error(poll(fast, answer["device_code"]), 400, "expired_token")


def test_denied_is_access_denied(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    fast.device.deny(answer["user_code"])
    assert_error(poll(fast, answer["device_code"]), 400, "access_denied")
    with pytest.raises(ValueError, match="denied"):
        fast.device.approve(answer["user_code"])


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_secret": None}, 401, "invalid_client"),
        ({"device_code": "made-up"}, 400, "invalid_grant"),
        ({"device_code": None}, 400, "invalid_request"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
    ],
)
def test_bad_polls_are_refused(
    fast: FakeWebex, overrides: dict[str, str | None], status: int, error: str
) -> None:
    answer = device_authorize(fast)
    fast.device.approve(answer["user_code"])
    assert_error(poll(fast, answer["device_code"], **overrides), status, error)
    assert fast.device.latest.status == "approved"  # nothing was issued


def test_a_poll_as_json_is_refused(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    body = {
        "grant_type": DEVICE_GRANT_TYPE,
        "device_code": answer["device_code"],
        "client_id": fast.client_id,
        "client_secret": fast.client_secret,
    }
    response = requests.post(fast.device.token_url, json=body, timeout=10)
    assert_error(response, 400, "invalid_request")


def test_another_clients_device_code_is_invalid_grant(fast: FakeWebex) -> None:
    app = fast.service_apps.register()
    answer = device_authorize(fast)
    fast.device.approve(answer["user_code"])
    response = poll(
        fast, answer["device_code"], client_id=app.client_id, client_secret=app.client_secret
    )
    assert_error(response, 400, "invalid_grant")


def test_polls_are_recorded_with_their_times(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    for _ in range(3):
        poll(fast, answer["device_code"])
        time.sleep(0.25)
    flow = fast.device.flow(answer["device_code"])
    assert flow == fast.device.flow(answer["user_code"].lower().replace("-", " "))
    assert len(flow.polls) == 3
    assert all(gap >= 0.25 for gap in flow.gaps)
    assert flow.issued_at <= flow.polls[0].at <= time.monotonic()
    assert {p.status for p in flow.polls} == {428}


def test_injected_failures_on_the_device_token_endpoint(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    fast.fail_next(429, retry_after=1, endpoint="device_token")
    response = poll(fast, answer["device_code"])
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert [p.outcome for p in fast.device.latest.polls] == ["injected"]
    fast.fail_next(503, endpoint="device_authorize")
    failed = requests.post(
        fast.device.authorize_url, data={"client_id": fast.client_id, "scope": "x"}, timeout=10
    )
    assert failed.status_code == 503
    with pytest.raises(ValueError, match="endpoint"):
        fast.fail_next(500, endpoint="people_me")


def test_auto_approval(fast: FakeWebex) -> None:
    fast.device.auto_approve_as = "carol@example.com"
    fast.device.auto_approve_after_polls = 1
    code = device_authorize(fast)["device_code"]
    assert poll(fast, code).status_code == 428
    time.sleep(0.25)
    assert poll(fast, code).status_code == 200
    assert fast.device.latest.user == "carol@example.com"
    fast.device.auto_approve_after_polls = 0
    assert poll(fast, device_authorize(fast)["device_code"]).status_code == 200


def test_controls_name_unknown_codes(fast: FakeWebex) -> None:
    with pytest.raises(LookupError):
        _ = fast.device.latest
    with pytest.raises(LookupError):
        fast.device.approve("BCDF-GHJK")
    answer = device_authorize(fast)
    fast.device.approve(answer["user_code"])
    with pytest.raises(ValueError, match="already approved"):
        fast.device.deny(answer["user_code"])


def test_counted(fast: FakeWebex) -> None:
    poll(fast, device_authorize(fast)["device_code"])
    assert (fast.calls["device_authorize"], fast.calls["device_token"]) == (1, 1)


# -- the verification page -----------------------------------------------------------------


def test_the_verification_page_fills_in_the_code_and_escapes(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    page = requests.get(answer["verification_uri_complete"], timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert f"value='{answer['user_code']}'" in page.text
    hostile = requests.get(
        fast.device.verification_uri, params={"userCode": "<script>x</script>'"}, timeout=10
    )
    assert "<script>" not in hostile.text
    assert "default-src 'none'" in hostile.headers["Content-Security-Policy"]


def test_a_person_approves_on_the_page(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    typed = answer["user_code"].replace("-", "").lower()  # as people type it
    form = {"user_code": typed, "email": "dave@example.com", "decision": "approve"}
    page = requests.post(fast.device.verification_uri, data=form, timeout=10)
    assert page.status_code == 200 and "Allowed" in page.text
    granted = poll(fast, answer["device_code"])
    assert granted.status_code == 200
    assert fast.device.latest.user == "dave@example.com"
    again = requests.post(fast.device.verification_uri, data=form, timeout=10)
    assert again.status_code == 400


def test_a_person_denies_on_the_page(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    form = {"user_code": answer["user_code"], "decision": "deny"}
    assert requests.post(fast.device.verification_uri, data=form, timeout=10).status_code == 200
    assert_error(poll(fast, answer["device_code"]), 400, "access_denied")


@pytest.mark.parametrize(
    "form",
    [
        {"user_code": "BCDF-GHJK", "decision": "approve"},  # unknown code
        {"user_code": "{code}", "decision": "approve", "email": "not-an-email"},
        {"user_code": "{code}", "decision": "maybe"},
    ],
)
def test_the_page_refuses_bad_forms(fast: FakeWebex, form: dict[str, str]) -> None:
    answer = device_authorize(fast)
    data = {k: v.replace("{code}", answer["user_code"]) for k, v in form.items()}
    assert requests.post(fast.device.verification_uri, data=data, timeout=10).status_code == 400
    assert fast.device.latest.status == "pending"


def test_the_page_refuses_an_expired_code(fast: FakeWebex) -> None:
    answer = device_authorize(fast)
    fast.device.expire()
    form = {"user_code": answer["user_code"], "decision": "approve"}
    page = requests.post(fast.device.verification_uri, data=form, timeout=10)
    assert page.status_code == 400 and "expired" in page.text
