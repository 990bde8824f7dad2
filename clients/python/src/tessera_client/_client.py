"""Sync and async clients for tesserad's HTTP API.

Both clients describe each call the same way (an :class:`_Call`: method,
path, body, expected status, how to read the answer) and differ only in how
they send it, so that they cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, FrozenSet, Generic, List, Mapping, Optional, TypeVar, Union
from urllib.parse import quote, unquote

import httpx

from ._errors import TesseraError
from ._types import (
    ClientInfo,
    ForwardAuthResult,
    Health,
    Issued,
    Session,
    SessionData,
    Stats,
    Validated,
)

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
#: tesserad refuses larger bodies before reading them (and may reset the
#: connection while a client still writes): they are refused here instead.
DEFAULT_MAX_BODY_BYTES = 256 * 1024

#: Operations of the OpenAPI document that browsers reach through the
#: proxy (device-bound sessions), with no client method.
BROWSER_OPERATIONS: FrozenSet[str] = frozenset({"dbsc_register", "dbsc_refresh"})

#: Which client method serves each other operation id of the OpenAPI document.
OPERATIONS: Dict[str, str] = {
    "create": "create",
    "validate": "validate",
    "update": "update",
    "login": "login",
    "rotate": "rotate",
    "logout": "logout",
    "get_session": "get_session",
    "revoke_session": "revoke_session",
    "list_subject_sessions": "list_subject_sessions",
    "revoke_subject_sessions": "revoke_subject_sessions",
    "revoke_all": "revoke_all",
    "stats": "stats",
    "forward_auth": "forward_auth",
    "healthz": "healthz",
    "readyz": "readyz",
    "metrics": "metrics",
    "openapi_json": "openapi",
}


class _Call(Generic[T]):
    """One API call: what to send and how to read the answer."""

    __slots__ = ("method", "path", "body", "expected", "read", "authorized", "headers", "recover")

    def __init__(
        self,
        method: str,
        path: str,
        expected: int,
        read: Callable[[httpx.Response], T],
        *,
        body: Optional[Mapping[str, Any]] = None,
        authorized: bool = True,
        headers: Optional[Dict[str, str]] = None,
        recover: Optional[Callable[[TesseraError], T]] = None,
    ) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.expected = expected
        self.read = read
        self.authorized = authorized
        self.headers = headers
        self.recover = recover


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise TesseraError(
            "unexpected_response", f"{response.request.method} {response.request.url.path}: the answer is not JSON", 502
        ) from None


def _field(name: str) -> Callable[[httpx.Response], Any]:
    return lambda response: _json(response)[name]


def _nothing(_: httpx.Response) -> None:
    return None


def _error(response: httpx.Response) -> TesseraError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("message"), str):
        version = body.get("current_version")
        return TesseraError(
            body["error"],
            body["message"],
            response.status_code,
            reason=body.get("reason"),
            current_version=version if isinstance(version, int) else None,
        )
    return TesseraError(
        "unexpected_response",
        f"tesserad answered {response.status_code} with a body that is not an API error",
        response.status_code if response.status_code >= 400 else 502,
    )


def _segment(text: str) -> str:
    """A path segment, every reserved byte and the dots percent-encoded.

    HTTP libraries resolve a literal ``..`` segment away (httpx and any
    WHATWG URL parser turn ``/v1/subjects/../sessions`` into
    ``/v1/sessions``); ``%2E%2E`` reaches the server as the subject ``..``.
    """
    return quote(text, safe="").replace(".", "%2E")


def _subject(subject: str) -> str:
    if subject == "":
        raise TesseraError("invalid_request", "the subject must not be empty", 400)
    return _segment(subject)


def _drop_none(body: Mapping[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _on_not_found(value: T) -> Callable[[TesseraError], T]:
    def recover(error: TesseraError) -> T:
        if error.error == "not_found":
            return value
        raise error

    return recover


def _forward_auth_result(response: httpx.Response) -> Optional[ForwardAuthResult]:
    if response.status_code != 200:
        error = _error(response)
        if response.status_code == 401 and error.error != "store_unavailable":
            return None
        raise error
    subject = response.headers.get("tessera-subject")
    session_id = response.headers.get("tessera-session-id")
    if subject is None or session_id is None:
        raise TesseraError("unexpected_response", "forward-auth answered 200 without the subject headers", 502)
    result: ForwardAuthResult = {"subject": unquote(subject), "session_id": session_id}
    set_cookie = response.headers.get("set-cookie")
    if set_cookie is not None:
        result["set_cookie"] = set_cookie
    return result


class _Calls:
    """The calls of every endpoint (shared by both clients)."""

    @staticmethod
    def create(
        subject: Optional[str],
        data: Optional[SessionData],
        client: Optional[ClientInfo],
        idle_timeout_s: Optional[int],
        absolute_timeout_s: Optional[int],
    ) -> _Call[Issued]:
        body = _drop_none(
            {
                "subject": subject,
                "data": data,
                "client": client,
                "idle_timeout_s": idle_timeout_s,
                "absolute_timeout_s": absolute_timeout_s,
            }
        )
        return _Call("POST", "/v1/sessions", 201, _json, body=body)

    @staticmethod
    def validate(token: str, client: Optional[ClientInfo]) -> _Call[Validated]:
        return _Call("POST", "/v1/sessions/validate", 200, _json, body=_drop_none({"token": token, "client": client}))

    @staticmethod
    def update(
        token: str, data: Optional[SessionData], patch: Optional[SessionData], version: Optional[int]
    ) -> _Call[Session]:
        body = _drop_none({"token": token, "data": data, "patch": patch, "version": version})
        return _Call("POST", "/v1/sessions/update", 200, _field("session"), body=body)

    @staticmethod
    def login(
        subject: str,
        token: Optional[str],
        auth_level: Optional[int],
        data: Optional[SessionData],
        client: Optional[ClientInfo],
    ) -> _Call[Issued]:
        body = _drop_none(
            {"token": token, "subject": subject, "auth_level": auth_level, "data": data, "client": client}
        )
        return _Call("POST", "/v1/sessions/login", 200, _json, body=body)

    @staticmethod
    def rotate(token: str) -> _Call[Issued]:
        return _Call("POST", "/v1/sessions/rotate", 200, _json, body={"token": token})

    @staticmethod
    def logout(token: str) -> _Call[None]:
        return _Call("POST", "/v1/sessions/logout", 204, _nothing, body={"token": token})

    @staticmethod
    def get_session(session_id: str) -> _Call[Optional[Session]]:
        return _Call(
            "GET", f"/v1/sessions/{_segment(session_id)}", 200, _field("session"), recover=_on_not_found(None)
        )

    @staticmethod
    def revoke_session(session_id: str) -> _Call[bool]:
        return _Call(
            "DELETE",
            f"/v1/sessions/{_segment(session_id)}",
            204,
            lambda _: True,
            recover=_on_not_found(False),
        )

    @staticmethod
    def list_subject_sessions(subject: str) -> _Call[List[Session]]:
        return _Call("GET", f"/v1/subjects/{_subject(subject)}/sessions", 200, _field("sessions"))

    @staticmethod
    def revoke_subject_sessions(subject: str, except_id: Optional[str]) -> _Call[int]:
        query = "" if except_id is None else f"?except={quote(except_id, safe='')}"
        return _Call("DELETE", f"/v1/subjects/{_subject(subject)}/sessions{query}", 200, _field("revoked"))

    @staticmethod
    def revoke_all() -> _Call[int]:
        return _Call("POST", "/v1/admin/revoke-all", 200, _field("epoch"))

    @staticmethod
    def stats() -> _Call[Stats]:
        return _Call("GET", "/v1/stats", 200, _json)

    @staticmethod
    def forward_auth(
        cookie: Optional[str], user_agent: Optional[str], real_ip: Optional[str]
    ) -> _Call[Optional[ForwardAuthResult]]:
        headers = _drop_none({"cookie": cookie, "user-agent": user_agent, "x-real-ip": real_ip})
        # Every status is read by _forward_auth_result.
        return _Call("GET", "/v1/auth", -1, _forward_auth_result, authorized=False, headers=headers)

    @staticmethod
    def healthz() -> _Call[Health]:
        return _Call("GET", "/healthz", 200, _json, authorized=False)

    @staticmethod
    def readyz() -> _Call[Health]:
        return _Call("GET", "/readyz", 200, _json, authorized=False)

    @staticmethod
    def metrics() -> _Call[str]:
        return _Call("GET", "/metrics", 200, lambda response: response.text, authorized=False)

    @staticmethod
    def openapi() -> _Call[Dict[str, Any]]:
        return _Call("GET", "/openapi.json", 200, _json, authorized=False)


class _Base:
    def __init__(self, base_url: str, api_key: str, max_body_bytes: int) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be http:// or https://, got {base_url!r}")
        if not api_key:
            raise ValueError("api_key is required")
        self._base = base_url.rstrip("/")
        self._authorization = f"Bearer {api_key}"
        self._max_body_bytes = max_body_bytes

    def _request(self, call: _Call[Any]) -> Dict[str, Any]:
        headers: Dict[str, str] = {"accept": "application/json"}
        if call.headers:
            headers.update(call.headers)
        if call.authorized:
            headers["authorization"] = self._authorization
        content: Optional[bytes] = None
        if call.body is not None:
            content = json.dumps(call.body, separators=(",", ":"), ensure_ascii=False).encode()
            if len(content) > self._max_body_bytes:
                raise TesseraError(
                    "payload_too_large",
                    f"the request body is {len(content)} bytes, over the limit of {self._max_body_bytes}",
                    413,
                )
            headers["content-type"] = "application/json"
        return {"method": call.method, "url": self._base + call.path, "headers": headers, "content": content}

    @staticmethod
    def _read(call: _Call[T], response: httpx.Response) -> T:
        if call.expected != -1 and response.status_code != call.expected:
            error = _error(response)
            if call.recover is not None:
                return call.recover(error)
            raise error
        return call.read(response)

    @staticmethod
    def _unreachable(call: _Call[Any], error: Exception) -> TesseraError:
        return TesseraError("server_unreachable", f"{call.method} {call.path}: {error}", 503)


class TesseraClient(_Base):
    """A blocking client for tesserad: one method per endpoint, every failure
    a :class:`TesseraError`. Connections are kept alive; share one client.

    >>> client = TesseraClient("http://127.0.0.1:7450", api_key="tsk_…")  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        verify: Union[bool, str] = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        super().__init__(base_url, api_key, max_body_bytes)
        self._http = httpx.Client(timeout=timeout, verify=verify, transport=transport)

    def close(self) -> None:
        """Closes the kept-alive connections."""
        self._http.close()

    def __enter__(self) -> "TesseraClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, call: _Call[T]) -> T:
        request = self._request(call)
        try:
            response = self._http.request(**request)
        except httpx.TransportError as error:
            raise self._unreachable(call, error) from error
        return self._read(call, response)

    # ----- sessions -----------------------------------------------------------

    def create(
        self,
        *,
        subject: Optional[str] = None,
        data: Optional[SessionData] = None,
        client: Optional[ClientInfo] = None,
        idle_timeout_s: Optional[int] = None,
        absolute_timeout_s: Optional[int] = None,
    ) -> Issued:
        """``POST /v1/sessions``: a new session and its first token."""
        return self._send(_Calls.create(subject, data, client, idle_timeout_s, absolute_timeout_s))

    def validate(self, token: str, *, client: Optional[ClientInfo] = None) -> Validated:
        """``POST /v1/sessions/validate``. A ``token`` in the result means the
        token was renewed: hand the new one to the client."""
        return self._send(_Calls.validate(token, client))

    def update(
        self,
        token: str,
        *,
        data: Optional[SessionData] = None,
        patch: Optional[SessionData] = None,
        version: Optional[int] = None,
    ) -> Session:
        """``POST /v1/sessions/update``: ``data`` replaces, ``patch`` merges
        (RFC 7396); with ``version``, only at that version (else
        ``version_conflict`` with ``current_version``)."""
        return self._send(_Calls.update(token, data, patch, version))

    def login(
        self,
        subject: str,
        *,
        token: Optional[str] = None,
        auth_level: Optional[int] = None,
        data: Optional[SessionData] = None,
        client: Optional[ClientInfo] = None,
    ) -> Issued:
        """``POST /v1/sessions/login``: always a new token; ``token`` (the
        current session's) is dead at once."""
        return self._send(_Calls.login(subject, token, auth_level, data, client))

    def rotate(self, token: str) -> Issued:
        """``POST /v1/sessions/rotate``: a new token for the same session."""
        return self._send(_Calls.rotate(token))

    def logout(self, token: str) -> None:
        """``POST /v1/sessions/logout`` (unknown tokens are fine)."""
        self._send(_Calls.logout(token))

    # ----- admin --------------------------------------------------------------

    def get_session(self, session_id: str) -> Optional[Session]:
        """``GET /v1/sessions/{id}``; ``None`` when no valid session has this id."""
        return self._send(_Calls.get_session(session_id))

    def revoke_session(self, session_id: str) -> bool:
        """``DELETE /v1/sessions/{id}``; ``False`` when there was no such session."""
        return self._send(_Calls.revoke_session(session_id))

    def list_subject_sessions(self, subject: str) -> List[Session]:
        """``GET /v1/subjects/{subject}/sessions``, oldest first."""
        return self._send(_Calls.list_subject_sessions(subject))

    def revoke_subject_sessions(self, subject: str, *, except_id: Optional[str] = None) -> int:
        """``DELETE /v1/subjects/{subject}/sessions``: how many sessions ended."""
        return self._send(_Calls.revoke_subject_sessions(subject, except_id))

    def revoke_all(self) -> int:
        """``POST /v1/admin/revoke-all``: the new global epoch."""
        return self._send(_Calls.revoke_all())

    def stats(self) -> Stats:
        """``GET /v1/stats``."""
        return self._send(_Calls.stats())

    # ----- forward-auth and operations ----------------------------------------

    def forward_auth(
        self, *, cookie: Optional[str] = None, user_agent: Optional[str] = None, real_ip: Optional[str] = None
    ) -> Optional[ForwardAuthResult]:
        """``GET /v1/auth`` as a proxy calls it: ``None`` when the cookie gives
        no signed-in session; a store outage raises ``store_unavailable``."""
        return self._send(_Calls.forward_auth(cookie, user_agent, real_ip))

    def healthz(self) -> Health:
        """``GET /healthz``."""
        return self._send(_Calls.healthz())

    def readyz(self) -> Health:
        """``GET /readyz`` (``store_unavailable`` when the store does not answer)."""
        return self._send(_Calls.readyz())

    def metrics(self) -> str:
        """``GET /metrics`` (Prometheus text)."""
        return self._send(_Calls.metrics())

    def openapi(self) -> Dict[str, Any]:
        """``GET /openapi.json``."""
        return self._send(_Calls.openapi())


