"""A FastAPI app on tesserad sessions: sign in (a form with a CSRF token), a
per-session counter, "sign out everywhere else", sign out, and a small JSON
API using the ``X-CSRF-Token`` header.

    TESSERAD_URL=http://127.0.0.1:7450 TESSERA_API_KEY=tsk_… \\
        uvicorn --factory fastapi_app.app:main --app-dir examples --port 3000

then open http://localhost:3000 (browsers treat localhost as a secure
context, so the ``Secure`` ``__Host-`` cookie works over plain HTTP there).
Sign in as alice / alice-password or bob / bob-password.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import secrets
from typing import Any, Dict, Optional

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse

from tessera_client import AsyncTesseraClient, TesseraError
from tessera_client.asgi import SessionHandle, TesseraMiddleware, session_handle, tessera_error_handler

_SALT = secrets.token_bytes(16)


def _hash(password: str) -> bytes:
    return hashlib.scrypt(password.encode(), salt=_SALT, n=2**14, r=8, p=1, dklen=32)


#: Demo users; a real app looks them up in its database.
USERS = {"alice": _hash("alice-password"), "bob": _hash("bob-password")}


def check_password(username: str, password: str) -> bool:
    expected = USERS.get(username)
    given = _hash(password)
    return expected is not None and hmac.compare_digest(expected, given)


def create_app(client: AsyncTesseraClient, **middleware_options: Any) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(TesseraMiddleware, client=client, **middleware_options)
    app.add_exception_handler(TesseraError, tessera_error_handler)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request, tessera: SessionHandle = Depends(session_handle)) -> str:
        session = request.session
        if not session or session["subject"] is None:
            return '<p id="whoami">anonymous</p><a href="/login">Sign in</a>'
        csrf = await tessera.csrf_token()
        field = f'<input type="hidden" name="csrf_token" value="{csrf}">'
        count = int(session["data"].get("count", 0))
        return (
            f'<p id="whoami">{html.escape(session["subject"])}</p><p id="counter">{count}</p>\n'
            f'<form method="post" action="/count">{field}<button>+1</button></form>\n'
            f'<form method="post" action="/sessions/revoke-others">{field}<button>Sign out everywhere else</button></form>\n'
            f'<form method="post" action="/logout">{field}<button>Sign out</button></form>'
        )

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(tessera: SessionHandle = Depends(session_handle)) -> str:
        # Creates the anonymous session the token is bound to.
        csrf = await tessera.csrf_token()
        return (
            f'<form id="login-form" method="post" action="/login"><input type="hidden" name="csrf_token" value="{csrf}">\n'
            '<input name="username"><input name="password" type="password"><button>Sign in</button></form>'
        )

    @app.post("/login", response_model=None)
    async def login(
        username: str = Form(""),
        password: str = Form(""),
        tessera: SessionHandle = Depends(session_handle),
    ) -> HTMLResponse | RedirectResponse:
        if not username or not password or not check_password(username, password):
            return HTMLResponse('<p>Wrong name or password. <a href="/login">Again</a></p>', status_code=401)
        # A new token (the pre-login one is dead at once) and a new CSRF secret.
        await tessera.login(username, auth_level=1)
        return RedirectResponse("/", status_code=303)

    @app.post("/count", response_model=None)
    async def count(tessera: SessionHandle = Depends(session_handle)) -> PlainTextResponse | RedirectResponse:
        if tessera.session is None or tessera.session["subject"] is None:
            return PlainTextResponse("sign in first\n", status_code=401)
        # Compare-and-swap: a parallel request of the same browser loses no increment.
        for attempt in range(10):
            session = tessera.session
            if session is None:
                raise TesseraError("invalid_session", "the session ended", 401)
            try:
                await tessera.update(
                    patch={"count": int(session["data"].get("count", 0)) + 1}, version=session["version"]
                )
                break
            except TesseraError as error:
                if error.error != "version_conflict" or attempt == 9:
                    raise
                await tessera.refresh()
        return RedirectResponse("/", status_code=303)

    @app.post("/sessions/revoke-others")
    async def revoke_others(tessera: SessionHandle = Depends(session_handle)) -> RedirectResponse:
        await tessera.revoke_others()
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    async def logout(tessera: SessionHandle = Depends(session_handle)) -> RedirectResponse:
        await tessera.logout()
        return RedirectResponse("/", status_code=303)

    # JSON API: the CSRF token travels in the X-CSRF-Token header.
    @app.get("/api/me")
    async def me(request: Request, tessera: SessionHandle = Depends(session_handle)) -> Dict[str, Any]:
        return {"session": request.session, "rejected": tessera.rejected}

    @app.get("/api/csrf")
    async def csrf(tessera: SessionHandle = Depends(session_handle)) -> Dict[str, str]:
        return {"token": await tessera.csrf_token()}

    @app.post("/api/data")
    async def data(request: Request, tessera: SessionHandle = Depends(session_handle)) -> JSONResponse:
        body: Dict[str, Any] = await request.json()
        version: Optional[int] = body.get("version")
        session = await tessera.update(data=body.get("data"), patch=body.get("patch"), version=version)
        return JSONResponse({"session": session})

    return app


def main() -> FastAPI:
    """The app for ``uvicorn --factory``, configured from the environment."""
    api_key = os.environ.get("TESSERA_API_KEY")
    if not api_key:
        raise SystemExit("set TESSERA_API_KEY to a tesserad API key")
    client = AsyncTesseraClient(os.environ.get("TESSERAD_URL", "http://127.0.0.1:7450"), api_key)
    return create_app(client)
