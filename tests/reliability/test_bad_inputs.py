"""The bad-input matrix: every bad input a user can give, the error and message it gets.

Each :class:`Case` is one row of the matrix in ``docs/security.md``: what the user gave,
the exact error class raised, a fragment of the fix the message must contain, and the
secrets the message must not show. :func:`test_bad_input` runs every case against real
files, databases, the Secret Service and FakeWebex; :func:`test_matrix_in_the_docs`
checks that the documented rows show the messages the library really prints.

To regenerate the table after a message changed::

    WEBEX_TOKENS_MATRIX_OUT=/tmp/matrix.md .venv/bin/pytest tests/reliability/test_bad_inputs.py

then paste ``/tmp/matrix.md`` under "Bad-input matrix" in ``docs/security.md``.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keyring.core
import pytest
import sqlalchemy as sa
from keyring.backends import fail, null

from webex_tokens.backends.fernet import generate_key
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.keyring import KeyringStore
from webex_tokens.callback import CallbackServer, handle_callback_query, parse_callback_url
from webex_tokens.errors import (
    AuthorizationDenied,
    BackendUnavailable,
    CallbackError,
    ConfigError,
    DecryptionError,
    InvalidName,
    InvalidStoreURL,
    InvalidToken,
    ReauthorizationRequired,
    RedirectURIMismatch,
    StoreCorrupted,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    TokenEndpointError,
)
from webex_tokens.oauth import WebexOAuth
from webex_tokens.registry import open_store, open_url
from webex_tokens.settings import load_settings
from webex_tokens.testing import make_token
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
STATE = "state-3f9a1c"
REDIRECT = "http://localhost:8000/oauth/webex/callback"
CODE = "auth-code-5e1d"
KEY_TEXT = "S3cretKeyMaterial"
FERNET_KEY = generate_key()
OPTION_SECRET = "S3cretOptionValue"
SLASHED_PASSWORD = "S3cret/Pass"


@dataclass
class Env:
    """What a case may use; ``shown`` maps text to the placeholder the docs show."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest
    shown: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    def fake(self) -> FakeWebex:
        fake: FakeWebex = self.request.getfixturevalue("fake_webex")
        self.shown[f"127.0.0.1:{fake.port}"] = "127.0.0.1:PORT"
        self.secrets.append(fake.client_secret)
        return fake

    def oauth(self, **options: Any) -> tuple[WebexOAuth, Token]:
        """A client of the emulator (no retry pauses) and a token it issued."""
        fake = self.fake()
        options = {"max_retries": 0, "backoff": 0.0, **options}
        oauth = WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url, **options)
        token = Token.from_response(fake.issue_token(), client_id=fake.client_id)
        self.secrets += [token.access_token, token.refresh_token or ""]
        return oauth, token

    def settings_file(self, text: str) -> None:
        (self.tmp / "webex-tokens.toml").write_text(text)


@dataclass(frozen=True)
class Case:
    """One row of the matrix."""

    id: str
    area: str
    given: str
    error: type[Exception]
    hint: str
    run: Callable[[Env], object]
    secrets: tuple[str, ...] = ()


def keyring_backend(kind: str, env: Env) -> bool:
    """Switch keyring to its ``null`` or ``fail`` backend for this test; False."""
    previous = keyring.core.get_keyring()
    backend = null.Keyring() if kind == "null" else fail.Keyring()  # type: ignore[no-untyped-call]
    keyring.core.set_keyring(backend)
    env.request.addfinalizer(lambda: keyring.core.set_keyring(previous))
    return False


# -- the cases ---------------------------------------------------------------------------


def _truncated_file(env: Env) -> object:
    path = env.tmp / "tokens.json"
    path.write_text('{"version": 1, "tokens": {"alice": {"access_token": "a')
    return open_url(f"file://{path}").get("alice")


def _symlink(env: Env) -> object:
    (env.tmp / "real.json").write_text("{}")
    (env.tmp / "tokens.json").symlink_to(env.tmp / "real.json")
    return open_url(f"file://{env.tmp}/tokens.json")


def _newer_format(env: Env) -> object:
    (env.tmp / "tokens.json").write_text('{"version": 2, "tokens": {}}')
    return open_url(f"file://{env.tmp}/tokens.json").names()


def _token_type_mac(env: Env) -> object:
    token = {"version": 1, "access_token": "x", "token_type": "mac"}
    document = {"version": 1, "tokens": {"alice": token}}
    (env.tmp / "tokens.json").write_text(json.dumps(document))
    return open_url(f"file://{env.tmp}/tokens.json").get("alice")


