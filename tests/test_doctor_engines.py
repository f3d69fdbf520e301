"""``doctor`` on Redis and Vault stores: persistence, and the Vault token's policy.

Real servers: the test Redis (which keeps nothing on disk), throw-away ``redis-server``
processes with persistence on or ``CONFIG`` disabled, and the OpenBao dev server with
tokens of narrow policies.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from webex_tokens.cli import cli
from webex_tokens.testing.plugin import service_missing
from webex_tokens.testing.servers import OpenBaoServer, RedisServer, redis_server_url


def doctor(url: str, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["--store", url, "doctor", *extra], catch_exceptions=False)


def findings(result: Result, level: str) -> list[str]:
    return [
        line.strip()[len(level) :].strip()
        for line in result.stdout.splitlines()
        if line.strip().startswith(level)
    ]


@pytest.fixture
def own_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A throw-away redis-server started with the (indirect) parameter's arguments."""
    server = RedisServer(*request.param)
    try:
        server.start()
    except RuntimeError as exc:
        service_missing(str(exc))
    yield server
    server.stop()


def test_a_redis_that_keeps_nothing_on_disk_is_a_problem(redis_url: str) -> None:
    result = doctor(redis_url)
    assert result.exit_code == 1, result.stdout
    (problem,) = findings(result, "problem")
    assert "keeps nothing on disk" in problem
    assert "a restart loses every token" in problem
    assert "CONFIG SET appendonly yes" in problem


@pytest.mark.parametrize("own_redis", [("--appendonly", "yes")], indirect=True)
def test_a_redis_with_the_append_only_file_is_fine(own_redis: RedisServer) -> None:
    assert redis_server_url(f"redis://127.0.0.1:{own_redis.port}/0") is None
    result = doctor(f"redis://127.0.0.1:{own_redis.port}/0")
    assert result.exit_code == 0, result.stdout
    assert any("the append-only file" in line for line in findings(result, "ok")), result.stdout
    assert findings(result, "problem") == []


@pytest.mark.parametrize("own_redis", [("--rename-command", "CONFIG", "")], indirect=True)
def test_a_redis_that_refuses_config_get_is_said_to_be_unchecked(own_redis: RedisServer) -> None:
    result = doctor(f"redis://127.0.0.1:{own_redis.port}/0")
    assert result.exit_code == 0, result.stdout  # a warning: it may well persist
    (warning,) = [line for line in findings(result, "warning") if "Redis" in line]
    assert "cannot tell whether Redis" in warning
    assert "refused CONFIG GET" in warning


@pytest.mark.parametrize(
    "own_redis", [("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru")], indirect=True
)
def test_a_redis_that_evicts_any_key_is_a_warning(own_redis: RedisServer) -> None:
    result = doctor(f"redis://127.0.0.1:{own_redis.port}/0")
    assert result.exit_code == 0, result.stdout
    (warning,) = [line for line in findings(result, "warning") if "Redis" in line]
    assert "maxmemory-policy allkeys-lru" in warning


READ_AND_LIST = """
path "secret/data/{path}/*" {{ capabilities = ["read"] }}
path "secret/metadata/{path}/*" {{ capabilities = ["list"] }}
path "secret/metadata/{path}/" {{ capabilities = ["list"] }}
"""


def test_a_vault_token_that_cannot_write_is_given_the_minimal_policy(
    openbao: OpenBaoServer, vault_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = vault_url.rsplit("/", 1)[1]
    monkeypatch.setenv("VAULT_TOKEN", openbao.create_token(READ_AND_LIST.format(path=path)))
    result = doctor(vault_url)
    assert result.exit_code == 1, result.stdout
    (problem,) = findings(result, "problem")
    assert "lacks create on secret/data/" in problem
    assert "update on secret/data/" in problem and "delete on secret/metadata/" in problem
    assert f'path "secret/data/{path}/*" {{ capabilities = ["create", "read", "update"] }}' in (
        problem
    )
    assert openbao.root_token not in result.stdout


def test_a_vault_token_with_the_minimal_policy_is_fine(
    openbao: OpenBaoServer, vault_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = vault_url.rsplit("/", 1)[1]
    policy = (
        f'path "secret/data/{path}/*" {{ capabilities = ["create", "read", "update"] }}\n'
        f'path "secret/metadata/{path}/*" {{ capabilities = ["list", "delete"] }}\n'
    )
    monkeypatch.setenv("VAULT_TOKEN", openbao.create_token(policy))
    result = doctor(vault_url)
    assert result.exit_code == 0, result.stdout
    assert "the Vault token's policy allows everything the store does" in result.stdout
