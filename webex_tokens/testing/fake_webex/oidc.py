"""OpenID Connect ("Login with Webex"): discovery, the JWKS, signed ID tokens, userinfo.

When the scope of an authorization includes ``openid``, the code exchange (and a device
approval) answers an ``id_token`` as well: a JWT signed with RS256 by a key published at
``{base_url}/verification``, where Webex publishes its keys. Its claims are ``iss`` (the
issuer of the discovery document, deliberately not the API's base URL, as with Webex),
``sub`` (the person's UUID), ``aud`` (the client ID), ``iat``, ``exp``, ``nonce`` (from
the authorization request, when it had one), ``email`` and ``email_verified`` (with the
``email`` scope) and ``name``, ``given_name``, ``family_name`` (with ``profile``).

:meth:`OpenIDConnect.break_next_id_token` makes the next ID token wrong in one way, so a
client's verification can be shown to refuse it. Keys are made with ``joserfc``.
"""

from __future__ import annotations

import base64
import collections
import json
import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from .answers import Answer, api_error, bearer_token, json_answer
from .people import names_of, person_uuid, presented, unauthorized
from .state import Core, Family

__all__ = ["ID_TOKEN_FAULTS", "OpenIDConnect"]

#: The ways :meth:`OpenIDConnect.break_next_id_token` can break an ID token.
ID_TOKEN_FAULTS = (
    "unknown_key",  # signed with a key that is not in the JWKS
    "bad_signature",  # the signature does not match the token
    "alg_none",  # unsigned: "alg": "none"
    "wrong_issuer",
    "wrong_audience",
    "expired",  # exp ten minutes ago
    "wrong_nonce",
    "missing_nonce",  # no nonce although the authorization request sent one
)

_SCOPES = ("openid", "email", "profile")
_CLAIMS = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nonce",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
)


