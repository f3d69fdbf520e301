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

__all__ = ["count_of", "increment_worker", "put_worker", "run_workers"]


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
