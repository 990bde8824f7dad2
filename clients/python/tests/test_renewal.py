"""Token renewal with short timings (``--renew-after 2s --rotation-grace 1s
--touch-after 1s``): the renewed token reaches the browser through the
middleware's Set-Cookie, and a rotated-away token presented after its grace
ends the whole session (theft detection)."""

from __future__ import annotations

import re
import time
from typing import Iterator, Tuple

import pytest

from fastapi_app.app import create_app
from helpers import SET_COOKIE, AppServer, Browser, Tesserad, expect_error
from tessera_client import AsyncTesseraClient

RENEW_AFTER_S = 2.0
GRACE_S = 1.0


@pytest.fixture(scope="module")
def renewing() -> Iterator[Tuple[Tesserad, AppServer]]:
    server = Tesserad(args=["--renew-after", "2s", "--rotation-grace", "1s", "--touch-after", "1s"])
    app = AppServer(create_app(AsyncTesseraClient(server.url, server.api_key)))
    yield server, app
    app.stop()
    server.stop()


def test_client_sees_the_renewed_token_and_old_one_is_theft_after_grace(renewing: Tuple[Tesserad, AppServer]) -> None:
    client = renewing[0].client
    issued = client.create(subject="alice")
    assert "token" not in client.validate(issued["token"])
    time.sleep(RENEW_AFTER_S + 0.3)
    renewed = client.validate(issued["token"])
    new_token = renewed.get("token")
    assert new_token and new_token != issued["token"], "a token older than --renew-after is renewed"
    # Until the successor is presented, the old token still resolves and
    # hands the same successor out again (its first delivery may be lost).
    in_grace = client.validate(issued["token"])
    assert in_grace["session"]["id"] == issued["session"]["id"]
    assert in_grace.get("token") == new_token
    assert "token" not in client.validate(new_token)
    time.sleep(GRACE_S + 0.3)
    expect_error(lambda: client.validate(issued["token"]), "invalid_session", reason="reused")
    expect_error(lambda: client.validate(new_token), "invalid_session")


def test_middleware_hands_the_renewed_token_to_the_browser(renewing: Tuple[Tesserad, AppServer]) -> None:
    server, app = renewing
    browser = Browser(app.url)
    form = browser.get("/login")
    browser.submit("/login", {"csrf_token": Browser.csrf_field(form), "username": "alice", "password": "alice-password"})
    first = browser.cookies["__Host-tessera"]
    page = browser.get("/")
    csrf = Browser.csrf_field(page)
    assert page.set_cookies == []

    time.sleep(RENEW_AFTER_S + 0.3)
    renewed_page = browser.get("/")
    assert 'id="whoami">alice<' in renewed_page.text
    assert len(renewed_page.set_cookies) == 1
    match = SET_COOKIE.match(renewed_page.set_cookies[0])
    assert match and match.group(1) != first
    assert renewed_page.headers["cache-control"] == "no-store"
    assert browser.cookies["__Host-tessera"] == match.group(1)

    counted = browser.submit("/count", {"csrf_token": csrf})
    assert counted.status == 303, counted.text
    assert counted.set_cookies == []
    assert 'id="counter">1<' in browser.get("/").text

    time.sleep(RENEW_AFTER_S + 0.3)
    auth = server.client.forward_auth(cookie=f"__Host-tessera={browser.cookies['__Host-tessera']}")
    assert auth is not None and auth["subject"] == "alice"
    set_cookie = auth["set_cookie"]
    assert re.match(r"^__Host-tessera=tss_[A-Za-z0-9_-]+;", set_cookie), set_cookie
    assert sorted(set_cookie.split("; ")[1:]) == ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"], set_cookie


def test_a_browser_that_lost_the_renewed_cookie_gets_it_again(renewing: Tuple[Tesserad, AppServer]) -> None:
    _, app = renewing
    browser = Browser(app.url)
    form = browser.get("/login")
    browser.submit("/login", {"csrf_token": Browser.csrf_field(form), "username": "bob", "password": "bob-password"})
    stale = browser.cookies["__Host-tessera"]
    time.sleep(RENEW_AFTER_S + 0.3)
    # This response carries the new cookie, which is "lost" on the way.
    assert len(browser.get("/api/me").set_cookies) == 1
    successor = browser.cookies["__Host-tessera"]
    assert successor != stale
    browser.cookies["__Host-tessera"] = stale
    time.sleep(GRACE_S + 0.3)
    # Past the grace, the old cookie still signs in and brings the same
    # successor: no theft alarm for a lost renewal.
    again = browser.get("/api/me")
    seen = again.json()
    assert seen["session"] is not None and seen["session"]["subject"] == "bob", again.text
    assert len(again.set_cookies) == 1
    assert browser.cookies["__Host-tessera"] == successor
