"""The export bundle: the JSON file of tokens that ``webex-tokens export`` writes.

A bundle carries tokens between stores, hosts and programs::

    {
     "format": "webex-tokens-export",
     "tokens": {
      "alice@example.com": {"version": 1, "access_token": "...", ...}
     },
     "version": 1
    }

``tokens`` maps each account name to the token's versioned JSON form
(:meth:`webex_tokens.Token.to_dict`). :func:`loads_bundle` reads, besides bundles, the
two other files that hold tokens in the wild, as ``webex-tokens import`` does:

* a single token: the legacy ``.webex_token.json`` (``{"access_token", "refresh_token",
  "saved_at"}``), a token's own JSON form, or an Authlib token dict;
* the ``tokens.json`` of a ``file:`` store with plain (unencrypted) records.

A bundle holds the secrets in plain text: :func:`write_bundle` creates it with mode
0600 and never replaces an existing file unless told to.

Example::

    from webex_tokens.bundle import read_bundle

    tokens = read_bundle("acme.json").tokens      # {name: Token}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from .backends.files import atomic_write, json_loads_strict
from .errors import InvalidBundle, InvalidToken
from .token import Token

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "Bundle",
    "InvalidBundle",
    "dumps_bundle",
    "loads_bundle",
    "read_bundle",
    "write_bundle",
    "write_secret_file",
]

#: The ``format`` field of every bundle.
BUNDLE_FORMAT: Final = "webex-tokens-export"
#: The bundle version this release writes and the newest it reads.
BUNDLE_VERSION: Final = 1
# The version field of a file store's tokens.json (see webex_tokens.backends.file).
_FILE_STORE_VERSION: Final = 1

#: What a file held: a bundle, a file store's ``tokens.json``, or a single token.
Form = Literal["bundle", "file store", "token"]


@dataclass(frozen=True)
class Bundle:
    """Tokens read from a file, by account name.

    Attributes:
        tokens: the tokens by name. A single token is named after its account, else
            ``"default"``.
        form: what the file was: ``"bundle"``, ``"file store"`` or ``"token"``.
    """

    tokens: dict[str, Token]
    form: Form


def dumps_bundle(tokens: Mapping[str, Token]) -> bytes:
    """The bundle holding ``tokens`` (by name), as UTF-8 JSON ending in a newline."""
    document = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "tokens": {name: token.to_dict() for name, token in tokens.items()},
    }
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def loads_bundle(data: bytes | str, *, source: str = "the bundle") -> Bundle:
    """Read a bundle, a single token or a file store's ``tokens.json`` from ``data``.

    Args:
        data: the file's content.
        source: how to name the file in error messages (its path, ``stdin``).

    Raises:
        InvalidBundle: ``data`` is not JSON, not an object, of a newer or unknown bundle
            version, holds an encrypted record, or is none of the three forms; a token in
            it is not valid.
    """
    try:
        document = json_loads_strict(data)
    except (ValueError, RecursionError):
        raise InvalidBundle(
            f"{source} is not valid JSON; give a .webex_token.json or an export bundle"
        ) from None
    if not isinstance(document, dict):
        raise InvalidBundle(
            f"{source} does not hold a JSON object; give a token or an export bundle"
        )
    if "access_token" in document and "tokens" not in document:
        try:
            single = Token.from_dict(document)
        except InvalidToken as exc:
            raise InvalidBundle(f"{source} does not hold a valid token: {exc}") from None
        return Bundle({single.account or "default": single}, "token")
    form: Form
    if document.get("format") == BUNDLE_FORMAT:
        version = document.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > BUNDLE_VERSION:
            raise InvalidBundle(
                f"{source} was exported by a newer webex-tokens (bundle version {version}); "
                "upgrade with: pip install -U webex-tokens"
            )
        if version != BUNDLE_VERSION:
            raise InvalidBundle(f"{source} has an unknown bundle version {version!r}")
        form = "bundle"
    elif document.get("version") == _FILE_STORE_VERSION:
        form = "file store"
    else:
        raise InvalidBundle(
            f"{source} is neither a token, an export bundle nor a webex-tokens file store"
        )
    records = document.get("tokens")
    if not isinstance(records, dict):
        raise InvalidBundle(f"{source} has no 'tokens' object")
    return Bundle({name: _token(name, value, source) for name, value in records.items()}, form)


def _token(name: str, value: object, source: str) -> Token:
    shown = name  # shown with !r, which escapes control characters
    if isinstance(value, str):
        raise InvalidBundle(
            f"the token {shown!r} in {source} is encrypted; move encrypted stores "
            "with: webex-tokens migrate --from fernet+file://... --to ..."
        )
    if not isinstance(value, dict):
        raise InvalidBundle(f"the token {shown!r} in {source} is not a JSON object")
    try:
        return Token.from_dict(value)
    except InvalidToken as exc:
        raise InvalidBundle(f"the token {shown!r} in {source} is not valid: {exc}") from None


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read the bundle (or single token, or file store's ``tokens.json``) at ``path``.

    Raises:
        InvalidBundle: see :func:`loads_bundle`.
        OSError: the file cannot be read.
    """
    return loads_bundle(Path(path).read_bytes(), source=os.fspath(path))


def write_bundle(
    path: str | os.PathLike[str], tokens: Mapping[str, Token], *, replace: bool = False
) -> None:
    """Write ``tokens`` to a new bundle file at ``path`` with mode 0600.

    Args:
        path: the file to create.
        tokens: the tokens by account name.
        replace: replace an existing file (atomically, still 0600) instead of refusing.

    Raises:
        FileExistsError: ``path`` exists and ``replace`` is false.
        OSError: the file cannot be written.
    """
    write_secret_file(Path(path), dumps_bundle(tokens), replace=replace)


def write_secret_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to a new file only its owner can read (0600): a bundle, a key.

    A new file is created exclusively and never through a symbolic link; with
    ``replace``, an existing file is replaced atomically.

    Raises:
        FileExistsError: ``path`` exists and ``replace`` is false.
        OSError: the file cannot be written.
    """
    if replace and path.exists():
        atomic_write(path, data)
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