def _new_key() -> RSAKey:
    kid = secrets.token_hex(8)
    key: RSAKey = RSAKey.generate_key(
        2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True
    )
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class OpenIDConnect:
    """OpenID Connect of the emulator, reached as ``fake.oidc``.

    Attributes:
        id_token_expires_in: lifetime of an ID token in seconds (default 3600).
        claims_follow_scopes: True (default): ``email`` needs the ``email`` scope and the
            names need ``profile``; False: every ID token and userinfo answer has them all.
    """

    def __init__(self, core: Core) -> None:
        self._core = core
        self.id_token_expires_in = 3600
        self.claims_follow_scopes = True
        self._issuer: str | None = None
        self._keys: list[RSAKey] = []  # the JWKS; the first one signs
        self._foreign: RSAKey | None = None
        self._faults: collections.deque[str] = collections.deque()

    # -- settings and controls ----------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The ``iss`` of ID tokens and the discovery document (default ``{origin}/idb``).

        Set it to another value to test a client that must take the issuer from the
        discovery document; set None to return to the default.
        """
        return self._issuer if self._issuer is not None else self._core.origin + "/idb"

    @issuer.setter
    def issuer(self, value: str | None) -> None:
        self._issuer = value

    @property
    def discovery_url(self) -> str:
        """``{base_url}/.well-known/openid-configuration``."""
        return self._core.origin + "/v1/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        """``{base_url}/verification``: the JWKS, where Webex serves it."""
        return self._core.origin + "/v1/verification"

    @property
    def userinfo_url(self) -> str:
        """``{base_url}/userinfo``."""
        return self._core.origin + "/v1/userinfo"

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ``kid`` of every key in the JWKS; the first one signs new ID tokens."""
        with self._core.lock:
            return tuple(str(key.kid) for key in self._signing_keys())

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """Sign from now on with a new key, published first in the JWKS.

        Args:
            keep_old: keep the previous keys in the JWKS (a rotation in progress: older
                ID tokens still verify); False drops them.

        Returns:
            The new key's ``kid``.
        """
        with self._core.lock:
            self._signing_keys()
            key = _new_key()
            self._keys = [key, *self._keys] if keep_old else [key]
            return str(key.kid)

    def break_next_id_token(self, fault: str) -> None:
        """Make the next ID token issued wrong in one way (see :data:`ID_TOKEN_FAULTS`).

        Raises:
            ValueError: ``fault`` is not one of :data:`ID_TOKEN_FAULTS`.
        """
        if fault not in ID_TOKEN_FAULTS:
            raise ValueError(f"unknown ID token fault {fault!r}; use one of {ID_TOKEN_FAULTS}")
        with self._core.lock:
            self._faults.append(fault)

    # -- ID tokens (caller holds the lock) ------------------------------------------------

    def _signing_keys(self) -> list[RSAKey]:
        if not self._keys:  # made on first use: most tests never need one
            self._keys = [_new_key()]
        return self._keys

    def claims(self, family: Family) -> dict[str, Any]:
        """The identity claims of a family's person, as its scopes allow."""
        scopes = set(family.scope.split())
        email = family.user
        first, last = names_of(email)
        claims: dict[str, Any] = {"sub": str(person_uuid(email))}
        if "email" in scopes or not self.claims_follow_scopes:
            claims.update(email=email, email_verified=True)
        if "profile" in scopes or not self.claims_follow_scopes:
            name = " ".join(part for part in (first, last) if part)
            claims.update(name=name, given_name=first, family_name=last)
        return claims

    def id_token(self, family: Family, *, nonce: str | None) -> str:
        """A signed ID token for a family's person (or a broken one, when asked for)."""
        fault = self._faults.popleft() if self._faults else None
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer + ("/wrong" if fault == "wrong_issuer" else ""),
            "aud": "someone-else" if fault == "wrong_audience" else family.client_id,
            "iat": now,
            "exp": now + self.id_token_expires_in,
            **self.claims(family),
        }
        if fault == "expired":
            claims.update(iat=now - self.id_token_expires_in - 600, exp=now - 600)
        if nonce is not None and fault != "missing_nonce":
            claims["nonce"] = nonce + "-wrong" if fault == "wrong_nonce" else nonce
        if fault == "alg_none":
            header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            return f"{header}.{_b64url(json.dumps(claims).encode())}."
        key = self._signing_keys()[0]
        if fault == "unknown_key":
            if self._foreign is None:
                self._foreign = _new_key()
            key = self._foreign  # its kid is in no JWKS
        token = jwt.encode({"alg": "RS256", "kid": str(key.kid), "typ": "JWT"}, claims, key)
        if fault == "bad_signature":
            head, body, signature = token.split(".")
            flipped = "B" if signature[10] == "A" else "A"
            token = f"{head}.{body}.{signature[:10]}{flipped}{signature[11:]}"
        return token

    # -- endpoints -------------------------------------------------------------------------

    def configuration(self) -> Answer:
        """``GET {base_url}/.well-known/openid-configuration``: the discovery document."""
        base = self._core.origin + "/v1"
        with self._core.lock:
            self._core.calls["openid_configuration"] += 1
            issuer = self.issuer
        document = {
            "issuer": issuer,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/access_token",
            "userinfo_endpoint": base + "/userinfo",
            "jwks_uri": base + "/verification",
            "device_authorization_endpoint": base + "/device/authorize",
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
            ],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(_SCOPES),
            "claims_supported": list(_CLAIMS),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        }
        return json_answer(200, document, **{"Cache-Control": "max-age=3600"})

    def jwks(self) -> Answer:
        """``GET {base_url}/verification``: the public keys, as a JWK set."""
        with self._core.lock:
            self._core.calls["jwks"] += 1
            keys = dict(KeySet(list(self._signing_keys())).as_dict(private=False))
        return json_answer(200, keys, **{"Cache-Control": "max-age=3600"})

    def userinfo(self, authorization: str | None) -> Answer:
        """``GET {base_url}/userinfo``: the claims of a valid access token's person."""
        token = bearer_token(authorization)
        with self._core.lock:
            self._core.calls["userinfo"] += 1
            family = self._core.valid_access(token)
            if family is None:
                return unauthorized().noting(credential=presented(token))
            if family.kind not in ("integration", "personal") or "openid" not in (
                family.scope.split()
            ):
                return api_error(
                    403,
                    "The access token was not granted the openid scope.",
                    log_error="insufficient_scope",
                    **{"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'},
                ).noting(client_id=family.client_id, credential=presented(token))
            claims = self.claims(family)
        answer = json_answer(200, claims, **{"Cache-Control": "no-store"})
        return answer.noting(client_id=family.client_id, credential=presented(token))
