"""``webex-tokens token NAME`` stays light: what it imports, not how long it takes.

Scripts call it in ``$(...)`` in loops, so its start-up is its cost. The timing goals
live in ``benchmarks/bench_cli.py``; this checks the imports behind them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from webex_tokens import Token
from webex_tokens.backends.file import FileStore

HEAVY = ("rich", "requests", "authlib", "sqlalchemy", "cryptography", "dotenv", "keyring")
OTHER_COMMANDS = (
    "webex_tokens.cli.accounts",
    "webex_tokens.cli.transfer",
    "webex_tokens.cli.keys",
    "webex_tokens.cli.doctor",
    "webex_tokens.cli.demo",
    "webex_tokens.cli.schemas",
)

# Runs the command as the console script does, then prints what it imported.
_PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
from webex_tokens.cli import main
main()
"""


def modules_imported_by(*args: str, env: dict[str, str]) -> tuple[str, set[str]]:
    process = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return process.stdout, set(json.loads(process.stderr.strip().splitlines()[-1]))


def test_token_imports_nothing_heavy_and_no_other_command(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put("alice", Token(access_token="tok-alice"))
    out, modules = modules_imported_by("token", "alice", env={"WEBEX_TOKENS_STORE": store.url})
    assert out == "tok-alice\n"
    top_level = {name.split(".")[0] for name in modules}
    assert sorted(top_level & set(HEAVY)) == []
    assert sorted(modules & set(OTHER_COMMANDS)) == []
    assert "webex_tokens.cli.tokens" in modules


def test_list_in_a_pipe_does_not_draw_with_rich(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put("alice", Token(access_token="tok-alice"))
    out, modules = modules_imported_by("list", env={"WEBEX_TOKENS_STORE": store.url})
    assert out.splitlines()[1].startswith("alice ")
    assert "rich" not in {name.split(".")[0] for name in modules}
