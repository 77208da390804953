"""Fixtures shared by several integration test modules (the session's broker and MLflow
server are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hub.http import HttpClients
from tests.support.deploy import FakeGitHub, serve
from tests.support.procs import Procs


@pytest.fixture
async def http_clients() -> AsyncIterator[HttpClients]:
    """The hub's SSRF-guarded HTTP session, allowed to reach 127.0.0.1."""
    async with HttpClients(allowed_networks=["127.0.0.0/8"]) as clients:
        yield clients


@pytest.fixture
async def github() -> AsyncIterator[tuple[FakeGitHub, str]]:
    """The GitHub REST API stand-in, served: (the fake, its base URL)."""
    fake = FakeGitHub()
    async with serve(fake.app()) as url:
        yield fake, url


@pytest.fixture
async def start_proc() -> AsyncIterator[Procs]:
    """Starts hub processes for the test; kills whatever is left at teardown."""
    procs = Procs()
    yield procs
    for proc in procs.started:
        await proc.kill()
