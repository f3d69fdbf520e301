"""Several hosts on one machine, for tests: Linux network namespaces on a bridge.

:class:`HostNetwork` builds, as root, a private network that never leaves this machine:

- a bridge in the root namespace with the address ``10.A.B.1`` (the *gateway*), on a
  ``/24`` that no interface or route of the machine uses yet;
- one network namespace per host, joined to the bridge by a veth pair, with the address
  ``10.A.B.(10 + i)`` and no route but the bridge's subnet (so nothing it sends can leave
  the machine);
- TCP forwarders (``socat``) on the gateway address, one per service, that expose
  services listening on 127.0.0.1 of the machine (PostgreSQL, Redis, OpenBao, the
  emulator) to the hosts: a host reaches ``127.0.0.1:PORT`` as ``GATEWAY:PORT``.

A host runs commands with :meth:`Host.command` (``ip netns exec``). :meth:`HostNetwork.cut`
takes a host's link down, as a partition would (every packet between it and the others is
dropped until :meth:`HostNetwork.restore`); connections survive, so TCP delivers what was
in flight once the link is back.

Every name carries a random tag (``wt-<tag>-h1``, ``wtb<tag>``, ...), so parallel runs
never collide; what a network created is recorded in a state file under
:data:`STATE_DIR`, and :meth:`HostNetwork.down` (also run when :meth:`HostNetwork.up`
fails, and by ``with``) removes exactly that. A network whose creating process died
without tearing down is removed by the next :meth:`HostNetwork.up`, and ``scripts/hosts
down --all`` removes every recorded one.

Run as ``python -m webex_tokens.testing.hosts up|down|list`` (``scripts/hosts``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

__all__ = [
    "STATE_DIR",
    "Host",
    "HostNetwork",
    "HostNetworkError",
    "hosts_missing",
    "main",
]

#: Where each network's state file lives (one JSON file per tag).
STATE_DIR: Final = Path("/run/webex-tokens-hosts")
#: The second octet of the subnets used: 10.200.0.0 to 10.249.255.0.
_FIRST_OCTET: Final = 200
_OCTETS: Final = 50


class HostNetworkError(RuntimeError):
    """A step of building or removing the network failed (the command and its error)."""


@dataclass(frozen=True)
class Host:
    """One host of a :class:`HostNetwork`.

    Attributes:
        name: ``h1``, ``h2``, ...
        namespace: the network namespace it runs in.
        address: its IPv4 address on the bridge.
        link: the root-side end of its veth pair (taken down by :meth:`HostNetwork.cut`).
    """

    name: str
    namespace: str
    address: str
    link: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace (the environment is kept)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass
class _State:
    tag: str
    subnet: str  # "10.A.B"
    bridge: str
    owner_pid: int | None  # None: made by ``scripts/hosts up``, kept until ``down``
    hosts: list[Host] = field(default_factory=list)
    forwarders: dict[str, int] = field(default_factory=dict)  # "port" -> socat pid

    @property
    def path(self) -> Path:
        return STATE_DIR / f"{self.tag}.json"

    def save(self) -> None:
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1))
        os.replace(temporary, self.path)

    @classmethod
    def load(cls, path: Path) -> _State:
        data = json.loads(path.read_text())
        data["hosts"] = [Host(**host) for host in data.get("hosts", [])]
        return cls(**data)


def hosts_missing() -> str | None:
    """Why a :class:`HostNetwork` cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "socat"):
        if shutil.which(tool) is None:
            return f"no {tool} command (apt-get install iproute2 socat)"
    probe = f"wt-probe-{secrets.token_hex(3)}"
    try:
        _run("ip", "netns", "add", probe)
    except HostNetworkError as exc:
        return f"cannot create a network namespace: {exc}"
    with contextlib.suppress(HostNetworkError):
        _run("ip", "netns", "del", probe)
    return None


