"""Fixtures shared by several integration test modules (the session's broker and MLflow
server are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.receiver import Receiver, running_receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that checks signatures and records hits."""
    async with running_receiver() as r:
        yield r

