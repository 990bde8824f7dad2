"""Clients (sync and async) and ASGI middleware for tesserad, Tessera's session server."""

from ._client import BROWSER_OPERATIONS, OPERATIONS, AsyncTesseraClient, TesseraClient
from ._cookies import DEFAULT_COOKIE_NAME
from ._csrf import CSRF_DATA_KEY, CsrfErrorCode
from ._errors import ErrorCode, TesseraError
from ._types import (
    ClientInfo,
    ClientView,
    ErrorBody,
    EventCount,
    ForwardAuthResult,
    Health,
    InvalidReason,
    Issued,
    OperationCount,
    ServerErrorCode,
    Session,
    SessionData,
    Stats,
    Validated,
)

__all__ = [
    "AsyncTesseraClient",
    "BROWSER_OPERATIONS",
    "CSRF_DATA_KEY",
    "ClientInfo",
    "ClientView",
    "CsrfErrorCode",
    "DEFAULT_COOKIE_NAME",
    "ErrorBody",
    "ErrorCode",
    "EventCount",
    "ForwardAuthResult",
    "Health",
    "InvalidReason",
    "Issued",
    "OPERATIONS",
    "OperationCount",
    "ServerErrorCode",
    "Session",
    "SessionData",
    "Stats",
    "TesseraClient",
    "TesseraError",
    "Validated",
]
