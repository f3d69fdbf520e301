"""The test's side of the multi-host suites: the host network and the agents on it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webex_tokens.testing.hosts import Host, HostNetwork, HostNetworkError, hosts_missing
from webex_tokens.testing.plugin import service_missing

AGENT = Path(__file__).with_name("host_agent.py")
#: The services the hosts reach through the gateway: PostgreSQL and Redis.
EXPOSED = (5432, 6379)


class Agent:
    """A ``host_agent.py`` process inside one host, driven line by line."""

    def __init__(self, host: Host, config: dict[str, Any]) -> None:
        self.host = host
        self.process = subprocess.Popen(
            host.command([sys.executable, str(AGENT), json.dumps(config)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def answer(self, timeout: float = 120) -> dict[str, Any]:
        """The agent's next answer; AssertionError if it ended or said nothing in time."""
        answer = self.poll(timeout)
        if answer is None:
            raise AssertionError(f"the agent on {self.host.name} said nothing for {timeout} s")
        return answer

    def poll(self, timeout: float) -> dict[str, Any] | None:
        """The agent's next answer, or None if it said nothing within ``timeout``."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            code = self.process.wait(10)
            raise AssertionError(f"the agent on {self.host.name} exited with {code}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send(stop=True)
                self.process.wait(30)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._reader.join(10)


@pytest.fixture(scope="module")
def host_network() -> Iterator[HostNetwork]:
    """Three hosts on a private bridge, PostgreSQL and Redis exposed at the gateway."""
    problem = hosts_missing()
    if problem:
        service_missing(f"no host network: {problem}")
    try:
        network = HostNetwork(3, expose=EXPOSED).up()
    except HostNetworkError as exc:
        service_missing(f"no host network: {exc}")
    try:
        yield network
    finally:
        network.down()


def on_gateway(url: str, network: HostNetwork) -> str:
    """``url`` with 127.0.0.1 replaced by the gateway, as the hosts must write it."""
    return url.replace("@127.0.0.1:", f"@{network.gateway}:").replace(
        "//127.0.0.1:", f"//{network.gateway}:"
    )
