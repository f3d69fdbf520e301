"""How the commands write: rich tables and progress bars on a terminal, plain lines otherwise.

Everything a command prints goes through here, so that every command escapes names the
same way, draws the same tables and reports progress the same way. rich is imported
only when a table or a progress bar is drawn on a terminal.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar

import click

__all__ = [
    "JSON_SCHEMA_VERSION",
    "Reporter",
    "configure_logging",
    "emit_json",
    "fold_path",
    "iso",
    "json_option",
    "one_line",
    "print_table",
    "safe",
    "seconds",
    "terminal",
]

#: The ``schema_version`` of every ``--json`` document; it grows only when a field
#: changes meaning or disappears (new fields may appear without a new version).
JSON_SCHEMA_VERSION: Final = 1

_F = TypeVar("_F", bound=Callable[..., Any])


def json_option(function: _F) -> _F:
    """The ``--json`` flag of a command (passed as ``as_json``)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document (described in the docs) instead of text.",
    )(function)


def emit_json(command: str, document: dict[str, Any]) -> None:
    """Print the ``--json`` document of ``command`` on stdout, as the only thing there."""
    header: dict[str, Any] = {"command": command, "schema_version": JSON_SCHEMA_VERSION}
    click.echo(json.dumps({**header, **document}, indent=2, ensure_ascii=False))


def iso(value: datetime | None) -> str | None:
    """An ISO 8601 time to the second for JSON, or None."""
    return None if value is None else value.replace(microsecond=0).isoformat()


def seconds(value: float | None) -> int | None:
    """Whole seconds for JSON (negative: in the past), or None."""
    return None if value is None else int(value // 1)


def one_line(message: object) -> str:
    """``message`` as one line: whitespace runs (newlines too) become one space."""
    return " ".join(str(message).split()) or "unknown error"


def safe(text: str) -> str:
    """``text`` with control characters escaped, so that no name can drive the terminal."""
    return "".join(
        repr(char)[1:-1] if unicodedata.category(char) in ("Cc", "Cs") else char for char in text
    )


def terminal() -> bool:
    """True when standard output is a terminal (rich output), False for a pipe or a file."""
    return sys.stdout.isatty()


def console() -> Any:
    """A rich console on standard output."""
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False)


_STATUS_STYLES: Final = {
    "ok": "green",
    "due": "yellow",
    "expired": "yellow",
    "log in again": "bold red",
    "unreadable": "bold red",
}
# On a terminal, some cells and headers read better in other words; plain output keeps
# the documented words that scripts parse.
_TERMINAL_WORDS: Final = {"refresh expired": "log in again", "refused": "log in again"}
_TERMINAL_HEADERS: Final = {"refresh expires in": "refresh in", "encrypted": "fernet"}
_DURATION_COLUMNS: Final = ("expires in", "refresh expires in")
# How each kind of column fits a narrow terminal, in the order they get spare width:
# names fold (they rarely need to), URLs fold at their separators, words wrap at spaces.
# Every other column keeps its width.
_FLEXIBLE: Final = {
    "account": "name",
    "name": "name",
    "store": "path",
    "url": "path",
    "scopes": "words",
    "description": "words",
}
_NARROWEST: Final = {"name": 12, "path": 16}
_WIDEST_WORD: Final = 22  # a word column is at least as wide as its longest word, to this
_GAP: Final = 2  # between columns


