"""Fixtures of the reliability suites: one store URL per backend, shared by real processes."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hosts_driver import host_network  # noqa: F401 - the multi-host suites' fixture
from shared_stores import purge_keyring
from sql_tables import drop_table
from stress_profile import PROFILE, RECORDS

from webex_tokens.backends.fernet import generate_key


@pytest.fixture
def backend_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unique_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The URL of an empty store of the backend named by the (indirect) parameter.

    Every process of a test opens this URL itself. Database tables, keyring entries,
    Redis keys and Vault folders are removed afterwards; the ``fernet+`` kinds get a fresh
    key in ``WEBEX_TOKENS_KEY``.
    """
    kind = request.param
    if kind == "file":
        yield f"file://{tmp_path}/tokens.json"
    elif kind == "fernet+file":
        monkeypatch.setenv("WEBEX_TOKENS_KEY", generate_key())
        yield f"fernet+file://{tmp_path}/tokens.json"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path}/tokens.db"
    elif kind in ("postgresql", "mariadb"):
        fixture = "postgres_server" if kind == "postgresql" else "mysql_server"
        server = str(request.getfixturevalue(fixture))
        try:
            yield f"{server}?table={unique_table}"
        finally:
            drop_table(server, unique_table)
    elif kind in ("redis", "fernet+redis"):
        if kind == "fernet+redis":
            monkeypatch.setenv("WEBEX_TOKENS_KEY", generate_key())
        url = str(request.getfixturevalue("redis_url"))
        yield url if kind == "redis" else f"fernet+{url}"
    elif kind in ("vault", "fernet+vault"):
        if kind == "fernet+vault":
            monkeypatch.setenv("WEBEX_TOKENS_KEY", generate_key())
        url = str(request.getfixturevalue("vault_url"))  # sets VAULT_TOKEN for the workers
        yield url if kind == "vault" else f"fernet+{url}"
    elif kind == "keyring":
        request.getfixturevalue("secret_service")
        service = f"webex-tokens-reliability-{uuid.uuid4().hex[:12]}"
        try:
            yield f"keyring://{service}"
        finally:
            purge_keyring(service)
    else:  # pragma: no cover - a typo in a parameter list
        raise ValueError(f"unknown backend {kind!r}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the reliability suites measured, and write it where asked."""
    if not RECORDS:
        return
    terminalreporter.section(f"reliability results ({PROFILE} profile)")
    for line in RECORDS:
        terminalreporter.write_line(json.dumps(line, sort_keys=True))
    target = os.environ.get("WEBEX_TOKENS_STRESS_REPORT")
    if target:
        Path(target).write_text(json.dumps(RECORDS, indent=1, sort_keys=True) + "\n")
