"""Keys and passwords written into store URLs never come back out.

Each test puts a real secret where a careless (or hostile) URL would put it: a Fernet key
in ``?key_env=`` or ``?key_file=``, a password holding a raw ``/`` or ``?``, a secret in
an unknown or malformed option of every backend, ``?key=`` on a host-less URL. It then
looks for that secret everywhere it could leak: the error's message, repr and chained
exceptions, ``store.url``, ``repr(Settings)``, ``webex-tokens stores`` and ``doctor``
(text and JSON), and SQLAlchemy's log records and errors, which must hold no token.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from webex_tokens.backends.fernet import FernetStore, generate_key
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.backends.sql import SQLStore
from webex_tokens.cli import cli
from webex_tokens.errors import ConfigError, InvalidStoreURL, StoreError, WebexTokensError
from webex_tokens.registry import open_url
from webex_tokens.settings import load_settings
from webex_tokens.testing import make_token
from webex_tokens.urls import looks_like_key, redact_url, shown_url

KEY = generate_key()
SECRET = "S3cretOptionValue"
PASSWORD = "S3cret/Pa?ss"  # a raw / and ? that naive URL splitting cuts in the wrong place


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception chained to it, shown or suppressed."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def assert_hidden(error: BaseException, *secrets: str) -> None:
    """No secret in the error, its repr, its traceback or any exception chained to it."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for link in _chain(error):
        texts += [str(link), repr(link), repr(getattr(link, "args", ()))]
    for secret in secrets:
        for text in texts:
            assert secret not in text, text


# -- showing a URL -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secret", "shown"),
    [
        (f"fernet+sqlite:///t.db?key_env={KEY}", KEY, "fernet+sqlite:///t.db?key_env=***"),
        (f"fernet+file:///t.json?key_file={KEY}", KEY, "fernet+file:///t.json?key_file=***"),
        (f"fernet+file:///t.json?key_env={KEY.replace('=', '%3D')}", KEY[:-1], None),
        (f"sqlite:///t.db?key={SECRET}", SECRET, "sqlite:///t.db?key=***"),
        (f"file:tokens.json?api_token={SECRET}", SECRET, "file:tokens.json?api_token=***"),
        (f"keyring://app?{KEY}", KEY[:-1], "keyring://app?***"),
        (f"redis://h/0?password_env={SECRET}!", SECRET, "redis://h/0?password_env=***"),
        (f"postgresql+psycopg://app:{PASSWORD}@db/tokens", "S3cret", None),
        ("postgresql+psycopg://app:S3cret/x@db/tokens", "S3cret", "postgresql+psycopg://app:***@db/tokens"),
        ("mysql+pymysql://app:S3cret@x@db/tokens", "S3cret", None),
        ("redis://app:S3cret/x@h/0", "S3cret", "redis://app:***@h/0"),
        ("vault+https://hvs.S3cret@vault/secret/t", "S3cret", "vault+https://***@vault/secret/t"),
    ],
)  # fmt: skip
def test_shown_urls_hold_no_secret(url: str, secret: str, shown: str | None) -> None:
    assert secret not in redact_url(url)
    assert secret not in shown_url(url)
    if shown is not None:
        assert redact_url(url) == shown
    assert "?" not in shown_url(url)  # errors never show an option value


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///t.db",
        "sqlite:////var/lib/app/t.db?table=prod&lock_timeout=30",
        "file:///home/a@b/tokens.json",
        "file://~/tokens.json",
        "fernet+file:///t.json?key_env=WEBEX_TOKENS_PROD_KEY",
        "fernet+file:///t.json?key_file=/run/secrets/webex.key",
        "mysql+pymysql://root@127.0.0.1/test",
        "keyring://app?split=1",
        "redis://h:6380/2?prefix=app:tokens#frag",
    ],
)
def test_urls_without_secrets_are_shown_as_written(url: str) -> None:
    assert redact_url(url) == url


