"""Real-process workers for concurrency and crash tests of any store URL.

Each worker opens its own store from a URL (so it shares nothing with its parent but
the storage itself) and is a module-level function, so it runs under the ``spawn``
start method. :func:`run_workers` starts them together and fails loudly if one fails.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ..registry import open_url
from ..token import Token
from .conformance import make_token

__all__ = [
    "count_of",
    "count_worker",
    "hold_lock_worker",
    "increment_worker",
    "put_worker",
    "run_workers",
    "watch_worker",
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
    lock until ``release`` is set or ``seconds`` pass; the token is left unchanged."""
    with open_url(url) as store:

        def hold(token: Token | None) -> Token | None:
            inside.set()
            release.wait(seconds)
            return token

        store.update(name, hold)


def _run(queue: Any, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        target(*args)
    except BaseException:
        queue.put(traceback.format_exc())
        raise


def run_workers(
    target: Callable[..., None], args_list: Sequence[tuple[Any, ...]], timeout: float = 240
) -> None:
    """Run ``target(*args, start_event)`` in one spawned process per ``args``, released
    together; raise AssertionError with the child's traceback if any of them fails."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    failures = context.Queue()
    processes = [
        context.Process(target=_run, args=(failures, target, (*args, start))) for args in args_list
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout)
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.kill()
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    if alive:
        errors.append(f"{len(alive)} worker(s) still running after {timeout} s")
    bad = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    if errors or bad:
        raise AssertionError(f"workers failed (exit codes {bad}):\n" + "\n".join(errors))
