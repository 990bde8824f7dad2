"""ASGI middleware (Starlette, FastAPI, any ASGI app): the session cookie
in, a validated session out, renewed tokens written back, and CSRF
protection of unsafe methods, with the cookie and CSRF rules of the Rust
layer (tessera-axum) and of the Express middleware.

.. code-block:: python

    client = AsyncTesseraClient("http://127.0.0.1:7450", api_key=KEY)
    app = FastAPI()
    app.add_middleware(TesseraMiddleware, client=client)
    app.add_exception_handler(TesseraError, tessera_error_handler)

    @app.post("/login")
    async def login(request: Request) -> RedirectResponse:
        await session_handle(request).login(user, auth_level=1)
        return RedirectResponse("/", status_code=303)

``request.session`` is the validated session (its data without the CSRF
secret) or ``None``; ``session_handle(request)`` (``scope["tessera"]``) has
the operations.
"""

from __future__ import annotations

import ipaddress
import json
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
)
from urllib.parse import parse_qs

import anyio

from ._client import AsyncTesseraClient
from ._cookies import (
    DEFAULT_COOKIE_NAME,
    CookieSettings,
    SameSite,
    check_cookie_settings,
    read_session_cookie,
    removal_cookie,
    set_cookie,
)
from ._csrf import (
    CSRF_DATA_KEY,
    CsrfErrorCode,
    cross_site_evidence,
    csrf_message,
    is_unsafe,
    mask,
    new_secret,
    verify,
)
from ._errors import TesseraError
from ._types import ClientInfo, InvalidReason, Issued, Session, SessionData

if TYPE_CHECKING:  # pragma: no cover
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response
else:
    # At run time too: FastAPI reads the annotation of `session_handle` to
    # inject the request when it is used with `Depends`.
    try:
        from starlette.requests import HTTPConnection, Request
        from starlette.responses import Response
    except ImportError:  # pragma: no cover - plain ASGI without Starlette
        HTTPConnection = Request = Response = Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER_NAME = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


class _Settings:
    __slots__ = (
        "client",
        "cookie",
        "csrf",
        "csrf_header",
        "csrf_field",
        "trusted_origins",
        "csrf_exempt",
        "max_form_bytes",
        "client_ip",
    )

    def __init__(
        self,
        client: AsyncTesseraClient,
        cookie: CookieSettings,
        csrf: bool,
        csrf_header: str,
        csrf_field: str,
        trusted_origins: Sequence[str],
        csrf_exempt: Optional[Callable[[Scope], bool]],
        max_form_bytes: int,
        client_ip: Callable[[Scope], Optional[str]],
    ) -> None:
        self.client = client
        self.cookie = cookie
        self.csrf = csrf
        self.csrf_header = csrf_header
        self.csrf_field = csrf_field
        self.trusted_origins = tuple(trusted_origins)
        self.csrf_exempt = csrf_exempt
        self.max_form_bytes = max_form_bytes
        self.client_ip = client_ip


def _peer_ip(scope: Scope) -> Optional[str]:
    client = scope.get("client")
    return str(client[0]) if client else None


