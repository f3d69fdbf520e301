"""Fuzzing: arbitrary input to the parsers raises only the library's own errors.

Each target gets arbitrary input and structured input that looks almost right. It must
either succeed or raise a :class:`~webex_tokens.errors.WebexTokensError` (those that are
also ``ValueError``, such as ``InvalidStoreURL`` and ``InvalidToken``, count as the
library's own); anything else (a ``KeyError``, a ``TypeError``, a bare ``ValueError``,
an ``OSError``) fails the test with the input that caused it. The CI profile runs 150
examples per target; ``WEBEX_TOKENS_STRESS=full`` runs 10,000.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keyring.core
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keyring.backends import null
from stress_profile import FUZZ, record

from webex_tokens.backends.file import FileStore
from webex_tokens.backends.keyring import KeyringStore
from webex_tokens.backends.sql._url import parse_url
from webex_tokens.callback import handle_callback_query, parse_callback_url
from webex_tokens.errors import OAuthError, WebexTokensError
from webex_tokens.registry import backend_class, open_url
from webex_tokens.settings import load_settings
from webex_tokens.token import Token

#: A TCP port nothing listens on: database URLs point here, so nothing is reached.
CLOSED_PORT = 9
STATE = "expected-state-0123456789"
REDIRECT_URI = "http://localhost:8000/oauth/webex/callback"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
times = (
    st.datetimes().map(lambda value: value.isoformat())
    | st.sampled_from(["2025-10-31T22:54:13Z", "2025-10-31", "soon", "", "9999-12-31T23:59:59"])
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats()
)
TOKEN_KEYS = {
    "version": st.integers(-2, 3) | json_values,
    "access_token": st.text(max_size=30) | json_values,
    "refresh_token": st.text(max_size=30) | st.none() | json_values,
    "token_type": st.sampled_from(["Bearer", "bearer", "mac", "", "BEARER"]) | json_values,
    "expires_at": times | json_values,
    "refresh_token_expires_at": times | json_values,
    "expires_in": st.integers() | st.floats() | st.text(max_size=10) | json_values,
    "refresh_token_expires_in": st.integers() | st.floats() | st.text(max_size=10),
    "scope": st.text(max_size=30) | st.lists(st.text(max_size=10)) | json_values,
    "scopes": st.lists(st.text(max_size=10)) | json_values,
    "client_id": st.text(max_size=10) | json_values,
    "account": st.text(max_size=10) | json_values,
    "saved_at": times | json_values,
    "issued_at": times | json_values,
}
token_dicts = st.fixed_dictionaries({}, optional=TOKEN_KEYS)


def allowed(exc: BaseException) -> bool:
    """True for the library's own errors."""
    return isinstance(exc, WebexTokensError)


def check(call: Callable[[], object], what: str) -> None:
    try:
        call()
    except Exception as exc:
        if not allowed(exc):
            raise AssertionError(f"{what} raised {type(exc).__name__}: {exc}") from exc


class Counter:
    """How many examples a fuzz target ran, for the report."""

    def __init__(self) -> None:
        self.examples = 0


