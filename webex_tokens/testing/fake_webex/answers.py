"""What FakeWebex answers, and how it reads what it is sent: the HTTP shapes of Webex.

Every endpoint builds an :class:`Answer`. Token endpoints answer OAuth2 errors with the
fields Webex adds (:func:`oauth_error`); the REST API (``/people/me``, Service Apps)
answers Webex's own error shape (:func:`api_error`); pages a browser sees are small HTML
documents with every outside value escaped (:func:`html_page`).

An answer also carries :attr:`Answer.log`: what the request log may say about the
request (client ID, grant type, error code, a fingerprint of the credential presented).
Only values the emulator chose or recognised go there, never a secret.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import html
import json
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = [
    "ERROR_HEADER",
    "Answer",
    "api_error",
    "basic_credentials",
    "bearer_token",
    "error_page",
    "form_fields",
    "html_page",
    "is_form",
    "json_answer",
    "normal_webex_id",
    "oauth_error",
    "s256",
    "same",
    "single_values",
    "tracking_id",
    "webex_id",
    "with_query",
]

#: The header naming the error of an HTML error page, for :meth:`FakeWebex.approve`.
ERROR_HEADER = "X-Fake-Webex-Error"

_FORM = "application/x-www-form-urlencoded"
_PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    # No script, nothing fetched; inline style only. No form-action: a consent form's
    # redirect to the app's callback must not be blocked.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}


@dataclasses.dataclass
class Answer:
    """One HTTP answer: status, body, headers, and what the request log may say of it."""

    status: int
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    log: dict[str, str] = dataclasses.field(default_factory=dict)

    def noting(self, **fields: str | None) -> Answer:
        """Add safe facts for the request log (None values are left out); returns self."""
        self.log.update({name: value for name, value in fields.items() if value is not None})
        return self


def tracking_id() -> str:
    """A fresh Webex-style tracking ID (``ROUTER_...``)."""
    return "ROUTER_" + uuid.uuid4().hex.upper()


def json_answer(status: int, payload: dict[str, Any], **headers: str) -> Answer:
    """A JSON answer with Webex's content type."""
    body = json.dumps(payload).encode("utf-8")
    return Answer(status, body, {"Content-Type": "application/json;charset=UTF-8", **headers})


def oauth_error(status: int, error: str, description: str, **headers: str) -> Answer:
    """A token-endpoint error: the OAuth2 fields plus the ones Webex adds."""
    return json_answer(
        status,
        {
            "error": error,
            "error_description": description,
            "message": description,
            "errors": [{"description": description}],
            "trackingId": tracking_id(),
        },
        **headers,
    ).noting(error=error)


def api_error(status: int, message: str, *, log_error: str, **headers: str) -> Answer:
    """An error of Webex's REST API: ``message``, ``errors`` and ``trackingId``.

    ``log_error`` is the short code the request log shows (``unauthorized``, ...).
    """
    return json_answer(
        status,
        {"message": message, "errors": [{"description": message}], "trackingId": tracking_id()},
        **headers,
    ).noting(error=log_error)


def html_page(status: int, title: str, body_html: str, **headers: str) -> Answer:
    """A small HTML page; ``body_html`` must already be escaped."""
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>{body_html}</body></html>"
    )
    return Answer(status, text.encode("utf-8"), {**_PAGE_HEADERS, **headers})


def error_page(status: int, error: str, description: str) -> Answer:
    """An HTML error page, as Webex shows in the browser for a request it cannot redirect."""
    body = f"<h1>{html.escape(error)}</h1><p>{html.escape(description)}</p>"
    return html_page(status, "Webex", body, **{ERROR_HEADER: error}).noting(error=error)


def with_query(uri: str, fields: dict[str, str]) -> str:
    """``uri`` with ``fields`` added to its query (keeping a query it already has)."""
    separator = "&" if urlsplit(uri).query else "?"
    return uri + separator + urlencode(fields)


def single_values(query: str) -> dict[str, str] | None:
    """Query or form fields, one value each; None when a field is repeated."""
    parsed = parse_qs(query, keep_blank_values=True)
    if any(len(values) != 1 for values in parsed.values()):
        return None
    return {name: values[0] for name, values in parsed.items()}


def is_form(content_type: str | None) -> bool:
    """Whether a Content-Type header says ``application/x-www-form-urlencoded``."""
    return (content_type or "").partition(";")[0].strip().lower() == _FORM


def form_fields(content_type: str | None, body: bytes) -> dict[str, str] | None:
    """The fields of a form-encoded body, one value each; None if it is not one."""
    if not is_form(content_type):
        return None
    try:
        return single_values(body.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same(given: str, expected: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def basic_credentials(header: str | None) -> tuple[str, str] | bool | None:
    """(client_id, secret) from an HTTP Basic header; None if absent; False if malformed."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return False
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before encoding.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def webex_id(kind: str, value: str) -> str:
    """A Webex ID: base64 of ``ciscospark://us/KIND/VALUE``, without padding, as Webex sends."""
    raw = f"ciscospark://us/{kind}/{value}".encode()
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def normal_webex_id(text: str) -> str | None:
    """What a Webex ID says (``ciscospark://us/KIND/VALUE``), or None if it is not one.

    Accepted as Webex IDs are written by hand and by libraries: with or without ``=``
    padding, in the standard or the URL-safe base64 alphabet, percent-encoded or not.
    """
    value = unquote(text).strip().rstrip("=").replace("-", "+").replace("_", "/")
    if not value or len(value) > 512:
        return None
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        said = decoded.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return said if said.startswith("ciscospark://") else None
