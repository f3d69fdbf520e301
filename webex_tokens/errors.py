"""Every exception webex-tokens raises.

::

    WebexTokensError
    ├── ConfigError
    ├── InvalidBundle            (also ValueError: a file that is no export bundle)
    ├── InvalidName              (also ValueError: a bad account name)
    ├── InvalidToken             (also ValueError: data that is not a token)
    ├── StoreError
    │   ├── InvalidStoreURL      (also ValueError)
    │   ├── BackendUnavailable   (driver or keyring daemon missing: says what to install)
    │   ├── StoreUnavailable     (cannot reach the database / keyring locked)
    │   ├── StoreCorrupted       (unreadable data; nothing overwritten)
    │   ├── StoreNotFound        (a read-only open found no store there yet)
    │   ├── DecryptionError      (wrong or missing key)
    │   ├── LockTimeout
    │   └── LockLost             (a lease expired under a writer: nothing written)
    └── OAuthError
        ├── AuthorizationDenied      (error=access_denied at the callback or the device grant)
        ├── CallbackError            (state mismatch, missing code, port in use)
        ├── RedirectURIMismatch      (explains the exact-match rule and both fixes)
        ├── TokenEndpointError       (status, error code, description; retries exhausted)
        ├── ReauthorizationRequired  (refresh token expired or revoked; a kind that can't refresh)
        ├── DeviceCodeExpired        (the device code ran out before anyone approved it)
        └── IDTokenInvalid           (signature, issuer, audience, nonce or expiry wrong)

Every message says what happened and how to fix it, in one sentence where it can.
No message ever contains an access token, a refresh token, a client secret or an
authorization code: code that builds a message from outside data passes it through
:func:`webex_tokens.token.fingerprint` or leaves it out.
"""

from __future__ import annotations

__all__ = [
    "AuthorizationDenied",
    "BackendUnavailable",
    "CallbackError",
    "ConfigError",
    "DecryptionError",
    "DeviceCodeExpired",
    "IDTokenInvalid",
    "InvalidBundle",
    "InvalidName",
    "InvalidStoreURL",
    "InvalidToken",
    "LockLost",
    "LockTimeout",
    "OAuthError",
    "ReauthorizationRequired",
    "RedirectURIMismatch",
    "StoreCorrupted",
    "StoreError",
    "StoreNotFound",
    "StoreUnavailable",
    "TokenEndpointError",
    "WebexTokensError",
]


class WebexTokensError(Exception):
    """Base class of every error raised by webex-tokens."""


class ConfigError(WebexTokensError):
    """The settings file, an environment variable or an argument is invalid."""


class InvalidBundle(WebexTokensError, ValueError):
    """A file given as a bundle holds neither a bundle, a token nor a file store's tokens."""


class InvalidName(WebexTokensError, ValueError):
    """An account name is empty, too long or holds control characters."""


class InvalidToken(WebexTokensError, ValueError):
    """Data offered as a token is not one (no access token, unknown type, bad field)."""


class StoreError(WebexTokensError):
    """A token store could not do what was asked."""


class InvalidStoreURL(StoreError, ValueError):
    """A store URL is malformed or names an unknown scheme."""


class BackendUnavailable(StoreError):
    """A backend cannot run here: a driver, package or daemon is missing.

    The message names the exact command that installs or starts what is missing.
    """


class StoreUnavailable(StoreError):
    """The store exists but cannot be reached right now (database down, keyring locked)."""


class StoreNotFound(StoreError):
    """A store opened only to be read does not exist yet; nothing was created."""


class StoreCorrupted(StoreError):
    """Stored data cannot be read; it has been left exactly as it was."""


class DecryptionError(StoreError):
    """An encrypted record cannot be decrypted: wrong key, missing key or damaged data."""


class LockTimeout(StoreError):
    """Another thread or process held the store's lock for longer than the timeout."""


class LockLost(StoreError):
    """The lease over an account expired while its holder worked: nothing was written.

    Raised by stores that lock with leases (Redis, Vault) when the write of an ``update``
    finds the lease taken over by another writer. A refreshed token that could not be
    written is kept by the rescue journal.
    """


class OAuthError(WebexTokensError):
    """The OAuth2 flow with Webex failed."""


class AuthorizationDenied(OAuthError):
    """The user (or an administrator's policy) declined the authorization request."""


class CallbackError(OAuthError):
    """The loopback callback could not complete: state mismatch, missing code, port in use."""


class RedirectURIMismatch(OAuthError):
    """The redirect URI sent does not exactly match one registered for the integration."""


class TokenEndpointError(OAuthError):
    """The token endpoint answered with an error, or kept failing after retries.

    Attributes:
        status: the HTTP status code, or None when no answer came.
        error: the OAuth2 ``error`` code (``invalid_client``, ...), or None.
        description: the ``error_description`` sent by the server (scrubbed of every
            secret the request carried), or None.
        delivered: whether the request reached Webex: True when Webex answered and
            did not act on it (an OAuth error, a 429), False when it provably did not
            reach Webex (the connection could not be made), None when nobody can tell
            whether Webex acted on it (no answer in time, the connection dropped after
            the request was sent, a server error without ``Retry-After``, a success
            that cannot be read): Webex may then have used a refresh token or code
            that must not be presented again.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        description: str | None = None,
        delivered: bool | None = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.description = description
        self.delivered = delivered


class ReauthorizationRequired(OAuthError):
    """The refresh token expired or was revoked: the account must log in again.

    Attributes:
        account: the name of the account that needs a new login, when known.
    """

    def __init__(self, message: str, *, account: str | None = None) -> None:
        super().__init__(message)
        self.account = account


class DeviceCodeExpired(OAuthError):
    """The device code of a device-grant login ran out before anyone approved it."""


class IDTokenInvalid(OAuthError):
    """An OpenID Connect ID token failed verification: signature, issuer, audience,
    nonce or expiry. Nothing was stored."""
