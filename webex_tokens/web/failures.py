"""What the log may say about a failed code exchange: the library's own words only.

The token endpoint's error text (``error_description``, or a proxy's page) is upstream
text: an endpoint that quotes the request back would put the authorization code, the
PKCE verifier or the client secret into it. So the web routes never show it to the
browser (which gets a generic page) and log only what identifies the failure without
quoting anybody: the HTTP status, the OAuth error code when it is a plain code, and the
kind of error.
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import CallbackError, OAuthError, RedirectURIMismatch, TokenEndpointError

__all__ = ["describe_failure"]

#: An OAuth ``error`` code as the RFCs spell them; anything else is not repeated.
_ERROR_CODE: Final = re.compile(r"[a-z0-9_.-]{1,64}")


def describe_failure(exc: OAuthError, redirect_uri: str) -> str:
    """A log line's worth about ``exc``, raised by the code exchange, quoting no upstream text.

    Args:
        exc: what ``exchange_code`` raised.
        redirect_uri: the integration's redirect URI (named when Webex refused it).
    """
    if isinstance(exc, RedirectURIMismatch):
        return (
            f"Webex refused the redirect URI {redirect_uri}: it must match a redirect URI "
            "registered with the integration exactly"
        )
    if isinstance(exc, TokenEndpointError):
        error = exc.error
        code = error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else None
        status = f"HTTP {exc.status}" if exc.status is not None else "no answer"
        return f"the token endpoint failed: {status}, error {code or 'not given'}"
    if type(exc) in (OAuthError, CallbackError):  # raised with the library's own text
        return str(exc)
    return f"{type(exc).__name__} (details withheld: they may quote upstream text)"
