"""Settings: where the file is found, what overrides what, named stores, bad settings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import platformdirs
import pytest

from webex_tokens import ConfigError, DecryptionError, InvalidStoreURL, open_store
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.settings import (
    DEFAULT_SCOPES,
    IntegrationSettings,
    default_store_url,
    find_settings_file,
    load_settings,
    user_settings_path,
)
from webex_tokens.testing import make_token


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def store_file(path: Path, label: str) -> Path:
    """A settings file whose default store is memory://LABEL (so each file is recognisable)."""
    return write(path, f'default_store = "memory://{label}"\n')


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory."""
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


# -- finding the settings file -------------------------------------------------------------


def test_no_settings_at_all_means_the_embedded_sqlite_default_and_creates_nothing(
    workdir: Path,
) -> None:
    settings = load_settings()
    data_dir = Path(platformdirs.user_data_dir("webex-tokens", appauthor=False))
    assert settings.path is None
    assert settings.stores == {}
    assert settings.default_target is None
    assert settings.store_url() == default_store_url() == f"sqlite:///{data_dir / 'tokens.db'}"
    assert not data_dir.exists()
    assert list(workdir.iterdir()) == []


def test_search_order_explicit_then_env_then_current_directory_then_user_config(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = store_file(user_settings_path(), "user")
    assert str(user).startswith(str(tmp_path.parent))  # the isolated XDG_CONFIG_HOME
    assert load_settings().store_url() == "memory://user"

    local = store_file(workdir / "webex-tokens.toml", "local")
    assert load_settings().path == local
    assert load_settings().store_url() == "memory://local"

    named = store_file(tmp_path / "named.toml", "named")
    monkeypatch.setenv("WEBEX_TOKENS_CONFIG", str(named))
    assert load_settings().store_url() == "memory://named"
    assert find_settings_file() == named

    explicit = store_file(tmp_path / "explicit.toml", "explicit")
    settings = load_settings(explicit)
    assert settings.store_url() == "memory://explicit"
    assert settings.path == explicit


def test_webex_tokens_config_may_come_from_dotenv(workdir: Path, tmp_path: Path) -> None:
    named = store_file(tmp_path / "named.toml", "from-dotenv")
    (workdir / ".env").write_text(f"WEBEX_TOKENS_CONFIG={named}\n")
    assert load_settings().store_url() == "memory://from-dotenv"


def test_a_directory_called_dotenv_is_ignored(workdir: Path) -> None:
    (workdir / ".env").mkdir()  # python -m venv .env
    assert load_settings().integration.client_id is None


# -- precedence ----------------------------------------------------------------------------

INTEGRATION = """
    [integration]
    client_id = "file-client"
    client_secret_env = "MY_APP_SECRET"
    redirect_uri = "https://app.example.com/callback"
    scopes = ["spark:all", "spark:kms"]
    base_url = "https://file.example.com/v1/"
    account = "bot@example.com"
"""


def test_integration_from_the_settings_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(workdir / "webex-tokens.toml", INTEGRATION)
    monkeypatch.setenv("MY_APP_SECRET", "s3cret-from-named-variable")
    integration = load_settings().integration
    assert integration.client_id == "file-client"
    assert integration.client_secret == "s3cret-from-named-variable"
    assert integration.client_secret_env == "MY_APP_SECRET"
    assert integration.redirect_uri == "https://app.example.com/callback"
    assert integration.scopes == ("spark:all", "spark:kms")
    assert integration.base_url == "https://file.example.com/v1"
    assert integration.account == "bot@example.com"
    assert "s3cret" not in repr(load_settings())


def test_environment_beats_dotenv_beats_file_beats_defaults(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "webex-tokens.toml", INTEGRATION)
    (workdir / ".env").write_text(
        "WEBEX_CLIENT_ID=dotenv-client\n"
        "WEBEX_SCOPES=spark:people_read\n"
        "WEBEX_CLIENT_SECRET=dotenv-secret\n"
    )
    monkeypatch.setenv("WEBEX_CLIENT_ID", "env-client")
    monkeypatch.setenv("MY_APP_SECRET", "named-secret")
    integration = load_settings().integration
    assert integration.client_id == "env-client"  # environment over .env and file
    assert integration.scopes == ("spark:people_read",)  # .env over file
    assert integration.client_secret == "dotenv-secret"  # WEBEX_CLIENT_SECRET over the file's
    assert integration.redirect_uri == "https://app.example.com/callback"  # file over default
    (workdir / "webex-tokens.toml").unlink()
    defaults = load_settings().integration
    assert defaults.redirect_uri == "http://localhost:8000/oauth/webex/callback"
    assert defaults.base_url == "https://webexapis.com/v1"
    assert load_settings().integration.scopes == ("spark:people_read",)
    (workdir / ".env").unlink()
    assert load_settings().integration.scopes == DEFAULT_SCOPES


def test_from_environment_still_reads_the_environment_and_dotenv(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / ".env").write_text("WEBEX_CLIENT_ID=dotenv-client\nWEBEX_ACCESS_TOKEN=direct-zq7\n")
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", "secret-zq8")
    integration = IntegrationSettings.from_environment()
    assert integration.client_id == "dotenv-client"
    assert integration.client_secret == "secret-zq8"
    assert integration.access_token == "direct-zq7"
    assert "zq7" not in repr(integration) and "zq8" not in repr(integration)


STORES = """
    default_store = "dev"

    [stores.dev]
    url = "memory://dev-store"

    [stores.prod]
    url = "memory://prod-store"
    description = "shared"