def _normalise_ip(ip: Optional[str]) -> Optional[str]:
    """The IP as tesserad parses it (``::ffff:1.2.3.4`` as IPv4, no zone), or ``None``."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _without_secret(data: SessionData) -> SessionData:
    if CSRF_DATA_KEY not in data:
        return data
    return {key: value for key, value in data.items() if key != CSRF_DATA_KEY}


def _public(session: Session) -> Session:
    if CSRF_DATA_KEY not in session["data"]:
        return session
    view = dict(session)
    view["data"] = _without_secret(session["data"])
    return view  # type: ignore[return-value]


def _merge_patch(target: SessionData, patch: SessionData) -> SessionData:
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            base = result.get(key)
            result[key] = _merge_patch(base if isinstance(base, dict) else {}, value)
        else:
            result[key] = value
    return result


class SessionHandle:
    """The session operations of one request (``scope["tessera"]``).

    Operations run one at a time; those that change the cookie must finish
    before the response starts.
    """

    def __init__(self, settings: _Settings, scope: Scope, had_cookie: bool) -> None:
        #: Why a presented cookie gave no session (``malformed``, ``expired_idle``, …), else ``None``.
        self.rejected: Optional[InvalidReason] = None
        self._settings = settings
        self._scope = scope
        self._had_cookie = had_cookie
        self._token: Optional[str] = None
        self._raw: Optional[Session] = None
        self._view: Optional[Session] = None
        self._change: Tuple[str, Optional[str]] = ("keep", None)
        self._started = False
        self._lock = anyio.Lock()

    @property
    def session(self) -> Optional[Session]:
        """The validated session (data without the CSRF secret), or ``None``."""
        return self._view

    @property
    def client_info(self) -> ClientInfo:
        """The client sent to tesserad for binding: the request's IP and User-Agent."""
        info: ClientInfo = {}
        ip = _normalise_ip(self._settings.client_ip(self._scope))
        if ip is not None:
            info["ip"] = ip
        for name, value in self._scope.get("headers", []):
            if name.lower() == b"user-agent":
                info["user_agent"] = value.decode("latin-1")
                break
        return info

    async def csrf_token(self) -> str:
        """A masked CSRF token (different on every call); creates an anonymous
        session, or the session's secret, when there is none yet."""
        async with self._lock:
            secret = self._secret()
            if secret is not None:
                return mask(secret)
            fresh = new_secret()
            if self._raw is None or self._token is None:
                await self._create({CSRF_DATA_KEY: fresh})
            else:
                self._adopt(await self._settings.client.update(self._token, patch={CSRF_DATA_KEY: fresh}))
            return mask(fresh)

    async def login(self, subject: str, *, auth_level: int = 1, data: Optional[SessionData] = None) -> Session:
        """Signs ``subject`` in: always a new token (the one from before is dead
        at once: no fixation) and a new CSRF secret. An anonymous session's
        data (or the same subject's) is kept, another subject's never;
        ``data`` is merged onto it."""
        async with self._lock:
            current = self._raw
            carried: SessionData = {}
            if current is not None and current["subject"] in (None, subject):
                carried = _without_secret(current["data"])
            merged = {**carried, **_without_secret(data or {}), CSRF_DATA_KEY: new_secret()}
            token = self._token if current is not None else None
            issued = await self._settings.client.login(
                subject, token=token, auth_level=auth_level, data=merged, client=self.client_info
            )
            self._adopt_issued(issued)
            assert self._view is not None
            return self._view

    async def logout(self) -> None:
        """Ends the session; the response removes the cookie and sends ``Clear-Site-Data: "cookies"``."""
        async with self._lock:
            if self._raw is not None and self._token is not None:
                await self._settings.client.logout(self._token)
            changed = self._change[0] != "keep"
            self._set_session(None)
            self._token = None
            if self._had_cookie or changed:
                self._set_change(("remove", None))

    async def update(
        self,
        *,
        data: Optional[SessionData] = None,
        patch: Optional[SessionData] = None,
        version: Optional[int] = None,
    ) -> Session:
        """Changes the data: ``data`` replaces it, ``patch`` merges into it;
        with ``version``, only at that version (else ``version_conflict``,
        409). Without a session, one is created (anonymous) holding the data.
        The CSRF secret is kept whatever the change."""
        if (data is None) == (patch is None):
            raise TesseraError("invalid_request", "give either `data` (replace) or `patch` (merge)", 400)
        async with self._lock:
            if self._raw is None or self._token is None:
                if version is not None:
                    raise TesseraError("version_conflict", "there is no session at that version", 409)
                initial = data if data is not None else _merge_patch({}, patch or {})
                await self._create(_without_secret(initial))
            elif data is not None:
                secret = self._secret()
                replacement = dict(_without_secret(data))
                if secret is not None:
                    replacement[CSRF_DATA_KEY] = secret
                self._adopt(await self._settings.client.update(self._token, data=replacement, version=version))
            else:
                self._adopt(
                    await self._settings.client.update(
                        self._token, patch=_without_secret(patch or {}), version=version
                    )
                )
            assert self._view is not None
            return self._view

    async def refresh(self) -> Optional[Session]:
        """Reads the session again (after a ``version_conflict``, say); ``None`` if it ended."""
        async with self._lock:
            if self._token is not None:
                await self._validate(self._token)
            return self._view

    async def rotate(self) -> Optional[Session]:
        """A new token for the same session (after a privilege change, say)."""
        async with self._lock:
            if self._raw is None or self._token is None:
                return None
            self._adopt_issued(await self._settings.client.rotate(self._token))
            return self._view

    async def sessions(self) -> List[Session]:
        """Every valid session of the signed-in subject, oldest first."""
        async with self._lock:
            subject = self._signed_in()["subject"]
            assert subject is not None
            return [_public(s) for s in await self._settings.client.list_subject_sessions(subject)]

    async def revoke_others(self) -> int:
        """Ends every other session of the signed-in subject; returns how many."""
        async with self._lock:
            session = self._signed_in()
            assert session["subject"] is not None
            return await self._settings.client.revoke_subject_sessions(session["subject"], except_id=session["id"])

    # ----- internals ------------------------------------------------------------

    async def _validate(self, token: str) -> None:
        try:
            valid = await self._settings.client.validate(token, client=self.client_info)
        except TesseraError as error:
            if error.error == "invalid_session":
                self.rejected = error.reason or "unknown"
                self._set_session(None)
                self._token = None
                return
            raise
        renewed = valid.get("token")
        self._token = renewed or token
        self._adopt(valid["session"])
        if renewed:
            self._set_change(("set", renewed))

    def _secret(self) -> Optional[str]:
        if self._raw is None:
            return None
        secret = self._raw["data"].get(CSRF_DATA_KEY)
        return secret if isinstance(secret, str) else None

    def _signed_in(self) -> Session:
        if self._raw is None or self._raw["subject"] is None:
            raise TesseraError("not_authenticated", "this needs a signed-in session", 401)
        return self._raw

    async def _create(self, data: SessionData) -> None:
        self._adopt_issued(await self._settings.client.create(data=data, client=self.client_info))

    def _adopt_issued(self, issued: Issued) -> None:
        self._set_change(("set", issued["token"]))
        self._token = issued["token"]
        self.rejected = None
        self._adopt(issued["session"])

    def _adopt(self, session: Session) -> None:
        self._raw = session
        self._set_session(session)

    def _set_session(self, session: Optional[Session]) -> None:
        if session is None:
            self._raw = None
        self._view = None if session is None else _public(session)
        self._scope["session"] = self._view

    def _set_change(self, change: Tuple[str, Optional[str]]) -> None:
        if self._started:
            raise RuntimeError("the response has started: change the session before responding")
        self._change = change

    def _response_headers(self, headers: List[Tuple[bytes, bytes]]) -> List[Tuple[bytes, bytes]]:
        """The response headers with the cookie change applied (once, as the response starts)."""
        self._started = True
        cookie = self._settings.cookie
        kind, token = self._change
        no_store = (b"cache-control", b"no-store")
        if kind == "keep":
            if self._raw is not None and not any(name.lower() == b"cache-control" for name, _ in headers):
                headers.append(no_store)
            return headers
        prefix = f"{cookie.name}=".encode()
        headers = [
            (name, value)
            for name, value in headers
            if not (name.lower() == b"set-cookie" and value.startswith(prefix))
            and name.lower() not in (b"cache-control", b"clear-site-data")
        ]
        if kind == "set" and token is not None:
            headers.append((b"set-cookie", set_cookie(cookie, token).encode()))
        else:
            headers.append((b"set-cookie", removal_cookie(cookie).encode()))
            headers.append((b"clear-site-data", b'"cookies"'))
        headers.append(no_store)
        return headers


