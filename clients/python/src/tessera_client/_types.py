"""The API's bodies as typed dicts, named as in tesserad's OpenAPI document.

``tests/test_openapi_drift.py`` compares every one of them with the live
``GET /openapi.json``: a field added, removed or retyped by the server
fails there.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, TypedDict

#: Session data: a JSON object.
SessionData = Dict[str, Any]

#: The error codes tesserad sends (``ErrorCode`` in the document).
ServerErrorCode = Literal[
    "unauthorized",
    "forbidden",
    "rate_limited",
    "invalid_session",
    "version_conflict",
    "invalid_request",
    "payload_too_large",
    "not_found",
    "store_unavailable",
]

#: Why a session is invalid (``Reason`` in the document).
InvalidReason = Literal[
    "malformed",
    "unknown",
    "expired_idle",
    "expired_absolute",
    "revoked",
    "reused",
    "binding_mismatch",
    "device_bound",
]


class ClientInfo(TypedDict, total=False):
    """``ClientBody``: the client a request is made for."""

    ip: Optional[str]
    user_agent: Optional[str]


class ClientView(TypedDict):
    """``ClientView``: the client as a session shows it."""

    ip: Optional[str]
    user_agent: Optional[str]


class Session(TypedDict):
    """``SessionView``: a session; times are RFC 3339 in UTC.

    The server sends every field (``None`` where there is no value).
    """

    id: str
    subject: Optional[str]
    auth_level: int
    authenticated_at: Optional[str]
    data: Dict[str, Any]
    created_at: str
    last_seen_at: str
    idle_expires_at: str
    absolute_expires_at: str
    version: int
    client: Optional[ClientView]


class Issued(TypedDict):
    """``IssuedResponse``: a session with a newly issued token."""

    token: str
    session: Session


class _ValidatedRequired(TypedDict):
    session: Session


class Validated(_ValidatedRequired, total=False):
    """``ValidateResponse``: ``token`` is present when the token was renewed."""

    token: Optional[str]


class OperationCount(TypedDict):
    """``OperationCount``."""

    operation: str
    outcome: str
    count: int


class EventCount(TypedDict):
    """``EventCount``."""

    kind: str
    count: int


class Stats(TypedDict):
    """``StatsResponse``: what the server has done since it started."""

    version: str
    store: str
    uptime_s: int
    store_records: Optional[int]
    operations: List[OperationCount]
    events: List[EventCount]


class Health(TypedDict):
    """``HealthResponse``."""

    status: str


class _ErrorBodyRequired(TypedDict):
    error: ServerErrorCode
    message: str


class ErrorBody(_ErrorBodyRequired, total=False):
    """``ErrorBody``: ``{error, message}``, plus ``reason`` or ``current_version``."""

    reason: Optional[InvalidReason]
    current_version: Optional[int]


class ForwardAuthResult(TypedDict, total=False):
    """What ``GET /v1/auth`` said: the subject, the session id, and a renewed cookie if any."""

    subject: str
    session_id: str
    set_cookie: str