def _not_sqlite(env: Env) -> object:
    (env.tmp / "tokens.db").write_text("these are not the tokens you are looking for" * 20)
    return open_url(f"sqlite:///{env.tmp}/tokens.db")


def _fernet(env: Env, key: str | None) -> Any:
    if key is not None:
        env.monkeypatch.setenv("WEBEX_TOKENS_KEY", key)
    return open_url(f"fernet+file://{env.tmp}/tokens.json")


def _wrong_key(env: Env) -> object:
    first, second = generate_key(), generate_key()
    env.secrets += [first, second, "s3cret-token"]
    _fernet(env, first).put("alice", make_token("s3cret-token"))
    return _fernet(env, second).get("alice")


def _key_file_readable(env: Env) -> object:
    key = generate_key()
    env.secrets.append(key)
    path = env.tmp / "key"
    path.write_text(key)
    path.chmod(0o644)
    return open_url(f"fernet+file://{env.tmp}/tokens.json?key_file={path}")


def _swapped_ciphertext(env: Env) -> object:
    store = _fernet(env, generate_key())
    store.put("alice", make_token("alice-token"))
    path = env.tmp / "tokens.json"
    document = json.loads(path.read_text())
    document["tokens"]["bob"] = document["tokens"]["alice"]
    path.write_text(json.dumps(document))
    return store.get("bob")


def _plaintext_in_encrypted(env: Env) -> object:
    open_url(f"file://{env.tmp}/tokens.json").put("alice", make_token("plain-token"))
    env.secrets.append("plain-token")
    return _fernet(env, generate_key()).get("alice")


def _wrong_key_write(env: Env) -> object:
    first, second = generate_key(), generate_key()
    env.secrets += [first, second, "s3cret-token"]
    _fernet(env, first).put("alice", make_token("s3cret-token"))
    return _fernet(env, second).put("bob", make_token("s3cret-token"))


def _keyring_corrupt_index(env: Env) -> object:
    backend = env.request.getfixturevalue("secret_service")
    service = "webex-tokens-matrix"
    backend.set_password(service, "index", "[1, 2")
    env.request.addfinalizer(lambda: backend.delete_password(service, "index"))
    return KeyringStore(service)


def _foreign_table(env: Env) -> object:
    server = env.request.getfixturevalue("postgres_server")
    engine = sa.create_engine(server)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS wt_matrix_foreign")
        connection.exec_driver_sql("CREATE TABLE wt_matrix_foreign (id integer primary key)")

    def drop() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS wt_matrix_foreign")
        engine.dispose()

    env.request.addfinalizer(drop)
    return open_url(f"{server}?table=wt_matrix_foreign")


def _unknown_database(env: Env) -> object:
    env.request.getfixturevalue("postgres_server")
    return open_url("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database")


def _callback(query: str) -> object:
    outcome = handle_callback_query(query, STATE)
    assert b"<script>" not in outcome.page  # outside text is escaped in the page
    return outcome.raise_for_error()


def _port_in_use(env: Env) -> object:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    env.request.addfinalizer(taken.close)
    port = taken.getsockname()[1]
    env.shown[str(port)] = "PORT"
    return CallbackServer(f"http://localhost:{port}/oauth/webex/callback", STATE).start()


def _refresh_after(env: Env, prepare: Callable[[FakeWebex], None], **options: Any) -> object:
    oauth, token = env.oauth(**options)
    prepare(env.fake())
    return oauth.refresh(token)


def _wrong_secret(env: Env) -> object:
    fake = env.fake()
    env.secrets.append("wrong-secret-value")
    oauth = WebexOAuth(fake.client_id, "wrong-secret-value", base_url=fake.base_url)
    token = Token.from_response(fake.issue_token(), client_id=fake.client_id)
    env.secrets += [token.access_token, token.refresh_token or ""]
    return oauth.refresh(token)


def _redirect_mismatch(env: Env) -> object:
    oauth, _ = env.oauth()
    env.fake().fail_next(400, body=b'{"error": "redirect_uri_mismatch"}')
    env.secrets.append(CODE)
    return oauth.exchange_code(CODE, oauth.authorization_request())


_JOURNAL_SHOWN = "~/.local/state/webex-tokens/journal"