class HostNetwork:
    """Hosts in network namespaces on a private bridge: ``with HostNetwork(3) as net``.

    Args:
        count: how many hosts.
        expose: ports on 127.0.0.1 to make reachable from the hosts at the gateway.
        persistent: keep the network when this process ends (``scripts/hosts up``);
            otherwise a later :meth:`up` in any process removes it once this one is gone.

    Attributes:
        hosts: the hosts, once up.
        gateway: the bridge's address, where the hosts reach the exposed services.
        tag: the random part of every name.
    """

    def __init__(
        self, count: int = 3, *, expose: Sequence[int] = (), persistent: bool = False
    ) -> None:
        if not 1 <= count <= 200:
            raise ValueError(f"between 1 and 200 hosts, not {count}")
        self.count = count
        self._expose = list(expose)
        self._persistent = persistent
        self._state: _State | None = None
        self._forwarders: list[subprocess.Popen[bytes]] = []

    @property
    def tag(self) -> str:
        """The random part of every name of this network."""
        return self._live().tag

    @property
    def hosts(self) -> list[Host]:
        """The hosts, in order (``h1`` first)."""
        return list(self._live().hosts)

    @property
    def gateway(self) -> str:
        """The bridge's address: where the hosts reach the exposed services."""
        return f"{self._live().subnet}.1"

    def _live(self) -> _State:
        if self._state is None:
            raise HostNetworkError("the host network is not up")
        return self._state

    # -- building and removing ---------------------------------------------------------

    def up(self) -> HostNetwork:
        """Build the network; on any failure remove what was built, then raise.

        Raises:
            HostNetworkError: a command failed (not root, no ``ip`` or ``socat``, ...).
        """
        reap_stale()
        with _machine_lock():
            state = self._claim()
        self._state = state
        try:
            self._build(state)
            for port in self._expose:
                self.expose(port)
        except BaseException:
            self.down()
            raise
        return self

    def _claim(self) -> _State:
        """A tag and a subnet nothing on the machine uses (under the machine lock)."""
        used = _run("ip", "-4", "-o", "addr").stdout + _run("ip", "-4", "route").stdout
        used += "".join(path.read_text() for path in STATE_DIR.glob("*.json"))
        for _ in range(200):
            tag = secrets.token_hex(3)
            number = int(tag, 16) % (_OCTETS * 256)
            subnet = f"10.{_FIRST_OCTET + number // 256}.{number % 256}"
            if f"{subnet}." not in used and f"{tag}" not in used:
                owner = None if self._persistent else os.getpid()
                state = _State(tag, subnet, f"wtb{tag}", owner)
                state.save()  # from now on down() knows what to remove
                return state
        raise HostNetworkError("no free 10.200-249.x.0/24 subnet for the host network")

    def _build(self, state: _State) -> None:
        _run("ip", "link", "add", state.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{state.subnet}.1/24", "dev", state.bridge)
        _run("ip", "link", "set", state.bridge, "up")
        for number in range(1, self.count + 1):
            host = Host(
                f"h{number}",
                f"wt-{state.tag}-h{number}",
                f"{state.subnet}.{9 + number}",
                f"wt{state.tag}h{number}",
            )
            state.hosts.append(host)
            state.save()
            peer = f"wt{state.tag}p{number}"
            _run("ip", "netns", "add", host.namespace)
            _run("ip", "link", "add", host.link, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", peer, "netns", host.namespace)
            _run("ip", "link", "set", host.link, "master", state.bridge, "up")
            inside = ("ip", "-n", host.namespace)
            _run(*inside, "link", "set", peer, "name", "eth0")
            _run(*inside, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _run(*inside, "link", "set", "eth0", "up")
            _run(*inside, "link", "set", "lo", "up")

    def expose(self, port: int, target: int | None = None, target_host: str = "127.0.0.1") -> int:
        """Forward ``GATEWAY:port`` to ``target_host:target`` (default: the same port on
        127.0.0.1); returns ``port`` once the forwarder accepts connections. With a
        host's address as ``target_host`` it fronts a server running on that host.

        Raises:
            HostNetworkError: the forwarder did not start.
        """
        state = self._live()
        target = port if target is None else target
        process = subprocess.Popen(  # noqa: S603 - socat, with arguments built here
            [
                shutil.which("socat") or "socat",
                f"TCP-LISTEN:{port},bind={self.gateway},reuseaddr,fork",
                f"TCP:{target_host}:{target}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._forwarders.append(process)
        state.forwarders[str(port)] = process.pid
        state.save()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                error = (process.stderr.read() if process.stderr else b"").decode(errors="replace")
                raise HostNetworkError(f"the forwarder of port {port} failed: {error.strip()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.gateway, port), timeout=1),
            ):
                if process.stderr is not None:
                    process.stderr.close()
                return port
            time.sleep(0.02)
        raise HostNetworkError(f"the forwarder of port {port} did not start")

    def down(self) -> None:
        """Remove everything this network created (safe to call twice)."""
        state, self._state = self._state, None
        if state is not None:
            _remove(state)
        processes, self._forwarders = self._forwarders, []
        for process in processes:  # reap them: they were ours
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)

    def __enter__(self) -> HostNetwork:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # -- faults ------------------------------------------------------------------------

    def cut(self, host: Host) -> None:
        """Take ``host``'s link down: nothing reaches it or leaves it until restored."""
        _run("ip", "link", "set", host.link, "down")

    def restore(self, host: Host) -> None:
        """Bring ``host``'s link back up (connections opened before the cut carry on)."""
        _run("ip", "link", "set", host.link, "up")

    def describe(self) -> dict[str, Any]:
        """The network as JSON-ready data: tag, gateway, hosts, forwarded ports."""
        state = self._live()
        return {
            "tag": state.tag,
            "gateway": self.gateway,
            "hosts": [asdict(host) for host in state.hosts],
            "forwarded_ports": sorted(int(port) for port in state.forwarders),
        }


# -- helpers --------------------------------------------------------------------------------


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)  # noqa: S603
    except FileNotFoundError:
        raise HostNetworkError(f"no {argv[0]} command") from None
    except subprocess.CalledProcessError as exc:
        raise HostNetworkError(f"{' '.join(argv)}: {exc.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise HostNetworkError(f"{' '.join(argv)} did not finish within 30 s") from None


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(STATE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _is_forwarder(pid: int, port: str) -> bool:
    """True if ``pid`` is still the socat this state started for ``port``."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(command)
        and command[0].endswith(b"socat")
        and f"TCP-LISTEN:{port},".encode() in (b"\0".join(command))
    )


def _remove(state: _State) -> None:
    for port, pid in state.forwarders.items():
        if _is_forwarder(pid, port):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    for host in state.hosts:
        with contextlib.suppress(HostNetworkError):
            _run("ip", "link", "del", host.link)  # removes its peer too
        with contextlib.suppress(HostNetworkError):
            _run("ip", "netns", "del", host.namespace)
    with contextlib.suppress(HostNetworkError):
        _run("ip", "link", "del", state.bridge)
    with contextlib.suppress(FileNotFoundError):
        state.path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recorded() -> list[_State]:
    """Every network recorded under :data:`STATE_DIR`."""
    states = []
    for path in sorted(STATE_DIR.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            states.append(_State.load(path))
    return states


def reap_stale() -> int:
    """Remove the networks whose creating process is gone; return how many."""
    reaped = 0
    for state in recorded():
        if state.owner_pid is not None and not _alive(state.owner_pid):
            _remove(state)
            reaped += 1
    return reaped


# -- scripts/hosts ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``up [--hosts N] [--expose PORT,...]``, ``down [TAG ...|--all]`` or ``list``."""
    parser = argparse.ArgumentParser(prog="scripts/hosts", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build a host network and print it as JSON")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--expose", default="5432,3306,6379", help="ports on 127.0.0.1 to forward")
    down = commands.add_parser("down", help="remove host networks")
    down.add_argument("tags", nargs="*")
    down.add_argument("--all", action="store_true", help="every recorded network")
    commands.add_parser("list", help="the recorded networks")
    options = parser.parse_args(argv)
    if options.command == "up":
        ports = [int(port) for port in options.expose.split(",") if port.strip()]
        try:
            network = HostNetwork(options.hosts, expose=ports, persistent=True).up()
        except HostNetworkError as exc:
            print(f"cannot build the host network: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(network.describe(), indent=1))
        return 0
    states = recorded()
    if options.command == "list":
        for state in states:
            hosts = " ".join(f"{host.name}={host.address}" for host in state.hosts)
            print(f"{state.tag}  gateway {state.subnet}.1  {hosts}")
        return 0
    if not options.all and not options.tags:
        parser.error("name the tags to remove, or --all")
    chosen = [state for state in states if options.all or state.tag in options.tags]
    unknown = set(options.tags) - {state.tag for state in states}
    for state in chosen:
        _remove(state)
        print(f"removed {state.tag}")
    if unknown:
        print(f"no host network recorded as {', '.join(sorted(unknown))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
