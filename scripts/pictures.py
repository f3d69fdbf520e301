"""Draw the terminal pictures of the docs (docs/images/*.svg) from the commands themselves.

Each picture is a real ``webex-tokens`` command, run in its own process on a
pseudo-terminal against the built-in emulator, in a temporary home with a settings file
and a store filled with accounts whose names are fixed. What it printed (colours
included) is drawn by rich (``Console(record=True).export_svg``). Whatever varies from
run to run is made fixed before drawing: the temporary directory, the emulator's ports,
times of day, elapsed times, fingerprints of random tokens. So the same code draws the
same bytes, and ``tests/test_pictures.py`` fails when a picture no longer shows what the
command prints.

    python scripts/pictures.py            # write docs/images/*.svg
    python scripts/pictures.py --check    # exit 1 if a picture is out of date
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
#: Terminal width of every picture, in columns: readable in the docs' content column.
COLUMNS = 92
#: The home directory the pictures show instead of the temporary one, as long as it
#: (``/tmp/wt`` and 8 random characters), so that the commands lay out the same lines.
SHOWN_HOME = "/home/developer"


@dataclass(frozen=True)
class Picture:
    """One picture: the file, its title, and the command line it shows."""

    name: str
    title: str
    args: tuple[str, ...]
    exit_code: int = 0


#: In the order they run: ``list`` before ``refresh --all`` changes the store.
PICTURES = (
    Picture("demo", "webex-tokens demo", ("demo",)),
    Picture("list", "webex-tokens list", ("list",)),
    Picture("refresh-all", "webex-tokens refresh --all", ("refresh", "--all"), exit_code=1),
    Picture("doctor", "webex-tokens doctor", ("doctor",)),
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_terminal(args: tuple[str, ...], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``webex-tokens ARGS`` with stdout and stderr on a pseudo-terminal; return its
    exit code and everything it wrote (ANSI colours included)."""
    main, attached = pty.openpty()
    fcntl.ioctl(attached, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
    process = subprocess.Popen(  # noqa: S603 - our own command, our own arguments
        [sys.executable, "-m", "webex_tokens", *args],
        stdin=subprocess.DEVNULL,
        stdout=attached,
        stderr=attached,
        cwd=cwd,
        env=env,
    )
    os.close(attached)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the command has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    return process.wait(timeout=120), output.decode().replace("\r\n", "\n")


def fixed(text: str, home: Path) -> str:
    """``text`` with what varies between runs made fixed: the temporary directories, the
    ports, the fingerprints of random tokens (each its own, in order) and elapsed times."""
    text = text.replace(str(home), SHOWN_HOME)
    # A temporary directory or file the command made (tempfile's 8 random characters),
    # after /tmp/ or at the start of a line (where a long path was folded).
    text = re.sub(
        r"(?m)(?:(?<=/tmp/)|^)([^/\s?&'\"]*?)[a-z0-9_]{8}(?=/)",
        r"\g<1>k3v9x2qa",
        text,
    )
    ports: dict[str, str] = {}
    text = re.sub(
        r"127\.0\.0\.1:(\d+)",
        lambda m: "127.0.0.1:" + ports.setdefault(m[1], str(8790 + len(ports))),
        text,
    )
    prints: dict[str, str] = {}
    text = re.sub(
        r"sha256:[0-9a-f]{8}",
        lambda m: prints.setdefault(m[0], "sha256:" + _FAKE_PRINTS[len(prints) % 8]),
        text,
    )
    text = re.sub(r"\b[A-Z]{4}-[A-Z]{4}\b", "WXYZ-ABCD", text)  # a device code
    return re.sub(r"\b\d:\d\d:\d\d\b", "0:00:00", text)  # rich's elapsed time


_FAKE_PRINTS = (
    "3f9a1c2e",
    "b81d07e4",
    "5c2e9fa0",
    "e07b3d19",
    "9a4f62c8",
    "1d8e5b73",
    "c6a0f24d",
    "74e1b9a5",
)


def svg(text: str, title: str) -> str:
    """``text`` (with ANSI colours) drawn as an SVG terminal window by rich."""
    from rich.console import Console
    from rich.text import Text

    console = Console(
        record=True,
        width=COLUMNS,
        force_terminal=True,
        color_system="truecolor",
        file=open(os.devnull, "w"),  # noqa: SIM115 - closed with the console below
        legacy_windows=False,
    )
    try:
        for line in text.rstrip("\n").split("\n"):
            drawn = Text.from_ansi(line)
            # A terminal wraps a long line at its last column, not between words.
            for piece in drawn.divide(range(COLUMNS, len(drawn), COLUMNS)) or [drawn]:
                console.print(piece, soft_wrap=True)
        picture = console.export_svg(title=title, unique_id="webex-tokens-" + title.split()[1])
    finally:
        console.file.close()
    # The fonts rich links to would be loaded from another host: the reader's own
    # monospace font draws the picture instead.
    return re.sub(r"\n *@font-face \{[^}]*\}", "", picture)


@contextmanager
def machine() -> Iterator[tuple[Path, dict[str, str]]]:
    """A temporary home with a settings file, a store of accounts, and the emulator."""
    sys.path.insert(0, str(ROOT))
    from webex_tokens import Token
    from webex_tokens.backends.file import FileStore
    from webex_tokens.testing.fake_webex import FakeWebex

    home = Path(tempfile.mkdtemp(prefix="wt", dir="/tmp"))
    try:
        with FakeWebex(user="alice@example.com") as fake:
            data = home / ".local" / "share" / "webex-tokens"
            store = FileStore(data / "dev.json")
            now = datetime.now(timezone.utc)

            def issued(user: str, **changes: object) -> Token:
                token = Token.from_response(
                    fake.issue_token(user), client_id=fake.client_id, account=user
                )
                return token.replace(**changes) if changes else token

            store.put(
                "erin@example.com",
                issued("erin@example.com", refresh_token_expires_at=now + timedelta(days=3)),
            )
            fake.revoke_refresh_tokens()  # erin's refresh will be refused
            store.put("alice@example.com", issued("alice@example.com"))
            store.put(
                "bob@example.com",
                issued("bob@example.com", expires_at=now - timedelta(minutes=3)),
            )
            store.put(
                "carol@example.com",
                issued("carol@example.com", refresh_token_expires_at=now + timedelta(days=5)),
            )
            store.put(
                "dave@example.com",
                issued(
                    "dave@example.com",
                    expires_at=now - timedelta(days=100),
                    refresh_token_expires_at=now - timedelta(days=10),
                ),
            )
            store.put("hr-bot", Token(access_token=fake.issue_bot_token("hr-bot"), kind="bot"))
            (home / "webex-tokens.toml").write_text(
                'default_store = "dev"\n\n'
                f'[stores.dev]\nurl = "file://{data / "dev.json"}"\n'
                'description = "this laptop"\n'
            )
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_DATA_HOME": str(home / ".local" / "share"),
                "XDG_STATE_HOME": str(home / ".local" / "state"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "TERM": "xterm-256color",
                "COLUMNS": str(COLUMNS),
                "TTY_INTERACTIVE": "0",  # rich draws the last frame of a progress bar only
                # The demo's temporary store: under /tmp, as on most machines.
                "TMPDIR": "/tmp",  # noqa: S108 - a path shown in a picture, not used here
                "PYTHONPATH": str(ROOT),
                "WEBEX_CLIENT_ID": fake.client_id,
                "WEBEX_CLIENT_SECRET": fake.client_secret,
                "WEBEX_BASE_URL": fake.base_url,
                "WEBEX_REDIRECT_URI": "http://localhost:8000/oauth/webex/callback",
            }
            yield home, env
    finally:
        shutil.rmtree(home, ignore_errors=True)


def draw(pictures: tuple[Picture, ...] = PICTURES) -> dict[str, str]:
    """Run each picture's command and draw it: file name -> SVG text."""
    drawn: dict[str, str] = {}
    with machine() as (home, env):
        for picture in pictures:
            code, text = run_on_terminal(picture.args, home, env)
            if code != picture.exit_code:
                raise SystemExit(
                    f"webex-tokens {' '.join(picture.args)} exited {code}, not "
                    f"{picture.exit_code}:\n{text}"
                )
            prompt = f"\x1b[1;32m$\x1b[0m webex-tokens {' '.join(picture.args)}\n"
            shown = prompt + fixed(text, home)
            drawn[f"{picture.name}.svg"] = svg(shown, picture.title)
    return drawn


def main(argv: list[str] | None = None, write: Callable[[str], object] = print) -> int:
    """Write the pictures, or with ``--check`` report those out of date (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    options = parser.parse_args(argv)
    drawn = draw()
    if options.check:
        stale = [
            name
            for name, text in drawn.items()
            if not (IMAGES / name).exists() or (IMAGES / name).read_text() != text
        ]
        for name in stale:
            write(f"docs/images/{name} is out of date: run python scripts/pictures.py")
        return 1 if stale else 0
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name, text in drawn.items():
        (IMAGES / name).write_text(text)
        write(f"wrote docs/images/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
