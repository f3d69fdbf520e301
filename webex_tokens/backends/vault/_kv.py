"""The KV version 2 calls of the Vault store, through hvac, and their errors.

Every call goes through hvac's KV v2 API on a client with hvac's raw adapter, so that the
store sees each answer whole (its status, body and ``Date`` header) and turns every
failure into one of the library's errors with the fix in one sentence. Nothing here
ever puts the token in a message: hvac's errors name the request's URL, never its
headers, and :meth:`VaultErrors.reason` scrubs the token anyway.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import hvac
import hvac.exceptions
import requests

from ...errors import StoreError, StoreUnavailable

__all__ = ["KV", "Secret", "VaultErrors", "parse_time"]

_CAS_MISMATCH: Final = "check-and-set parameter did not match the current version"
_CAS_REQUIRED: Final = "check-and-set parameter required"
_NO_ROUTE: Final = "no handler for route"
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time(text: object) -> datetime | None:
    """A Vault timestamp (RFC 3339 with nanoseconds) as an aware datetime, or None."""
    if not isinstance(text, str):
        return None
    match = _TIMESTAMP.match(text)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{base}.{micros}{offset}")
    except ValueError:
        return None


@dataclass(frozen=True)
class Secret:
    """One KV v2 secret as read: its current version and that version's data.

    Attributes:
        version: the secret's current version; 0 when it does not exist.
        data: the current version's data; None when there is none (no secret, or its
            latest version was deleted or destroyed by someone else).
        created: when the current version was written, by the server's clock.
        server_now: the server's time when it answered (its ``Date`` header, to the
            second), or None.
    """

    version: int
    data: dict[str, Any] | None
    created: datetime | None = None
    server_now: datetime | None = None


class VaultErrors:
    """Turns what hvac and requests raise into the library's errors, for one store.

    Args:
        address: ``host:port`` of the server, for messages.
        url: the store's URL as shown (no token in it).
        token_source: where the token came from (``the environment variable
            VAULT_TOKEN``), for messages.
        token: the token itself, only to scrub it from any text.
        policy: the minimal policy of the store, quoted when Vault denies something.
    """

    def __init__(self, address: str, url: str, token_source: str, token: str, policy: str) -> None:
        self.address = address
        self.url = url
        self.token_source = token_source
        self._token = token
        self.policy = policy

    def reason(self, exc: BaseException) -> str:
        """The error's text in one line, without the token, at most 300 characters."""
        if isinstance(exc, hvac.exceptions.VaultError):
            text = ", ".join(str(error) for error in exc.errors or []) or str(exc.args[0] or "")
        else:
            text = str(exc)
        text = " ".join(text.split()) or type(exc).__name__
        if self._token:
            text = text.replace(self._token, "***")
        return text[:300]

    def denied(self, what: str, reason: str) -> StoreUnavailable:
        """Vault answered 403 (permission denied) to ``what``."""
        return StoreUnavailable(
            f"Vault at {self.address} denied {what} to the token from {self.token_source} "
            f"({reason}); grant its policy at least: {self.policy} (or, if the token has "
            "expired, log in again)"
        )

    def translate(self, exc: BaseException, what: str) -> StoreError:
        """The library's error for ``exc``, raised while doing ``what``."""
        reason = self.reason(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return StoreUnavailable(
                f"the TLS certificate of Vault at {self.address} was refused ({reason}); it "
                "must be signed by a CA this system trusts or the one given with ?ca_file=PATH "
                "(or VAULT_CACERT), and name the host of the URL"
            )
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return StoreUnavailable(
                f"cannot reach Vault at {self.address} for {what} ({reason}); is the server "
                "running and reachable? check the host, port and scheme (vault+https:// or "
                "vault+http://) of the URL"
            )
        if isinstance(exc, hvac.exceptions.VaultDown):
            if "sealed" in reason.lower():
                return StoreUnavailable(
                    f"Vault at {self.address} is sealed, so {what} cannot be done; unseal it "
                    "(bao operator unseal, or vault operator unseal) and retry"
                )
            return StoreUnavailable(
                f"Vault at {self.address} is unavailable ({reason}); retry when it is up"
            )
        if isinstance(exc, hvac.exceptions.Forbidden):
            return self.denied(what, reason)
        if isinstance(exc, hvac.exceptions.Unauthorized):
            return StoreUnavailable(
                f"Vault at {self.address} did not accept the token from {self.token_source} "
                f"for {what} ({reason}); log in again and set the new token"
            )
        if isinstance(exc, hvac.exceptions.InvalidPath) and "namespace not found" in reason:
            return StoreUnavailable(
                f"Vault at {self.address} has no such namespace ({reason}); check ?namespace= "
                f"in {self.url}"
            )
        if isinstance(exc, hvac.exceptions.InvalidPath) and _NO_ROUTE in reason:
            return StoreUnavailable(
                f"no KV version 2 secrets engine is mounted where {self.url} points ({reason}); "
                "check the mount in the URL, or enable one: bao secrets enable -version=2 "
                "-path=MOUNT kv"
            )
        if isinstance(
            exc,
            (
                hvac.exceptions.RateLimitExceeded,
                hvac.exceptions.InternalServerError,
                hvac.exceptions.BadGateway,
                hvac.exceptions.VaultNotInitialized,
            ),
        ):
            return StoreUnavailable(
                f"Vault at {self.address} failed {what} ({reason}); retry when it recovers"
            )
        return StoreError(f"Vault at {self.address} refused {what} ({reason})")


class KV:
    """KV version 2 calls under one mount, each raising the library's errors.

    Args:
        client: an hvac client built with :class:`hvac.adapters.RawAdapter`.
        mount: the secrets engine's mount path (``secret``).
        errors: the store's error translator.
    """

    def __init__(self, client: hvac.Client, mount: str, errors: VaultErrors) -> None:
        self.client = client
        self.mount = mount
        self.errors = errors
        self._kv = client.secrets.kv.v2

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise self.errors.translate(exc, what) from None

    def read(self, path: str, what: str) -> Secret:
        """The secret at ``path`` (version 0 and no data when there is none)."""
        try:
            with self._calling(what):
                try:
                    response = self._kv.read_secret_version(
                        path=path, mount_point=self.mount, raise_on_deleted_version=True
                    )
                except hvac.exceptions.InvalidPath as exc:
                    if exc.errors:  # a missing mount or namespace, not a missing secret
                        raise
                    return _deleted(exc.json)
                body = response.json()
        except ValueError:
            raise StoreUnavailable(
                f"Vault at {self.errors.address} answered {what} with something that is not "
                "JSON; check that the URL points at Vault's API"
            ) from None
        payload = body.get("data") or {}
        metadata = payload.get("metadata") or {}
        return Secret(
            int(metadata.get("version") or 0),
            payload.get("data"),
            parse_time(metadata.get("created_time")),
            _server_time(response),
        )

    def write(self, path: str, data: dict[str, Any], cas: int | None, what: str) -> int | None:
        """Write a new version of ``path``; with ``cas``, only if ``cas`` is its current
        version (0: only if it does not exist). Returns the new version, or None when
        the check-and-set failed and nothing was written.

        Raises:
            StoreError: as :meth:`VaultErrors.translate`; a mount that requires
                check-and-set raises :class:`CASRequired` for a write without ``cas``.
        """
        with self._calling(what):
            try:
                response = self._kv.create_or_update_secret(
                    path=path, secret=data, cas=cas, mount_point=self.mount
                )
            except hvac.exceptions.InvalidRequest as exc:
                reason = self.errors.reason(exc)
                if _CAS_MISMATCH in reason:
                    return None
                if _CAS_REQUIRED in reason:
                    raise CASRequired(reason) from None
                raise
            body = response.json()
        return int(((body.get("data") or {}).get("version")) or 0)

    def destroy(self, path: str, what: str) -> None:
        """Delete ``path`` with all its versions and metadata (nothing left to list)."""
        with self._calling(what):
            self._kv.delete_metadata_and_all_versions(path=path, mount_point=self.mount)

    def list(self, path: str, what: str) -> list[str]:
        """The keys directly under the folder ``path`` (sub-folders end with ``/``)."""
        with self._calling(what):
            try:
                response = self._kv.list_secrets(path=path, mount_point=self.mount)
            except hvac.exceptions.InvalidPath as exc:
                if exc.errors:
                    raise
                return []
            body = response.json()
        keys = (body.get("data") or {}).get("keys") or []
        return [key for key in keys if isinstance(key, str)]

    def call(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        """Any other API call (``method`` on ``/v1/<path>``): its JSON body."""
        with self._calling(what):
            response = self.client.adapter.request(method, f"/v1/{path}", **kwargs)
            return response.json() if response.content else {}


class CASRequired(StoreError):
    """The mount requires check-and-set on every write (``cas_required``)."""


def _deleted(body: Any) -> Secret:
    """A 404 for a secret: none at all, or a latest version that was deleted (whose
    number a check-and-set write must name)."""
    metadata = ((body or {}).get("data") or {}).get("metadata") or {}
    return Secret(int(metadata.get("version") or 0), None)


def _server_time(response: requests.Response) -> datetime | None:
    header = response.headers.get("Date")
    if not header:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