class AsyncTesseraClient(_Base):
    """The asyncio (anyio) twin of :class:`TesseraClient`: the same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        verify: Union[bool, str] = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        super().__init__(base_url, api_key, max_body_bytes)
        self._http = httpx.AsyncClient(timeout=timeout, verify=verify, transport=transport)

    async def aclose(self) -> None:
        """Closes the kept-alive connections."""
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncTesseraClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _send(self, call: _Call[T]) -> T:
        request = self._request(call)
        try:
            response = await self._http.request(**request)
        except httpx.TransportError as error:
            raise self._unreachable(call, error) from error
        return self._read(call, response)

    async def create(
        self,
        *,
        subject: Optional[str] = None,
        data: Optional[SessionData] = None,
        client: Optional[ClientInfo] = None,
        idle_timeout_s: Optional[int] = None,
        absolute_timeout_s: Optional[int] = None,
    ) -> Issued:
        """See :meth:`TesseraClient.create`."""
        return await self._send(_Calls.create(subject, data, client, idle_timeout_s, absolute_timeout_s))

    async def validate(self, token: str, *, client: Optional[ClientInfo] = None) -> Validated:
        """See :meth:`TesseraClient.validate`."""
        return await self._send(_Calls.validate(token, client))

    async def update(
        self,
        token: str,
        *,
        data: Optional[SessionData] = None,
        patch: Optional[SessionData] = None,
        version: Optional[int] = None,
    ) -> Session:
        """See :meth:`TesseraClient.update`."""
        return await self._send(_Calls.update(token, data, patch, version))

    async def login(
        self,
        subject: str,
        *,
        token: Optional[str] = None,
        auth_level: Optional[int] = None,
        data: Optional[SessionData] = None,
        client: Optional[ClientInfo] = None,
    ) -> Issued:
        """See :meth:`TesseraClient.login`."""
        return await self._send(_Calls.login(subject, token, auth_level, data, client))

    async def rotate(self, token: str) -> Issued:
        """See :meth:`TesseraClient.rotate`."""
        return await self._send(_Calls.rotate(token))

    async def logout(self, token: str) -> None:
        """See :meth:`TesseraClient.logout`."""
        await self._send(_Calls.logout(token))

    async def get_session(self, session_id: str) -> Optional[Session]:
        """See :meth:`TesseraClient.get_session`."""
        return await self._send(_Calls.get_session(session_id))

    async def revoke_session(self, session_id: str) -> bool:
        """See :meth:`TesseraClient.revoke_session`."""
        return await self._send(_Calls.revoke_session(session_id))

    async def list_subject_sessions(self, subject: str) -> List[Session]:
        """See :meth:`TesseraClient.list_subject_sessions`."""
        return await self._send(_Calls.list_subject_sessions(subject))

    async def revoke_subject_sessions(self, subject: str, *, except_id: Optional[str] = None) -> int:
        """See :meth:`TesseraClient.revoke_subject_sessions`."""
        return await self._send(_Calls.revoke_subject_sessions(subject, except_id))

    async def revoke_all(self) -> int:
        """See :meth:`TesseraClient.revoke_all`."""
        return await self._send(_Calls.revoke_all())

    async def stats(self) -> Stats:
        """See :meth:`TesseraClient.stats`."""
        return await self._send(_Calls.stats())

    async def forward_auth(
        self, *, cookie: Optional[str] = None, user_agent: Optional[str] = None, real_ip: Optional[str] = None
    ) -> Optional[ForwardAuthResult]:
        """See :meth:`TesseraClient.forward_auth`."""
        return await self._send(_Calls.forward_auth(cookie, user_agent, real_ip))

    async def healthz(self) -> Health:
        """See :meth:`TesseraClient.healthz`."""
        return await self._send(_Calls.healthz())

    async def readyz(self) -> Health:
        """See :meth:`TesseraClient.readyz`."""
        return await self._send(_Calls.readyz())

    async def metrics(self) -> str:
        """See :meth:`TesseraClient.metrics`."""
        return await self._send(_Calls.metrics())

    async def openapi(self) -> Dict[str, Any]:
        """See :meth:`TesseraClient.openapi`."""
        return await self._send(_Calls.openapi())


__all__ = ["AsyncTesseraClient", "OPERATIONS", "TesseraClient"]
