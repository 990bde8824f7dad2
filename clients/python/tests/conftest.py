from __future__ import annotations

from typing import Iterator

import pytest

from helpers import Tesserad


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[Tesserad]:
    """One tesserad (memory store, default settings) per test module."""
    running = Tesserad()
    yield running
    running.stop()
