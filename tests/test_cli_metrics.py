"""``webex-tokens metrics``: the Prometheus text format, through prometheus_client.

The output is parsed back with prometheus_client's own parser, and the example alert
rules of examples/prometheus/ are checked against what the command emits.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from webex_tokens import Token
from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import fingerprint

RULES = Path(__file__).resolve().parent.parent / "examples" / "prometheus"
ALERTS = RULES / "webex-tokens-alerts.yaml"
DAY = 86400


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the exposition ``text``, by metric name."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def by_account(found: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    return {labels["account"]: value for labels, value in found}


@pytest.fixture
def webex(fake_webex: FakeWebex, monkeypatch: pytest.MonkeyPatch) -> FakeWebex:
    monkeypatch.setenv("WEBEX_CLIENT_ID", fake_webex.client_id)
    monkeypatch.setenv("WEBEX_CLIENT_SECRET", fake_webex.client_secret)
    monkeypatch.setenv("WEBEX_BASE_URL", fake_webex.base_url)
    return fake_webex


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileStore:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("WEBEX_TOKENS_STORE", f"file://{path}")
    return FileStore(path)


def issued(fake: FakeWebex, user: str, *, refresh_days: float = 90) -> Token:
    token = Token.from_response(fake.issue_token(user), client_id=fake.client_id, account=user)
    now = datetime.now(timezone.utc)
    return token.replace(refresh_token_expires_at=now + timedelta(days=refresh_days))


def test_each_account_has_its_expiries_status_and_kind_and_no_secret(
    webex: FakeWebex, store: FileStore
) -> None:
    alice = issued(webex, "alice@example.com", refresh_days=10)
    store.put("alice@example.com", alice)
    store.put("hr-bot", Token(access_token=webex.issue_bot_token(), kind="bot"))
    result = invoke("metrics")
    assert result.exit_code == 0, result.stderr
    found = samples(result.stdout)
    hashed = fingerprint("alice@example.com")
    access = by_account(found["webex_tokens_access_token_expiry_seconds"])
    assert set(access) == {hashed}  # a bot's token has no expiry to report
    assert 14 * DAY - 120 < access[hashed] <= 14 * DAY
    refresh = by_account(found["webex_tokens_refresh_token_expiry_seconds"])
    assert 10 * DAY - 120 < refresh[hashed] <= 10 * DAY
    statuses = {
        (labels["account"], labels["kind"], labels["status"])
        for labels, value in found["webex_tokens_account_status"]
        if value == 1
    }
    assert statuses == {(hashed, "integration", "ok"), (fingerprint("hr-bot"), "bot", "ok")}
    assert found["webex_tokens_accounts"] == [({"store": store.url}, 2.0)]
    assert found["webex_tokens_store_up"] == [({"store": store.url}, 1.0)]
    for secret in (alice.access_token, alice.refresh_token, "alice@example.com", "hr-bot"):
        assert secret is not None and secret not in result.stdout


def test_names_are_labels_only_when_shown(webex: FakeWebex, store: FileStore) -> None:
    store.put("alice@example.com", issued(webex, "alice@example.com"))
    found = samples(invoke("metrics", "--show-names").stdout)
    assert set(by_account(found["webex_tokens_access_token_expiry_seconds"])) == {
        "alice@example.com"
    }


def test_the_last_refresh_result_and_time_come_from_the_refresh_history(
    webex: FakeWebex, store: FileStore
) -> None:
    store.put("revoked", issued(webex, "revoked@example.com"))
    webex.revoke_refresh_tokens()
    store.put("fine", issued(webex, "fine@example.com"))
    store.put("never", issued(webex, "never@example.com"))
    before = datetime.now(timezone.utc).replace(microsecond=0).timestamp()
    invoke("refresh", "revoked")
    invoke("refresh", "fine")
    found = samples(invoke("metrics", "--show-names").stdout)
    success = by_account(found["webex_tokens_last_refresh_success"])
    assert success == {"revoked": 0.0, "fine": 1.0}  # "never" was never refreshed
    times = {
        (labels["account"], labels["result"]): value
        for labels, value in found["webex_tokens_last_refresh_timestamp_seconds"]
    }
    assert set(times) == {("revoked", "refused"), ("fine", "refreshed")}
    assert all(before <= value <= before + 60 for value in times.values())
    status = {
        labels["account"]: labels["status"] for labels, _ in found["webex_tokens_account_status"]
    }
    assert status == {"revoked": "refused", "fine": "ok", "never": "ok"}


def test_textfile_is_written_atomically_for_node_exporter(
    webex: FakeWebex, store: FileStore, tmp_path: Path
) -> None:
    store.put("alice", issued(webex, "alice@example.com"))
    collector = tmp_path / "textfile"
    collector.mkdir()
    target = collector / "webex_tokens.prom"
    target.write_text("old\n")
    result = invoke("metrics", "--textfile", str(target))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    text = target.read_text()
    assert "webex_tokens_access_token_expiry_seconds{" in text
    samples(text)  # parses
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # node_exporter's user reads it
    assert sorted(path.name for path in collector.iterdir()) == ["webex_tokens.prom"]


def test_a_store_that_cannot_be_read_is_down_and_exit_1(tmp_path: Path) -> None:
    missing = f"fernet+file://{tmp_path / 'tokens.json'}?key_env=NO_SUCH_KEY_VARIABLE"
    result = invoke("--store", missing, "metrics")
    assert result.exit_code == 1
    found = samples(result.stdout)
    assert [value for _, value in found["webex_tokens_store_up"]] == [0.0]
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")


def test_without_prometheus_client_the_error_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from webex_tokens.cli import main; main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "--store", f"file://{tmp_path / 't.json'}", "metrics"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "error: webex-tokens metrics needs the prometheus_client library; install it with: "
        "pip install 'webex-tokens[metrics]'\n"
    )


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    (group,) = document["groups"]
    assert group["name"] == "webex-tokens"
    return list(group["rules"])


def test_the_alert_rules_use_only_metrics_the_command_emits(
    webex: FakeWebex, store: FileStore
) -> None:
    store.put("alice", issued(webex, "alice@example.com"))
    emitted = set(samples(invoke("metrics").stdout))
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        used = set(re.findall(r"webex_tokens_[a-z_]+", rule["expr"]))
        assert used and used <= emitted, (rule["alert"], used - emitted)


def test_the_expiring_refresh_token_alert_fires_within_14_days_only(
    webex: FakeWebex, store: FileStore
) -> None:
    (rule,) = [r for r in rules() if r["alert"] == "WebexRefreshTokenExpiringSoon"]
    matched = re.fullmatch(r"(\w+) < (\d+) \* (\d+)", rule["expr"])
    assert matched is not None, rule["expr"]
    metric, threshold = matched[1], int(matched[2]) * int(matched[3])
    assert threshold == 14 * DAY
    store.put("soon", issued(webex, "soon@example.com", refresh_days=13))
    store.put("later", issued(webex, "later@example.com", refresh_days=15))
    found = by_account(samples(invoke("metrics", "--show-names").stdout)[metric])
    assert {name for name, value in found.items() if value < threshold} == {"soon"}


def test_all_stores_reports_each_store_and_the_one_that_cannot_be_read(
    webex: FakeWebex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = FileStore(tmp_path / "dev.json")
    dev.put("alice", issued(webex, "alice@example.com"))
    prod = FileStore(tmp_path / "prod.json")
    prod.put("hr-bot", Token(access_token="b", kind="bot"))
    config = tmp_path / "webex-tokens.toml"
    config.write_text(
        f'[stores.dev]\nurl = "{dev.url}"\n\n[stores.prod]\nurl = "{prod.url}"\n\n'
        f'[stores.vault]\nurl = "fernet+{dev.url}?key_env=NO_SUCH_KEY_VARIABLE"\n'
    )
    monkeypatch.setenv("WEBEX_TOKENS_CONFIG", str(config))
    result = invoke("metrics", "--all-stores", "--show-names")
    assert result.exit_code == 1
    found = samples(result.stdout)
    up = {labels["store"]: value for labels, value in found["webex_tokens_store_up"]}
    assert up == {"dev": 1.0, "prod": 1.0, "vault": 0.0}
    accounts = {labels["store"]: value for labels, value in found["webex_tokens_accounts"]}
    assert accounts == {"dev": 1.0, "prod": 1.0}
    assert result.stderr.startswith("error: vault: ")
