"""The ``--json`` documents: one schema per command, stable for scripts.

Each command that takes ``--json`` prints exactly one JSON object on stdout, whose
first two keys are ``command`` (the command's name) and ``schema_version``
(:data:`~webex_tokens.cli.output.JSON_SCHEMA_VERSION`). The fields of each document are
described here, once: the reference in docs/cli.md is generated from this module, and
the tests check every document a command prints against it with :func:`problems`.

A type is ``str``, ``int``, ``bool``, ``[T]`` (a list of T) or the name of an object
described in :data:`OBJECTS`; a trailing ``?`` means it may be null. No secret appears
in any document, except the fields marked as shown only with ``--reveal``.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

__all__ = ["DOCUMENTS", "OBJECTS", "Field", "problems"]


class Field(NamedTuple):
    """One key of a document or an object."""

    type: str
    meaning: str
    #: When the key is present only in some documents (``--reveal``), what says so.
    only: str | None = None


_NULL_WHEN_UNREADABLE = " (null when the record is unreadable)"

OBJECTS: Final[dict[str, dict[str, Field]]] = {
    "account": {
        "name": Field("str", "the name the token is stored under"),
        "store": Field("str", "the store: its configured name, else its URL"),
        "store_url": Field("str", "the store's URL, passwords redacted"),
        "status": Field(
            "str",
            "ok, due (refreshed on next use), expired (refreshed on next use), "
            "refresh expired (log in again), refused (Webex refused its refresh token "
            "at the last refresh: log in again), or unreadable",
        ),
        "action": Field(
            "str?",
            "the command that fixes the account when it cannot fix itself "
            "(webex-tokens login --name NAME), else null",
        ),
        "error": Field("str?", "why the record cannot be read, else null"),
        "account": Field("str?", "who the token belongs to (an email), when known"),
        "kind": Field("str?", "integration, service_app, bot or personal" + _NULL_WHEN_UNREADABLE),
        "expires_at": Field("str?", "when the access token expires (ISO 8601, UTC)"),
        "expires_in": Field("int?", "seconds until then; negative once expired"),
        "refresh_expires_at": Field("str?", "when the refresh token expires"),
        "refresh_expires_in": Field("int?", "seconds until then; negative once expired"),
        "has_refresh_token": Field("bool?", "whether it can be refreshed" + _NULL_WHEN_UNREADABLE),
        "scopes": Field("[str]?", "the granted scopes" + _NULL_WHEN_UNREADABLE),
        "token_type": Field("str?", "Bearer" + _NULL_WHEN_UNREADABLE),
        "client_id": Field("str?", "the integration that owns the token"),
        "org_id": Field("str?", "the organization of a Service App token"),
        "saved_at": Field("str?", "when the token was saved" + _NULL_WHEN_UNREADABLE),
        "fingerprint": Field("str?", "sha256:... of the access token, never the token"),
        "refresh_fingerprint": Field("str?", "sha256:... of the refresh token"),
        "access_token": Field("str?", "the access token itself", "show --reveal"),
        "refresh_token": Field("str?", "the refresh token itself", "show --reveal"),
        "id_token": Field("str?", "the OpenID Connect ID token itself", "show --reveal"),
    },
    "store error": {
        "store": Field("str?", "the store that could not be read: its name or URL"),
        "url": Field("str?", "its URL when it was opened, passwords redacted"),
        "message": Field("str", "what went wrong and how to fix it"),
    },
    "store": {
        "name": Field("str?", "the configured name; null for an unconfigured store in use"),
        "url": Field("str", "the URL, passwords redacted"),
        "backend": Field("str", "file, sqlite, keyring, memory, postgresql, mysql, ..."),
        "encrypted": Field("bool", "whether records are Fernet-encrypted (fernet+)"),
        "default": Field("bool", "whether the commands use this store"),
        "description": Field("str?", "the description from the settings file"),
        "origin": Field(
            "str",
            "where it comes from: settings file, --store, WEBEX_TOKENS_STORE, "
            "WEBEX_TOKEN_FILE or embedded default",
        ),
    },
    "checked store": {
        "name": Field("str", "the configured name, else where the store comes from"),
        "url": Field("str", "the URL, passwords redacted"),
        "findings": Field("[finding]", "each check, in order"),
    },
    "checks": {"findings": Field("[finding]", "each check, in order")},
    "journal": {
        "directory": Field("str", "the rescue journal's directory"),
        "waiting": Field("[waiting token]", "the tokens waiting there to be stored"),
        "findings": Field("[finding]", "each check, in order"),
    },
    "waiting token": {
        "account": Field("str", "the account the token is for"),
        "store_url": Field("str", "the store it is for, passwords redacted"),
        "written_at": Field("str", "when Webex's answer was written there (ISO 8601, UTC)"),
        "age": Field("int", "seconds since then"),
        "reason": Field("str", "refresh or login"),
        "encrypted": Field("bool", "whether the token in it is encrypted (fernet+ stores)"),
    },
    "finding": {
        "level": Field("str", "ok, warning or problem"),
        "message": Field("str", "what was found and, when it is not ok, how to fix it"),
    },
    "refreshed": {
        "name": Field("str", "the account"),
        "fingerprint": Field("str", "sha256:... of the new access token"),
        "expires_at": Field("str?", "when the new access token expires"),
        "expires_in": Field("int?", "seconds until then"),
        "refresh_expires_at": Field("str?", "when the refresh token expires"),
    },
    "failure": {
        "name": Field("str", "the account"),
        "error": Field("str", "why it failed and how to fix it"),
    },
    "counts": {
        "copied": Field("int", "names written to a target that did not hold them"),
        "skipped": Field("int", "names the target already held and kept"),
        "unchanged": Field("int", "of those skipped, the ones holding the same token"),
        "overwritten": Field("int", "names whose token in the target was replaced"),
        "deleted": Field("int", "names deleted from the source (--move)"),
        "failed": Field("int", "names that could not be read, written or verified"),
    },
    "outcome": {
        "name": Field("str", "the account"),
        "outcome": Field("str", "copied, overwritten, unchanged, skipped or failed"),
        "detail": Field("str?", "why, for a failure or a skip"),
    },
}

_TRANSFER: Final = {
    "source": Field("str", "where the tokens came from: a store's name or URL, or the file"),
    "source_url": Field("str?", "the source store's URL (null for a file)"),
    "target": Field("str", "the store they went to: its name or URL"),
    "target_url": Field("str", "its URL, passwords redacted"),
    "dry_run": Field("bool", "true when nothing was written (--dry-run)"),
    "same_store": Field("bool", "true when source and target are one store: nothing was done"),
    "move": Field("bool", "whether tokens were deleted from the source (--move)"),
    "on_conflict": Field("str", "skip, overwrite or newer"),
    "ok": Field("bool", "true when no name failed (the exit code is then 0)"),
    "counts": Field("counts", "how many names ended how"),
    "outcomes": Field("[outcome]", "one per name, in order (at most 1000; failures first)"),
    "omitted": Field("int", "outcomes counted but not listed"),
}

DOCUMENTS: Final[dict[str, dict[str, Field]]] = {
    "list": {
        "accounts": Field("[account]", "every account, by store then name"),
        "errors": Field("[store error]", "stores that could not be read (--all-stores)"),
    },
    "show": {"account": Field("account", "the account")},
    "stores": {
        "settings_file": Field("str?", "the settings file that was read, or null"),
        "stores": Field("[store]", "the configured stores, then the store in use if unnamed"),
    },
    "doctor": {
        "stores": Field("[checked store]", "each store checked"),
        "integration": Field("checks", "the integration's settings"),
        "journal": Field(
            "journal",
            "what waits in the rescue journal; any operation on an account stores its token",
        ),
        "problems": Field("int", "how many checks found a problem (exit code 1 if any)"),
        "warnings": Field("int", "how many checks found something to improve"),
        "ok": Field("bool", "true when no check found a problem"),
    },
    "refresh": {
        "store": Field("str", "the store: its name or URL"),
        "store_url": Field("str", "its URL, passwords redacted"),
        "due_within": Field("int?", "--due-within in seconds (null for refresh NAME)"),
        "refreshed": Field("[refreshed]", "the accounts refreshed, by name"),
        "failed": Field("[failure]", "the accounts that could not be refreshed, by name"),
        "not_due": Field("[str]", "the accounts left alone, by name"),
    },
    "migrate": _TRANSFER,
    "import": {**_TRANSFER, "form": Field("str", "what the file was: bundle, file store, token")},
}

_SCALARS: Final = {"str": str, "int": int, "bool": bool}


def problems(document: Any, command: str | None = None) -> list[str]:
    """Every way ``document`` differs from the schema of its command; empty when it fits.

    Args:
        document: a parsed ``--json`` document.
        command: the command that should have printed it (default: its ``command`` key).
    """
    if not isinstance(document, dict):
        return ["the document is not a JSON object"]
    command = command or document.get("command")
    fields = DOCUMENTS.get(str(command))
    if fields is None:
        return [f"no schema for the command {command!r}"]
    found: list[str] = []
    if document.get("command") != command:
        found.append(f"command is {document.get('command')!r}, not {command!r}")
    if not isinstance(document.get("schema_version"), int):
        found.append("schema_version is not an integer")
    rest = {k: v for k, v in document.items() if k not in ("command", "schema_version")}
    _check_object(rest, fields, "", found)
    return found


def _check_object(value: Any, fields: dict[str, Field], where: str, found: list[str]) -> None:
    if not isinstance(value, dict):
        found.append(f"{where or 'the document'} is not an object")
        return
    for key in value.keys() - fields.keys():
        found.append(f"{where}{key} is not in the schema")
    for key, field in fields.items():
        if key not in value:
            if field.only is None:
                found.append(f"{where}{key} is missing")
            continue
        _check_value(value[key], field.type, f"{where}{key}", found)


def _check_value(value: Any, kind: str, where: str, found: list[str]) -> None:
    if kind.endswith("?"):
        if value is None:
            return
        kind = kind[:-1]
    if kind.startswith("["):
        if not isinstance(value, list):
            found.append(f"{where} is not a list")
            return
        for index, item in enumerate(value):
            _check_value(item, kind[1:-1], f"{where}[{index}]", found)
        return
    scalar = _SCALARS.get(kind)
    if scalar is None:
        _check_object(value, OBJECTS[kind], f"{where}.", found)
    elif not isinstance(value, scalar) or (scalar is int and isinstance(value, bool)):
        found.append(f"{where} is not {kind}: {value!r}")
