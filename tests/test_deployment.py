"""The deployment recipes of examples/keep_alive/: parsed as their schedulers parse them,
each command line checked against the CLI, and run against FakeWebex.

- systemd: the service and the timer are ini files (configparser);
- Kubernetes: the CronJob is YAML (pyyaml), its container command a list;
- cron: one crontab line.
"""

from __future__ import annotations

import configparser
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from test_examples import environment, seed, stored

from webex_tokens.cli import cli
from webex_tokens.cli.schemas import problems
from webex_tokens.testing.fake_webex import FakeWebex

KEEP_ALIVE = Path(__file__).resolve().parent.parent / "examples" / "keep_alive"


def unit(name: str) -> configparser.ConfigParser:
    """A systemd unit file, read as systemd reads it (keys are case-sensitive)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((KEEP_ALIVE / name).read_text())
    return parser


def cronjob() -> dict[str, Any]:
    document = yaml.safe_load((KEEP_ALIVE / "kubernetes-cronjob.yaml").read_text())
    assert isinstance(document, dict)
    return document


def arguments(words: list[str]) -> list[str]:
    """The arguments after the ``webex-tokens`` program in a command line."""
    program = next(i for i, word in enumerate(words) if word.rsplit("/", 1)[-1] == "webex-tokens")
    return words[program + 1 :]


def check_invocation(args: list[str]) -> click.Command:
    """Parse ``args`` (a command and its arguments) as the CLI does, without running it.

    Raises click's usage error for an unknown command or option or a bad value.
    """
    root = click.Context(cli, info_name="webex-tokens")
    command = cli.get_command(root, args[0])
    if command is None:
        raise click.UsageError(f"no such command {args[0]!r}")
    with command.make_context(args[0], args[1:], parent=root):
        return command


def commands() -> dict[str, list[str]]:
    """The webex-tokens arguments of each recipe."""
    service = unit("webex-tokens-refresh.service")
    cron = [
        line
        for line in (KEEP_ALIVE / "webex-tokens-refresh.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(cron) == 1
    schedule, _, command = cron[0].partition(" . ")
    assert len(schedule.split()) == 5
    containers = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return {
        "systemd": arguments(shlex.split(service["Service"]["ExecStart"])),
        "cron": arguments(shlex.split(command.split("&&")[1].split(">>")[0])),
        "kubernetes": arguments(containers[0]["command"]),
    }


def test_the_systemd_units_are_what_systemd_expects() -> None:
    service = unit("webex-tokens-refresh.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["EnvironmentFile"].startswith("/")
    assert service["Service"]["StateDirectory"] == "webex-tokens"
    assert service["Service"]["Environment"] == "XDG_STATE_HOME=/var/lib"
    timer = unit("webex-tokens-refresh.timer")
    assert timer["Timer"]["OnCalendar"] == "daily"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_cronjob_is_a_kubernetes_cronjob_that_never_overlaps() -> None:
    document = cronjob()
    assert (document["apiVersion"], document["kind"]) == ("batch/v1", "CronJob")
    spec = document["spec"]
    assert len(spec["schedule"].split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "webex-tokens"}}]
    state = {item["name"]: item["value"] for item in container["env"]}["XDG_STATE_HOME"]
    assert [mount["mountPath"] for mount in container["volumeMounts"]] == [state]


def test_every_recipe_is_a_valid_invocation_of_refresh_all() -> None:
    found = commands()
    assert found["systemd"] == found["cron"] == ["refresh", "--all", "--due-within", "7d"]
    assert found["kubernetes"] == [*found["systemd"], "--json"]
    for args in found.values():
        assert check_invocation(args).name == "refresh"


def test_the_invocation_check_catches_a_broken_command_line() -> None:
    """The check above can fail: a typo in an option or a bad duration is a usage error."""
    with pytest.raises(click.UsageError):
        check_invocation(["refresh", "--all", "--due-whithin", "7d"])
    with pytest.raises(click.UsageError):
        check_invocation(["refresh", "--all", "--due-within", "a week"])
    with pytest.raises(click.UsageError):
        check_invocation(["refrsh", "--all"])


def run(args: list[str], fake: FakeWebex, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    program = Path(sys.executable).with_name("webex-tokens")
    if not program.exists():
        pytest.fail(f"{program} is missing: install the package (pip install -e .)")
    return subprocess.run(
        [str(program), *args],
        cwd=cwd,
        env=environment(fake, url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_systemd_and_cron_command_refreshes_only_the_due_accounts(
    fake_webex: FakeWebex, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/tokens.db"
    due = seed(url, fake_webex, "due@example.com", days_ago=10)  # expires in 4 days
    fine = seed(url, fake_webex, "fine@example.com", days_ago=1)  # expires in 13 days
    result = run(commands()["systemd"], fake_webex, url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 refreshed, 0 failed, 1 not due within 7d" in result.stdout
    assert stored(url, "due@example.com").access_token != due.access_token
    assert stored(url, "fine@example.com").access_token == fine.access_token
    assert fake_webex.calls["refresh_token"] == 1


def test_the_kubernetes_command_prints_a_document_alerting_can_read(
    fake_webex: FakeWebex, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/tokens.db"
    seed(url, fake_webex, "due@example.com", days_ago=10)
    seed(url, fake_webex, "revoked@example.com", days_ago=10)
    fake_webex.revoke_refresh_tokens()
    seed(url, fake_webex, "renewed@example.com", days_ago=10)
    seed(url, fake_webex, "fine@example.com", days_ago=1)
    result = run(commands()["kubernetes"], fake_webex, url, tmp_path)
    assert result.returncode == 1  # the Job fails: some account needs a person
    document = json.loads(result.stdout)
    assert problems(document, "refresh") == []
    assert [item["name"] for item in document["refreshed"]] == ["renewed@example.com"]
    assert [item["name"] for item in document["failed"]] == [
        "due@example.com",
        "revoked@example.com",
    ]
    assert all("webex-tokens login --name" in item["error"] for item in document["failed"])
    assert document["not_due"] == ["fine@example.com"]
    assert result.stderr.count("error: ") == 2
