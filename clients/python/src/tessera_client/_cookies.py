"""The session cookie, read and written as tessera-axum does
(``crates/tessera-axum/src/cookies.rs``): ``Secure; HttpOnly; SameSite=Lax;
Path=/``, no ``Domain``, no ``Max-Age`` (a browser-session cookie; the server
enforces the timeouts). A request whose session cookie is duplicated,
oversized or not token text carries no credential and is anonymous.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal, NamedTuple, Optional

MAX_COOKIE_BYTES = 4096
DEFAULT_COOKIE_NAME = "__Host-tessera"

SameSite = Literal["lax", "strict"]

_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_CREDENTIAL = re.compile(r"^[A-Za-z0-9_.-]+$")


class CookieSettings(NamedTuple):
    name: str
    secure: bool
    same_site: SameSite


class Presented(NamedTuple):
    """What a request presented: ``kind`` is ``nothing``, ``credential`` or ``unreadable``."""

    kind: Literal["nothing", "credential", "unreadable"]
    value: Optional[str] = None


def check_cookie_settings(settings: CookieSettings) -> None:
    """Refuses settings a browser would not honour (as the Rust layer's ``build()``)."""
    if not _COOKIE_NAME.match(settings.name):
        raise ValueError(
            f"`{settings.name}` is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"
        )
    if settings.same_site not in ("lax", "strict"):
        raise ValueError("same_site must be 'lax' or 'strict'")
    for prefix in ("__Host-", "__Secure-"):
        if settings.name.startswith(prefix) and not settings.secure:
            raise ValueError(
                f"the cookie name `{settings.name}` has the {prefix} prefix, which requires the Secure "
                "attribute; keep secure=True or choose another name"
            )


def read_session_cookie(headers: Iterable[str], name: str) -> Presented:
    """The session cookie among the request's ``Cookie`` header values."""
    count = 0
    found = ""
    for header in headers:
        for pair in header.split(";"):
            key, eq, value = pair.partition("=")
            if eq and key.strip() == name:
                count += 1
                found = value.strip()
    if count == 0:
        return Presented("nothing")
    if count > 1:
        return Presented("unreadable")
    capacity = MAX_COOKIE_BYTES - len(name.encode()) - 1
    if len(found) > capacity or not _CREDENTIAL.match(found):
        return Presented("unreadable")
    return Presented("credential", found)


def _attributes(settings: CookieSettings) -> str:
    same_site = "Strict" if settings.same_site == "strict" else "Lax"
    secure = "; Secure" if settings.secure else ""
    return f"; HttpOnly; SameSite={same_site}{secure}; Path=/"


def set_cookie(settings: CookieSettings, token: str) -> str:
    """``Set-Cookie`` storing ``token``."""
    if len(settings.name) + 1 + len(token) > MAX_COOKIE_BYTES or not _CREDENTIAL.match(token):
        raise ValueError("the token cannot be written as a cookie")
    return f"{settings.name}={token}{_attributes(settings)}"


def removal_cookie(settings: CookieSettings) -> str:
    """``Set-Cookie`` removing the session cookie."""
    return f"{settings.name}={_attributes(settings)}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