def fold_path(text: str, width: int) -> str:
    """``text`` on lines of at most ``width``, broken after ``/ ? & + @ .``.

    A URL or a path then breaks where a reader expects it to; only a piece longer than
    a whole line is cut inside.
    """
    lines: list[str] = []
    line = ""
    for found in re.findall(r"[^/?&+@.]*[/?&+@.]?", text):
        piece = found
        while len(piece) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    if line or not lines:
        lines.append(line)
    return "\n".join(lines)


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    common: int | None = None,
    title: str | None = None,
) -> None:
    """A rich table on a terminal; columns aligned with two spaces otherwise.

    ``common`` is the index of a column that may hold the same value on every row (the
    store); on a terminal such a column becomes the table's title instead (``title``,
    else ``HEADER: VALUE``). On a terminal the table fits the terminal's width: names
    and URLs fold (URLs at their separators), scopes and descriptions wrap at spaces,
    and nothing is cut off.
    """
    if not terminal():
        widths = [
            max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
        ]
        for row in (headers, *rows):
            click.echo(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        return
    from rich.table import Table
    from rich.text import Text

    shown_title = None
    if common is not None and rows and len({row[common] for row in rows}) == 1:
        shown_title = title or f"{headers[common]}: {rows[0][common]}"
        headers = [h for i, h in enumerate(headers) if i != common]
        rows = [[c for i, c in enumerate(row) if i != common] for row in rows]
    out = console()
    texts = [[_terminal_text(h, c) for h, c in zip(headers, row, strict=True)] for row in rows]
    shown = [_TERMINAL_HEADERS.get(header, header) for header in headers]
    widths = _fit(headers, [shown, *texts], out.width)
    if shown_title is not None:
        # Above the table, not as its title: a title wraps at the table's width.
        out.print(Text(fold_path(shown_title, out.width)), soft_wrap=True)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, _GAP // 2))
    for header, name, width in zip(headers, shown, widths, strict=True):
        table.add_column(name, width=width, no_wrap=header not in _FLEXIBLE, overflow="fold")
    for row in texts:
        cells = []
        for header, text, width in zip(headers, row, widths, strict=True):
            if _FLEXIBLE.get(header) == "path":
                text = fold_path(text, width)  # noqa: PLW2901 - the cell as drawn
            style = _STATUS_STYLES.get(text, "") if header == "status" else ""
            cells.append(Text(text, style=style))
        table.add_row(*cells)
    out.print(table)


def _terminal_text(header: str, text: str) -> str:
    """A cell as a terminal shows it: ``log in again``; ``3m ago`` for ``expired 3m ago``."""
    if header == "status":
        return _TERMINAL_WORDS.get(text, text)
    if header in _DURATION_COLUMNS and text.startswith("expired "):
        return text[len("expired ") :]
    return text


def _fit(headers: Sequence[str], cells: Sequence[Sequence[str]], width: int) -> list[int]:
    """Column widths that fit ``width``: fixed columns whole, the flexible ones shared.

    Each flexible column first gets its narrowest readable width (a word column: its
    longest word), then spare width goes to names, then URLs, then words.
    """
    columns = [[row[index] for row in cells] for index in range(len(headers))]
    natural = [
        max(len(line) for cell in column for line in cell.splitlines() or [""])
        for column in columns
    ]
    flexible = [index for index, header in enumerate(headers) if header in _FLEXIBLE]
    spare = width - _GAP * (len(headers) - 1)
    spare -= sum(natural[i] for i in range(len(headers)) if i not in flexible)
    if sum(natural[i] for i in flexible) <= spare:
        return natural
    widths = list(natural)
    for index in flexible:
        kind = _FLEXIBLE[headers[index]]
        if kind == "words":
            longest = max(len(word) for cell in columns[index] for word in cell.split() or [""])
            narrowest = min(longest, _WIDEST_WORD)
        else:
            narrowest = _NARROWEST[kind]
        widths[index] = min(natural[index], narrowest)
    spare -= sum(widths[i] for i in flexible)
    for kind in ("name", "path", "words"):
        for index in flexible:
            if _FLEXIBLE[headers[index]] == kind and spare > 0:
                grow = min(natural[index] - widths[index], spare)
                widths[index] += grow
                spare -= grow
    return widths


class Reporter:
    """Progress of many items: a progress bar on a terminal, one plain line each otherwise.

    ``quiet`` (``--json``) shows nothing: the document says it all at the end.
    """

    def __init__(self, description: str, total: int | None, *, quiet: bool = False) -> None:
        self._description = description
        self._total = total
        self._quiet = quiet
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Reporter:
        if terminal() and not self._quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console(),
            )
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=self._total)
        return self

    def item(self, name: str, outcome: str, detail: str | None = None) -> None:
        """Record that ``name`` ended with ``outcome`` (``detail`` shown in plain mode)."""
        if self._progress is not None:
            self._progress.advance(self._task)
            return
        if self._quiet:
            return
        click.echo(f"{outcome} {safe(name)}" + (f": {one_line(detail)}" if detail else ""))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


class _EchoHandler(logging.Handler):
    """Log records as ``warning: ...`` lines on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # logging must never break a command
            self.handleError(record)


class _LowercaseLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record)).replace(
            record.levelname + ":", record.levelname.lower() + ":", 1
        )


_log_handler = _EchoHandler()


def configure_logging(debug: bool) -> None:
    """Show the library's warnings (everything with --debug) on stderr.

    The handler sits on the ``webex_tokens`` logger and does its own level filtering, so
    an application (or a test) that embeds the command keeps its own logging setup.
    """
    package = logging.getLogger("webex_tokens")
    package.removeHandler(_log_handler)
    if debug:
        _log_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package.setLevel(logging.DEBUG)
    else:
        _log_handler.setFormatter(_LowercaseLevelFormatter("%(levelname)s: %(message)s"))
    _log_handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    package.addHandler(_log_handler)
