"""The async client against a real tesserad: the same calls as the sync one, awaited."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from helpers import ENDED, Tesserad, expect_error_async
from tessera_client import BROWSER_OPERATIONS, OPERATIONS, AsyncTesseraClient

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(server: Tesserad) -> AsyncIterator[AsyncTesseraClient]:
    async with AsyncTesseraClient(server.url, server.api_key) as client:
        yield client


async def test_lifecycle(client: AsyncTesseraClient) -> None:
    created = await client.create(data={"theme": "dark"}, client={"ip": "203.0.113.9"})
    assert created["session"]["client"] == {"ip": "203.0.113.9", "user_agent": None}
    valid = await client.validate(created["token"])
    assert valid["session"]["id"] == created["session"]["id"] and "token" not in valid
    updated = await client.update(created["token"], patch={"n": 1}, version=created["session"]["version"])
    assert updated["data"] == {"theme": "dark", "n": 1}
    login = await client.login("alice", token=created["token"])
    await expect_error_async(client.validate(created["token"]), "invalid_session", reason="revoked")
    rotated = await client.rotate(login["token"])
    assert (await client.get_session(created["session"]["id"])) is not None
    assert [s["id"] for s in await client.list_subject_sessions("alice")].count(created["session"]["id"]) == 1
    await client.logout(rotated["token"])
    await expect_error_async(client.validate(rotated["token"]), "invalid_session", status=401, reason=ENDED)


async def test_errors(client: AsyncTesseraClient) -> None:
    issued = await client.create(data={"n": 0})
    version = issued["session"]["version"]
    await client.update(issued["token"], patch={"n": 1}, version=version)
    await expect_error_async(
        client.update(issued["token"], patch={"n": 2}, version=version),
        "version_conflict",
        status=409,
        current_version=version + 1,
    )
    await expect_error_async(client.update(issued["token"], data={"big": "x" * 70_000}), "payload_too_large", status=413)
    await expect_error_async(client.validate("garbage"), "invalid_session", reason="malformed")
    await expect_error_async(client.get_session("bad"), "invalid_request", status=400)
    async with AsyncTesseraClient("http://127.0.0.1:1", "tsk_x", timeout=2) as nowhere:
        await expect_error_async(nowhere.validate("tss_x"), "server_unreachable", status=503)


async def test_subjects_and_revocation(client: AsyncTesseraClient) -> None:
    first = await client.create(subject="..")
    second = await client.create(subject="..")
    assert await client.revoke_subject_sessions("..", except_id=second["session"]["id"]) == 1
    await expect_error_async(client.validate(first["token"]), "invalid_session")
    assert await client.revoke_session(second["session"]["id"]) is True
    assert await client.revoke_session(second["session"]["id"]) is False


async def test_operations_and_forward_auth(client: AsyncTesseraClient) -> None:
    document = await client.openapi()
    ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert ids == set(OPERATIONS) | BROWSER_OPERATIONS
    for method in OPERATIONS.values():
        assert callable(getattr(client, method)), method
    assert await client.healthz() == {"status": "ok"}
    assert await client.readyz() == {"status": "ready"}
    assert "tessera_" in await client.metrics()
    assert (await client.stats())["store"] == "memory:"
    signed_in = await client.create(subject="bob")
    result = await client.forward_auth(cookie=f"__Host-tessera={signed_in['token']}")
    assert result == {"subject": "bob", "session_id": signed_in["session"]["id"]}
