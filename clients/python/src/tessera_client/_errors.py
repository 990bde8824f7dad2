"""The one error class of the clients and the middleware."""

from __future__ import annotations

from typing import Literal, Optional, Union

from ._types import InvalidReason, ServerErrorCode

#: Every code a :class:`TesseraError` may carry: the server's, and three the
#: client makes: ``server_unreachable`` (503: no answer from tesserad; fail
#: closed as for ``store_unavailable``), ``unexpected_response`` (502: an
#: answer that is not tesserad's) and ``not_authenticated`` (401: a
#: middleware operation that needs a signed-in session was called without one).
ErrorCode = Union[ServerErrorCode, Literal["server_unreachable", "unexpected_response", "not_authenticated"]]


class TesseraError(Exception):
    """A failed call: ``error`` (the code), ``message``, ``status`` (HTTP),
    ``reason`` (``invalid_session`` only) and ``current_version``
    (``version_conflict`` only)."""

    def __init__(
        self,
        error: ErrorCode,
        message: str,
        status: int,
        *,
        reason: Optional[InvalidReason] = None,
        current_version: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.error: ErrorCode = error
        self.message = message
        self.status = status
        self.reason: Optional[InvalidReason] = reason
        self.current_version = current_version

    def __repr__(self) -> str:
        extra = ""
        if self.reason is not None:
            extra += f", reason={self.reason!r}"
        if self.current_version is not None:
            extra += f", current_version={self.current_version}"
        return f"TesseraError({self.error!r}, {self.message!r}, status={self.status}{extra})"
