"""Fail closed: with tesserad's Redis store killed, every validation is
``503 store_unavailable`` — through both clients, forward-auth and the
middleware — and with tesserad itself gone, ``server_unreachable`` (503)."""

from __future__ import annotations

import pytest

from fastapi_app.app import create_app
from helpers import AppServer, Browser, Redis, Tesserad, expect_error, expect_error_async
from tessera_client import AsyncTesseraClient, TesseraClient


def test_store_down_then_server_gone() -> None:
    redis = Redis()
    server = Tesserad(store=redis.url, args=["--request-timeout", "2s"])
    app = AppServer(create_app(AsyncTesseraClient(server.url, server.api_key)))
    try:
        browser = Browser(app.url)
        form = browser.get("/login")
        signed_in = browser.submit(
            "/login", {"csrf_token": Browser.csrf_field(form), "username": "alice", "password": "alice-password"}
        )
        assert signed_in.status == 303
        page = browser.get("/")
        assert 'id="whoami">alice<' in page.text
        client = server.client
        issued = client.create(subject="bob")
        assert client.readyz() == {"status": "ready"}

        redis.kill()

        expect_error(lambda: client.validate(issued["token"]), "store_unavailable", status=503)
        expect_error(client.create, "store_unavailable", status=503)
        expect_error(client.readyz, "store_unavailable", status=503)
        expect_error(lambda: client.forward_auth(cookie=f"__Host-tessera={issued['token']}"), "store_unavailable")

        down = browser.get("/")
        assert down.status == 503
        assert down.json()["error"] == "store_unavailable"
        assert down.headers["tessera-error"] == "store_unavailable"
        assert down.set_cookies == [], "the cookie is kept for when the store is back"
        post = browser.submit("/count", {"csrf_token": Browser.csrf_field(page)})
        assert post.status == 503, "an unsafe request fails closed too, not a CSRF 403 nor a pass"
        assert Browser(app.url).get("/").status == 200, "a visitor without a cookie needs no validation"

        server.stop()
        token = "tss_" + "A" * 47
        with TesseraClient(server.url, server.api_key, timeout=2) as after:
            expect_error(lambda: after.validate(token), "server_unreachable", status=503)
        page = Browser(app.url).get("/", {"cookie": f"__Host-tessera={token}"})
        assert page.status == 503
        assert page.json()["error"] == "server_unreachable"
    finally:
        app.stop()
        server.stop()
        redis.kill()


@pytest.mark.anyio
async def test_async_client_store_down() -> None:
    redis = Redis()
    server = Tesserad(store=redis.url, args=["--request-timeout", "2s"])
    try:
        async with AsyncTesseraClient(server.url, server.api_key) as client:
            issued = await client.create()
            redis.kill()
            await expect_error_async(client.validate(issued["token"]), "store_unavailable", status=503)
            server.stop()
            await expect_error_async(client.validate(issued["token"]), "server_unreachable", status=503)
    finally:
        server.stop()
        redis.kill()
