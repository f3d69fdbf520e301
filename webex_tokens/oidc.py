"""OpenID Connect ("Login with Webex"): the ID token of a login, verified before anything
is stored, and the person's claims.

When an integration asks for the ``openid`` scope, its authorization request carries a
fresh ``nonce`` and the token answer carries an ``id_token``: a JWT that Webex signs.
:class:`OpenIDProvider` verifies it with ``joserfc`` (the JOSE library of Authlib's
author, which Authlib itself moves to), in this order:

1. the discovery document ``{base_url}/.well-known/openid-configuration`` names the
   ``issuer`` and the ``jwks_uri`` (``{base_url}/verification`` when it names none); both
   are fetched once per client and kept;
2. the signature must verify against a key of that JWKS, with an asymmetric algorithm the
   discovery document allows (never ``none``, never a shared-secret HMAC); a key ID the
   kept JWKS does not know fetches the JWKS once more (Webex rotated its keys);
3. ``iss`` must be the discovery document's issuer, ``aud`` the client ID, ``exp`` in the
   future (a minute of clock skew allowed), and ``nonce`` the request's, when it sent one.

Any failure raises :class:`~webex_tokens.errors.IDTokenInvalid` saying which check failed
(never the token itself), and the caller stores nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet
from joserfc.jwt import ClaimsOption

from .errors import IDTokenInvalid, OAuthError
from .token_endpoint import PORTAL, RequestKind, TokenEndpoint

__all__ = [
    "DISCOVERY",
    "JWKS",
    "USERINFO",
    "OpenIDProvider",
    "asks_openid",
    "email_of",
]

log = logging.getLogger(__name__)

#: Algorithms an ID token may be signed with: asymmetric only.
_ALLOWED_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256")
#: Seconds of clock difference tolerated for ``exp`` and ``iat``.
_LEEWAY: Final = 60

#: ``GET {base_url}/.well-known/openid-configuration`` (idempotent).
DISCOVERY: Final = RequestKind(
    "OpenID discovery", "OpenID discovery endpoint", token_answer=False, resend_when_unknown=True
)
#: ``GET`` of the JWKS (idempotent).
JWKS: Final = RequestKind(
    "key lookup", "JWKS endpoint", token_answer=False, resend_when_unknown=True
)
#: ``GET {base_url}/userinfo`` (idempotent).
USERINFO: Final = RequestKind(
    "userinfo lookup", "userinfo endpoint", token_answer=False, resend_when_unknown=True
)


def asks_openid(scopes: tuple[str, ...] | list[str]) -> bool:
    """True when ``scopes`` include ``openid``: the login then has an ID token."""
    return "openid" in scopes


def email_of(claims: Mapping[str, Any]) -> str | None:
    """The email of verified ID-token claims, when they have a usable one."""
    email = claims.get("email")
    if (
        isinstance(email, str)
        and 0 < len(email) <= 320
        and email.isprintable()
        and "@" in email
        and not any(c.isspace() for c in email)
    ):
        return email
    return None


def _invalid(why: str) -> IDTokenInvalid:
    return IDTokenInvalid(
        f"the ID token from Webex is not valid ({why}), so nothing was stored; run the login "
        "again, and if it keeps failing check WEBEX_BASE_URL and the clock of this machine"
    )


class OpenIDProvider:
    """Webex as an OpenID provider, seen from one integration.

    Args:
        endpoint: the integration's :class:`~webex_tokens.token_endpoint.TokenEndpoint`.
        session: returns the session to send with (this thread's Authlib
            ``OAuth2Session``, untyped; sent ``withhold_token=True``).
        base_url: the Webex API base.
        client_id: the integration's client ID: the ``aud`` an ID token must carry.
        clock: seconds since the epoch, for ``exp``.
    """

    def __init__(
        self,
        endpoint: TokenEndpoint,
        session: Callable[[], Any],
        *,
        base_url: str,
        client_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._endpoint = endpoint
        self._session = session
        self.base_url = base_url
        self.client_id = client_id
        self._clock = clock
        self._lock = threading.Lock()
        self._configuration: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    def __repr__(self) -> str:
        return f"OpenIDProvider({self.base_url!r})"

    @property
    def discovery_url(self) -> str:
        """``{base_url}/.well-known/openid-configuration``."""
        return self.base_url + "/.well-known/openid-configuration"

    def _get(
        self, kind: RequestKind, url: str, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return self._endpoint.call(
            kind,
            lambda: self._session().get(
                url,
                headers={"Accept": "application/json", **(headers or {})},
                withhold_token=True,
                **self._endpoint.request_options(),
            ),
            url=url,
        )

    def configuration(self) -> dict[str, Any]:
        """The discovery document (fetched once).

        Raises:
            OAuthError: it has no usable ``issuer``.
            TokenEndpointError: it cannot be fetched.
        """
        with self._lock:
            if self._configuration is None:
                document = self._get(DISCOVERY, self.discovery_url)
                issuer = document.get("issuer")
                if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
                    raise OAuthError(
                        f"the OpenID discovery document {self.discovery_url} names no issuer, "
                        "so no ID token can be verified; check WEBEX_BASE_URL (it should be "
                        "https://webexapis.com/v1)"
                    )
                self._configuration = document
            return self._configuration

    @property
    def issuer(self) -> str:
        """The ``iss`` every ID token must carry (from the discovery document)."""
        return str(self.configuration()["issuer"])

    @property
    def jwks_uri(self) -> str:
        """Where the signing keys are: the discovery document's ``jwks_uri``, else
        ``{base_url}/verification``."""
        uri = self.configuration().get("jwks_uri")
        return uri if isinstance(uri, str) and uri else self.base_url + "/verification"

    @property
    def userinfo_url(self) -> str:
        """The discovery document's ``userinfo_endpoint``, else ``{base_url}/userinfo``."""
        uri = self.configuration().get("userinfo_endpoint")
        return uri if isinstance(uri, str) and uri else self.base_url + "/userinfo"

    def _algorithms(self) -> list[str]:
        offered = self.configuration().get("id_token_signing_alg_values_supported")
        if isinstance(offered, list):
            allowed = [alg for alg in offered if alg in _ALLOWED_ALGORITHMS]
            if allowed:
                return allowed
        return ["RS256"]

    def _key_set(self, *, again: bool = False) -> KeySet:
        with self._lock:
            keys = self._keys
        if keys is not None and not again:
            return keys
        document = self._get(JWKS, self.jwks_uri)
        try:
            fetched: KeySet = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise _invalid(f"the keys at {self.jwks_uri} cannot be read") from None
        with self._lock:
            self._keys = fetched
        return fetched

    def verify(self, id_token: str, *, nonce: str | None = None) -> dict[str, Any]:
        """The claims of ``id_token`` once its signature, issuer, audience, expiry and
        (when given) nonce are checked.

        Raises:
            IDTokenInvalid: a check failed; the message says which.
            TokenEndpointError: the discovery document or the keys cannot be fetched.
        """
        if not isinstance(id_token, str) or id_token.count(".") != 2 or len(id_token) > 16384:
            raise _invalid("it is not a signed JWT")
        algorithms = self._algorithms()
        issuer = self.issuer
        try:
            decoded = self._decode(id_token, algorithms)
        except UnsupportedAlgorithmError:
            raise _invalid(
                f"it is not signed with an algorithm allowed here ({algorithms})"
            ) from None
        except BadSignatureError:
            raise _invalid("its signature does not match Webex's keys") from None
        except JoseError as exc:
            raise _invalid(f"it cannot be read as a signed JWT: {exc.error}") from None
        options: dict[str, ClaimsOption] = {
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": self.client_id},
            "exp": {"essential": True},
            "sub": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(now=lambda: int(self._clock()), leeway=_LEEWAY, **options)
        claims = dict(decoded.claims)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _invalid("it has expired") from None
        except MissingClaimError as exc:
            raise _invalid(f"it has no {exc.claim} claim") from None
        except InvalidClaimError as exc:
            which = {"iss": "issuer", "aud": "audience"}.get(exc.claim, exc.claim)
            raise _invalid(f"its {which} is not the expected one") from None
        except JoseError as exc:
            raise _invalid(f"a claim is wrong: {exc.error}") from None
        audiences = claims.get("aud")
        if (
            isinstance(audiences, list)
            and len(audiences) > 1
            and claims.get("azp") != self.client_id
        ):
            raise _invalid("it names other audiences without this client as azp")
        iat = claims.get("iat")
        if isinstance(iat, int | float) and iat > self._clock() + _LEEWAY:
            raise _invalid("it was issued in the future")
        return claims

    def _decode(self, id_token: str, algorithms: list[str]) -> jwt.Token:
        try:
            return jwt.decode(id_token, self._key_set(), algorithms=algorithms)
        except InvalidKeyIdError:
            # A key ID the kept keys do not know: Webex may have rotated its keys.
            log.info("ID token signed with an unknown key: fetching the keys again")
        try:
            return jwt.decode(id_token, self._key_set(again=True), algorithms=algorithms)
        except InvalidKeyIdError:
            raise _invalid(f"it is signed with a key that is not among {self.jwks_uri}") from None

    def login_email(self, id_token: str | None, *, asked: bool, nonce: str | None) -> str | None:
        """The email of a login's ID token, verified first: required when ``openid`` was
        ``asked``, checked whenever present; None when it names no email.

        Raises:
            IDTokenInvalid: it is missing although asked for, or failed verification.
            TokenEndpointError: the discovery document or the keys cannot be fetched.
        """
        if id_token is None:
            if asked:
                raise IDTokenInvalid(
                    "Webex answered the login without an ID token although the openid scope "
                    "was asked for, so nothing was stored; check that the integration has the "
                    f"openid scope at {PORTAL}, then run the login again"
                )
            return None
        return email_of(self.verify(id_token, nonce=nonce))

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """The claims of the person ``access_token`` belongs to (``userinfo``).

        Raises:
            OAuthError: Webex refused the token (expired, or without ``openid``).
            TokenEndpointError: Webex could not be reached or kept failing.
        """
        url = self.userinfo_url
        answer = self._get(USERINFO, url, {"Authorization": f"Bearer {access_token}"})
        if "sub" not in answer:
            raise OAuthError(
                f"{url} did not answer the person's claims; the token may be expired or lack "
                "the openid scope: log in again with openid in WEBEX_SCOPES"
            )
        return answer
