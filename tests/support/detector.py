"""A detector-only hub for tests: its configuration (a registry, the session broker, a fast
poll and backoff, no leader election, no admin listener) and the hub running its loop."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.app import Hub, Roles
from hub.config import HubConfig
from tests.support.wait import until


def hub_config(server_url: str, bootstrap: str, topic: str, **detector: Any) -> HubConfig:
    return HubConfig(
        mlflow={"tracking_uri": server_url, "request_retries": 0, "scan_timeout_s": 10},
        kafka={"bootstrap_servers": bootstrap, "topic": topic, "partitions": 3},
        detector={"poll_interval_s": 0.2, "backoff_initial_s": 0.1, "backoff_max_s": 0.5,
                  "leader_election": False, **detector},
        subscriptions=[],
        admin={"enabled": False},
    )


class Running:
    """A detector-only hub running its loop in a task."""

    def __init__(self, config: Any) -> None:
        self.hub = Hub(config, Roles(deliver=False))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Hub:
        await self.hub.__aenter__()
        self.task = asyncio.create_task(self.hub.run())
        assert self.hub.detector is not None
        detector = self.hub.detector
        await until(lambda: detector.state is not None, "baseline")
        return self.hub

    async def __aexit__(self, *exc: object) -> None:
        self.hub.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 20)
        await self.hub.aclose()
