"""Real servers for the tests — tesserad (TESSERAD_BIN, else
target/debug/tesserad of this repository) on a free loopback port with a
generated API key, a private redis-server, the example app under uvicorn —
and a minimal browser to drive the app over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlencode, urlsplit

import pytest
import uvicorn

from tessera_client import TesseraClient, TesseraError

REPO_ROOT = Path(__file__).resolve().parents[3]


def tesserad_binary() -> str:
    binary = os.environ.get("TESSERAD_BIN") or str(REPO_ROOT / "target" / "debug" / "tesserad")
    if not os.path.exists(binary):
        raise RuntimeError(
            f"no tesserad at {binary}: set TESSERAD_BIN or build it (cargo build -p tesserad --bin tesserad)"
        )
    return binary


class Tesserad:
    """A running tesserad; ``client`` is a sync client with the right key."""

    def __init__(self, store: str = "memory:", args: Sequence[str] = ()) -> None:
        binary = tesserad_binary()
        self.api_key = "tsk_" + secrets.token_urlsafe(32)
        self._data_dir = tempfile.mkdtemp(prefix="tesserad-py-")
        command = [
            binary,
            "serve",
            "--listen", "127.0.0.1:0",
            "--store", store,
            "--data-dir", self._data_dir,
            "--log-level", "warn",
            "--shutdown-grace", "1s",
            *args,
        ]
        # The key goes through the environment, not the command line.
        env = {**os.environ, "TESSERA_API_KEY": self.api_key}
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.url = self._wait_for_address()
        self.client = TesseraClient(self.url, self.api_key, timeout=5.0)

    def _wait_for_address(self) -> str:
        assert self._process.stdout is not None
        deadline = time.monotonic() + 20
        found: List[str] = []

        def read() -> None:
            assert self._process.stdout is not None
            for line in self._process.stdout:
                match = re.match(r"tesserad listening on (http://\S+)", line)
                if match:
                    found.append(match.group(1))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=max(0.0, deadline - time.monotonic()))
        if not found:
            self.stop()
            self._stderr.seek(0)
            raise RuntimeError(f"tesserad did not start:\n{self._stderr.read().decode(errors='replace')}")
        return found[0]

    def stop(self) -> None:
        self.client.close() if hasattr(self, "client") else None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()
        shutil.rmtree(self._data_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Redis:
    """A private redis-server (no persistence) on a free loopback port."""

    def __init__(self) -> None:
        port = free_port()
        binary = os.environ.get("REDIS_SERVER", "redis-server")
        self._process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.kill()
                    raise RuntimeError(f"{binary} did not start on port {port} (is redis-server installed?)")
                time.sleep(0.05)

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()


class AppServer:
    """An ASGI app served by uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(128)
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


class Page:
    def __init__(self, status: int, headers: List[Tuple[str, str]], text: str) -> None:
        self.status = status
        self.header_list = headers
        self.headers = {name.lower(): value for name, value in headers}
        self.set_cookies = [value for name, value in headers if name.lower() == "set-cookie"]
        self.text = text

    def json(self) -> Any:
        return json.loads(self.text)


class Browser:
    """A cookie jar following Set-Cookie (removal included), the Origin header on
    unsafe requests as browsers send it, and no automatic redirects."""

    def __init__(self, base: str, user_agent: str = "TestBrowser/1.0") -> None:
        self.base = base
        self.user_agent = user_agent
        self.cookies: Dict[str, str] = {}

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> Page:
        return self.request("GET", path, None, headers or {})

    def submit(self, path: str, fields: Dict[str, str], headers: Optional[Dict[str, str]] = None) -> Page:
        return self.request(
            "POST",
            path,
            urlencode(fields).encode(),
            {"content-type": "application/x-www-form-urlencoded", **(headers or {})},
        )

    def json(self, method: str, path: str, value: Any, headers: Optional[Dict[str, str]] = None) -> Page:
        return self.request(
            method, path, json.dumps(value).encode(), {"content-type": "application/json", **(headers or {})}
        )

    @staticmethod
    def csrf_field(page: Page) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        if not match:
            raise AssertionError(f"no csrf_token field in:\n{page.text}")
        return match.group(1)

    def request(self, method: str, path: str, body: Optional[bytes], headers: Dict[str, str]) -> Page:
        parts = urlsplit(self.base)
        outgoing = {"user-agent": self.user_agent, **headers}
        if self.cookies and "cookie" not in outgoing:
            outgoing["cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if method not in ("GET", "HEAD") and "origin" not in outgoing:
            outgoing["origin"] = self.base
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=outgoing)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
            page = Page(response.status, response.getheaders(), text)
        finally:
            connection.close()
        for line in page.set_cookies:
            pair, *attributes = line.split(";")
            name, _, value = pair.partition("=")
            if any(a.strip().lower() == "max-age=0" for a in attributes):
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value.strip()
        return page


def check_error(
    error: TesseraError,
    code: str,
    *,
    status: Optional[int] = None,
    reason: Optional[str] = None,
    current_version: Optional[int] = None,
) -> TesseraError:
    assert error.error == code, f"expected {code}, got {error!r}"
    if status is not None:
        assert error.status == status, repr(error)
    if reason is not None:
        assert error.reason == reason, repr(error)
    if current_version is not None:
        assert error.current_version == current_version, repr(error)
    return error


def expect_error(call: Callable[[], Any], code: str, **fields: Any) -> TesseraError:
    """Calls ``call`` and checks the TesseraError it raises."""
    with pytest.raises(TesseraError) as info:
        call()
    return check_error(info.value, code, **fields)


async def expect_error_async(awaitable: Awaitable[Any], code: str, **fields: Any) -> TesseraError:
    """Awaits ``awaitable`` and checks the TesseraError it raises."""
    with pytest.raises(TesseraError) as info:
        await awaitable
    return check_error(info.value, code, **fields)


SET_COOKIE = re.compile(r"^__Host-tessera=(tss_[A-Za-z0-9_-]+); HttpOnly; SameSite=Lax; Secure; Path=/$")
REMOVAL = "__Host-tessera=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
#: The reason tesserad gives for the token of a session that was logged out
#: or revoked: the record is gone, so ``unknown`` (the document's
#: ``revoked`` is what a token superseded by login gets).
ENDED = "unknown"