def _write_fails_after_refresh(env: Env) -> object:
    from write_faults import WriteFails

    from webex_tokens.journal import journal_directory
    from webex_tokens.refresh import ensure_fresh

    oauth, token = env.oauth()
    store = FileStore(env.tmp / "tokens.json")
    store.put("alice", token.replace(expires_at=token.saved_at))
    env.shown[str(journal_directory())] = _JOURNAL_SHOWN
    return ensure_fresh(WriteFails(store, failures=2), "alice", oauth)


def _journal_unreadable(env: Env) -> object:
    from webex_tokens.journal import RescueJournal
    from webex_tokens.keeper import Keeper

    store = FileStore(env.tmp / "tokens.json")
    entry = RescueJournal().keep(store, "alice", make_token("new"))
    assert entry is not None
    entry.path.write_text("{")
    env.shown[str(entry.path)] = f"{_JOURNAL_SHOWN}/FILE.json"
    with Keeper(store) as keeper:
        return keeper.stored("alice")


def _timeout(env: Env) -> object:
    oauth, token = env.oauth(timeout=0.2)
    env.fake().delay = 1.0
    return oauth.refresh(token)


def _echoed_secrets(env: Env) -> object:
    oauth, token = env.oauth()
    fake = env.fake()
    quoted = f"refresh_token={token.refresh_token}&client_secret={fake.client_secret}"
    body = {"error": "invalid_request", "error_description": f"cannot parse {quoted}"}
    fake.fail_next(400, body=json.dumps(body).encode())
    return oauth.refresh(token)


def _move_onto_itself(env: Env) -> object:
    from webex_tokens.migration import migrate

    open_url(f"sqlite:///{env.tmp}/t.db").put("alice", make_token())
    return migrate(
        f"sqlite:///{env.tmp}/t.db", f"sqlite:///{env.tmp}/t.db?lock_timeout=30", move=True
    )


def _foreign_token_file(env: Env) -> object:
    if os.geteuid() != 0:
        pytest.skip("planting another user's file needs root")
    FileStore(env.tmp / "tokens.json").put("alice", make_token())
    os.chown(env.tmp / "tokens.json", 54321, 54321)
    return FileStore(env.tmp / "tokens.json").get("alice")


def _token_file_in_an_open_directory(env: Env) -> object:
    shared = env.tmp / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    return FileStore(shared / "tokens.json").put("alice", make_token())


def _symlinked_sqlite(env: Env) -> object:
    (env.tmp / "real.db").touch(mode=0o600)
    (env.tmp / "t.db").symlink_to(env.tmp / "real.db")
    return open_url(f"sqlite:///{env.tmp}/t.db")


def _lock_directory_blocked(env: Env) -> object:
    (env.tmp / "tokens.json.locks").write_text("")
    return FileStore(env.tmp / "tokens.json").put("alice", make_token())


def _read_only_open_of_a_typo(env: Env) -> object:
    try:
        return open_url(f"sqlite:///{env.tmp}/typo/t.db", create=False)
    finally:
        assert not (env.tmp / "typo").exists()  # nothing was created


def _settings(text: str, *, env_vars: dict[str, str] | None = None) -> Callable[[Env], object]:
    def run(env: Env) -> object:
        env.settings_file(text)
        for name, value in (env_vars or {}).items():
            env.monkeypatch.setenv(name, value)
        return open_store()

    return run


def _setenv(env: Env, **values: str) -> bool:
    """Set environment variables for this test; False, so ``_setenv(...) or call()`` reads."""
    for name, value in values.items():
        env.monkeypatch.setenv(name, value)
    return False


def _no_table_created(env: Env, table: str) -> object:
    """Open SQLite with a bad ``?table=``; whatever happens, no table may appear."""
    path = env.tmp / "t.db"
    try:
        return open_url(f"sqlite:///{path}?table={table}")
    finally:
        if path.exists():
            engine = sa.create_engine(f"sqlite:///{path}", hide_parameters=True)
            try:
                assert sa.inspect(engine).get_table_names() == []
            finally:
                engine.dispose()


