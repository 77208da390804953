"""Fixtures shared by the unit tests' modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.ingest import Ingest, make_hub, serve


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    """``POST /ingest/mlflow`` on 127.0.0.1 in front of a stub hub with a recording detector."""
    server = await serve(make_hub())
    yield server
    await server.client.close()