"""


def test_default_store_precedence(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "webex-tokens.toml", STORES)
    assert load_settings().store_url() == "memory://dev-store"  # default_store

    legacy = tmp_path / "legacy" / ".webex_token.json"
    monkeypatch.setenv("WEBEX_TOKEN_FILE", str(legacy))
    assert load_settings().store_url() == f"file:{legacy}"  # WEBEX_TOKEN_FILE over the file

    monkeypatch.setenv("WEBEX_TOKENS_STORE", "prod")
    assert load_settings().store_url() == "memory://prod-store"  # WEBEX_TOKENS_STORE first
    monkeypatch.setenv("WEBEX_TOKENS_STORE", "sqlite:///elsewhere.db")
    assert load_settings().store_url() == "sqlite:///elsewhere.db"

    # An explicit target beats them all.
    assert load_settings().store_url("dev") == "memory://dev-store"


def test_legacy_token_file_opens_as_a_file_store_holding_the_legacy_token(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = workdir / "my tokens" / ".webex_token.json"
    legacy.parent.mkdir()
    legacy.write_text(
        '{"access_token": "legacy-access", "refresh_token": "legacy-refresh", '
        '"saved_at": "2025-10-31T22:54:13+00:00"}'
    )
    monkeypatch.setenv("WEBEX_TOKEN_FILE", str(legacy))
    with open_store() as store:
        assert isinstance(store, FileStore)
        assert store.path == legacy
        token = store.get("default")
        assert token is not None and token.refresh_token == "legacy-refresh"


def test_open_store_by_configured_name(workdir: Path, tmp_path: Path) -> None:
    write(
        workdir / "webex-tokens.toml",
        f"""
        [stores.prod]
        url = "file://{tmp_path}/prod/tokens.json"

        [stores.db]
        url = "sqlite:///{tmp_path}/db/tokens.db"
        table = "prod_tokens"
        lock_timeout = 5
        """,
    )
    with open_store("prod") as store:
        store.put("alice@example.com", make_token())
    with FileStore(tmp_path / "prod" / "tokens.json") as same:
        assert same.names() == ["alice@example.com"]
    with open_store("db") as database:
        database.put("bob@example.com", make_token())
        assert getattr(database, "table_name", None) == "prod_tokens"
        assert getattr(database, "lock_timeout", None) == 5
    settings = load_settings()
    with open_store("prod", settings=settings) as again:
        assert again.names() == ["alice@example.com"]


@pytest.mark.usefixtures("workdir")
def test_open_store_uses_the_settings_given(tmp_path: Path) -> None:
    config = write(tmp_path / "elsewhere.toml", '[stores.mem]\nurl = "memory://given"\n')
    with open_store("mem", settings=load_settings(config)) as store:
        assert isinstance(store, MemoryStore) and store.url == "memory://given"
    with pytest.raises(ConfigError, match="'mem'"):
        open_store("mem")  # not in the settings found by default


def test_store_options_fold_into_the_url(workdir: Path) -> None:
    write(
        workdir / "webex-tokens.toml",
        """
        [stores.prod]
        url = "fernet+postgresql+psycopg://tokens@db.internal/tokens?connect_timeout=3"
        key_env = "WEBEX_TOKENS_PROD_KEY"
        table = "prod"
        lock_timeout = 2.5

        [stores.local]
        url = "fernet+file:///srv/tokens.json"
        key_file = "~/keys/prod key"
        """,
    )
    stores = load_settings().stores
    assert stores["prod"].url == (
        "fernet+postgresql+psycopg://tokens@db.internal/tokens?connect_timeout=3"
        "&key_env=WEBEX_TOKENS_PROD_KEY&table=prod&lock_timeout=2.5"
    )
    assert stores["local"].url == "fernet+file:///srv/tokens.json?key_file=~/keys/prod%20key"


def test_key_env_reaches_the_fernet_store(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    write(
        workdir / "webex-tokens.toml",
        f"""
        [stores.secure]
        url = "fernet+file://{tmp_path}/secure.json"
        key_env = "MY_PROD_KEY"
        """,
    )
    monkeypatch.setenv("MY_PROD_KEY", Fernet.generate_key().decode())
    with open_store("secure") as store:
        store.put("alice", make_token("secret-access"))
        assert store.get("alice") == make_token("secret-access")
    assert "secret-access" not in (tmp_path / "secure.json").read_text()
    monkeypatch.delenv("MY_PROD_KEY")
    with pytest.raises(DecryptionError, match="MY_PROD_KEY"):
        open_store("secure")


# -- bad settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('default_store = "dev"\n[stores.dev]\nurl = "memory://"\nurl = "x"\n', r"line 4"),
        ("[stores.dev\n", r"line 1"),
        ('defualt_store = "dev"\n', r"unknown key 'defualt_store' .*did you mean 'default_store'"),
        ('[stores.dev]\nuri = "memory://"\n', r"'uri' in \[stores\.dev\]; did you mean 'url'"),
        ('[stores.dev]\nurl = "memory://"\nkeyenv = "K"\n', r"did you mean 'key_env'"),
        ('[integration]\nclientid = "x"\n', r"'clientid' in \[integration\]; did you mean"),
        ('[integration]\nclient_secret = "x"\n', r"client_secret inline.*client_secret_env"),
        ("[stores.dev]\ndescription = 'no url'\n", r"\[stores\.dev\] has no url"),
        ("[stores.dev]\nurl = 5\n", r"url in \[stores\.dev\] must be non-empty text, not a int"),
        ('[stores.dev]\nurl = "just-a-name"\n', r"url in \[stores\.dev\] is not a store URL"),
        ('default_store = "prod"\n[stores.dev]\nurl = "memory://"\n', r"'prod'.*configured: dev"),
        ('[stores."my store"]\nurl = "memory://"\n', r"store name 'my store' is not allowed"),
        ('[stores.dev]\nurl = "file:///t.json"\nkey_env = "K"\n', r"only to encrypted stores"),
        ('[stores.dev]\nurl = "fernet+file:///t.json"\nkey_env = "gAAAA-x="\n', r"never the key"),
        ('[stores.dev]\nurl = "fernet+file:///t.json"\nkey = "k"\n', r"keys never go in"),
        ('[stores.dev]\nurl = "file:///t.json"\ntable = "t"\n', r"table .* only to SQL stores"),
        ('[stores.dev]\nurl = "sqlite:///t.db"\nlock_timeout = -1\n', r"positive number"),
        ('[stores.dev]\nurl = "sqlite:///t.db?table=a"\ntable = "b"\n', r"table both in its url"),
        ("[integration]\nscopes = [1]\n", r"scopes in \[integration\] must be a list of text"),
        ('[integration]\nbase_url = "webexapis.com"\n', r"base_url .* http:// or https://"),
        ("stores = 3\n", r"stores must be a table"),
    ],
)
def test_bad_settings_name_the_file_and_the_key_or_line(
    workdir: Path, text: str, expected: str
) -> None:
    path = workdir / "webex-tokens.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings()
    assert str(path) in str(caught.value)


def test_no_secret_value_is_echoed_in_errors(workdir: Path) -> None:
    (workdir / "webex-tokens.toml").write_text('[integration]\nclient_secret = "TOPSECRET"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "TOPSECRET" not in str(caught.value)


def test_settings_file_that_is_not_utf8_names_the_line(workdir: Path) -> None:
    path = workdir / "webex-tokens.toml"
    path.write_bytes(b'default_store = "dev"\n# caf\xe9\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(line 2\)") as caught:
        load_settings()
    assert str(path) in str(caught.value)


def test_settings_file_that_cannot_be_read(workdir: Path) -> None:
    (workdir / "webex-tokens.toml").mkdir()
    with pytest.raises(ConfigError, match=r"webex-tokens\.toml is a directory"):
        load_settings()


def test_named_settings_files_that_do_not_exist(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml does not exist; check the path"):
        load_settings(workdir / "missing.toml")
    monkeypatch.setenv("WEBEX_TOKENS_CONFIG", str(workdir / "gone.toml"))
    with pytest.raises(ConfigError, match=r"WEBEX_TOKENS_CONFIG names .*gone\.toml.* unset"):
        load_settings()


def test_unreadable_dotenv_is_a_config_error(workdir: Path) -> None:
    (workdir / ".env").write_bytes(b"WEBEX_CLIENT_ID=\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"\.env is not UTF-8"):
        load_settings()


def test_unknown_target_lists_the_configured_stores(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "webex-tokens.toml", STORES)
    settings = load_settings()
    with pytest.raises(ConfigError, match=r"'staging'.*configured: dev, prod.*\[stores\.staging\]"):
        settings.store_url("staging")
    with pytest.raises(ConfigError, match=r"write a URL such as file:tokens\.json"):
        settings.store_url("tokens.json")
    monkeypatch.setenv("WEBEX_TOKENS_STORE", "qa")
    with pytest.raises(ConfigError, match=r"WEBEX_TOKENS_STORE names the store 'qa'"):
        open_store()


def test_unknown_target_without_a_settings_file(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"there is no settings file.*configured: none"):
        open_store("prod")


def test_a_bad_configured_url_names_the_store_and_the_file(workdir: Path) -> None:
    path = write(workdir / "webex-tokens.toml", '[stores.dev]\nurl = "nosuch://x"\n')
    with pytest.raises(InvalidStoreURL, match=r"unknown store scheme") as caught:
        open_store("dev")
    assert f"[stores.dev] in {path}" in str(caught.value)
