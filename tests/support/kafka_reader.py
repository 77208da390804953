"""An independent reader of a topic, for assertions: plain aiokafka, no hub code."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


@dataclass(frozen=True)
class Record:
    key: str | None
    headers: dict[str, str]
    data: dict[str, Any]
    partition: int
    offset: int

    @property
    def type(self) -> str:
        return self.headers["ce_type"]


async def read_topic(bootstrap: str, topic: str, *, at_least: int = 0,
                     timeout_s: float = 20.0, settle_s: float = 0.0) -> list[Record]:
    """All records of ``topic`` from the beginning: wait until ``at_least`` arrived (or fail
    at the deadline), then keep reading ``settle_s`` longer to catch unexpected extras."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    records: list[Record] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        partitions: set[int] | None = None
        while partitions is None:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                if loop.time() > deadline:
                    raise AssertionError(f"topic {topic} does not exist")
                await consumer._client.force_metadata_update()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        settle_until: float | None = None
        while True:
            now = loop.time()
            if len(records) >= at_least and settle_until is None:
                settle_until = now + settle_s
            if settle_until is not None and now >= settle_until:
                break
            if now > deadline:
                raise AssertionError(
                    f"only {len(records)} of {at_least} records arrived on {topic}: "
                    f"{[r.type for r in records]}")
            batch = await consumer.getmany(timeout_ms=200)
            for tp, msgs in batch.items():
                for m in msgs:
                    records.append(Record(
                        key=m.key.decode() if m.key is not None else None,
                        headers={k: v.decode() for k, v in m.headers},
                        data=json.loads(m.value) if m.value else {},
                        partition=tp.partition,
                        offset=m.offset,
                    ))
    finally:
        await consumer.stop()
    return records


def by_key(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        grouped.setdefault(r.key or "", []).append(r)
    return grouped