CASES = [
    # store URLs
    Case("postgres-scheme", "URL", "`postgres://app@db/tokens`", InvalidStoreURL,
         "write postgresql+psycopg://", lambda env: open_store("postgres://app@db/tokens")),
    Case("unknown-scheme", "URL", "`mongodb://db/tokens`", InvalidStoreURL, "known schemes:",
         lambda env: open_store("mongodb://db/tokens")),
    Case("path-not-url", "URL", "`--store tokens.json` (a path, no settings)", ConfigError,
         "write a URL such as file:tokens.json", lambda env: open_store("tokens.json")),
    Case("file-with-host", "URL", "`file://server/tokens.json`", InvalidStoreURL,
         "write file:///absolute/path.json", lambda env: open_url("file://server/tokens.json")),
    Case("file-without-name", "URL", "`file:///var/lib/app/`", InvalidStoreURL,
         "has no file name", lambda env: open_url("file:///var/lib/app/")),
    Case("lock-timeout-text", "URL", "`file:tokens.json?lock_timeout=soon`", InvalidStoreURL,
         "is not a positive number of seconds",
         lambda env: open_url("file:tokens.json?lock_timeout=soon")),
    Case("table-injection", "URL", "`sqlite:///t.db?table=tokens;DROP TABLE x`",
         InvalidStoreURL, "use lower-case letters, digits and underscores",
         lambda env: open_url("sqlite:///t.db?table=tokens;DROP TABLE x")),
    Case("sqlite-unknown-option", "URL", "`sqlite:///t.db?colour=blue`", InvalidStoreURL,
         "the options of a SQLite store are", lambda env: open_url("sqlite:///t.db?colour=blue")),
    Case("key-in-url", "URL", "`fernet+file:///t.json?key=KEY`", InvalidStoreURL,
         "keys never go in a URL", lambda env: open_url(f"fernet+file:///t.json?key={KEY_TEXT}"),
         secrets=(KEY_TEXT,)),
    Case("nul-in-file-path", "URL", "`file:tokens%00.json`", InvalidStoreURL,
         "holds a NUL character (%00) in its path", lambda env: open_url("file:tokens%00.json")),
    Case("nul-in-sqlite-path", "URL", "`sqlite:///tokens%00.db`", InvalidStoreURL,
         "names a file with a NUL character", lambda env: open_url("sqlite:///tokens%00.db")),
    Case("nul-in-key-file", "URL", "`fernet+file:t.json?key_file=key%00`", DecryptionError,
         "point key_file at the file that holds the key",
         lambda env: open_url("fernet+file:t.json?key_file=key%00")),
    Case("double-fernet", "URL", "`fernet+fernet+file:///t.json`", InvalidStoreURL,
         "use a single fernet+ prefix", lambda env: open_url("fernet+fernet+file:///t.json")),
    Case("missing-driver", "URL", "`mysql+mysqldb://root@db/tokens` (driver not installed)",
         BackendUnavailable, "pip install mysqlclient",
         lambda env: open_url("mysql+mysqldb://root@127.0.0.1:9/tokens")),
    Case("async-driver", "URL", "`postgresql+asyncpg://app@db/tokens`", BackendUnavailable,
         "pip install asyncpg", lambda env: open_url("postgresql+asyncpg://app@127.0.0.1:9/t")),
    # settings and environment
    Case("invalid-toml", "settings", "`default_store = ` in webex-tokens.toml", ConfigError,
         "is not valid TOML", _settings("default_store = \n")),
    Case("inline-client-secret", "settings", "`client_secret = \"...\"` under `[integration]`",
         ConfigError, 'client_secret_env = "WEBEX_CLIENT_SECRET"',
         _settings('[integration]\nclient_secret = "s3cret-client-secret"\n'),
         secrets=("s3cret-client-secret",)),
    Case("key-in-settings", "settings", "`key = \"...\"` under `[stores.prod]`", ConfigError,
         "keys never go in the settings file",
         _settings(f'[stores.prod]\nurl = "fernet+file:t.json"\nkey = "{KEY_TEXT}"\n'),
         secrets=(KEY_TEXT,)),
    Case("settings-typo", "settings", "`defualt_store = \"dev\"`", ConfigError,
         "did you mean 'default_store'?", _settings('defualt_store = "dev"\n')),
    Case("unknown-store-env", "settings", "`WEBEX_TOKENS_STORE=staging` (not configured)",
         ConfigError, "set WEBEX_TOKENS_STORE to a configured name or a store URL",
         _settings('[stores.dev]\nurl = "memory://"\n',
                   env_vars={"WEBEX_TOKENS_STORE": "staging"})),
    Case("missing-config-file", "settings", "`WEBEX_TOKENS_CONFIG=/etc/nope.toml`", ConfigError,
         "fix the path or unset WEBEX_TOKENS_CONFIG",
         lambda env: _setenv(env, WEBEX_TOKENS_CONFIG="/etc/nope.toml") or load_settings()),
    Case("lock-timeout-setting", "settings", "`lock_timeout = \"soon\"` under `[stores.dev]`",
         ConfigError, "must be a positive number of seconds",
         _settings('[stores.dev]\nurl = "sqlite:///t.db"\nlock_timeout = "soon"\n')),
    Case("missing-client-id", "settings", "no `WEBEX_CLIENT_ID` / `WEBEX_CLIENT_SECRET`",
         ConfigError, "put its client ID and secret in WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET",
         lambda env: WebexOAuth.from_settings()),
    Case("base-url-without-scheme", "settings", "`WEBEX_BASE_URL=webexapis.com/v1`",
         ConfigError, "set WEBEX_BASE_URL to a full URL",
         lambda env: _setenv(env, WEBEX_CLIENT_ID="C1", WEBEX_CLIENT_SECRET="s3cret-cs",
                             WEBEX_BASE_URL="webexapis.com/v1") or WebexOAuth.from_settings(),
         secrets=("s3cret-cs",)),
    # token files
    Case("truncated-file", "file", "a token file cut off mid-write (edited by hand)",
         StoreCorrupted, "it was left untouched", _truncated_file),
    Case("symlinked-file", "file", "`tokens.json` is a symlink", StoreError,
         "point the store at the real file", _symlink),
    Case("directory-as-file", "file", "`file:///var/lib/app` names a directory", StoreError,
         "give the path of a file", lambda env: open_url(f"file://{env.tmp}")),
    Case("newer-format", "file", "a token file written by a newer version", StoreCorrupted,
         "pip install -U webex-tokens", _newer_format),
    Case("unknown-token-type", "file", "a stored token with `token_type: mac`", StoreCorrupted,
         "Webex issues Bearer tokens only", _token_type_mac),
    Case("not-a-sqlite-file", "file", "`sqlite:///tokens.db` holding something else",
         StoreCorrupted, "point the URL at another file", _not_sqlite),
    # Fernet keys
    Case("no-key", "key", "`fernet+file://...` without `WEBEX_TOKENS_KEY`", DecryptionError,
         "create one with: webex-tokens keygen", lambda env: _fernet(env, None)),
    Case("malformed-key", "key", "`WEBEX_TOKENS_KEY=not-a-key`", DecryptionError,
         "is not a Fernet key", lambda env: _fernet(env, "not-a-key"), secrets=("not-a-key",)),
    Case("wrong-key", "key", "reading with another key than the one that wrote",
         DecryptionError, "use the key it was written with", _wrong_key),
    Case("key-file-readable", "key", "`?key_file=` naming a 0644 file", DecryptionError,
         "run: chmod 600", _key_file_readable),
    Case("swapped-ciphertext", "key", "one account's ciphertext copied to another",
         DecryptionError, "it was copied or moved from that entry", _swapped_ciphertext),
    Case("plaintext-in-encrypted", "key", "a plain record in an encrypted store",
         DecryptionError, "copy plain tokens in with webex-tokens migrate",
         _plaintext_in_encrypted),
    # keyring
    Case("keyring-bad-option", "keyring", "`keyring://app?split=maybe`", InvalidStoreURL,
         "must be 1 or 0", lambda env: open_url("keyring://app?split=maybe")),
    Case("keyring-switched-off", "keyring", "the `null` keyring backend", BackendUnavailable,
         "unset PYTHON_KEYRING_BACKEND",
         lambda env: keyring_backend("null", env) or open_url("keyring://app")),
    Case("keyring-missing", "keyring", "no keyring at all (no Secret Service, no D-Bus)",
         BackendUnavailable, "gnome-keyring-daemon",
         lambda env: keyring_backend("fail", env) or open_url("keyring://app")),
    Case("keyring-insecure-flag", "keyring", "`WEBEX_TOKENS_KEYRING_ALLOW_INSECURE=perhaps`",
         ConfigError, "must be 1 (accept an insecure keyring backend) or 0",
         lambda env: _setenv(env, WEBEX_TOKENS_KEYRING_ALLOW_INSECURE="perhaps")
         or open_url("keyring://app")),
    Case("keyring-corrupt-index", "keyring", "a damaged index entry in the keyring",
         StoreCorrupted, "delete it with: python -m keyring del webex-tokens-matrix index",
         _keyring_corrupt_index),
    # databases
    Case("database-unreachable", "database", "a database URL whose server is down",
         StoreUnavailable, "is the database server running and reachable at 127.0.0.1:9?",
         lambda env: open_url("postgresql+psycopg://postgres@127.0.0.1:9/test")),
    Case("database-password", "database", "a database URL with a password, server down",
         StoreUnavailable, "app:***@127.0.0.1:9",
         lambda env: open_url("postgresql+psycopg://app:hunter2@127.0.0.1:9/test"),
         secrets=("hunter2",)),
    Case("unknown-database", "database", "a database name that does not exist",
         StoreUnavailable, "check the host, port, user, password and database name",
         _unknown_database),
    Case("unknown-driver-option", "database", "`mysql://root@db/tokens?charset=klingon`",
         InvalidStoreURL, "anything else goes to the driver: check the spelling",
         lambda env: open_url("mysql+pymysql://root@127.0.0.1:9/test?charset=klingon")),
    Case("unparsable-host", "database", "`postgresql://:@[@127.0.0.1:9/`", StoreUnavailable,
         "check the host, port, user, password and database name in the URL",
         lambda env: open_url("postgresql+psycopg://:@[@127.0.0.1:9/test")),
    Case("foreign-table", "database", "`?table=` naming another application's table",
         StoreCorrupted, "choose another table with ?table=NAME", _foreign_table),
    Case("non-latin1-password", "database", "a MySQL password PyMySQL cannot encode",
         InvalidStoreURL, "use ASCII credentials",
         lambda env: open_url("mysql+pymysql://root:pässwörd\u0100@127.0.0.1:9/test"),
         secrets=("pässwörd",)),
    # account names and token data
    Case("name-control-character", "name", 'account name `"alice\\n"`', InvalidName,
         "remove it", lambda env: open_url("memory://").put("alice\n", make_token())),
    Case("name-too-long", "name", "an account name of 256 characters", InvalidName,
         "the limit is 255", lambda env: open_url("memory://").get("a" * 256)),
    Case("empty-access-token", "name", '`Token.from_dict({"access_token": ""})`',
         InvalidToken, "token field 'access_token' is empty",
         lambda env: Token.from_dict({"access_token": ""})),
    # callback requests
    Case("state-mismatch", "callback", "a callback whose `state` is not this login's",
         CallbackError, "a stale tab or a forged request",
         lambda env: _callback(f"code={CODE}&state=forged"), secrets=(CODE,)),
    Case("access-denied", "callback", "`?error=access_denied` (the user declined)",
         AuthorizationDenied, "choose Accept",
         lambda env: _callback(f"error=access_denied&state={STATE}")),
    Case("missing-code", "callback", "a callback without `code`", CallbackError,
         "Insufficient parameters for OAuth2 callback",
         lambda env: _callback(f"state={STATE}")),
    Case("repeated-code", "callback", "`?code=a&code=b&state=...`", CallbackError,
         "repeated a code, state or error parameter",
         lambda env: _callback(f"code={CODE}&code=other&state={STATE}"), secrets=(CODE,)),
    Case("script-in-error", "callback", "`?error=<script>...&state=...`", CallbackError,
         "check the integration's client ID, scopes and redirect URI",
         lambda env: _callback(f"error=%3Cscript%3Ealert(1)%3C/script%3E&state={STATE}")),
    Case("pasted-not-a-url", "callback", "pasting `5e1d` instead of the redirect URL",
         CallbackError, "paste the whole address from the browser's address bar",
         lambda env: parse_callback_url("5e1d", STATE)),
    Case("pasted-other-host", "callback", "pasting a URL that goes elsewhere", CallbackError,
         "not to the redirect URI",
         lambda env: parse_callback_url(f"https://evil.example/cb?code={CODE}&state={STATE}",
                                        STATE, redirect_uri=REDIRECT), secrets=(CODE,)),
    Case("callback-port-in-use", "callback", "the redirect URI's port is taken", CallbackError,
         "stop the program using port", _port_in_use),
    # token-endpoint answers
    Case("garbage-answer", "token endpoint", "HTTP 200 with an HTML page", TokenEndpointError,
         "that is not a JSON object",
         lambda env: _refresh_after(env, lambda f: f.fail_next(200, body=b"<html>oops</html>"))),
    Case("server-errors", "token endpoint", "HTTP 500 to a refresh", TokenEndpointError,
         "failed with HTTP 500 at the refresh",
         lambda env: _refresh_after(env, lambda f: f.fail_next(500, times=2), max_retries=1)),
    Case("retry-after-too-long", "token endpoint", "HTTP 429 with `Retry-After: 3600`",
         TokenEndpointError, "Webex asked to wait 3600 seconds",
         lambda env: _refresh_after(env, lambda f: f.fail_next(429, retry_after=3600))),
    Case("wrong-client-secret", "token endpoint", "a wrong `WEBEX_CLIENT_SECRET`",
         TokenEndpointError, "check WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET", _wrong_secret),
    Case("revoked-refresh-token", "token endpoint", "`invalid_grant`: a revoked refresh token",
         ReauthorizationRequired, "log in again: webex-tokens login",
         lambda env: _refresh_after(env, lambda f: f.revoke_refresh_tokens())),
    Case("answer-without-token", "token endpoint", "HTTP 200 JSON without `access_token`",
         TokenEndpointError, "a token that is not usable (access_token is missing)",
         lambda env: _refresh_after(
             env, lambda f: f.fail_next(200, body=b'{"token_type": "Bearer"}'))),
    Case("redirect-uri-mismatch", "token endpoint", "`redirect_uri_mismatch` at code exchange",
         RedirectURIMismatch, "set WEBEX_REDIRECT_URI to the redirect URI registered there",
         _redirect_mismatch),
    Case("endpoint-unreachable", "token endpoint", "`WEBEX_BASE_URL` where nothing listens",
         TokenEndpointError, "check the network and WEBEX_BASE_URL",
         lambda env: WebexOAuth("C1", "s3cret-cs", base_url="http://127.0.0.1:9/v1",
                                max_retries=0).refresh(make_token("t")),
         secrets=("s3cret-cs",)),
    Case("endpoint-timeout", "token endpoint", "no answer within the timeout",
         TokenEndpointError, "did not answer within 0.2 seconds", _timeout),
    Case("expires-in-text", "token endpoint", 'HTTP 200 with `"expires_in": "soon"`',
         TokenEndpointError, "a token that is not usable (expires_in is not a number",
         lambda env: _refresh_after(env, lambda f: f.fail_next(
             200, body=b'{"access_token": "at", "expires_in": "soon"}'))),
    Case("echoed-secrets", "token endpoint", "an error quoting the request back (a proxy)",
         TokenEndpointError, "refresh_token=[redacted]&client_secret=[redacted]",
         _echoed_secrets),
    Case("write-fails-after-refresh", "token store",
         "a store write that fails after Webex answered a refresh (and again at once)",
         StoreUnavailable, "the new token is not lost: it waits in the rescue journal",
         _write_fails_after_refresh),
    Case("journal-unreadable", "rescue journal", "a rescue journal file that is not JSON",
         StoreCorrupted, "move it away to let the account be used without it",
         _journal_unreadable),
    # moving, locking and trusting files
    Case("move-onto-itself", "migrate", "`migrate --move` from `sqlite:///t.db` to "
         "`sqlite:///t.db?lock_timeout=30`", ConfigError, "both reach the same store",
         _move_onto_itself),
    Case("wrong-key-write", "key", "writing a new name with another key than the store's",
         DecryptionError, "so the store was written with another key and nothing was written",
         _wrong_key_write),
    Case("foreign-token-file", "files", "a token file that belongs to another user",
         StoreError, "so someone else may have put it there", _foreign_token_file),
    Case("open-directory", "files", "a token file in a directory other users can write",
         StoreError, "other users can write to the directory", _token_file_in_an_open_directory),
    Case("symlinked-sqlite", "files", "`sqlite:///t.db` where `t.db` is a symbolic link",
         StoreError, "it is a symlink; point the store at the real file", _symlinked_sqlite),
    Case("lock-directory-blocked", "files", "a file where the store's lock directory goes",
         StoreError, "a part of the path is a file, not a directory", _lock_directory_blocked),
    Case("read-only-typo", "files", "reading a SQLite store at a mistyped path (`list`, "
         "`show`, `token`, `doctor`)", StoreNotFound, "yet, and nothing was created",
         _read_only_open_of_a_typo),
    # secrets where a store URL expects a name, a path or nothing
    Case("key-in-key-env", "URL", "`fernet+file:///t.json?key_env=` a Fernet key",
         InvalidStoreURL, "must name an environment variable",
         lambda env: open_url(f"fernet+file:///t.json?key_env={FERNET_KEY}"),
         secrets=(FERNET_KEY,)),
    Case("key-in-key-file", "URL", "`fernet+file:///t.json?key_file=` a Fernet key",
         InvalidStoreURL, "holds what looks like a Fernet key, not a path",
         lambda env: open_url(f"fernet+file:///t.json?key_file={FERNET_KEY}"),
         secrets=(FERNET_KEY,)),
    Case("secret-in-file-option", "URL", "`file:///t.json?token=SECRET`", InvalidStoreURL,
         "is unknown; the options of this store are lock_timeout",
         lambda env: open_url(f"file:///t.json?token={OPTION_SECRET}"), secrets=(OPTION_SECRET,)),
    Case("secret-in-keyring-option", "keyring", "`keyring://app?split=SECRET`", InvalidStoreURL,
         "must be 1 or 0", lambda env: open_url(f"keyring://app?split={OPTION_SECRET}"),
         secrets=(OPTION_SECRET,)),
    Case("slash-in-sql-password", "database", "`postgresql+psycopg://app:PW/x@127.0.0.1:9/test`",
         StoreUnavailable, "check the host, port, user, password and database name in the URL",
         lambda env: open_url(f"postgresql+psycopg://app:{SLASHED_PASSWORD}@127.0.0.1:9/test"),
         secrets=(SLASHED_PASSWORD, SLASHED_PASSWORD.partition("/")[2])),
    Case("table-newline", "URL", "`sqlite:///t.db?table=x%0A`", InvalidStoreURL,
         "use lower-case letters, digits and underscores",
         lambda env: _no_table_created(env, "x%0A")),
]  # fmt: skip

