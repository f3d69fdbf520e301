from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webex_tokens import InvalidToken, Token
from webex_tokens.token import FORMAT_VERSION, fingerprint

NOW = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)
ACCESS = "ZTA2NDkyYTkt-access-secret"
REFRESH = "RzdiMDBiMGIt-refresh-secret"

#: What the Webex token endpoint answers (https://webexapis.com/v1/access_token).
WEBEX_ANSWER = {
    "access_token": ACCESS,
    "expires_in": 1209599,
    "refresh_token": REFRESH,
    "refresh_token_expires_in": 7775999,
    "token_type": "Bearer",
    "scope": "spark:all spark:kms",
}


@pytest.fixture
def new_york_time() -> Iterator[None]:
    """Run the test with the local time zone five hours behind UTC."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "EST+05"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


# -- from_response ---------------------------------------------------------------------


def test_from_response_turns_relative_expiries_into_times() -> None:
    token = Token.from_response(WEBEX_ANSWER, now=NOW)
    assert token.access_token == ACCESS
    assert token.refresh_token == REFRESH
    assert token.token_type == "Bearer"
    assert token.expires_at == NOW + timedelta(seconds=1209599)
    assert token.refresh_token_expires_at == NOW + timedelta(seconds=7775999)
    assert token.scopes == ("spark:all", "spark:kms")
    assert token.saved_at == NOW == token.issued_at


def test_from_response_accepts_expiries_as_numeric_text() -> None:
    token = Token.from_response({**WEBEX_ANSWER, "expires_in": "3600"}, now=NOW)
    assert token.expires_at == NOW + timedelta(hours=1)


def test_from_response_records_owner_and_integration() -> None:
    token = Token.from_response(WEBEX_ANSWER, now=NOW, client_id="C123", account="a@b.c")
    assert (token.client_id, token.account) == ("C123", "a@b.c")


def test_from_response_defaults_now_to_the_current_time() -> None:
    before = datetime.now(timezone.utc)
    token = Token.from_response({"access_token": ACCESS, "expires_in": 60})
    after = datetime.now(timezone.utc)
    assert before <= token.saved_at <= after
    assert token.expires_at is not None
    assert before + timedelta(seconds=60) <= token.expires_at <= after + timedelta(seconds=60)


def test_from_response_without_expiry_or_refresh_token() -> None:
    token = Token.from_response({"access_token": ACCESS}, now=NOW)
    assert token.expires_at is None
    assert token.refresh_token is None
    assert token.refresh_token_expires_at is None
    assert token.scopes == ()
    assert token.expires_in(NOW) is None
    assert token.is_expired(now=NOW) is False


def test_from_response_converts_now_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    token = Token.from_response(WEBEX_ANSWER, now=NOW.astimezone(plus_two))
    assert token.saved_at == NOW
    assert token.saved_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_token_type_is_case_insensitive_bearer(token_type: str) -> None:
    token = Token.from_response({**WEBEX_ANSWER, "token_type": token_type}, now=NOW)
    assert token.token_type == "Bearer"


def test_missing_token_type_means_bearer() -> None:
    answer = {k: v for k, v in WEBEX_ANSWER.items() if k != "token_type"}
    assert Token.from_response(answer, now=NOW).token_type == "Bearer"


@pytest.mark.parametrize("answer", [{}, {"access_token": None}, {"access_token": ""}])
def test_missing_access_token_is_refused(answer: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken, match="access_token") as info:
        Token.from_response({**answer, "refresh_token": REFRESH}, now=NOW)
    assert isinstance(info.value, ValueError)
    assert REFRESH not in str(info.value)


def test_missing_access_token_message_says_what_to_pass() -> None:
    with pytest.raises(InvalidToken, match="whole JSON answer"):
        Token.from_response({"expires_in": 10}, now=NOW)


def test_blank_access_token_is_refused() -> None:
    with pytest.raises(InvalidToken, match="'access_token' is empty"):
        Token.from_response({"access_token": "   "}, now=NOW)


@pytest.mark.parametrize("token_type", ["mac", "MAC", "DPoP", "basic"])
def test_unknown_token_type_is_refused(token_type: str) -> None:
    with pytest.raises(InvalidToken, match="Bearer tokens only") as info:
        Token.from_response({**WEBEX_ANSWER, "token_type": token_type}, now=NOW)
    assert repr(token_type) in str(info.value)
    assert ACCESS not in str(info.value) and REFRESH not in str(info.value)


@pytest.mark.parametrize("field", ["expires_in", "refresh_token_expires_in"])
@pytest.mark.parametrize("value", ["soon", [3600], {"s": 1}, True])
def test_non_numeric_expiry_is_refused(field: str, value: Any) -> None:
    with pytest.raises(InvalidToken, match=f"'{field}' must be a number of seconds"):
        Token.from_response({**WEBEX_ANSWER, field: value}, now=NOW)


@pytest.mark.parametrize(
    "value",
    [-1, float("nan"), float("inf"), 10**400, "1e999"],
    ids=["neg", "nan", "inf", "huge", "big"],
)
def test_out_of_range_expiry_is_refused(value: Any) -> None:
    with pytest.raises(InvalidToken, match="'expires_in'"):
        Token.from_response({**WEBEX_ANSWER, "expires_in": value}, now=NOW)


def test_non_object_answer_is_refused() -> None:
    with pytest.raises(InvalidToken, match="JSON object"):
        Token.from_response(["access_token", ACCESS], now=NOW)  # type: ignore[arg-type]


def test_non_text_scope_is_refused() -> None:
    with pytest.raises(InvalidToken, match="'scope'"):
        Token.from_response({**WEBEX_ANSWER, "scope": 42}, now=NOW)


def test_naive_now_is_refused(new_york_time: None) -> None:
    # datetime.utcnow() is naive: taken as local time it would shift every expiry.
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(InvalidToken, match="timezone-aware"):
        Token.from_response(WEBEX_ANSWER, now=naive)
    token = Token.from_response(WEBEX_ANSWER, now=NOW)
    for question in (token.expires_in, token.refresh_expires_in):
        with pytest.raises(InvalidToken, match="timezone-aware"):
            question(naive)
    with pytest.raises(InvalidToken, match="timezone-aware"):
        token.is_expired(now=naive)


# -- the versioned JSON form ---------------------------------------------------------


def full_token() -> Token:
    return Token.from_response(WEBEX_ANSWER, now=NOW, client_id="C123", account="alice@example.com")


def test_to_dict_is_the_versioned_json_form() -> None:
    data = full_token().to_dict()
    assert data == {
        "version": 1,
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "token_type": "Bearer",
        "expires_at": (NOW + timedelta(seconds=1209599)).isoformat(),
        "refresh_token_expires_at": (NOW + timedelta(seconds=7775999)).isoformat(),
        "scopes": ["spark:all", "spark:kms"],
        "client_id": "C123",
        "account": "alice@example.com",
        "saved_at": NOW.isoformat(),
    }
    assert FORMAT_VERSION == 1
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize(
    "token",
    [
        full_token(),
        Token(access_token=ACCESS, saved_at=NOW),
        Token(access_token="ü unicode ✓", scopes=("a",), saved_at=NOW, account="Zoë"),
    ],
    ids=["full", "bare", "unicode"],
)
def test_to_dict_from_dict_round_trip(token: Token) -> None:
    again = Token.from_dict(json.loads(json.dumps(token.to_dict())))
    assert again == token
    assert again.to_dict() == token.to_dict()


def test_from_dict_keeps_saved_at_of_stored_token() -> None:
    data = {"version": 1, "access_token": ACCESS, "saved_at": "2025-01-01T00:00:00+00:00"}
    assert Token.from_dict(data).saved_at == datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_newer_format_is_refused_with_an_upgrade_hint() -> None:
    data = {**full_token().to_dict(), "version": 2}
    with pytest.raises(InvalidToken, match=r"newer webex-tokens.*pip install -U webex-tokens"):
        Token.from_dict(data)


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True])
def test_bad_format_version_is_refused(version: Any) -> None:
    with pytest.raises(InvalidToken, match="version"):
        Token.from_dict({**full_token().to_dict(), "version": version})


def test_from_dict_refuses_what_is_not_an_object() -> None:
    with pytest.raises(InvalidToken, match="must be a JSON object, not list"):
        Token.from_dict([ACCESS])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("expires_at", "next tuesday", "ISO 8601"),
        ("expires_at", True, "not a boolean"),
        ("expires_at", [1], "must be a time"),
        ("expires_at", 10**400, "epoch"),
        ("saved_at", "0001-01-01T00:00:00+05:00", "out of range"),
        ("client_id", 42, "must be text"),
        ("refresh_token", {"x": 1}, "must be text"),
        ("scopes", [1, 2], "'scopes'"),
    ],
)
def test_from_dict_names_the_bad_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidToken, match=message) as info:
        Token.from_dict({**full_token().to_dict(), field: value})
    assert field.partition("_")[0] in str(info.value)
    assert ACCESS not in str(info.value)


# -- legacy and Authlib forms -------------------------------------------------------


def test_from_dict_reads_the_legacy_webex_token_file(new_york_time: None) -> None:
    # The seed guide wrote datetime.now().isoformat(): naive local time.
    legacy = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "saved_at": "2025-10-31T22:54:13.135722",
    }
    token = Token.from_dict(legacy)
    assert token.access_token == ACCESS
    assert token.refresh_token == REFRESH
    assert token.token_type == "Bearer"
    assert token.saved_at == datetime(2025, 11, 1, 3, 54, 13, 135722, tzinfo=timezone.utc)
    assert token.expires_at is None
    assert token.scopes == ()


def test_legacy_form_with_expires_in_counts_from_saved_at() -> None:
    legacy = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_in": 3600,
        "refresh_token_expires_in": 7200,
        "saved_at": "2025-10-31T22:54:13+00:00",
    }
    token = Token.from_dict(legacy)
    saved = datetime(2025, 10, 31, 22, 54, 13, tzinfo=timezone.utc)
    assert token.expires_at == saved + timedelta(hours=1)
    assert token.refresh_token_expires_at == saved + timedelta(hours=2)


def test_legacy_form_near_the_end_of_time_is_refused() -> None:
    legacy = {"access_token": ACCESS, "saved_at": "9999-12-31T23:59:59+00:00", "expires_in": 100}
    with pytest.raises(InvalidToken, match="out of range"):
        Token.from_dict(legacy)


def test_from_dict_reads_an_authlib_oauth2token() -> None:
    from authlib.oauth2.rfc6749 import OAuth2Token

    expires_at = int((NOW + timedelta(hours=1)).timestamp())
    authlib_token = OAuth2Token(
        {
            "access_token": ACCESS,
            "refresh_token": REFRESH,
            "token_type": "bearer",
            "expires_at": expires_at,
            "scope": "spark:all spark:kms",
        }
    )
    token = Token.from_dict(authlib_token)
    assert token.access_token == ACCESS
    assert token.refresh_token == REFRESH
    assert token.token_type == "Bearer"
    assert token.expires_at == datetime.fromtimestamp(expires_at, timezone.utc)
    assert token.scopes == ("spark:all", "spark:kms")


def test_authlib_dict_round_trips_through_to_authlib() -> None:
    token = full_token()
    again = Token.from_dict(token.to_authlib())
    assert again.access_token == token.access_token
    assert again.refresh_token == token.refresh_token
    assert again.scopes == token.scopes
    assert token.expires_at is not None and again.expires_at is not None
    assert abs((again.expires_at - token.expires_at).total_seconds()) < 1


def test_authlib_dict_with_issued_at_and_expires_in() -> None:
    issued = int(NOW.timestamp())
    token = Token.from_dict({"access_token": ACCESS, "issued_at": issued, "expires_in": 60})
    assert token.saved_at == datetime.fromtimestamp(issued, timezone.utc)
    assert token.expires_at == token.saved_at + timedelta(seconds=60)


# -- questions ----------------------------------------------------------------------


def test_expires_in_counts_seconds_left_and_goes_negative() -> None:
    token = Token(access_token=ACCESS, expires_at=NOW + timedelta(seconds=90), saved_at=NOW)
    assert token.expires_in(NOW) == 90
    assert token.expires_in(NOW + timedelta(seconds=100)) == -10


def test_expires_in_defaults_to_the_current_time() -> None:
    token = Token(access_token=ACCESS, expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
    left = token.expires_in()
    assert left is not None and 3590 < left <= 3600


def test_is_expired_with_leeway() -> None:
    token = Token(access_token=ACCESS, expires_at=NOW + timedelta(seconds=300), saved_at=NOW)
    assert token.is_expired(now=NOW) is False
    assert token.is_expired(leeway=299, now=NOW) is False
    assert token.is_expired(leeway=300, now=NOW) is True
    assert token.is_expired(leeway=600, now=NOW) is True
    assert token.is_expired(now=NOW + timedelta(seconds=300)) is True
    assert token.is_expired(now=NOW + timedelta(days=1)) is True


def test_is_expired_uses_the_current_time() -> None:
    past = Token(access_token=ACCESS, expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    future = Token(access_token=ACCESS, expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert past.is_expired() is True
    assert future.is_expired() is False
    assert future.is_expired(leeway=7200) is True


def test_refresh_expires_in() -> None:
    token = full_token()
    assert token.refresh_expires_in(NOW) == 7775999
    assert Token(access_token=ACCESS).refresh_expires_in(NOW) is None


# -- secrets and immutability --------------------------------------------------------


def test_repr_and_str_show_a_fingerprint_never_a_secret() -> None:
    token = full_token()
    for text in (repr(token), str(token), f"{token}", repr([token]), repr({"t": token})):
        assert ACCESS not in text
        assert REFRESH not in text
        assert ACCESS[:8] not in text and REFRESH[:8] not in text
        assert fingerprint(ACCESS) in text
        assert "alice@example.com" in text


def test_fingerprint_is_stable_short_and_distinct() -> None:
    assert fingerprint(ACCESS) == fingerprint(ACCESS) == full_token().fingerprint
    assert fingerprint(ACCESS).startswith("sha256:") and len(fingerprint(ACCESS)) == 15
    assert fingerprint(ACCESS) != fingerprint(REFRESH)


@pytest.mark.parametrize("field", ["expires_at", "refresh_token_expires_at", "saved_at"])
def test_naive_datetimes_are_refused(field: str) -> None:
    naive: dict[str, Any] = {field: datetime(2026, 1, 1)}
    with pytest.raises(InvalidToken, match=f"'{field}' must be timezone-aware"):
        Token(access_token=ACCESS, **naive)


def test_aware_datetimes_are_stored_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    token = Token(access_token=ACCESS, expires_at=NOW.astimezone(plus_two), saved_at=NOW)
    assert token.expires_at == NOW
    assert token.expires_at is not None and token.expires_at.tzinfo == timezone.utc


def test_constructor_validates_like_from_dict() -> None:
    with pytest.raises(InvalidToken, match="access_token"):
        Token(access_token="")
    with pytest.raises(InvalidToken, match="Bearer tokens only"):
        Token(access_token=ACCESS, token_type="mac")
    with pytest.raises(InvalidToken, match="must be a datetime"):
        Token(access_token=ACCESS, expires_at="2026-01-01")  # type: ignore[arg-type]


def test_token_is_immutable_and_hashable() -> None:
    token = full_token()
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.access_token = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del token.refresh_token
    assert token.scopes == ("spark:all", "spark:kms")
    assert isinstance(token.scopes, tuple)
    assert {token, full_token()} == {token}


def test_replace_returns_a_changed_copy() -> None:
    token = full_token()
    other = token.replace(access_token="new-access")
    assert other.access_token == "new-access"
    assert token.access_token == ACCESS
    assert other.refresh_token == token.refresh_token
    with pytest.raises(InvalidToken):
        token.replace(expires_at=datetime(2026, 1, 1))


# -- any input: a Token or InvalidToken, nothing else ------------------------------

SENTINEL = "SENTINEL-ACCESS-TOKEN-4f1c"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.datetimes().map(lambda d: d.isoformat())
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)

FIELDS = [
    "version",
    "refresh_token",
    "token_type",
    "expires_at",
    "expires_in",
    "refresh_token_expires_at",
    "refresh_token_expires_in",
    "scope",
    "scopes",
    "client_id",
    "account",
    "saved_at",
    "issued_at",
]

token_like = st.fixed_dictionaries(
    {"access_token": st.sampled_from([SENTINEL, None, "", 7])},
    optional={
        **{field: json_values for field in FIELDS},
        "version": st.sampled_from([None, 0, 1, 2, "1", True]) | st.integers(),
        "token_type": st.sampled_from(["Bearer", "bearer", "mac", None, 1]),
        "expires_in": st.integers(-10, 10**12) | st.floats() | json_values,
        "expires_at": st.integers(-10, 10**12) | st.floats() | json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values, token_like))
def test_from_dict_returns_a_token_or_raises_invalid_token(data: Any) -> None:
    try:
        token = Token.from_dict(data)
    except InvalidToken as exc:
        message = str(exc)
    else:
        message = ""
        assert Token.from_dict(json.loads(json.dumps(token.to_dict()))) == token
        assert SENTINEL not in repr(token)
    assert SENTINEL not in message


# -- credential kinds, organizations and ID tokens (DESIGN section 12) ------------------

#: A record exactly as webex-tokens 0.1.0 wrote it.
RECORD_0_1_0 = {
    "version": 1,
    "access_token": "AT-old",
    "refresh_token": "RT-old",
    "token_type": "Bearer",
    "expires_at": "2026-03-04T17:06:07+00:00",
    "refresh_token_expires_at": "2026-05-04T05:06:07+00:00",
    "scopes": ["spark:all"],
    "client_id": "C1",
    "account": "alice@example.com",
    "saved_at": "2026-03-04T05:06:07+00:00",
}


def test_a_record_written_by_0_1_0_reads_back_as_an_integration_token() -> None:
    token = Token.from_dict(RECORD_0_1_0)
    assert (token.kind, token.org_id, token.id_token) == ("integration", None, None)
    assert token.to_dict() == RECORD_0_1_0  # and is written back byte for byte alike


@pytest.mark.parametrize("kind", ["integration", "service_app", "bot", "personal"])
def test_every_kind_reads_back_field_for_field(kind: str) -> None:
    token = Token(
        access_token="AT",
        refresh_token="RT" if kind in ("integration", "service_app") else None,
        expires_at=NOW + timedelta(hours=1) if kind != "bot" else None,
        scopes=("spark:all",),
        client_id="C1",
        account="org-admin@example.com",
        saved_at=NOW,
        kind=kind,
        org_id="ORG-1" if kind == "service_app" else None,
        id_token="eyJ.header.sig" if kind == "integration" else None,
    )
    again = Token.from_dict(json.loads(json.dumps(token.to_dict())))
    assert again == token
    assert {field.name: getattr(again, field.name) for field in dataclasses.fields(Token)} == {
        field.name: getattr(token, field.name) for field in dataclasses.fields(Token)
    }


def test_a_personal_token_without_expiry_lasts_twelve_hours() -> None:
    token = Token(access_token="PAT", kind="personal", saved_at=NOW)
    assert token.expires_at == NOW + timedelta(hours=12)


def test_a_bot_token_never_expires() -> None:
    token = Token(access_token="BOT", kind="bot", saved_at=NOW)
    assert token.expires_at is None and not token.is_expired(now=NOW + timedelta(days=3650))


@pytest.mark.parametrize("kind", ["", "Bot", "service-app", 3, None.__class__])
def test_an_unknown_kind_is_refused(kind: Any) -> None:
    with pytest.raises(InvalidToken, match="kind"):
        Token(access_token="AT", kind=kind)


def test_an_unknown_kind_in_stored_data_is_refused() -> None:
    with pytest.raises(InvalidToken, match="unknown token kind 'robot'"):
        Token.from_dict({**RECORD_0_1_0, "kind": "robot"})


def test_the_id_token_is_kept_from_the_answer_and_never_shown() -> None:
    secret = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    token = Token.from_response({"access_token": "AT", "id_token": secret}, NOW)
    assert token.id_token == secret
    assert secret not in repr(token) and secret not in str(token)


def test_the_repr_names_the_kind_and_organization() -> None:
    token = Token(access_token="AT", kind="service_app", org_id="ORG-1")
    assert "kind='service_app'" in repr(token) and "org_id='ORG-1'" in repr(token)
