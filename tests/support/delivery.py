"""Building blocks of delivery tests: a worker configuration on the session broker with a
quick retry schedule, a webhook subscription, numbered events, publishing them, and a
running delivery worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from hub.bus import Publisher
from hub.config import HubConfig
from hub.deliver.worker import DeliveryWorker, ensure_hub_topics
from hub.events import Event
from tests.support.receiver import SECRET


def delivery_config(bootstrap: str, topic: str, subscriptions: list[dict[str, Any]],
                    schedule: list[float] | None = None) -> HubConfig:
    return HubConfig(
        kafka={"bootstrap_servers": bootstrap, "topic": topic, "partitions": 3,
               "session_timeout_ms": 2000, "heartbeat_interval_ms": 500},
        delivery={"retry_schedule_s": [0.2, 0.2] if schedule is None else schedule,
                  "jitter": 0, "allowed_networks": ["127.0.0.0/8"], "start_from": "earliest",
                  "grace_period_s": 2},
        subscriptions=subscriptions,
    )


def webhook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "handler": "webhook", "url": url, "secret": SECRET,
            "timeout_s": extra.pop("timeout_s", 2), **extra}


def event(n: int, model: str = "iris", type_: str = "model_version.created") -> Event:
    return Event(id=f"evt-{n}", type=type_, model=model, version=str(n),
                 time=datetime.now(UTC), source="http://mlflow",
                 data={"model_name": model, "version": str(n), "tags": {}})


async def publish(config: HubConfig, events: list[Event]) -> None:
    await ensure_hub_topics(config, config.kafka.bootstrap_servers)
    async with Publisher(config.kafka, config.kafka.bootstrap_servers,
                         config.kafka.topic) as publisher:
        await publisher.publish(events)


@asynccontextmanager
async def running_worker(config: HubConfig) -> AsyncIterator[DeliveryWorker]:
    async with DeliveryWorker(config, config.kafka.bootstrap_servers) as worker:
        task = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready()
            yield worker
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
