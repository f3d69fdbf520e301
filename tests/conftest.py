"""Shared fixtures: real services (PostgreSQL, MariaDB, Secret Service) and clean state.

A fixture whose service is missing skips its tests, or fails them when services are
required (``CI=true`` or ``WEBEX_TOKENS_REQUIRE_SERVICES=1``; ``scripts/test`` sets it).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
from keyring.backend import KeyringBackend

from webex_tokens.testing.plugin import service_missing
from webex_tokens.testing.servers import openbao, redis_server, redis_url, vault_url  # noqa: F401

POSTGRES_URL = os.environ.get(
    "WEBEX_TOKENS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("WEBEX_TOKENS_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _reachable(url: str) -> str | None:
    """None if the database at ``url`` answers, else why not."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver error means "not reachable"
        return f"{url} is not reachable: {type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the test PostgreSQL database (skips, or fails in CI, when down)."""
    problem = _reachable(POSTGRES_URL)
    if problem:
        service_missing(problem)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """The URL of the test MariaDB/MySQL database (skips, or fails in CI, when down)."""
    problem = _reachable(MYSQL_URL)
    if problem:
        service_missing(problem)
    return MYSQL_URL


@pytest.fixture
def unique_table() -> str:
    """A table name no other test uses, so tests on a shared server do not collide."""
    return "wt_" + uuid.uuid4().hex[:12]


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keep the user's settings, keys and stores out of every test."""
    home = tmp_path_factory.mktemp("home")
    for variable in list(os.environ):
        if variable.startswith(("WEBEX_", "WEBEX_TOKENS_")) and variable not in (
            "WEBEX_TOKENS_REQUIRE_SERVICES",
            "WEBEX_TOKENS_TEST_POSTGRES",
            "WEBEX_TOKENS_TEST_MYSQL",
        ):
            monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))


@pytest.fixture(scope="session")
def secret_service() -> Iterator[KeyringBackend]:
    """The Secret Service keyring backend, pinned for this process and spawned children.

    Proves the service works with a write, a read and a delete; skips (or fails in CI)
    when no Secret Service answers on the D-Bus session.
    """
    import keyring.core
    from keyring.backends import SecretService

    try:
        SecretService.Keyring.priority  # noqa: B018 - raises when no daemon or no D-Bus
    except Exception as exc:  # any failure means "no usable Secret Service"
        service_missing(f"no usable Secret Service on the D-Bus session: {exc}")
    probe = f"webex-tokens-probe-{uuid.uuid4().hex}"
    backend = SecretService.Keyring()
    # A freshly started gnome-keyring may publish its login collection a moment after
    # `gnome-keyring-daemon --unlock` returns; give it a few seconds.
    deadline = time.monotonic() + 10
    while True:
        try:
            backend.set_password(probe, "probe", "ok")
            works = backend.get_password(probe, "probe") == "ok"
            backend.delete_password(probe, "probe")
            break
        except Exception as exc:  # not usable (yet)
            if time.monotonic() > deadline:
                service_missing(f"no usable Secret Service on the D-Bus session: {exc}")
            time.sleep(0.2)
    if not works:
        service_missing("the Secret Service did not return what was stored in it")
    previous = keyring.core.get_keyring()
    patch = pytest.MonkeyPatch()
    patch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.SecretService.Keyring")
    keyring.core.set_keyring(backend)
    yield backend
    keyring.core.set_keyring(previous)
    patch.undo()
