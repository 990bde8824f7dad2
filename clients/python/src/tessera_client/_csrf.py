"""CSRF protection as in tessera-axum (``crates/tessera-axum/src/csrf.rs``).

A 32-byte secret per session, kept in the session data; tokens handed to
pages are ``base64url(mask ‖ mask ⊕ secret)`` with a fresh random mask each
time (no two responses carry the same bytes: BREACH learns nothing); unsafe
requests must also not come from another site according to
``Sec-Fetch-Site``, or failing that ``Origin``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from typing import Literal, Mapping, Optional, Sequence

SECRET_LEN = 32

#: The session data key of the secret (the same as the Rust layer's).
CSRF_DATA_KEY = "__tessera_csrf"

#: Why an unsafe request was refused (403, sent as ``Tessera-Error``).
CsrfErrorCode = Literal["csrf_cross_site", "csrf_missing_token", "csrf_no_session", "csrf_invalid_token"]

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def is_unsafe(method: str) -> bool:
    """Whether requests with this method change state and need a token."""
    return method.upper() not in ("GET", "HEAD", "OPTIONS", "TRACE")


def new_secret() -> str:
    """A fresh random secret, as stored in the session data."""
    return base64.urlsafe_b64encode(secrets.token_bytes(SECRET_LEN)).rstrip(b"=").decode()


def _decode(text: str) -> Optional[bytes]:
    """Strict base64url without padding, canonical trailing bits (as the Rust decoder)."""
    if not _BASE64URL.match(text) or len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        return None
    return raw


def _decode_secret(secret: str) -> Optional[bytes]:
    raw = _decode(secret)
    return raw if raw is not None and len(raw) == SECRET_LEN else None


def mask(secret: str) -> str:
    """A masked token for ``secret``: different on every call."""
    key = _decode_secret(secret) or bytes(SECRET_LEN)
    pad = secrets.token_bytes(SECRET_LEN)
    token = pad + bytes(a ^ b for a, b in zip(key, pad))
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def verify(secret: str, presented: str) -> bool:
    """Whether a presented masked token unmasks to ``secret`` (constant time)."""
    key = _decode_secret(secret)
    if key is None or len(presented) > 128:
        return False
    token = _decode(presented.strip())
    if token is None or len(token) != 2 * SECRET_LEN:
        return False
    unmasked = bytes(a ^ b for a, b in zip(token[:SECRET_LEN], token[SECRET_LEN:]))
    return hmac.compare_digest(unmasked, key)


def cross_site_evidence(headers: Mapping[str, str], trusted: Sequence[str]) -> Optional[str]:
    """The evidence that a request is cross-site, or ``None`` when it may proceed.

    ``headers`` has lower-case names; ``trusted`` are extra origins
    (``scheme://host[:port]``) allowed to post.
    """
    origin = headers.get("origin")
    origin = origin.strip() if origin is not None else None
    trusted_origin = origin is not None and origin in trusted
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site in ("same-origin", "none") or trusted_origin:
            return None
        return f"Sec-Fetch-Site: {site}"
    # Neither header: an older browser or a non-browser client; the token alone decides.
    if origin is None:
        return None
    authority = origin.split("://", 1)[1] if "://" in origin else None
    if (authority is not None and authority == headers.get("host")) or trusted_origin:
        return None
    return f"Origin: {origin}"


def csrf_message(code: CsrfErrorCode, *, header: str, field: str, evidence: str = "") -> str:
    """The message of each refusal (the Rust layer's wording)."""
    if code == "csrf_cross_site":
        return f"cross-site request refused: {evidence}"
    if code == "csrf_missing_token":
        return f"the request carries no CSRF token (send it in the {header} header or the {field} form field)"
    if code == "csrf_no_session":
        return "the request has no session to check its CSRF token against; load the form again"
    return "the CSRF token does not match this session; load the form again"
