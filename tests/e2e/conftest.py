"""Fixtures of the end-to-end tests: the hub as a real subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.hub_process import HubProcess


@pytest.fixture
def start_hub() -> Iterator[Callable[..., HubProcess]]:
    procs: list[HubProcess] = []

    def start(args: list[str], cwd: Path, env: dict[str, str], *,
              command: list[str] | None = None) -> HubProcess:
        procs.append(HubProcess(args, cwd, env, command=command))
        return procs[-1]

    yield start
    for proc in procs:
        proc.kill()
