"""A subscription's own lane: one consumer group per subscription on the events topic.

Each subscription consumes at its own pace, so a slow or dead endpoint only holds back its
own group; other subscriptions never wait for it. Within a lane, the events of one model are
delivered one after the other (first attempts keep per-model order); different models go
concurrently, at most ``delivery.max_in_flight`` at a time.

Offsets are committed after every record of a batch reached a final outcome (delivered,
durably scheduled for retry, dead-lettered, or filtered out by the subscription's rules).
A worker killed at any moment therefore loses nothing; it re-delivers the uncommitted batch,
with the same event ids.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord

from hub.bus import new_group_consumer
from hub.codec import decode
from hub.config import DeliveryConfig, KafkaConfig, SubscriptionConfig
from hub.dispatch import Dispatcher
from hub.events import Event
from hub.metrics import Metrics
from hub.routing import matches

log = structlog.get_logger(__name__)


class _StartFromTime(ConsumerRebalanceListener):
    """Partitions this group never committed start at the worker's start time, not at the
    topic's whole history (``delivery.start_from: now``)."""

    def __init__(self, consumer: AIOKafkaConsumer, started_ms: int) -> None:
        self._consumer = consumer
        self._started_ms = started_ms

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        fresh = [tp for tp in assigned if await self._consumer.committed(tp) is None]
        if not fresh:
            return
        found = await self._consumer.offsets_for_times({tp: self._started_ms for tp in fresh})
        for tp in fresh:
            if found.get(tp) is None:
                await self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, found[tp].offset)


class SubscriptionLane:
    def __init__(self, subscription: Callable[[], SubscriptionConfig | None], name: str, *,
                 dispatcher: Dispatcher, kafka: KafkaConfig, bootstrap_servers: str,
                 topic: str, config: DeliveryConfig, metrics: Metrics,
                 started_ms: int | None = None) -> None:
        self.name = name
        self._subscription = subscription
        self._dispatcher = dispatcher
        self._kafka = kafka
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._config = config
        self._metrics = metrics
        self._started_ms = started_ms or int(time.time() * 1000)
        self.group_id = f"{config.group_id_prefix}.{name}"
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self.assigned = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        consumer = new_group_consumer(
            self._kafka, self._bootstrap, self.group_id,
            auto_offset_reset="earliest" if self._config.start_from == "earliest" else "latest",
            fetch_max_wait_ms=self._config.fetch_max_wait_ms,
            max_poll_interval_ms=max(300_000, int(self._config.grace_period_s * 2000)),
        )
        listener = _StartFromTime(consumer, self._started_ms) \
            if self._config.start_from == "now" else None
        consumer.subscribe([self._topic], listener=listener)
        await consumer.start()
        log.info("delivery.lane_started", subscription=self.name, group=self.group_id)
        next_lag_check = 0.0
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=300, max_records=self._config.max_batch)
                if consumer.assignment():
                    self.assigned.set()
                if batch:
                    await self._process(batch)
                    await self._commit(consumer, batch)
                if time.monotonic() >= next_lag_check:
                    next_lag_check = time.monotonic() + 5
                    await self._report_lag(consumer)
        finally:
            await consumer.stop()
            log.info("delivery.lane_stopped", subscription=self.name)

    async def _process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        by_model: dict[bytes | None, list[Event]] = defaultdict(list)
        sub = self._subscription()
        for tp, records in batch.items():
            for record in records:
                try:
                    event = decode(record.key, record.value, record.headers)
                except ValueError as exc:
                    log.error("delivery.bad_record", topic=tp.topic, partition=tp.partition,
                              offset=record.offset, error=str(exc), action="skipped")
                    continue
                if sub is not None and matches(sub, event):
                    by_model[record.key].append(event)
                elif sub is None:  # removed at runtime: the dispatcher dead-letters it
                    by_model[record.key].append(event)
        async with asyncio.TaskGroup() as group:
            for events in by_model.values():
                await self._slots.acquire()
                group.create_task(self._deliver_in_order(events))

    async def _deliver_in_order(self, events: list[Event]) -> None:
        try:
            for event in events:
                await self._dispatcher.deliver(self.name, event)
        finally:
            self._slots.release()

    async def _commit(self, consumer: AIOKafkaConsumer,
                      batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved to another worker, which re-delivers the batch
            # (duplicates carry the same event id).
            log.warning("delivery.commit_failed", subscription=self.name, error=repr(exc))

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        assigned = list(consumer.assignment())
        if not assigned:
            return
        try:
            ends = await consumer.end_offsets(assigned)
            lag = 0
            for tp in assigned:
                lag += max(0, ends[tp] - await consumer.position(tp))
        except KafkaError:
            return
        self._metrics.consumer_lag.labels(self.group_id).set(lag)