@contextmanager
def scratch_directory() -> Iterator[Path]:
    """A fresh current directory (settings, .env and SQLite files land there)."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)
        try:
            yield Path(directory)
        finally:
            os.chdir(previous)


# -- Token.from_dict and Token.from_response ---------------------------------------------


def test_token_from_dict_and_from_response() -> None:
    counter = Counter()

    @FUZZ
    @given(data=token_dicts | json_values)
    def run(data: Any) -> None:
        counter.examples += 1
        check(lambda: Token.from_dict(data), f"Token.from_dict({data!r})")
        check(lambda: Token.from_response(data), f"Token.from_response({data!r})")
        try:
            token = Token.from_dict(data)
        except WebexTokensError:
            return
        # What was read can be written and read back unchanged, and never shows a secret.
        assert Token.from_dict(token.to_dict()) == token
        assert token.access_token not in repr(token) or len(token.access_token) < 4

    run()
    record("fuzz", target="Token.from_dict / from_response", examples=counter.examples)


# -- store URLs ------------------------------------------------------------------------

SCHEMES = [
    "memory",
    "file",
    "keyring",
    "sqlite",
    "postgresql",
    "postgresql+psycopg",
    "postgres",
    "mysql",
    "mysql+pymysql",
    "mariadb",
    "mysql+mysqldb",
    "postgresql+asyncpg",
    "fernet+file",
    "fernet+memory",
    "fernet+sqlite",
    "fernet+fernet+file",
    "http",
    "nosuch",
]
OPTIONS = [
    "table",
    "lock_timeout",
    "connect_timeout",
    "key_env",
    "key_file",
    "key",
    "allow_insecure",
    "split",
    "max_value_bytes",
    "charset",
    "colour",
]
text_parts = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "0", "-1", "1e309", "nan", "inf", "%00", "%zz", "../", "~", "a b"]
)


@st.composite
def store_urls(draw: st.DrawFn) -> str:
    """URLs of every scheme with odd parts, whose servers are never reachable and whose
    files land in the current (scratch) directory."""
    scheme = draw(st.sampled_from(SCHEMES))
    user = draw(text_parts)
    password = draw(st.none() | text_parts)
    credentials = f"{user}:{password}@" if password is not None else (f"{user}@" if user else "")
    path = draw(text_parts)
    if scheme.endswith(("sqlite", "file", "memory")):
        base = f"{scheme}:{'///' if draw(st.booleans()) else ''}{path}"
        if scheme.endswith("file") and draw(st.booleans()):
            base = f"{scheme}://{path}/{draw(text_parts)}"  # a host, which file: refuses
    elif scheme.endswith("keyring"):
        base = f"{scheme}://{path}"
    else:
        base = f"{scheme}://{credentials}127.0.0.1:{CLOSED_PORT}/{path}"
    pairs = draw(st.lists(st.tuples(st.sampled_from(OPTIONS) | text_parts, text_parts), max_size=3))
    query = "&".join(f"{key}={value}" for key, value in pairs)
    return base + (f"?{query}" if query else "")


def use(store: Any) -> None:
    """Read from a store that opened, then close it."""
    with store:
        store.names()
        store.get("alice")


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """The keyring switched off, so a keyring URL is parsed and then refused."""
    previous = keyring.core.get_keyring()
    keyring.core.set_keyring(null.Keyring())  # type: ignore[no-untyped-call]
    yield
    keyring.core.set_keyring(previous)


@pytest.mark.usefixtures("no_keyring")
def test_store_url_parsing() -> None:
    counter = Counter()

    @FUZZ
    @given(url=store_urls() | text_parts, raw=st.text(max_size=60))
    def run(url: str, raw: str) -> None:
        counter.examples += 1
        with scratch_directory():
            check(lambda: use(open_url(url)), f"open_url({url!r}) and a read")
            check(lambda: backend_class(raw), f"backend_class({raw!r})")
            check(lambda: FileStore.from_url("file:" + raw), f"FileStore.from_url(file:{raw!r})")
            check(lambda: KeyringStore.from_url("keyring://" + raw), f"keyring://{raw!r}")
            check(lambda: parse_url("sqlite:///" + raw), f"sqlite:///{raw!r}")
            check(lambda: parse_url(f"postgresql://{raw}"), f"postgresql://{raw!r}")
            check(lambda: open_url(f"fernet+memory://?{raw}").close(), f"fernet+memory://?{raw!r}")

    run()
    record("fuzz", target="store URL parsing", examples=counter.examples)


def test_home_of_an_unknown_user_is_taken_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by fuzzing: pathlib raised RuntimeError for "~nosuchuser/...". Like a shell,
    # the library now leaves an unknown ~user as it is written.
    monkeypatch.chdir(tmp_path)
    store = open_url("file:~no-such-user-0/tokens.json")
    assert store.url == f"file://{tmp_path}/~no-such-user-0/tokens.json"
    with pytest.raises(WebexTokensError, match="the key file ~no-such-user-0/key does not exist"):
        open_url("fernet+memory://?key_file=~no-such-user-0/key")
    with pytest.raises(WebexTokensError, match=r"no-such-user-0/x\.toml does not exist"):
        load_settings("~no-such-user-0/x.toml")
    monkeypatch.setenv("WEBEX_TOKENS_CONFIG", "~no-such-user-0/x.toml")
    with pytest.raises(WebexTokensError, match="WEBEX_TOKENS_CONFIG names the settings file"):
        load_settings()


# -- settings ------------------------------------------------------------------------------

SETTINGS_KEYS = ["default_store", "stores", "integration", "url", "key_env", "key_file", "key"]
SETTINGS_KEYS += ["table", "lock_timeout", "description", "client_id", "client_secret_env"]
SETTINGS_KEYS += ["client_secret", "redirect_uri", "scopes", "base_url", "account", "nosuch"]
toml_scalars = (
    st.text(max_size=20)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.builds(lambda: "sqlite:///tokens.db")
    | st.sampled_from(["dev", "prod", "file:tokens.json", "fernet+memory://", "keyring://"])
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: (
        st.lists(toml_scalars, max_size=3)
        | st.dictionaries(
            st.sampled_from(SETTINGS_KEYS) | st.text(max_size=8), children, max_size=4
        )
    ),
    max_leaves=10,
)
settings_documents = st.fixed_dictionaries(
    {},
    optional={
        "default_store": toml_values,
        "stores": st.dictionaries(
            st.sampled_from(["dev", "prod", "bad name", ""]) | st.text(max_size=8),
            toml_values,
            max_size=3,
        )
        | toml_values,
        "integration": toml_values,
        "nosuch": toml_values,
    },
)


def _toml_key(key: str) -> str:
    return '"' + "".join(_toml_char(char) for char in key) + '"'


def _toml_char(char: str) -> str:
    if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_key(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(document: dict[str, Any]) -> str:
    """A TOML text for ``document`` (tables inline: enough to reach every check)."""
    return "".join(f"{_toml_key(key)} = {_toml_value(value)}\n" for key, value in document.items())


environment_values = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"),
    max_size=30,
)
SETTINGS_ENV = ["WEBEX_TOKENS_STORE", "WEBEX_SCOPES", "WEBEX_BASE_URL", "WEBEX_REDIRECT_URI"]
SETTINGS_ENV += [
    "WEBEX_TOKEN_FILE",
    "WEBEX_CLIENT_ID",
    "WEBEX_CLIENT_SECRET",
    "WEBEX_TOKENS_CONFIG",
]


def test_settings_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counter()

    @FUZZ
    @given(
        document=settings_documents,
        raw=st.binary(max_size=200),
        dotenv=st.binary(max_size=120),
        environment=st.dictionaries(st.sampled_from(SETTINGS_ENV), environment_values),
        target=st.none() | st.sampled_from(["dev", "prod", "missing"]) | environment_values,
    )
    def run(
        document: dict[str, Any],
        raw: bytes,
        dotenv: bytes,
        environment: dict[str, str],
        target: str | None,
    ) -> None:
        counter.examples += 1
        with scratch_directory() as directory, monkeypatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            (directory / ".env").write_bytes(dotenv)
            structured = directory / "structured.toml"
            structured.write_text(to_toml(document), encoding="utf-8")
            garbage = directory / "garbage.toml"
            garbage.write_bytes(raw)
            for path in (structured, garbage):

                def load(path: Path = path) -> None:
                    settings = load_settings(path)
                    settings.store_url(target)
                    for name in settings.stores:
                        settings.store_url(name)
                    repr(settings)

                check(load, f"load_settings({path.read_bytes()!r}) with {environment!r}")

    run()
    record("fuzz", target="settings parsing", examples=counter.examples)


# -- callback queries ------------------------------------------------------------------------

query_parts = st.sampled_from(
    ["code", "state", "error", "error_description", "x", "", "code[]", "%73tate"]
)
query_values = st.sampled_from(
    [STATE, "", "access_denied", "<script>x</script>", "%zz", "a" * 5000]
)
query_values |= st.text(max_size=20)


@st.composite
def callback_queries(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(query_parts | st.text(max_size=5), query_values), max_size=5))
    separator = draw(st.sampled_from(["&", ";", "&&"]))
    return separator.join(f"{key}={value}" for key, value in pairs)


def test_callback_query_parsing() -> None:
    counter = Counter()

    @FUZZ
    @given(query=callback_queries() | st.text(max_size=80), prefix=st.text(max_size=30))
    def run(query: str, prefix: str) -> None:
        counter.examples += 1
        outcome = handle_callback_query(query, STATE)  # never raises: it answers a page
        assert outcome.status in (200, 400)
        assert isinstance(outcome.page, bytes)
        assert b"<script>" not in outcome.page
        assert (outcome.result is None) != (outcome.error is None)
        if outcome.error is not None:
            assert isinstance(outcome.error, OAuthError)
        for pasted in (f"{REDIRECT_URI}?{query}", prefix + query, f"{prefix}?{query}"):

            def parse(pasted: str = pasted) -> object:
                return parse_callback_url(pasted, STATE, redirect_uri=REDIRECT_URI)

            check(parse, f"parse_callback_url({pasted!r})")

    run()
    record("fuzz", target="callback query parsing", examples=counter.examples)
