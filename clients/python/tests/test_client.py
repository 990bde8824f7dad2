"""The sync client against a real tesserad (memory store): every endpoint and its errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from helpers import ENDED, Tesserad, expect_error
from tessera_client import BROWSER_OPERATIONS, OPERATIONS, TesseraClient

BROWSER = {"ip": "203.0.113.9", "user_agent": "Firefox/140"}


@pytest.fixture
def client(server: Tesserad) -> TesseraClient:
    return server.client


def test_lifecycle(client: TesseraClient) -> None:
    created = client.create(data={"theme": "dark"}, client=BROWSER)
    assert created["token"].startswith("tss_")
    session = created["session"]
    assert session["subject"] is None and session["auth_level"] == 0
    assert session["data"] == {"theme": "dark"}
    assert session["client"] == BROWSER
    assert len(session["id"]) == 22

    valid = client.validate(created["token"], client=BROWSER)
    assert valid["session"]["id"] == session["id"]
    assert "token" not in valid, "a fresh token is not renewed"

    patched = client.update(created["token"], patch={"cart": [42]})
    assert patched["data"] == {"theme": "dark", "cart": [42]}
    assert patched["version"] == session["version"] + 1
    replaced = client.update(created["token"], data={"only": True}, version=patched["version"])
    assert replaced["data"] == {"only": True}
    assert client.update(created["token"], patch={"only": None})["data"] == {}

    login = client.login("alice", token=created["token"], auth_level=2, client=BROWSER)
    assert login["token"] != created["token"]
    assert login["session"]["id"] == session["id"], "the id is stable across login"
    assert login["session"]["subject"] == "alice" and login["session"]["auth_level"] == 2
    assert login["session"]["authenticated_at"] is not None

    rotated = client.rotate(login["token"])
    assert rotated["token"] != login["token"]
    assert client.validate(rotated["token"])["session"]["subject"] == "alice"

    client.logout(rotated["token"])
    expect_error(lambda: client.validate(rotated["token"]), "invalid_session", status=401, reason=ENDED)
    client.logout(rotated["token"])  # idempotent
    client.logout("garbage")


def test_create_signed_in_with_own_timeouts(client: TesseraClient) -> None:
    issued = client.create(subject="carol", idle_timeout_s=60, absolute_timeout_s=120)
    session = issued["session"]
    created = datetime.fromisoformat(session["created_at"].replace("Z", "+00:00"))
    idle = datetime.fromisoformat(session["idle_expires_at"].replace("Z", "+00:00"))
    absolute = datetime.fromisoformat(session["absolute_expires_at"].replace("Z", "+00:00"))
    assert (idle - created).total_seconds() == 60
    assert (absolute - created).total_seconds() == 120


def test_login_without_token_starts_a_session(client: TesseraClient) -> None:
    issued = client.login("dave", data={"a": 1})
    assert issued["session"]["subject"] == "dave"
    assert issued["session"]["auth_level"] == 1
    assert issued["session"]["data"] == {"a": 1}


def test_fixation_pre_login_token_is_dead(client: TesseraClient) -> None:
    anonymous = client.create(data={"cart": [1]})
    login = client.login("alice", token=anonymous["token"])
    expect_error(lambda: client.validate(anonymous["token"]), "invalid_session", reason="revoked")
    assert client.validate(login["token"])["session"]["data"] == {"cart": [1]}


def test_fixation_never_carries_another_subjects_data(client: TesseraClient) -> None:
    bob = client.create(subject="bob", data={"secret": "bob's"})
    assert client.login("alice", token=bob["token"])["session"]["data"] == {}


def test_revoke_by_id(client: TesseraClient) -> None:
    issued = client.create(subject="erin")
    assert client.get_session(issued["session"]["id"]) == issued["session"]
    assert client.revoke_session(issued["session"]["id"]) is True
    expect_error(lambda: client.validate(issued["token"]), "invalid_session", reason=ENDED)
    assert client.get_session(issued["session"]["id"]) is None
    assert client.revoke_session(issued["session"]["id"]) is False


def test_revoke_by_subject_except_one(client: TesseraClient) -> None:
    a, b, c = (client.create(subject="frank") for _ in range(3))
    listed = {s["id"] for s in client.list_subject_sessions("frank")}
    assert listed == {a["session"]["id"], b["session"]["id"], c["session"]["id"]}
    assert client.revoke_subject_sessions("frank", except_id=b["session"]["id"]) == 2
    expect_error(lambda: client.validate(a["token"]), "invalid_session", reason=ENDED)
    expect_error(lambda: client.validate(c["token"]), "invalid_session", reason=ENDED)
    assert client.validate(b["token"])["session"]["subject"] == "frank"
    assert client.revoke_subject_sessions("frank") == 1
    expect_error(lambda: client.validate(b["token"]), "invalid_session")


@pytest.mark.parametrize("subject", ["..", ".", "a/b", "zoë", "100%", "a b?c#d"])
def test_subjects_that_are_not_plain_path_segments(client: TesseraClient, subject: str) -> None:
    issued = client.create(subject=subject)
    assert [s["id"] for s in client.list_subject_sessions(subject)] == [issued["session"]["id"]]
    assert client.revoke_subject_sessions(subject) == 1
    expect_error(lambda: client.validate(issued["token"]), "invalid_session")


def test_empty_subject_is_refused(client: TesseraClient) -> None:
    expect_error(lambda: client.list_subject_sessions(""), "invalid_request", status=400)


def test_stale_version_is_a_conflict(client: TesseraClient) -> None:
    issued = client.create(data={"n": 0})
    v1 = issued["session"]["version"]
    assert client.update(issued["token"], patch={"n": 1}, version=v1)["version"] == v1 + 1
    expect_error(
        lambda: client.update(issued["token"], patch={"n": 2}, version=v1),
        "version_conflict",
        status=409,
        current_version=v1 + 1,
    )
    assert client.validate(issued["token"])["session"]["data"] == {"n": 1}


def test_malformed_and_unknown_tokens(client: TesseraClient) -> None:
    expect_error(lambda: client.validate("garbage"), "invalid_session", status=401, reason="malformed")
    error = expect_error(lambda: client.validate("tss_" + "A" * 43), "invalid_session", status=401)
    assert error.reason in ("malformed", "unknown")
    issued = client.create()
    client.logout(issued["token"])
    expect_error(lambda: client.update(issued["token"], patch={}), "invalid_session", reason=ENDED)


def test_oversized_data_and_bodies(client: TesseraClient, server: Tesserad) -> None:
    issued = client.create()
    big = "x" * (70 * 1024)
    expect_error(lambda: client.update(issued["token"], data={"big": big}), "payload_too_large", status=413)
    expect_error(lambda: client.create(data={"big": big}), "payload_too_large", status=413)
    # Over tesserad's 256 KiB body limit: refused before it is sent.
    error = expect_error(lambda: client.create(data={"big": "x" * (300 * 1024)}), "payload_too_large", status=413)
    assert "over the limit" in error.message
    # Under it, data over 64 KiB is the server's refusal.
    error = expect_error(lambda: client.create(data={"big": "x" * (200 * 1024)}), "payload_too_large")
    assert "over the limit of" not in error.message
    assert client.validate(issued["token"])["session"]["data"] == {}


def test_bad_requests(client: TesseraClient) -> None:
    token = client.create()["token"]
    expect_error(lambda: client.update(token), "invalid_request", status=400)
    expect_error(lambda: client.update(token, data={}, patch={}), "invalid_request")
    expect_error(lambda: client.create(subject="s" * 257), "invalid_request", status=400)
    expect_error(lambda: client.validate(token, client={"ip": "not an ip"}), "invalid_request", status=400)
    expect_error(lambda: client.get_session("not-an-id"), "invalid_request", status=400)
    expect_error(lambda: client.revoke_subject_sessions("x", except_id="not-an-id"), "invalid_request")


def test_unknown_id_is_not_found(client: TesseraClient) -> None:
    assert client.get_session("A" * 22) is None
    assert client.revoke_session("A" * 22) is False


def test_wrong_api_key(server: Tesserad) -> None:
    with TesseraClient(server.url, "tsk_wrong") as wrong:
        expect_error(wrong.create, "unauthorized", status=401)
        expect_error(wrong.stats, "unauthorized")
        assert wrong.healthz() == {"status": "ok"}


def test_unreachable_server_fails_closed() -> None:
    with TesseraClient("http://127.0.0.1:1", "tsk_x", timeout=2) as nowhere:
        expect_error(lambda: nowhere.validate("tss_x"), "server_unreachable", status=503)


def test_revoke_all() -> None:
    other = Tesserad()
    try:
        a = other.client.create(subject="x")
        b = other.client.create()
        epoch = other.client.revoke_all()
        assert epoch >= 1
        expect_error(lambda: other.client.validate(a["token"]), "invalid_session")
        expect_error(lambda: other.client.validate(b["token"]), "invalid_session")
        assert other.client.revoke_all() > epoch
        c = other.client.create()
        assert other.client.validate(c["token"])["session"]["id"] == c["session"]["id"]
    finally:
        other.stop()


def test_stats_health_metrics_document(client: TesseraClient) -> None:
    client.create()
    stats = client.stats()
    assert stats["store"] == "memory:"
    assert any(o["operation"] == "create" and o["outcome"] == "ok" and o["count"] > 0 for o in stats["operations"])
    assert client.healthz() == {"status": "ok"}
    assert client.readyz() == {"status": "ready"}
    assert "tessera_operations_total" in client.metrics()
    assert client.openapi()["openapi"] == "3.1.0"


def test_a_method_for_every_operation(client: TesseraClient) -> None:
    document = client.openapi()
    ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert ids == set(OPERATIONS) | BROWSER_OPERATIONS
    for method in OPERATIONS.values():
        assert callable(getattr(client, method)), method


def test_forward_auth(client: TesseraClient) -> None:
    signed_in = client.create(subject="zoë")
    result = client.forward_auth(cookie=f"x=1; __Host-tessera={signed_in['token']}", user_agent="UA")
    assert result == {"subject": "zoë", "session_id": signed_in["session"]["id"]}
    anonymous = client.create()
    assert client.forward_auth(cookie=f"__Host-tessera={anonymous['token']}") is None
    assert client.forward_auth() is None
    assert client.forward_auth(cookie="__Host-tessera=garbage") is None
