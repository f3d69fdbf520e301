"""Real-process workers for concurrency and crash tests of any store URL.

Each worker opens its own store from a URL (so it shares nothing with its parent but
the storage itself) and is a module-level function, so it runs under the ``spawn``
start method. :func:`run_workers` starts them together and fails loudly if one fails.

Spawning a process costs a fresh interpreter and the library's imports (a second or more
on a busy machine), which makes storms of dozens of processes slow. With
``method="forkserver"`` the workers are forked from a server process that has imported
the library once (:func:`worker_context`), so they start in milliseconds; the server is
single-threaded, so forking it is safe, and each worker still opens its own store.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.context import BaseContext
from typing import Any, Final

from ..registry import open_url
from ..token import Token
from .conformance import make_token

__all__ = [
    "WorkerGroup",
    "ack_writer",
    "count_of",
    "count_worker",
    "hold_lock_worker",
    "increment_worker",
    "put_worker",
    "refresh_outcome_worker",
    "refresh_storm_worker",
    "run_workers",
    "start_workers",
    "watch_worker",
    "worker_context",
]

#: What the fork server imports before it forks the first worker (missing ones are skipped).
_PRELOAD: Final = [
    "webex_tokens.testing.processes",
    "webex_tokens.backends.file",
    "webex_tokens.backends.fernet",
    "webex_tokens.backends.keyring",
    "webex_tokens.backends.sql",
    "webex_tokens.oauth",
    "webex_tokens.refresh",
    "psycopg",
    "pymysql",
]


def count_of(token: Token | None) -> int:
    """The counter held by a token written by :func:`increment_worker`."""
    return int(token.access_token.rsplit("-", 1)[1]) if token else 0


def increment_worker(url: str, name: str, times: int, start: Any = None) -> None:
    """Increment the counter token ``name`` in the store at ``url`` ``times`` times."""
    if start is not None:
        start.wait()
    with open_url(url) as store:
        for _ in range(times):
            store.update(name, lambda token: make_token(f"count-{count_of(token) + 1}"))


def put_worker(url: str, prefix: str, times: int, start: Any = None) -> None:
    """Put ``times`` tokens named ``{prefix}-{i}`` into the store at ``url``."""
    if start is not None:
        start.wait()
    with open_url(url) as store:
        for i in range(times):
            store.put(f"{prefix}-{i}", make_token(f"{prefix}-{i}"))


def count_worker(url: str, name: str, times: int, start: Any = None) -> None:
    """Put the counter tokens 1, 2, ... ``times`` under ``name``, one write each."""
    if start is not None:
        start.wait()
    with open_url(url) as store:
        for i in range(1, times + 1):
            store.put(name, make_token(f"count-{i}"))


def watch_worker(url: str, name: str, ready: Any, stop: Any, results: Any) -> None:
    """Read the counter token ``name`` until ``stop`` is set, then report what was seen.

    Sets ``ready`` after the first read. Puts one dict on ``results``: ``reads`` (how many),
    ``last`` (the last counter) and ``errors`` (each failed read, or a counter that went
    backwards, as text; at most 20).
    """
    reads, last, errors = 0, 0, []
    with open_url(url) as store:
        while True:
            stopping = stop.is_set()
            try:
                count = count_of(store.get(name))
                store.names()
            except Exception as exc:  # every failure is a finding to report
                errors.append(f"read {reads}: {type(exc).__name__}: {exc}")
            else:
                if count < last:
                    errors.append(f"read {reads}: counter went back from {last} to {count}")
                last = count
            reads += 1
            if reads == 1:
                ready.set()
            if stopping or len(errors) >= 20:
                break
    results.put({"reads": reads, "last": last, "errors": errors})


def hold_lock_worker(url: str, name: str, inside: Any, release: Any, seconds: float) -> None:
    """Run ``update(name, ...)`` whose function sets ``inside`` and then holds the store's
    lock of ``name`` until ``release`` is set or ``seconds`` pass; the token is left
    unchanged."""
    with open_url(url) as store:

        def hold(token: Token | None) -> Token | None:
            inside.set()
            release.wait(seconds)
            return token

        store.update(name, hold)


def refresh_storm_worker(  # noqa: PLR0917 - start_workers passes arguments by position
    url: str,
    name: str,
    base_url: str,
    client_id: str,
    client_secret: str,
    rounds: int,
    barrier: Any,
    results: Any,
    start: Any = None,
) -> None:
    """Take part in ``rounds`` refresh storms on the token ``name``.

    Each round: wait at ``barrier`` (the parent has stored an expired token), read the
    token, wait at ``barrier`` again (everyone holds the expired token), then call
    :func:`~webex_tokens.refresh.ensure_fresh` and put ``(round, access_token)`` on
    ``results``. The barrier must have one party per worker plus the parent.
    """
    from ..oauth import WebexOAuth
    from ..refresh import ensure_fresh

    if start is not None:
        start.wait()
    oauth = WebexOAuth(client_id, client_secret, base_url=base_url, timeout=60)
    with open_url(url) as store:
        for round_number in range(rounds):
            barrier.wait(120)
            seen = store.get(name)
            barrier.wait(120)
            token = ensure_fresh(store, name, oauth, seen=seen)
            results.put((round_number, token.access_token))


def refresh_outcome_worker(  # noqa: PLR0917 - start_workers passes arguments by position
    url: str,
    name: str,
    base_url: str,
    client_id: str,
    client_secret: str,
    timeout: float,
    results: Any,
    start: Any = None,
) -> None:
    """Ensure a fresh token ``name`` once and report the outcome instead of raising.

    Puts ``("ok", access_token)`` on ``results``, or ``("error", class name, message)``
    when the library raised one of its errors. The OAuth client waits ``timeout``
    seconds per answer and retries twice, backing off briefly.
    """
    from ..errors import WebexTokensError
    from ..oauth import WebexOAuth
    from ..refresh import ensure_fresh

    oauth = WebexOAuth(
        client_id, client_secret, base_url=base_url, timeout=timeout, max_retries=2, backoff=0.05
    )
    with open_url(url) as store:
        seen = store.get(name)
        if start is not None:
            start.wait()
        try:
            token = ensure_fresh(store, name, oauth, seen=seen)
        except WebexTokensError as exc:
            results.put(("error", type(exc).__name__, str(exc)))
        else:
            results.put(("ok", token.access_token))


def ack_writer(url: str, slots: int, first: int, ack: Any, start: Any = None) -> None:
    """Put tokens until killed, acknowledging each completed ``put`` on the pipe ``ack``.

    Writes ``ready`` once the store is open, then for n = ``first``, ``first`` + 1, ...
    puts the token ``v-{n}`` under ``slot-{n % slots}`` and, once ``put`` has returned,
    writes the line ``n``. Each line is one ``write`` of a few bytes, so a kill never
    leaves half a line in the pipe.
    """
    if start is not None:
        start.wait()
    fd = ack.fileno()
    with open_url(url) as store:
        os.write(fd, b"ready\n")
        n = first
        while True:
            store.put(f"slot-{n % slots}", make_token(f"v-{n}"))
            os.write(fd, b"%d\n" % n)
            n += 1


def worker_context(method: str = "spawn") -> BaseContext:
    """The multiprocessing context workers run in.

    ``"forkserver"`` (POSIX) preloads the library in the fork server the first time it
    starts, so that each worker forks from a process that has imported it already.
    """
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(_PRELOAD)
    return context


def _run(
    queue: Any,
    target: Callable[..., None],
    args: tuple[Any, ...],
    environment: dict[str, str] | None = None,
) -> None:
    if environment is not None:
        # A forked worker inherits the fork server's environment, which may predate the
        # test's (a key or a keyring backend set since): take the parent's, as spawn does.
        os.environ.clear()
        os.environ.update(environment)
    try:
        target(*args)
    except BaseException:
        queue.put(traceback.format_exc())
        raise


class WorkerGroup:
    """Worker processes started by :func:`start_workers`; :meth:`finish` joins and checks."""

    def __init__(
        self, context: BaseContext, processes: list[Any], failures: Any, start: Any
    ) -> None:
        self.context = context
        self.processes = processes
        self._failures = failures
        # Kept referenced until the workers end: a spawned child opens the event's
        # semaphore by name, which disappears when the parent's object is collected.
        self._start = start

    def finish(self, timeout: float = 240) -> None:
        """Wait up to ``timeout`` seconds for every worker, kill the stragglers, and raise
        AssertionError with the children's tracebacks if any of them failed."""
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
        alive = [p for p in self.processes if p.is_alive()]
        for process in alive:
            process.kill()
            process.join(10)
        errors = []
        while not self._failures.empty():
            errors.append(self._failures.get())
        if alive:
            errors.append(f"{len(alive)} worker(s) still running after {timeout} s")
        bad = [p.exitcode for p in self.processes if p.exitcode not in (0, None)]
        if errors or bad:
            raise AssertionError(f"workers failed (exit codes {bad}):\n" + "\n".join(errors))


def start_workers(
    jobs: Sequence[tuple[Callable[..., None], tuple[Any, ...]]], *, method: str = "spawn"
) -> WorkerGroup:
    """Start ``target(*args, start_event)`` for each ``(target, args)`` in ``jobs`` and
    release them together; call :meth:`WorkerGroup.finish` to wait for them."""
    context: Any = worker_context(method)
    start = context.Event()
    failures = context.Queue()
    environment = dict(os.environ) if method != "spawn" else None
    processes = [
        context.Process(target=_run, args=(failures, target, (*args, start), environment))
        for target, args in jobs
    ]
    for process in processes:
        process.start()
    start.set()
    return WorkerGroup(context, processes, failures, start)


def run_workers(
    target: Callable[..., None],
    args_list: Sequence[tuple[Any, ...]],
    timeout: float = 240,
    *,
    method: str = "spawn",
) -> None:
    """Run ``target(*args, start_event)`` in one process per ``args``, released together;
    raise AssertionError with the child's traceback if any of them fails.

    ``method`` is the multiprocessing start method (see :func:`worker_context`).
    """
    start_workers([(target, args) for args in args_list], method=method).finish(timeout)
