"""MkDocs hook: pages generated from the code, so they cannot drift from it.

Markers in the Markdown sources are replaced at build time:

``<!-- cli-help: COMMAND -->``
    the ``--help`` text of ``webex-tokens COMMAND`` (``webex-tokens`` alone for the group),
    rendered by click from :mod:`webex_tokens.cli`. Every command of the CLI must have one
    such marker, or the build fails.
``<!-- cli-commands -->``
    a table of every command and its one-line help.
``<!-- cli-json: COMMAND -->``
    the fields of the ``--json`` document of ``webex-tokens COMMAND`` and of every object
    in it, from :mod:`webex_tokens.cli.schemas`. Every command with ``--json`` must have
    one such marker, or the build fails.
``<!-- api-index -->``
    a table of every name in ``webex_tokens.__all__``, each linked to its entry in the
    API reference (a name without one fails the strict build through autorefs).
``<!-- include: PATH -->``
    the text of ``PATH``, relative to the directory of ``mkdocs.yml`` (a Markdown file
    without its title; any other file as it is, to put inside a code fence).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from pathlib import Path
from typing import Any

import click
from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.generate")

_MARKER = re.compile(
    r"<!--\s*(?P<kind>cli-help|cli-commands|cli-json|api-index|include)"
    r"(?::\s*(?P<arg>[^>]*?))?\s*-->"
)
_WIDTH = 88
_CLI_PAGE = "cli.md"

_documented_commands: set[str] = set()
_documented_json: set[str] = set()


def _cli() -> click.Group:
    from webex_tokens.cli import cli

    return cli


def _root_context() -> click.Context:
    group = _cli()
    return click.Context(
        group,
        info_name="webex-tokens",
        terminal_width=_WIDTH,
        max_content_width=_WIDTH,
        **group.context_settings,
    )


def _command_help(name: str) -> str:
    root = _root_context()
    group = _cli()
    if name == "webex-tokens":
        text = group.get_help(root)
    else:
        # "GROUP SUB" documents a command of a command group (service-app add).
        top, _, sub = name.partition(" ")
        command = group.commands.get(top)
        parent = root
        if command is not None and sub:
            parent = click.Context(command, info_name=top, parent=root)
            command = getattr(command, "commands", {}).get(sub)
        if command is None:
            raise PluginError(
                f"docs/{_CLI_PAGE} documents 'webex-tokens {name}', which the CLI does not "
                f"have; its commands are: {', '.join(sorted(group.commands))}"
            )
        context = click.Context(
            command,
            info_name=sub or name,
            parent=parent,
            terminal_width=_WIDTH,
            max_content_width=_WIDTH,
        )
        text = command.get_help(context)
    _documented_commands.add(name)
    return (
        f"```text\n$ webex-tokens{'' if name == 'webex-tokens' else ' ' + name} --help\n{text}\n```"
    )


def _command_table() -> str:
    group = _cli()
    rows = ["| command | does |", "|---|---|"]
    for name in sorted(group.commands):
        short = group.commands[name].get_short_help_str(limit=200)
        rows.append(f"| [`{name}`](#{name}) | {short} |")
    return "\n".join(rows)


def _type(kind: str) -> str:
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    text = (
        f"list of {_type(kind[1:-1])}"
        if kind.startswith("[")
        else {
            "str": "string",
            "int": "integer",
            "bool": "boolean",
        }.get(kind, f"*{kind}*")
    )
    return f"{text} or null" if nullable else text


def _objects_in(kind: str) -> list[str]:
    from webex_tokens.cli.schemas import OBJECTS

    name = kind.rstrip("?").strip("[]")
    if name not in OBJECTS:
        return []
    found = [name]
    for field in OBJECTS[name].values():
        found += [inner for inner in _objects_in(field.type) if inner not in found]
    return found


def _fields_table(fields: Any) -> str:
    rows = ["| key | type | meaning |", "|---|---|---|"]
    for key, field in fields.items():
        only = f" (only with `{field.only}`)" if field.only else ""
        rows.append(f"| `{key}` | {_type(field.type)} | {field.meaning}{only} |")
    return "\n".join(rows)


def _json_schema(command: str) -> str:
    from webex_tokens.cli.schemas import DOCUMENTS, OBJECTS, Field

    fields = DOCUMENTS.get(command)
    if fields is None:
        raise PluginError(
            f"docs/{_CLI_PAGE} documents the JSON of 'webex-tokens {command}', which has none; "
            f"commands with --json: {', '.join(sorted(DOCUMENTS))}"
        )
    _documented_json.add(command)
    header = {
        "command": Field("str", f"`{command}`"),
        "schema_version": Field("int", "`1`; it changes only when a field changes meaning"),
    }
    parts = [_fields_table({**header, **fields})]
    objects: list[str] = []
    for field in fields.values():
        objects += [name for name in _objects_in(field.type) if name not in objects]
    for name in objects:
        parts.append(f"*{name}*:\n\n{_fields_table(OBJECTS[name])}")
    return "\n\n".join(parts)


def _api_index() -> str:
    import webex_tokens

    rows = ["| name | kind | documented in |", "|---|---|---|"]
    for name in webex_tokens.__all__:
        value = getattr(webex_tokens, name)
        if name == "__version__":
            rows.append(f"| `__version__` | text | the installed version, `{value}` |")
            continue
        lazy = webex_tokens._LAZY.get(name)
        if lazy is not None:
            # Read from the defining module: a submodule of the same name (migrate) can
            # shadow the lazily exported function on the package.
            value = getattr(importlib.import_module(lazy, "webex_tokens"), name)
        module = value.__module__
        if inspect.isclass(value):
            kind = "exception" if issubclass(value, BaseException) else "class"
        else:
            kind = "function"
        rows.append(f"| [`{name}`][{module}.{name}] | {kind} | `{module}` |")
    return "\n".join(rows)


def _include(argument: str, config: Any) -> str:
    base = Path(config["config_file_path"]).parent
    path = (base / argument).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PluginError(f"cannot include {argument}: {exc.strerror}") from None
    if path.suffix != ".md":
        return text.rstrip("\n")  # a file shown as it is, inside the page's code fence
    # The included file's own title would repeat the page's.
    return re.sub(r"\A# [^\n]*\n", "", text)


def on_pre_build(config: Any) -> None:
    """Forget what an earlier build (``mkdocs serve``) documented."""
    _documented_commands.clear()
    _documented_json.clear()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the markers of this page with generated Markdown."""

    def replace(match: re.Match[str]) -> str:
        kind, argument = match.group("kind"), (match.group("arg") or "").strip()
        if kind == "cli-help":
            return _command_help(argument)
        if kind == "cli-commands":
            return _command_table()
        if kind == "cli-json":
            return _json_schema(argument)
        if kind == "api-index":
            return _api_index()
        return _include(argument, config)

    return _MARKER.sub(replace, markdown)


def on_post_build(config: Any) -> None:
    """Fail the strict build when a CLI command or a --json document has no reference."""
    from webex_tokens.cli.schemas import DOCUMENTS

    missing = sorted({"webex-tokens", *_cli().commands} - _documented_commands)
    if missing:
        log.warning(
            "docs/%s has no '<!-- cli-help: NAME -->' section for: %s",
            _CLI_PAGE,
            ", ".join(missing),
        )
    undocumented = sorted(set(DOCUMENTS) - _documented_json)
    if undocumented:
        log.warning(
            "docs/%s has no '<!-- cli-json: NAME -->' schema for: %s",
            _CLI_PAGE,
            ", ".join(undocumented),
        )