#: Where to write the rendered matrix (read now: the tests run with WEBEX_* cleared).
MATRIX_OUT = os.environ.get("WEBEX_TOKENS_MATRIX_OUT")
#: Messages seen by test_bad_input in this run, normalised as the docs show them.
MESSAGES: dict[str, str] = {}


def normalise(message: str, env: Env) -> str:
    for actual, placeholder in sorted(env.shown.items(), key=lambda item: -len(item[0])):
        message = message.replace(actual, placeholder)
    return message.replace(str(env.tmp), "/tmp/x")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.chdir(tmp_path)
    env = Env(tmp_path, monkeypatch, request)
    with pytest.raises(Exception) as info:  # noqa: PT011 - the exact class is checked below
        case.run(env)
    error = info.value
    message = str(error)
    assert type(error) is case.error, f"{type(error).__name__}: {message}"
    assert case.hint in message
    assert "\n" not in message and message.strip() == message
    for secret in (*case.secrets, *env.secrets):
        if secret:
            assert secret not in message and secret not in repr(error)
    MESSAGES[case.id] = normalise(message, env)


def _code(text: str) -> str:
    """``text`` as a Markdown code span in a table cell (shown as printed, never as HTML)."""
    fence = "``" if "`" in text else "`"
    padding = " " if fence == "``" else ""
    return f"{fence}{padding}{text.replace('|', chr(92) + '|')}{padding}{fence}"


