"""``vault+https://`` and ``vault+http://``: tokens in HashiCorp Vault or OpenBao (KV v2).

One secret per account under ``MOUNT/PATH`` of a KV version 2 secrets engine, its data
``{"record": <record text>}`` (JSON, or ciphertext under fernet+). Names are
percent-encoded into one path segment (letters, digits and ``-_.~@+`` stay as they
are, a leading dot is encoded too), so any valid name is a valid path, ``/`` and ``..``
cannot leave the folder, and two names never share a secret. Leases live beside the
records, in ``MOUNT/PATH/.locks/<name>``.

``put`` writes a new version; ``delete`` removes the secret with every version and its
metadata, so ``names()`` (a LIST of the metadata folder) no longer shows it. ``update``
holds the account's lease (:mod:`webex_tokens.leases`) and writes with check-and-set on
the version of the record it read, so a write that lost its lease is refused; see
:meth:`VaultStore._update_record` for the exact sequence.

The token comes from ``?token_env=NAME``, else ``VAULT_TOKEN``, else ``BAO_TOKEN``; it is
never shown. Opening the store looks the token up, checks that the mount is KV version 2
and that the token's policy allows reading and listing, so a wrong token, mount or
policy fails at once with the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final
from urllib.parse import quote, unquote

import hvac
import requests.utils

from ...errors import InvalidStoreURL, StoreCorrupted, StoreError, StoreUnavailable
from ...leases import DEFAULT_LEASE_TTL, MIN_LEASE_TTL, Lease, Leases
from ...locks import DEFAULT_LOCK_TIMEOUT
from ...store import (
    BaseStore,
    Keep,
    Record,
    RecordChange,
    log_superseded,
    validate_name,
)
from ._http import PooledAdapter
from ._kv import KV, CASRequired, Secret, VaultErrors
from ._lease import Grant, VaultLeases
from ._url import (
    CA_VARIABLES,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    TOKEN_VARIABLES,
    ParsedURL,
    display_url,
    parse_url,
    token_from,
    warn_plain_http,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "TOKEN_VARIABLES",
    "VaultStore",
    "decode_name",
    "encode_name",
]


_LOCKS: Final = ".locks"
#: Records read at once when streaming (``items()``, ``refresh --all``).
_READ_AHEAD: Final = 16
#: How many times a write retries a check-and-set that other writers keep beating.
_CAS_ATTEMPTS: Final = 20


def encode_name(name: str) -> str:
    """The path segment of the secret that holds ``name`` (percent-encoded UTF-8).

    Letters, digits and ``-_.~@+`` stay; everything else, ``%`` and ``/`` included,
    becomes ``%XX``, and so does a leading dot (no ``.``, ``..`` or ``.locks``).
    """
    key = quote(name, safe="@+")
    return "%2E" + key[1:] if key.startswith(".") else key


def decode_name(key: str) -> str | None:
    """The account name whose secret is ``key``, or None if no name encodes to it."""
    try:
        name = unquote(key, errors="strict")
        validate_name(name)
    except (UnicodeDecodeError, ValueError):
        return None
    return name if encode_name(name) == key else None


class VaultStore(BaseStore):
    """Tokens in Vault or OpenBao: ``vault+https://HOST[:PORT]/MOUNT/PATH?...``.

    Args:
        url: ``vault+https://`` or ``vault+http://``, the KV v2 mount as the first path
            segment (``%2F`` inside it for a nested mount) and the folder after it, with
            the options ``token_env``, ``namespace``, ``connect_timeout``, ``timeout``,
            ``lock_timeout``, ``lease_ttl`` and ``ca_file`` in its query.
        token: the Vault token itself, for code that obtained one (an AppRole login);
            by default it is read from the environment (``token_env``, else
            ``VAULT_TOKEN``, else ``BAO_TOKEN``).
        namespace: the Vault namespace (overrides ``?namespace=``).
        lock_timeout: seconds an ``update`` waits for another writer's lease before
            :class:`LockTimeout` (overrides ``?lock_timeout=``).
        lease_ttl: seconds a lease lives without renewal (overrides ``?lease_ttl=``).

    Raises:
        InvalidStoreURL: the URL or an option is malformed, or it holds a credential.
        StoreUnavailable: the server cannot be reached, is sealed, refused the token, has
            no KV version 2 engine at the mount, or the token's policy does not allow
            reading and listing the folder (the message gives the minimal policy).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        namespace: str | None = None,
        lock_timeout: float | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        self._client: hvac.Client | None = None
        self._leases: Leases[Grant] | None = None
        parsed = parse_url(url)
        options = parsed.options
        self.mount: str = parsed.mount
        self.path: str = parsed.path
        self.namespace: str | None = options.text("namespace", namespace)
        self.lock_timeout: float = options.seconds(
            "lock_timeout", DEFAULT_LOCK_TIMEOUT, lock_timeout
        )
        self.lease_ttl: float = options.seconds(
            "lease_ttl", DEFAULT_LEASE_TTL, lease_ttl, minimum=MIN_LEASE_TTL
        )
        self.connect_timeout: float = options.seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self.timeout: float = options.seconds("timeout", DEFAULT_TIMEOUT)
        self.address = f"{parsed.host}:{parsed.port}"
        self.url = display_url(
            parsed,
            self.namespace,
            {
                "lock_timeout": (self.lock_timeout, DEFAULT_LOCK_TIMEOUT),
                "lease_ttl": (self.lease_ttl, DEFAULT_LEASE_TTL),
                "connect_timeout": (self.connect_timeout, DEFAULT_CONNECT_TIMEOUT),
                "timeout": (self.timeout, DEFAULT_TIMEOUT),
            },
        )
        secret, self.token_source = token_from(token, options.text("token_env"), self.url)
        self.kv = KV(
            self._connect(parsed, secret, options.text("ca_file")),
            self.mount,
            VaultErrors(self.address, self.url, self.token_source, secret, self.minimal_policy()),
        )
        self._missing: list[str] = []
        self._capabilities_checked = False
        try:
            self._check_access()
            self._vault_leases = VaultLeases(self)
            self._leases = Leases(
                self._vault_leases,
                ttl=self.lease_ttl,
                lock_timeout=self.lock_timeout,
                describe=self._describe,
            )
        except BaseException:
            self._close()
            raise
        if not parsed.tls:
            warn_plain_http(parsed.host, self.url)

    @classmethod
    def from_url(cls, url: str) -> VaultStore:
        """Open the store at a ``vault+https://`` or ``vault+http://`` URL (see the class).

        Raises:
            InvalidStoreURL, StoreUnavailable: as the constructor.
        """
        return cls(url)

    # -- opening ----------------------------------------------------------------------

    def _connect(self, parsed: ParsedURL, token: str, ca_file: str | None) -> hvac.Client:
        verify: bool | str = True
        if parsed.tls:
            ca = ca_file or next(
                (os.environ[name] for name in CA_VARIABLES if os.environ.get(name)), None
            )
            if ca is not None:
                path = os.path.expanduser(ca)
                if not os.path.isfile(path):
                    raise InvalidStoreURL(
                        f"the CA file {ca!r} for {self.url} is not a file; give the path of the "
                        "PEM file of the CA that signed Vault's certificate"
                    )
                verify = path
        elif ca_file is not None:
            raise InvalidStoreURL(
                f"ca_file in {self.url} is for TLS; write vault+https:// to connect with TLS"
            )
        if verify is True:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            verify = bundle or True
        scheme = "https" if parsed.tls else "http"
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        base = f"{scheme}://{host}:{parsed.port}"
        self._client = hvac.Client(
            url=base,
            token=token,
            namespace=self.namespace,
            verify=verify,
            timeout=(self.connect_timeout, self.timeout),
            # The environment's proxy, read once (requests would read it per request).
            proxies=requests.utils.get_environ_proxies(base) or None,
            adapter=PooledAdapter,
        )
        return self._client

    def _check_access(self) -> None:
        """Token, mount and policy, checked before the store is used."""
        try:
            self.kv.call("looking up its own token", "GET", "auth/token/lookup-self")
        except StoreUnavailable as exc:
            if "denied" not in str(exc):
                raise
            raise StoreUnavailable(
                f"Vault at {self.address} rejected the token from {self.token_source}: it is "
                "wrong, expired or revoked (permission denied looking itself up); log in again "
                "(bao login or vault login) and set the new token"
            ) from None
        self._check_mount()
        self._missing = self._missing_capabilities()
        needed = [item for item in self._missing if item.split()[0] in ("read", "list")]
        if needed:
            raise self.kv.errors.denied(f"{', '.join(needed)} for {self.url}", "permission denied")

    def _check_mount(self) -> None:
        try:
            body = self.kv.call(
                "reading the mount", "GET", f"sys/internal/ui/mounts/{quote(self.mount)}"
            )
        except StoreUnavailable as exc:
            if "preflight capability check" in str(exc):
                raise StoreUnavailable(
                    f"no secrets engine is mounted at {self.mount!r} on Vault at {self.address} "
                    "(or the token may not see it); check the mount in the URL, or enable one: "
                    f"bao secrets enable -version=2 -path={self.mount} kv"
                ) from None
            if "denied" in str(exc):
                return  # the token may not inspect mounts: the first use will tell
            raise
        except StoreError:
            return
        mount = (body or {}).get("data") or {}
        kind = mount.get("type")
        version = str((mount.get("options") or {}).get("version") or "1")
        if kind not in ("kv", "generic"):
            raise StoreUnavailable(
                f"the mount {self.mount!r} on Vault at {self.address} is a {kind} engine, not "
                "KV; point the URL at a KV version 2 mount"
            )
        if version != "2":
            raise StoreUnavailable(
                f"the mount {self.mount!r} on Vault at {self.address} is KV version {version}; "
                "webex-tokens needs version 2 (check-and-set): bao kv enable-versioning "
                f"{self.mount}, or use another mount"
            )

    def _missing_capabilities(self) -> list[str]:
        probe = f"{self.mount}/data/{self.path}/{encode_name('probe')}"
        folder = f"{self.mount}/metadata/{self.path}/"
        try:
            body = self.kv.call(
                "checking its policy",
                "POST",
                "sys/capabilities-self",
                json={"paths": [probe, folder]},
            )
        except StoreError:
            return []  # the token may not ask: the first use will tell
        self._capabilities_checked = True
        found = body.get("data") if isinstance(body.get("data"), dict) else body
        granted_data = set(found.get(probe) or [])
        granted_folder = set(found.get(folder) or [])
        if "root" in granted_data:
            granted_data |= {"create", "read", "update"}
        if "root" in granted_folder:
            granted_folder |= {"list", "delete"}
        missing = [
            f"{capability} on {self.mount}/data/{self.path}/*"
            for capability in ("read", "create", "update")
            if capability not in granted_data
        ]
        missing += [
            f"{capability} on {self.mount}/metadata/{self.path}/*"
            for capability in ("list", "delete")
            if capability not in granted_folder
        ]
        return missing

    # -- for doctor -------------------------------------------------------------------

    def minimal_policy(self) -> str:
        """The smallest Vault policy (HCL) that lets a token use this store."""
        data = f"{self.mount}/data/{self.path}/*"
        metadata = f"{self.mount}/metadata/{self.path}/*"
        return (
            f'path "{data}" {{ capabilities = ["create", "read", "update"] }} '
            f'path "{metadata}" {{ capabilities = ["list", "delete"] }}'
        )

    def missing_capabilities(self) -> list[str]:
        """What the token's policy lacks for this store, as checked when it opened
        (``"update on secret/data/webex-tokens/*"``); empty when nothing is missing or
        the token may not ask (``sys/capabilities-self``, see
        :attr:`capabilities_checked`)."""
        return list(self._missing)

    @property
    def capabilities_checked(self) -> bool:
        """True when the server told, on opening, what the token's policy allows here."""
        return self._capabilities_checked

    # -- paths and words --------------------------------------------------------------

    def _record_path(self, name: str) -> str:
        return f"{self.path}/{encode_name(name)}"

    def _lock_path(self, name: str) -> str:
        return f"{self.path}/{_LOCKS}/{encode_name(name)}"

    def _describe(self, name: str) -> str:
        return f"the token {name!r} in {self.url}"

    # -- records ------------------------------------------------------------------------

    def _secret(self, name: str) -> Secret:
        return self.kv.read(self._record_path(name), f"reading {self._describe(name)}")

    def _text(self, name: str, secret: Secret) -> str | None:
        if secret.data is None:
            return None
        record = secret.data.get("record")
        if not isinstance(record, str):
            raise StoreCorrupted(
                f"the secret of {self._describe(name)} is not a webex-tokens record (it has no "
                "'record' text); it was left untouched: keep this folder for webex-tokens alone"
            )
        return record

    def _read(self, name: str) -> str | None:
        return self._text(name, self._secret(name))

    def _write(self, name: str, record: Record) -> None:
        path, what = self._record_path(name), f"writing {self._describe(name)}"
        data = {"record": record.data}
        try:
            self.kv.write(path, data, None, what)
            return
        except CASRequired:
            pass  # the mount wants check-and-set on every write
        for _ in range(_CAS_ATTEMPTS):
            if self.kv.write(path, data, self._secret(name).version, what) is not None:
                return
        raise StoreUnavailable(f"other writers kept changing {self._describe(name)}; retry")

    def _remove(self, name: str) -> bool:
        secret = self._secret(name)
        if secret.version == 0:
            return False
        self.kv.destroy(self._record_path(name), f"deleting {self._describe(name)}")
        return secret.data is not None

    def _iter_names(self) -> Iterable[str]:
        keys = self.kv.list(self.path, f"listing the accounts of {self.url}")
        names = (decode_name(key) for key in keys if not key.endswith("/"))
        return [name for name in names if name is not None]

    def _iter_records(self) -> Iterator[tuple[str, str]]:
        """Stream ``(name, record)`` in name order, reading up to 16 secrets at once."""
        names = sorted(self._iter_names())
        with ThreadPoolExecutor(_READ_AHEAD, thread_name_prefix="vault-read") as pool:
            pending: list[tuple[str, Future[Secret]]] = []
            for name in names:
                pending.append((name, pool.submit(self._secret, name)))
                if len(pending) >= 4 * _READ_AHEAD:
                    yield from self._ready(pending, 2 * _READ_AHEAD)
            yield from self._ready(pending, len(pending))

    def _ready(
        self, pending: list[tuple[str, Future[Secret]]], count: int
    ) -> Iterator[tuple[str, str]]:
        for _ in range(count):
            name, future = pending.pop(0)
            data = self._text(name, future.result())
            if data is not None:
                yield name, data

    def _update_record(self, name: str, change: Callable[[str | None], RecordChange]) -> None:
        """``update`` under the account's lease, its write fenced by check-and-set.

        1. Take the lease (a check-and-set write of the lock secret).
        2. Read the record: its version ``n`` and text.
        3. If the lease was taken over from a holder whose lease lapsed, write the same
           text again with ``cas=n`` (so ``n+1``): the old holder's late write, which
           names ``cas=n``, can no longer land. (A record that does not exist has no
           version to bump: a late creation by the old holder may then stand, as a
           ``put`` would.)
        4. Call ``change`` while the lease is renewed in the background.
        5. Check locally that the lease is still held with a fifth of its TTL to spare
           (renewing it now if it is not), else raise :class:`LockLost`.
        6. Write with ``cas=n``. A refusal means the record changed since step 2: if the
           lock secret still names this owner, a ``put`` or ``delete`` landed (it stands;
           nothing is written), otherwise the lease was taken over: :class:`LockLost`,
           nothing written.
        7. Release the lease (a check-and-set write naming no owner).

        A ``change`` that deletes checks the version is still ``n`` and then removes
        the secret (Vault cannot delete with check-and-set).
        """
        leases = self._leases
        if leases is None:
            raise StoreError(f"the store {self.url} is closed; open it again")
        path, what = self._record_path(name), f"writing {self._describe(name)}"
        with leases.hold(name) as lease:
            seen = self._secret(name)
            text = self._text(name, seen)
            if lease.grant.taken_over and text is not None:
                seen, text = self._fence_out_previous_holder(name, seen, text)
            result = change(text)
            if isinstance(result, Keep) or (result is None and text is None):
                return
            lease.check()
            if result is None:
                if self._secret(name).version != seen.version:
                    self._refused(name, lease)
                    return
                lease.check()
                self.kv.destroy(path, f"deleting {self._describe(name)}")
                return
            if self.kv.write(path, {"record": result.data}, seen.version, what) is None:
                self._refused(name, lease)

    def _refused(self, name: str, lease: Lease[Grant]) -> None:
        """The record changed under a fenced write, which wrote nothing: raise
        :class:`LockLost` if the lease was taken over, else note the put or delete that
        landed meanwhile and stands."""
        leases = self._leases
        if leases is not None and not self._vault_leases.is_held_by(name, lease.owner):
            lease.mark_lost()
            raise leases.lost_error(name)
        log_superseded(self.url, name)

    def _fence_out_previous_holder(
        self, name: str, seen: Secret, text: str
    ) -> tuple[Secret, str | None]:
        """Step 3 of :meth:`_update_record`: bump the record's version past the one a
        lapsed holder may still write with."""
        path, what = self._record_path(name), f"fencing {self._describe(name)}"
        for _ in range(_CAS_ATTEMPTS):
            version = self.kv.write(path, {"record": text}, seen.version, what)
            if version is not None:
                return Secret(version, seen.data), text
            seen = self._secret(name)  # the old holder (or a put) wrote first: start from it
            current = self._text(name, seen)
            if current is None:
                return seen, None
            text = current
        raise StoreUnavailable(f"other writers kept changing {self._describe(name)}; retry")

    def _update_records(
        self, changes: Sequence[tuple[str, Callable[[str | None], RecordChange]]]
    ) -> bool:
        return False  # one lease per account: migrate updates them one by one

    def _close(self) -> None:
        if self._leases is not None:
            self._leases.close()
            self._leases = None
        if self._client is not None:
            self._client.adapter.close()
            self._client = None