def test_key_shapes() -> None:
    assert looks_like_key(KEY) and looks_like_key(f"x,{KEY}") and looks_like_key(KEY[:-1] + "%3D")
    assert not looks_like_key("WEBEX_TOKENS_KEY") and not looks_like_key("/run/secrets/key")


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"fernet+file:///t.json?key_env={KEY}",
        f"fernet+file:///t.json?key_env={KEY},{generate_key()}",
        f"fernet+file:///t.json?key_file={KEY}",
        f"fernet+file:///t.json?key_file=/keys/{KEY}",
        f"fernet+sqlite:///t.db?key_env={KEY}&table=t",
        f"file:///t.json?colour={SECRET}",
        f"file:///t.json?lock_timeout={SECRET}",
        f"file:///t.json?{KEY}",
        f"keyring://app?colour={SECRET}",
        f"keyring://app?split={SECRET}",
        f"keyring://app?lock_timeout={SECRET}",
        f"keyring://app?max_value_bytes={SECRET}",
        f"sqlite:///t.db?table={SECRET}-x",
        f"sqlite:///t.db?lock_timeout={SECRET}",
        f"sqlite:///t.db?connect_timeout={SECRET}",
        f"memory://?x={SECRET}",
        f"redis://127.0.0.1:9/0?prefix={SECRET}%20x",
        f"redis://127.0.0.1:9/0?password_env={KEY}",
        f"redis://127.0.0.1:9/0?timeout={SECRET}",
        f"vault+https://127.0.0.1:9/secret/t?token_env={KEY}",
        f"vault+https://127.0.0.1:9/secret/t?timeout={SECRET}",
        f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:9/test",
        f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:9/test?lock_timeout={SECRET}",
        f"mysql+pymysql://app:{PASSWORD}@127.0.0.1:9/test",
    ],
)
def test_errors_never_echo_a_key_a_password_or_an_option_value(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WEBEX_TOKENS_KEY", generate_key())
    with pytest.raises(WebexTokensError) as info:
        open_url(url)
    assert_hidden(info.value, KEY, KEY[:-1], SECRET, PASSWORD, "S3cret")
    assert "\n" not in str(info.value)


def test_a_fernet_store_refuses_a_key_where_a_source_is_named(tmp_path: Path) -> None:
    for options in ({"key_env": KEY}, {"key_file": tmp_path / KEY}, {"key_env": "NOT A NAME"}):
        with pytest.raises(InvalidStoreURL) as info:
            FernetStore(MemoryStore(), **options)  # type: ignore[arg-type]
        assert_hidden(info.value, KEY, KEY[:-1])


def test_a_refused_key_source_opens_no_inner_store(tmp_path: Path) -> None:
    with pytest.raises(InvalidStoreURL):
        open_url(f"fernet+sqlite:///{tmp_path}/t.db?key_env={KEY}")
    assert not (tmp_path / "t.db").exists()


def test_the_settings_file_refuses_keys_in_store_urls(tmp_path: Path) -> None:
    for table in (
        f'url = "fernet+sqlite:///t.db?key_env={KEY}"',
        f'url = "fernet+sqlite:///t.db?key_file={KEY}"',
        f'url = "fernet+sqlite:///t.db"\nkey_file = "{KEY}"',
        f'url = "fernet+sqlite:///t.db"\nkey_env = "{KEY}"',
    ):
        path = tmp_path / "webex-tokens.toml"
        path.write_text(f"[stores.prod]\n{table}\n")
        with pytest.raises(ConfigError) as info:
            load_settings(path)
        assert_hidden(info.value, KEY, KEY[:-1])


# -- what is displayed -------------------------------------------------------------------


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "webex-tokens.toml"
    path.write_text(
        "[stores.hostless]\n"
        f'url = "sqlite:///{tmp_path}/t.db?key={SECRET}"\n'
        "[stores.slashed]\n"
        f'url = "postgresql+psycopg://app:{PASSWORD}@127.0.0.1:9/test"\n'
        "[stores.vault]\n"
        'url = "vault+https://hvs.S3cret@127.0.0.1:9/secret/t"\n'
    )
    return path


def test_settings_repr_hides_every_secret(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"fernet+file:///t.json?key_env={KEY}")
    settings = load_settings(settings_file)
    shown = [repr(settings), *(repr(store) for store in settings.stores.values())]
    shown += [repr(settings.choose_store()), settings.choose_store().label]
    shown += [settings.choose_store(name).label for name in ("hostless", "slashed", "vault")]
    shown += [repr(settings.choose_store(name)) for name in ("hostless", "slashed", "vault")]
    for text in shown:
        for secret in (KEY, KEY[:-1], SECRET, PASSWORD, "S3cret"):
            assert secret not in text, text


@pytest.mark.parametrize(
    "command", [["stores"], ["stores", "--json"], ["doctor"], ["doctor", "--json"]]
)
def test_stores_and_doctor_show_no_secret(
    command: list[str], settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"fernet+file:///t.json?key_env={KEY}")
    result = CliRunner().invoke(cli, ["--config", str(settings_file), *command])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "slashed" in output
    for secret in (KEY, KEY[:-1], SECRET, PASSWORD, "S3cret"):
        assert secret not in output, output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert_hidden(result.exception, KEY, KEY[:-1], SECRET, PASSWORD, "S3cret")


def test_a_sql_store_url_never_holds_its_password(postgres_server: str) -> None:
    # The test server trusts every login, so any password opens it.
    url = sa.make_url(postgres_server).set(password=PASSWORD).render_as_string(hide_password=False)
    with SQLStore(url) as store:
        for text in (store.url, repr(store), redact_url(url), shown_url(url)):
            assert "S3cret" not in text and "Pa?ss" not in text, text
        assert store.url.startswith("postgresql+psycopg://postgres:***@")


# -- SQLAlchemy's logs and errors ----------------------------------------------------------


def _refusing_store(url: str) -> SQLStore:
    """A store whose database refuses every write of a token, from a trigger."""
    store = SQLStore(url)
    with store.engine.begin() as connection:
        if store.engine.dialect.name == "sqlite":
            for event in ("INSERT", "UPDATE"):
                connection.exec_driver_sql(
                    f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON {store.table_name} "
                    "BEGIN SELECT RAISE(ABORT, 'writes refused'); END"
                )
        else:
            connection.exec_driver_sql(
                f"CREATE FUNCTION {store.table_name}_refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'writes refused'; END $$ LANGUAGE plpgsql"
            )
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {store.table_name} "
                f"FOR EACH ROW EXECUTE FUNCTION {store.table_name}_refuse()"
            )
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def refusing_store(
    request: pytest.FixtureRequest, tmp_path: Path, unique_table: str
) -> Iterator[SQLStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/t.db"
    else:
        url = f"{request.getfixturevalue('postgres_server')}?table={unique_table}"
    store = _refusing_store(url)
    try:
        yield store
    finally:
        if request.param == "postgresql":
            with store.engine.begin() as connection:
                connection.exec_driver_sql(f"DROP TABLE {unique_table}")
                connection.exec_driver_sql(f"DROP FUNCTION {unique_table}_refuse()")
        store.close()


def test_sqlalchemy_logs_and_errors_hold_no_token(
    refusing_store: SQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    token = make_token("at-" + "S3cretAccess" * 4)
    with pytest.raises(StoreError) as info:
        refusing_store.put("alice", token)
    with pytest.raises(StoreError) as updated:
        refusing_store.update("alice", lambda current: token)
    assert "writes refused" in str(info.value)
    assert any("INSERT" in record.getMessage() for record in caplog.records)  # it did log
    for error in (info.value, updated.value):
        assert_hidden(error, "S3cretAccess", token.refresh_token or "-")
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert "S3cretAccess" not in logged


def test_the_old_shown_url_of_settings_file_warns_and_redacts() -> None:
    from webex_tokens import settings_file

    with pytest.warns(DeprecationWarning, match="webex_tokens.urls.redact_url"):
        assert settings_file.shown_url(f"sqlite:///t.db?key={SECRET}") == "sqlite:///t.db?key=***"