class TesseraMiddleware:
    """Sessions for an ASGI app. Validates the session cookie through tesserad
    on every request that carries one — a failure of tesserad or its store
    answers ``503`` with ``{error, message}`` (fail closed) — then checks CSRF
    on unsafe methods (403 with a ``Tessera-Error`` code), then calls the app.

    Every argument but ``client`` has a secure default: ``cookie_name``
    (``__Host-tessera``), ``secure`` (``True``; ``False`` for development
    over plain HTTP with a name without the ``__Host-``/``__Secure-``
    prefix), ``same_site`` (``"lax"`` or ``"strict"``), ``csrf`` (on),
    ``csrf_header`` (``X-CSRF-Token``), ``csrf_field`` (``csrf_token``),
    ``trusted_origins`` (other origins allowed to post, with a valid token),
    ``csrf_exempt`` (a predicate on the scope), ``max_form_bytes`` (1 MiB
    read to find the form field), ``client_ip`` (from the scope; default the
    peer address, which uvicorn's ``--proxy-headers`` sets from a trusted proxy).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: AsyncTesseraClient,
        cookie_name: str = DEFAULT_COOKIE_NAME,
        secure: bool = True,
        same_site: SameSite = "lax",
        csrf: bool = True,
        csrf_header: str = "x-csrf-token",
        csrf_field: str = "csrf_token",
        trusted_origins: Iterable[str] = (),
        csrf_exempt: Optional[Callable[[Scope], bool]] = None,
        max_form_bytes: int = 1024 * 1024,
        client_ip: Optional[Callable[[Scope], Optional[str]]] = None,
    ) -> None:
        if not isinstance(client, AsyncTesseraClient):
            raise TypeError("TesseraMiddleware needs an AsyncTesseraClient as `client`")
        cookie = CookieSettings(cookie_name, secure, same_site)
        check_cookie_settings(cookie)
        header = csrf_header.lower()
        if not header or any(c not in _HEADER_NAME for c in header):
            raise ValueError(f"`{csrf_header}` is not a valid header name for the CSRF token")
        if not csrf_field:
            raise ValueError("the CSRF form field name must not be empty")
        origins = tuple(trusted_origins)
        for origin in origins:
            scheme, sep, authority = origin.partition("://")
            if not scheme or not sep or not authority or "/" in authority:
                raise ValueError(
                    f"trusted origin `{origin}` must be scheme://host[:port] with no path, like https://app.example.com"
                )
        self.app = app
        self._settings = _Settings(
            client=client,
            cookie=cookie,
            csrf=csrf,
            csrf_header=header,
            csrf_field=csrf_field,
            trusted_origins=origins,
            csrf_exempt=csrf_exempt,
            max_form_bytes=max_form_bytes,
            client_ip=client_ip or _peer_ip,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self._settings
        headers: Dict[str, str] = {}
        cookies: List[str] = []
        for raw_name, raw_value in scope.get("headers", []):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name == "cookie":
                cookies.append(value)
            headers.setdefault(name, value)
        presented = read_session_cookie(cookies, settings.cookie.name)
        handle = SessionHandle(settings, scope, presented.kind != "nothing")
        scope["tessera"] = handle
        scope["session"] = None

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = handle._response_headers(list(message.get("headers", [])))
            await send(message)

        try:
            if presented.kind == "credential" and presented.value is not None:
                await handle._validate(presented.value)
            elif presented.kind == "unreadable":
                handle.rejected = "malformed"
        except TesseraError as error:
            await _respond_json(send_with_cookie, error)
            return

        if settings.csrf and is_unsafe(scope.get("method", "GET")) and not (
            settings.csrf_exempt is not None and settings.csrf_exempt(scope)
        ):
            evidence = cross_site_evidence(headers, settings.trusted_origins)
            if evidence is not None:
                await self._refuse(send_with_cookie, "csrf_cross_site", evidence)
                return
            token = headers.get(settings.csrf_header)
            content_type = headers.get("content-type", "").lstrip().lower()
            if token is None and content_type.startswith("application/x-www-form-urlencoded"):
                body, problem = await _read_body(receive, settings.max_form_bytes)
                if problem is not None:
                    status, message = problem
                    await _respond_plain(send_with_cookie, status, "bad_body", message)
                    return
                values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get(settings.csrf_field)
                token = values[0] if values else None
                receive = _replay(body, receive)
            if token is None:
                await self._refuse(send_with_cookie, "csrf_missing_token")
                return
            secret = handle._secret()
            if handle.session is None or secret is None:
                await self._refuse(send_with_cookie, "csrf_no_session")
                return
            if not verify(secret, token):
                await self._refuse(send_with_cookie, "csrf_invalid_token")
                return
        await self.app(scope, receive, send_with_cookie)

    async def _refuse(self, send: Send, code: CsrfErrorCode, evidence: str = "") -> None:
        header = "X-CSRF-Token" if self._settings.csrf_header == "x-csrf-token" else self._settings.csrf_header
        message = csrf_message(code, header=header, field=self._settings.csrf_field, evidence=evidence)
        await _respond_plain(send, 403, code, message)


async def _read_body(receive: Receive, limit: int) -> Tuple[bytes, Optional[Tuple[int, str]]]:
    chunks: List[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", (400, "cannot read the request body: the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", (413, f"cannot read the request body: the form body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond_plain(send: Send, status: int, code: str, message: str) -> None:
    body = f"{message}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"tessera-error", code.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _respond_json(send: Send, error: TesseraError) -> None:
    body = json.dumps({"error": error.error, "message": error.message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"tessera-error", error.error.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def session_handle(request: HTTPConnection) -> SessionHandle:
    """The session operations of a Starlette/FastAPI request (``scope["tessera"]``)."""
    handle = request.scope.get("tessera")
    if not isinstance(handle, SessionHandle):
        raise RuntimeError("no TesseraMiddleware on this app: add app.add_middleware(TesseraMiddleware, client=…)")
    return handle


async def tessera_error_handler(request: Request, exc: Exception) -> Response:
    """A Starlette/FastAPI exception handler: a :class:`TesseraError` raised by
    a handler becomes its status with ``{error, message, reason?, current_version?}``."""
    from starlette.responses import JSONResponse

    if not isinstance(exc, TesseraError):
        raise exc
    body: Dict[str, Any] = {"error": exc.error, "message": exc.message}
    if exc.reason is not None:
        body["reason"] = exc.reason
    if exc.current_version is not None:
        body["current_version"] = exc.current_version
    return JSONResponse(body, status_code=exc.status, headers={"cache-control": "no-store"})
