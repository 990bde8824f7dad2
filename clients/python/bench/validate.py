"""What the clients add per validation: the same sequential loop of
``POST /v1/sessions/validate`` against one tesserad (memory store), as a
bare httpx call on a kept-alive connection (body sent, answer read, nothing
parsed; then the same with the answer parsed) and through ``TesseraClient.validate`` (JSON in and out, errors
mapped) — and the same pair with the async clients. Rounds alternate; the
median of the rounds is reported in µs per call: wall time (dominated by
the server) and this process's CPU time (what the client itself costs).

    .venv/bin/python bench/validate.py        (ITERATIONS=3000 ROUNDS=7 by default)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable, Dict, List, Tuple

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import Tesserad  # noqa: E402

from tessera_client import AsyncTesseraClient, TesseraClient  # noqa: E402

ITERATIONS = int(os.environ.get("ITERATIONS", "3000"))
ROUNDS = int(os.environ.get("ROUNDS", "7"))


def measure(run: Callable[[], None]) -> Tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(ITERATIONS):
        run()
    return (time.perf_counter() - wall) / ITERATIONS * 1e6, (time.process_time() - cpu) / ITERATIONS * 1e6


async def measure_async(run: Callable[[], Awaitable[None]]) -> Tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(ITERATIONS):
        await run()
    return (time.perf_counter() - wall) / ITERATIONS * 1e6, (time.process_time() - cpu) / ITERATIONS * 1e6


def main() -> None:
    server = Tesserad()
    try:
        issued = server.client.create(subject="bench", data={"theme": "dark", "cart": [1, 2, 3]})
        token = issued["token"]
        client_info = {"ip": "203.0.113.9", "user_agent": "Bench/1.0"}
        body = json.dumps({"token": token, "client": client_info}).encode()
        headers = {"authorization": f"Bearer {server.api_key}", "content-type": "application/json"}
        url = f"{server.url}/v1/sessions/validate"

        raw = httpx.Client()
        client = TesseraClient(server.url, server.api_key)

        def bare() -> None:
            response = raw.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(response.status_code)

        def bare_json() -> None:
            response = raw.post(url, content=body, headers=headers)
            if response.status_code != 200 or response.json()["session"]["subject"] != "bench":
                raise RuntimeError(response.status_code)

        def typed() -> None:
            if client.validate(token, client=client_info)["session"]["subject"] != "bench":  # type: ignore[arg-type]
                raise RuntimeError("wrong session")

        raw_async = httpx.AsyncClient()
        async_client = AsyncTesseraClient(server.url, server.api_key)

        async def bare_async() -> None:
            response = await raw_async.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(response.status_code)

        async def typed_async() -> None:
            valid = await async_client.validate(token, client=client_info)  # type: ignore[arg-type]
            if valid["session"]["subject"] != "bench":
                raise RuntimeError("wrong session")

        samples: Dict[str, List[Tuple[float, float]]] = {}
        for _ in range(200):
            bare()
            typed()

        async def run_async_round() -> None:
            for name, run in (("bare httpx.AsyncClient", bare_async), ("AsyncTesseraClient.validate", typed_async)):
                samples.setdefault(name, []).append(await measure_async(run))

        loop = asyncio.new_event_loop()
        for _ in range(200):
            loop.run_until_complete(bare_async())
            loop.run_until_complete(typed_async())
        for _ in range(ROUNDS):
            for name, run in (
                ("bare httpx.Client", bare),
                ("bare + response.json()", bare_json),
                ("TesseraClient.validate", typed),
            ):
                samples.setdefault(name, []).append(measure(run))
            loop.run_until_complete(run_async_round())

        print(
            f"validate, {ROUNDS} rounds x {ITERATIONS} sequential calls, medians in µs per call "
            f"(Python {sys.version.split()[0]}, httpx {httpx.__version__})"
        )
        print(f"  {'':30} {'wall':>8} {'vs bare':>8} {'client CPU':>11} {'vs bare':>8}")
        groups = [
            ("bare httpx.Client", "bare + response.json()", "TesseraClient.validate"),
            ("bare httpx.AsyncClient", "AsyncTesseraClient.validate"),
        ]
        for group in groups:
            base_name = group[0]
            base_wall = statistics.median(w for w, _ in samples[base_name])
            base_cpu = statistics.median(c for _, c in samples[base_name])
            for label in group:
                wall = statistics.median(w for w, _ in samples[label])
                cpu = statistics.median(c for _, c in samples[label])
                print(f"  {label:30} {wall:8.1f} {wall - base_wall:+8.1f} {cpu:11.1f} {cpu - base_cpu:+8.1f}")
        loop.run_until_complete(raw_async.aclose())
        loop.run_until_complete(async_client.aclose())
        loop.close()
        raw.close()
        client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
