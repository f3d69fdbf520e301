"""Who a token belongs to: people, bots and Service Apps, and ``GET /v1/people/me``.

Organizations are e-mail domains here: every person of ``acme.example`` belongs to the
organization whose ID is :func:`org_id_of` ``("acme.example")``. IDs are Webex IDs
(base64 of ``ciscospark://us/KIND/UUID``, unpadded), derived from the names so they are
the same in every run.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...token import fingerprint
from .answers import Answer, api_error, bearer_token, json_answer, webex_id
from .state import Core, Family

__all__ = [
    "BOT_DOMAIN",
    "UNAUTHORIZED_MESSAGE",
    "names_of",
    "org_id_of",
    "people_me",
    "person",
    "person_uuid",
    "presented",
    "unauthorized",
]

#: The domain of a bot's email, as Webex gives bots (``name@webex.bot``).
BOT_DOMAIN = "webex.bot"

#: What Webex says to a request without a valid access token.
UNAUTHORIZED_MESSAGE = (
    "The request requires a valid access token set in the Authorization request header."
)


def person_uuid(email: str) -> uuid.UUID:
    """The stable UUID of the person (or bot) with this email."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "person:" + email.lower())


def org_id_of(email_or_domain: str) -> str:
    """The Webex organization ID of an email's domain (or of a domain)."""
    domain = email_or_domain.rpartition("@")[2] or "example.com"
    return webex_id("ORGANIZATION", str(uuid.uuid5(uuid.NAMESPACE_DNS, domain.lower())))


def names_of(email: str) -> tuple[str, str]:
    """(first name, last name) as the emulator derives them from an email's local part."""
    local = email.partition("@")[0] or email
    first, _, last = local.replace("_", ".").partition(".")
    return first.capitalize(), last.capitalize()


def person(family: Family) -> dict[str, Any]:
    """The ``/people/me`` answer for the owner of a token family, in Webex's shape."""
    common = {
        "phoneNumbers": [],
        "created": "2024-01-01T00:00:00.000Z",
        "lastModified": "2024-01-01T00:00:00.000Z",
        "status": "active",
    }
    if family.kind == "service_app":
        # A Service App acts as a machine account of the organization that authorized it.
        app_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"app:{family.client_id}:{family.org_id}")
        return {
            "id": webex_id("PEOPLE", str(app_uuid)),
            "emails": [],
            "displayName": family.user,
            "orgId": family.org_id,
            "type": "appuser",
            **common,
        }
    email = family.user
    first, last = names_of(email)
    if family.kind == "bot":
        display = family.user.partition("@")[0]
        return {
            "id": webex_id("PEOPLE", str(person_uuid(email))),
            "emails": [email],
            "displayName": display,
            "nickName": display,
            "orgId": family.org_id or org_id_of(email),
            "type": "bot",
            **common,
        }
    return {
        "id": webex_id("PEOPLE", str(person_uuid(email))),
        "emails": [email],
        "displayName": " ".join(part for part in (first, last) if part),
        "nickName": first,
        "firstName": first,
        "lastName": last,
        "orgId": org_id_of(email),
        "type": "person",
        **common,
    }


def unauthorized() -> Answer:
    """Webex's 401 for a missing, unknown, expired or revoked access token."""
    return api_error(
        401,
        UNAUTHORIZED_MESSAGE,
        log_error="unauthorized",
        **{"WWW-Authenticate": 'Bearer realm="webex"'},
    )


def presented(token: str | None) -> str | None:
    """The fingerprint of a credential for the request log, or None when none was sent."""
    return fingerprint(token) if token else None


def people_me(core: Core, authorization: str | None) -> Answer:
    """``GET /v1/people/me``: the owner of a valid bearer token, else 401."""
    token = bearer_token(authorization)
    with core.lock:
        core.calls["people_me"] += 1
        family = core.valid_access(token)
        if family is None:
            return unauthorized().noting(credential=presented(token))
        answer = json_answer(200, person(family))
        return answer.noting(client_id=family.client_id, credential=presented(token))
