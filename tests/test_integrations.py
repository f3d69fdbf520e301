"""Several integrations in one settings file, and the Webex cloud they talk to."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from webex_tokens import ConfigError, Token, WebexOAuth
from webex_tokens.integrations import CLOUDS
from webex_tokens.settings import load_settings

USGOV = "https://api-usgov.webex.com/v1"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for variable in ("WEBEX_CLOUD", "WEBEX_BASE_URL", "WEBEX_CLIENT_ID", "WEBEX_CLIENT_SECRET"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def settings_file(directory: Path, text: str) -> Path:
    path = directory / "webex-tokens.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


TWO = """
    [integration]
    client_id = "C-default"
    client_secret_env = "DEFAULT_SECRET"

    [integrations.hr-bot]
    client_id = "C-hr"
    client_secret_env = "HR_SECRET"
    scopes = ["spark:messages_write"]

    [integrations.reports]
    kind = "service_app"
    client_id = "C-reports"
    client_secret_env = "REPORTS_SECRET"
    manager = "admin@example.com"
"""


def test_a_tokens_client_id_chooses_its_integration(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file(workdir, TWO)
    monkeypatch.setenv("HR_SECRET", "hr-secret")
    integrations = load_settings().integrations
    hr = integrations.for_client("C-hr")
    assert (hr.name, hr.kind, hr.client_secret, hr.scopes) == (
        "hr-bot",
        "integration",
        "hr-secret",
        ("spark:messages_write",),
    )
    reports = integrations.for_client("C-reports")
    assert (reports.kind, reports.manager, reports.client_secret) == (
        "service_app",
        "admin@example.com",
        None,
    )
    # Unknown or absent client IDs belong to the default integration.
    assert integrations.for_client("C-default") is integrations.default
    assert integrations.for_client("C-unknown") is integrations.default
    assert integrations.for_client(None) is integrations.default
    assert [i.label for i in integrations] == [
        "[integration]",
        "[integrations.hr-bot]",
        "[integrations.reports]",
    ]
    with pytest.raises(ConfigError, match=r"no \[integrations.nope\].*hr-bot, reports"):
        integrations.get("nope")
    assert "hr-secret" not in repr(hr)


def test_named_integrations_inherit_the_api_root_and_webex_base_url_wins(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file(
        workdir,
        """
        [integration]
        cloud = "usgov"
        [integrations.a]
        client_id = "C-a"
        client_secret_env = "A_SECRET"
        [integrations.b]
        client_id = "C-b"
        client_secret_env = "B_SECRET"
        base_url = "http://127.0.0.1:9/v1/"
        """,
    )
    settings = load_settings()
    assert settings.integration.base_url == USGOV
    assert settings.integration.cloud == "usgov"
    assert settings.named_integrations["a"].base_url == USGOV
    assert settings.named_integrations["b"].base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("WEBEX_BASE_URL", "http://127.0.0.1:8/v1")
    settings = load_settings()
    assert {i.base_url for i in settings.integrations} == {"http://127.0.0.1:8/v1"}


def test_webex_cloud_selects_the_fedramp_api(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBEX_CLOUD", "USGov")
    monkeypatch.setenv("WEBEX_CLIENT_ID", "C1")
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", "s1")
    settings = load_settings()
    assert settings.integration.base_url == USGOV == CLOUDS["usgov"]
    oauth = WebexOAuth.from_settings(settings)
    assert oauth.token_url == f"{USGOV}/access_token"
    assert oauth.authorize_url == f"{USGOV}/authorize"
    # The environment's cloud wins over the file's.
    settings_file(workdir, '[integration]\ncloud = "commercial"\n')
    assert load_settings().integration.base_url == USGOV
    monkeypatch.setenv("WEBEX_CLOUD", "commercial")
    assert load_settings().integration.base_url == "https://webexapis.com/v1"
    monkeypatch.setenv("WEBEX_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("WEBEX_CLOUD", "usgov")
    assert load_settings().integration.base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("value", ["gov", "fedramp", "https://api-usgov.webex.com/v1"])
def test_a_bad_webex_cloud_is_one_clear_error(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WEBEX_CLOUD", value)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert message.startswith("WEBEX_CLOUD is ")
    assert "use one of commercial, usgov (or set WEBEX_BASE_URL" in message


BAD_TABLES = [
    ('[integration]\ncloud = "moon"\n', r"cloud in \[integration\] is 'moon'.*commercial, usgov"),
    ("[integration]\ncloud = 3\n", r"cloud in \[integration\] must be non-empty text"),
    (
        '[integration]\ncloud = "usgov"\nbase_url = "https://x.example/v1"\n',
        r"sets both cloud and base_url",
    ),
    ("integrations = 3\n", r"integrations must be a table of \[integrations.NAME\]"),
    ("[integrations]\nx = 3\n", r"integrations.x must be a table"),
    ('[integrations."a b"]\nclient_id = "C"\n', r"integration name 'a b' is not allowed"),
    (
        '[integrations.x]\nclient_secret_env = "S"\n',
        r'\[integrations.x\] has no client_id; add e.g. client_id = "C1f..."',
    ),
    ('[integrations.x]\nclient_id = "C"\n', r"\[integrations.x\] has no client_secret_env"),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret = "shh-secret"\n',
        r"\[integrations.x\] holds client_secret inline.*client_secret_env",
    ),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret_env = "S"\naccess_token = "t"\n',
        r"holds access_token, and tokens never go in the settings file",
    ),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret_env = "not a name"\n',
        r"client_secret_env in \[integrations.x\] must be the name of an environment variable",
    ),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret_env = "S"\nkind = "bot"\n',
        r"kind in \[integrations.x\] must be one of 'integration', 'service_app', not 'bot'",
    ),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret_env = "S"\nmanager = "a@b.c"\n',
        r'manager in \[integrations.x\] applies only to Service Apps; add kind = "service_app"',
    ),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret_env = "S"\napp_id = "Y2lz"\n',
        r"app_id in \[integrations.x\] applies only to Service Apps",
    ),
    (
        '[integrations.x]\nkind = "service_app"\nclient_id = "C"\nclient_secret_env = "S"\n'
        'manager = "a\\u0007b"\n',
        r"manager in \[integrations.x\] is not a valid account name",
    ),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret_env = "S"\nmanger = "a"\n',
        r"unknown key 'manger' in \[integrations.x\]; did you mean 'manager'\?",
    ),
    (
        '[integration]\nclient_id = "C"\n[integrations.x]\nclient_id = "C"\n'
        'client_secret_env = "S"\n',
        r"\[integrations.x\] has the client_id of \[integration\]",
    ),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret_env = "S"\n'
        '[integrations.y]\nclient_id = "C"\nclient_secret_env = "T"\n',
        r"\[integrations.y\] has the client_id of \[integrations.x\]",
    ),
    (
        '[integrations.x]\nclient_id = "C"\nclient_secret_env = "S"\nbase_url = "ftp://x"\n',
        r"base_url in \[integrations.x\] must be an http:// or https:// URL",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_TABLES)
def test_bad_integration_tables_name_the_file_and_the_key(
    workdir: Path, text: str, expected: str
) -> None:
    path = settings_file(workdir, text)
    with pytest.raises(ConfigError, match=expected) as excinfo:
        load_settings()
    assert str(excinfo.value).startswith(f"{path}: ")
    assert "shh-secret" not in str(excinfo.value)


def test_a_service_app_token_without_its_service_app_is_a_config_error(workdir: Path) -> None:
    from webex_tokens.credentials import Credentials

    settings_file(workdir, TWO)
    settings = load_settings()
    credentials = Credentials(settings, lambda: pytest.fail("no default"), lambda name: None)  # type: ignore[arg-type,return-value]
    token = Token(access_token="a", refresh_token="r", kind="service_app", client_id="C-hr")
    with pytest.raises(
        ConfigError, match=r'no Service App in the settings; add .*kind = "service_app"'
    ):
        credentials.integration_of(token)
    reports = Token(access_token="a", refresh_token="r", kind="service_app", client_id="C-reports")
    with pytest.raises(ConfigError, match="REPORTS_SECRET"):
        credentials.refresh(reports)
