"""The ASGI middleware, through the example FastAPI app under uvicorn over
real HTTP, against a real tesserad: cookies, sign-in with CSRF, the
counter, fixation, CSRF refusals, compare-and-swap, "sign out everywhere
else", sign-out."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator

import pytest

from fastapi_app.app import create_app
from helpers import REMOVAL, SET_COOKIE, AppServer, Browser, Page, Tesserad, expect_error
from tessera_client import CSRF_DATA_KEY, AsyncTesseraClient
from tessera_client.asgi import TesseraMiddleware


@pytest.fixture(scope="module")
def app(server: Tesserad) -> Iterator[AppServer]:
    running = AppServer(create_app(AsyncTesseraClient(server.url, server.api_key)))
    yield running
    running.stop()


def token_of(page: Page) -> str:
    assert len(page.set_cookies) == 1, page.set_cookies
    match = SET_COOKIE.match(page.set_cookies[0])
    assert match, page.set_cookies[0]
    assert page.headers["cache-control"] == "no-store"
    return match.group(1)


def sign_in(browser: Browser, user: str = "alice") -> Page:
    form = browser.get("/login")
    page = browser.submit(
        "/login", {"csrf_token": Browser.csrf_field(form), "username": user, "password": f"{user}-password"}
    )
    assert page.status == 303, page.text
    return page


def me(browser: Browser) -> Dict[str, Any]:
    page = browser.get("/api/me")
    assert page.status == 200, page.text
    result: Dict[str, Any] = page.json()
    return result


def test_whole_flow_with_the_rust_layers_cookie_attributes(app: AppServer, server: Tesserad) -> None:
    browser = Browser(app.url)
    home = browser.get("/")
    assert 'id="whoami">anonymous<' in home.text
    assert home.set_cookies == [], "no session is created for a visitor who only reads"

    form = browser.get("/login")
    anonymous_token = token_of(form)
    signed_in = browser.submit(
        "/login", {"csrf_token": Browser.csrf_field(form), "username": "alice", "password": "alice-password"}
    )
    assert signed_in.status == 303 and signed_in.headers["location"] == "/"
    token = token_of(signed_in)
    assert token != anonymous_token, "login always issues a new token"

    page = browser.get("/")
    assert 'id="whoami">alice<' in page.text and 'id="counter">0<' in page.text
    assert page.set_cookies == []
    assert page.headers["cache-control"] == "no-store", "a signed-in page is not cached"
    for expected in (1, 2):
        counted = browser.submit("/count", {"csrf_token": Browser.csrf_field(page)})
        assert counted.status == 303, counted.text
        page = browser.get("/")
        assert f'id="counter">{expected}<' in page.text

    stored = server.client.list_subject_sessions("alice")[0]
    assert stored["data"]["count"] == 2
    assert isinstance(stored["data"][CSRF_DATA_KEY], str)
    seen = me(browser)["session"]
    assert seen["data"]["count"] == 2 and CSRF_DATA_KEY not in seen["data"]
    assert stored["client"] == {"ip": "127.0.0.1", "user_agent": "TestBrowser/1.0"}

    out = browser.submit("/logout", {"csrf_token": Browser.csrf_field(page)})
    assert out.status == 303
    assert out.set_cookies == [REMOVAL]
    assert out.headers["clear-site-data"] == '"cookies"'
    assert out.headers["cache-control"] == "no-store"
    assert browser.cookies == {}
    expect_error(lambda: server.client.validate(token), "invalid_session")
    assert "anonymous" in browser.get("/").text
    # Sign out everywhere else is for signed-in sessions only.
    server.client.revoke_subject_sessions("alice")


def test_wrong_password(app: AppServer) -> None:
    browser = Browser(app.url)
    form = browser.get("/login")
    page = browser.submit("/login", {"csrf_token": Browser.csrf_field(form), "username": "alice", "password": "no"})
    assert page.status == 401
    assert me(browser)["session"]["subject"] is None


def test_pre_login_cookie_dies_at_login(app: AppServer) -> None:
    browser = Browser(app.url)
    form = browser.get("/login")
    before = token_of(form)
    browser.submit("/login", {"csrf_token": Browser.csrf_field(form), "username": "bob", "password": "bob-password"})
    attacker = Browser(app.url)
    attacker.cookies["__Host-tessera"] = before
    seen = me(attacker)
    assert seen["session"] is None and seen["rejected"] == "revoked"
    assert me(browser)["session"]["subject"] == "bob"
    stale = browser.submit("/count", {"csrf_token": Browser.csrf_field(form)})
    assert stale.status == 403 and stale.headers["tessera-error"] == "csrf_invalid_token"


def test_parallel_increments_lose_nothing(app: AppServer) -> None:
    bob = Browser(app.url)
    sign_in(bob, "bob")
    csrf = Browser.csrf_field(bob.get("/"))
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: bob.submit("/count", {"csrf_token": csrf}).status, range(6)))
    assert statuses == [303] * 6
    assert me(bob)["session"]["data"]["count"] == 6


def test_sign_out_everywhere_else(app: AppServer, server: Tesserad) -> None:
    server.client.revoke_subject_sessions("alice")
    laptop, phone = Browser(app.url, "Laptop/1.0"), Browser(app.url, "Phone/1.0")
    sign_in(laptop)
    sign_in(phone)
    out = laptop.submit("/sessions/revoke-others", {"csrf_token": Browser.csrf_field(laptop.get("/"))})
    assert out.status == 303
    assert me(phone)["session"] is None
    assert me(laptop)["session"]["subject"] == "alice"
    assert [s["client"]["user_agent"] for s in server.client.list_subject_sessions("alice")] == ["Laptop/1.0"]


def signed_in_page(app: AppServer) -> tuple[Browser, str]:
    browser = Browser(app.url)
    sign_in(browser)
    return browser, Browser.csrf_field(browser.get("/"))


def test_tokens_are_masked_afresh_and_all_valid(app: AppServer) -> None:
    browser, csrf = signed_in_page(app)
    again = Browser.csrf_field(browser.get("/"))
    assert again != csrf
    assert browser.submit("/count", {"csrf_token": csrf}).status == 303
    assert browser.submit("/count", {"csrf_token": again}).status == 303


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("no token", "csrf_missing_token"),
        ("token in the query string", "csrf_missing_token"),
        ("another session's token", "csrf_invalid_token"),
        ("garbage", "csrf_invalid_token"),
        ("right length, wrong bytes", "csrf_invalid_token"),
        ("no session", "csrf_no_session"),
        ("Sec-Fetch-Site: cross-site", "csrf_cross_site"),
        ("Sec-Fetch-Site: same-site", "csrf_cross_site"),
        ("a foreign Origin", "csrf_cross_site"),
        ("Origin: null", "csrf_cross_site"),
    ],
)
def test_csrf_refusals(app: AppServer, case: str, code: str) -> None:
    browser, csrf = signed_in_page(app)
    _, other = signed_in_page(app)
    sends = {
        "no token": lambda: browser.submit("/count", {}),
        "token in the query string": lambda: browser.submit(f"/count?csrf_token={csrf}", {}),
        "another session's token": lambda: browser.submit("/count", {"csrf_token": other}),
        "garbage": lambda: browser.submit("/count", {"csrf_token": "garbage"}),
        "right length, wrong bytes": lambda: browser.submit("/count", {"csrf_token": "A" * 86}),
        "no session": lambda: Browser(app.url).submit("/count", {"csrf_token": csrf}),
        "Sec-Fetch-Site: cross-site": lambda: browser.submit(
            "/count", {"csrf_token": csrf}, {"sec-fetch-site": "cross-site"}
        ),
        "Sec-Fetch-Site: same-site": lambda: browser.submit(
            "/count", {"csrf_token": csrf}, {"sec-fetch-site": "same-site"}
        ),
        "a foreign Origin": lambda: browser.submit("/count", {"csrf_token": csrf}, {"origin": "http://evil.example"}),
        "Origin: null": lambda: browser.submit("/count", {"csrf_token": csrf}, {"origin": "null"}),
    }
    page = sends[case]()
    assert page.status == 403, page.text
    assert page.headers["tessera-error"] == code
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["content-type"].startswith("text/plain")
    # Nothing counted; a proper request does, with Sec-Fetch-Site: same-origin too.
    assert "count" not in me(browser)["session"]["data"]
    assert browser.submit("/count", {"csrf_token": csrf}, {"sec-fetch-site": "same-origin"}).status == 303
    assert me(browser)["session"]["data"]["count"] == 1


def test_header_token_json_api_and_stale_versions(app: AppServer) -> None:
    browser = Browser(app.url)
    csrf = browser.get("/api/csrf").json()["token"]
    session = me(browser)["session"]
    headers = {"x-csrf-token": csrf}
    first = browser.json("POST", "/api/data", {"patch": {"theme": "dark"}, "version": session["version"]}, headers)
    assert first.status == 200, first.text
    assert first.json()["session"]["data"] == {"theme": "dark"}
    assert first.json()["session"]["version"] == session["version"] + 1
    stale = browser.json("POST", "/api/data", {"patch": {"theme": "light"}, "version": session["version"]}, headers)
    assert stale.status == 409
    assert stale.json()["error"] == "version_conflict"
    assert stale.json()["current_version"] == session["version"] + 1
    # Replacing the data keeps the CSRF secret: the same token still works.
    replaced = browser.json("POST", "/api/data", {"data": {"fresh": True}}, headers)
    assert replaced.status == 200 and replaced.json()["session"]["data"] == {"fresh": True}
    assert browser.json("POST", "/api/data", {"patch": {"n": 1}}, headers).status == 200
    big = browser.json("POST", "/api/data", {"patch": {"big": "x" * 70_000}}, headers)
    assert big.status == 413 and big.json()["error"] == "payload_too_large"


def test_bad_cookies_are_anonymous_never_500(app: AppServer, server: Tesserad) -> None:
    issued = server.client.create(subject="alice")
    for cookie, reason in [
        ("__Host-tessera=garbage", "malformed"),
        ("__Host-tessera=tss_%ff%fe", "malformed"),
        (f"__Host-tessera={'a' * 5000}", "malformed"),
        (f"__Host-tessera={issued['token']}; __Host-tessera={issued['token']}", "malformed"),
        (f"__Host-tessera=tss_{'A' * 47}", None),
    ]:
        page = Browser(app.url).get("/api/me", {"cookie": cookie})
        assert page.status == 200, cookie[:40]
        assert page.json()["session"] is None
        if reason is not None:
            assert page.json()["rejected"] == reason
        else:
            assert page.json()["rejected"] in ("malformed", "unknown")
        assert page.set_cookies == [], "an invalid cookie is left alone"
    page = Browser(app.url).get("/api/me", {"cookie": f"a=1; __Host-tessera={issued['token']}; b=2"})
    assert page.json()["session"]["subject"] == "alice"


def test_plain_cookie_for_development(server: Tesserad) -> None:
    dev = AppServer(create_app(AsyncTesseraClient(server.url, server.api_key), cookie_name="tessera_dev", secure=False))
    try:
        browser = Browser(dev.url)
        form = browser.get("/login")
        assert re.match(r"^tessera_dev=tss_[A-Za-z0-9_-]+; HttpOnly; SameSite=Lax; Path=/$", form.set_cookies[0])
        browser.submit("/login", {"csrf_token": Browser.csrf_field(form), "username": "bob", "password": "bob-password"})
        assert me(browser)["session"]["subject"] == "bob"
    finally:
        dev.stop()


def test_settings_a_browser_would_not_honour_are_refused(server: Tesserad) -> None:
    client = AsyncTesseraClient(server.url, server.api_key)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError

    with pytest.raises(ValueError, match="__Host- prefix"):
        TesseraMiddleware(app, client=client, secure=False)
    with pytest.raises(ValueError, match="__Secure- prefix"):
        TesseraMiddleware(app, client=client, cookie_name="__Secure-s", secure=False)
    with pytest.raises(ValueError, match="not a valid cookie name"):
        TesseraMiddleware(app, client=client, cookie_name="bad name;")
    with pytest.raises(ValueError, match="scheme://host"):
        TesseraMiddleware(app, client=client, trusted_origins=["example.com"])
    with pytest.raises(ValueError, match="header name"):
        TesseraMiddleware(app, client=client, csrf_header="bad header")
    TesseraMiddleware(app, client=client, cookie_name="plain", secure=False, same_site="strict")