def _row(number: int, case: Case, message: str) -> str:
    cells = [
        str(number),
        case.area,
        case.given,
        f"`{case.error.__name__}`",
        _code(message),
        f"`test_bad_input[{case.id}]`",
    ]
    return "| " + " | ".join(cells) + " |"


def render_matrix(messages: dict[str, str]) -> str:
    """The matrix as a Markdown table (messages missing from ``messages`` show as ``?``)."""
    lines = [
        "| # | area | input | error | message shown | test |",
        "|---|---|---|---|---|---|",
    ]
    for number, case in enumerate(CASES, start=1):
        lines.append(_row(number, case, messages.get(case.id, "?")))
    return "\n".join(lines) + "\n"


def test_matrix_in_the_docs() -> None:
    """Every case has its row in docs/security.md, showing the message really printed."""
    if MATRIX_OUT:
        Path(MATRIX_OUT).write_text(render_matrix(MESSAGES))
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    text = DOC.read_text(encoding="utf-8")
    section = text.partition("## Bad-input matrix")[2].partition("\n## ")[0]
    rows = {
        match.group(1): line
        for line in section.splitlines()
        if (match := re.search(r"`test_bad_input\[([a-z0-9-]+)\]`", line))
    }
    missing = [case.id for case in CASES if case.id not in rows]
    assert not missing, f"cases without a row in {DOC}: {missing}"
    stale = []
    for number, case in enumerate(CASES, start=1):
        if case.id in MESSAGES and rows[case.id] != _row(number, case, MESSAGES[case.id]):
            stale.append(case.id)
    assert not stale, (
        f"rows of {DOC} that differ from what the library prints: {stale}; regenerate them "
        "with WEBEX_TOKENS_MATRIX_OUT (see this module's docstring)"
    )
