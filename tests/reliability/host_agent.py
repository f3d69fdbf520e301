"""One host of the multi-host suites: run inside a network namespace, driven over stdio.

``python host_agent.py CONFIG`` (started with ``ip netns exec``) reads its JSON ``CONFIG``
and answers one JSON line per command read from standard input. Pipes cross network
namespaces, so the test drives every host in lock step without any network of its own.

``mode: "storm"``: ``processes`` refreshing processes are forked and take part in
rounds. For each ``{"round": n}`` line every process reads the token (expired by the
test), the agent answers ``{"event": "ready"}`` once all of them hold it, and on
``{"go": n}`` they all call ``ensure_fresh`` and the agent answers ``{"event": "done",
"outcomes": [...]}``, one ``["ok", access_token]`` or ``["error", class, message]`` per
process. ``{"stop": true}`` ends the processes and the agent.

``mode: "once"``: one ``ensure_fresh`` in the agent itself, at once; it answers
``{"event": "done", "outcomes": [outcome]}`` and exits.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from typing import Any


def _outcome(store: Any, config: dict[str, Any], seen: Any) -> list[str]:
    from webex_tokens.errors import WebexTokensError
    from webex_tokens.oauth import WebexOAuth
    from webex_tokens.refresh import ensure_fresh

    oauth = WebexOAuth(
        config["client_id"],
        config["client_secret"],
        base_url=config["base_url"],
        timeout=config.get("oauth_timeout", 60),
    )
    try:
        token = ensure_fresh(store, config["name"], oauth, seen=seen)
    except WebexTokensError as exc:
        return ["error", type(exc).__name__, str(exc)]
    return ["ok", token.access_token]


def storm_process(config: dict[str, Any], barrier: Any, results: Any) -> None:
    """One refreshing process: three barriers per round (start, all hold it, go)."""
    from webex_tokens.registry import open_url

    with open_url(config["url"]) as store:
        for _ in range(config["rounds"]):
            barrier.wait(120)  # the test stored an expired token
            seen = store.get(config["name"])
            barrier.wait(120)  # every process of this host holds it
            barrier.wait(120)  # every host's processes hold it: refresh
            results.put(_outcome(store, config, seen))


def _say(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _preload() -> None:
    """Import before forking what every process needs, so that they start at once."""
    import importlib

    for module in ("webex_tokens.oauth", "webex_tokens.refresh", "webex_tokens.registry"):
        importlib.import_module(module)
    for module in ("webex_tokens.backends.sql", "webex_tokens.backends.redis", "psycopg"):
        importlib.import_module(module)
    importlib.import_module("webex_tokens.backends.vault")


def _storm(config: dict[str, Any]) -> None:
    _preload()
    context = multiprocessing.get_context("fork")
    count = config["processes"]
    barrier = context.Barrier(count + 1)
    results = context.Queue()
    processes = [
        context.Process(target=storm_process, args=(config, barrier, results)) for _ in range(count)
    ]
    for process in processes:
        process.start()
    _say(event="started")
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if "round" in command:
                barrier.wait(120)
                barrier.wait(120)
                _say(event="ready")
            elif "go" in command:
                barrier.wait(120)
                _say(event="done", outcomes=[results.get(timeout=180) for _ in range(count)])
            elif command.get("stop"):
                break
    except BaseException:
        barrier.abort()
        raise
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()


def _once(config: dict[str, Any]) -> None:
    from webex_tokens.registry import open_url

    with open_url(config["url"]) as store:
        _say(event="done", outcomes=[_outcome(store, config, store.get(config["name"]))])


if __name__ == "__main__":
    settings = json.loads(sys.argv[1])
    (_storm if settings["mode"] == "storm" else _once)(settings)
