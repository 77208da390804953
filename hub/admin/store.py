"""Subscriptions created at runtime, kept in a compacted Kafka topic.

The topic ``<kafka.topic>.subscriptions`` (one partition, ``cleanup.policy=compact``) holds
one record per runtime subscription: key = its name, value = the subscription as JSON
(handler options included), a tombstone once deleted. Every hub process reads it to the end
at start (:meth:`SubscriptionStore.load`) and then follows it (:meth:`SubscriptionStore.watch`),
applying each change to its local :class:`~hub.deliver.worker.DeliveryWorker`, so all workers and a
restarted hub deliver to the same set.

**The topic holds handler secrets** (webhook secrets, tokens, header values) as given to
the API: protect it like the configuration file (Kafka ACLs, encryption at rest). It never
holds ``${ENV_NAME}`` references: a runtime subscription may not read the hub's environment
(:mod:`hub.envrefs`). A record with one, written by an older version, is listed but its
lane is not started (``substore.refused``, naming the subscription and the fields; the hub
is not ready while it is there); replace it (PUT/PATCH) or delete it.

Config-file subscriptions win: a runtime record named like one of them is ignored (logged).

A broker that comes back empty loses the topic's records; each hub process writes back the
runtime subscriptions it holds (:meth:`SubscriptionStore.watch`). Records go to partition 0,
the one the store reads, whatever partitions a broker that re-created the topic gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from hub.bus import TopicSpec, close_client, connection_options, ensure_topics, new_producer
from hub.config import HubConfig, SubscriptionConfig
from hub.deliver.worker import DeliveryWorker
from hub.envrefs import REFUSAL, fields_with_references
from hub.errors import BusError, ConfigError, PluginError

log = structlog.get_logger(__name__)

FORMAT = 1
_RESET_CHECK_S = 2.0  # how often the store asks whether the broker lost the topic


def store_topic(config: HubConfig) -> str:
    return f"{config.kafka.topic}.subscriptions"


def encode(sub: SubscriptionConfig, *, description: str | None, now: datetime) -> bytes:
    return json.dumps({"format": FORMAT, "subscription": sub.model_dump(mode="json"),
                       "description": description, "updated_at": now.isoformat()},
                      separators=(",", ":")).encode()


def decode(value: bytes) -> tuple[SubscriptionConfig, str | None]:
    raw = json.loads(value)
    return SubscriptionConfig.model_validate(raw["subscription"]), raw.get("description")


class SubscriptionStore:
    """``async with SubscriptionStore(config, bootstrap, worker=worker) as store`` loads the
    runtime subscriptions (and adds them to ``worker``); run :meth:`watch` beside the worker
    to follow changes made by other processes."""

    def __init__(self, config: HubConfig, bootstrap_servers: str, *,
                 worker: DeliveryWorker | None = None) -> None:
        self._config = config
        self._bootstrap = bootstrap_servers
        self._worker = worker
        self.topic = store_topic(config)
        self.topic_spec: TopicSpec = (self.topic, 1, {"cleanup.policy": "compact"})
        self.reserved = frozenset(s.name for s in config.subscriptions)
        self.subscriptions: dict[str, SubscriptionConfig] = {}
        self.descriptions: dict[str, str | None] = {}
        self._applied: dict[str, int] = {}  # name → offset of the record in effect
        self._next = 0  # the offset after the last record read
        self._lock = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tp = TopicPartition(self.topic, 0)
        self._stopping = asyncio.Event()
        self._closed = False

    async def __aenter__(self) -> SubscriptionStore:
        try:
            await ensure_topics(self._config.kafka, self._bootstrap, [self.topic_spec])
            self._producer = new_producer(self._config.kafka, self._bootstrap)
            self._consumer = AIOKafkaConsumer(
                **connection_options(self._config.kafka, self._bootstrap),
                enable_auto_commit=False, auto_offset_reset="earliest")
            try:
                await self._producer.start()
                await self._consumer.start()
            except KafkaError as exc:
                raise BusError(f"cannot connect to Kafka at {self._bootstrap}: {exc!r}") \
                    from exc
            self._consumer.assign([self._tp])
            await self.load()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop()
        for client in (self._consumer, self._producer):
            if client is not None:
                await close_client(client)

    def stop(self) -> None:
        self._stopping.set()

    async def load(self) -> dict[str, SubscriptionConfig]:
        """Read the topic from the beginning up to its current end and apply every record."""
        consumer = self._require(self._consumer)
        try:
            await consumer.seek_to_beginning(self._tp)
            end = (await consumer.end_offsets([self._tp]))[self._tp]
            while await consumer.position(self._tp) < end:
                batch = await consumer.getmany(self._tp, timeout_ms=1000)
                await self._apply_all(batch.get(self._tp, []))
        except KafkaError as exc:
            raise BusError(f"cannot read {self.topic}: {exc!r}") from exc
        log.info("substore.loaded", topic=self.topic, subscriptions=sorted(self.subscriptions))
        return dict(self.subscriptions)

    async def watch(self) -> None:
        """Follow the topic until :meth:`stop`: changes made through any hub's admin API.

        A broker that comes back empty has lost the topic's records: the topic then ends
        below what this store read or wrote (or, where the broker resets the position itself,
        records come again from an offset already read), and this process writes back every
        runtime subscription it holds (:meth:`_restore`) before it follows the new topic."""
        consumer = self._require(self._consumer)
        failing = False
        next_check = 0.0
        while not self._stopping.is_set():
            try:
                batch = await consumer.getmany(self._tp, timeout_ms=500, max_records=500)
                records = batch.get(self._tp, [])
                lost = bool(records) and records[0].offset < self._next
                if not lost and time.monotonic() >= next_check:
                    next_check = time.monotonic() + _RESET_CHECK_S
                    lost = await self._ends_below_position(consumer)
                if lost:
                    await self._restore(consumer)
                    continue
            except (KafkaError, BusError, TimeoutError) as exc:  # aiokafka reconnects itself
                if not failing:
                    log.warning("substore.read_failed", topic=self.topic, error=repr(exc),
                                action="retrying every second")
                failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1)
                continue
            if failing:
                log.info("substore.read_resumed", topic=self.topic)
                failing = False
            await self._apply_all(records)

    async def _ends_below_position(self, consumer: AIOKafkaConsumer) -> bool:
        """The topic ends below where this store has read, or at or below a record it wrote
        or applied (they are written one at a time: the end is exact)."""
        async with asyncio.timeout(2):  # the broker may be away: stopping must not wait
            end = (await consumer.end_offsets([self._tp]))[self._tp]
            seen = max(self._applied.values(), default=-1)
            return bool(end <= seen or end < await consumer.position(self._tp))

    async def _restore(self, consumer: AIOKafkaConsumer) -> None:
        """The broker lost this topic's records: write back every runtime subscription this
        process holds (one record at a time), then read the new topic from its beginning.
        Other processes do the same; their records repeat ours, or are applied as usual."""
        async with self._lock:
            log.warning("substore.topic_lost", topic=self.topic,
                        subscriptions=sorted(self.subscriptions),
                        action="writing them back from memory")
            self._applied.clear()
            for name, sub in sorted(self.subscriptions.items()):
                self._applied[name] = await self._send(name.encode(), encode(
                    sub, description=self.descriptions.get(name), now=datetime.now(UTC)))
            self._next = 0
            await consumer.seek_to_beginning(self._tp)
        log.info("substore.restored", topic=self.topic, subscriptions=len(self.subscriptions))

    async def put(self, sub: SubscriptionConfig, *, description: str | None = None) -> None:
        """Create or replace a runtime subscription: start it here, then persist it.

        The change is in effect in this process when this returns: the new settings and
        handler are swapped in whole, and attempts in flight with the old ones have
        finished (see :meth:`~hub.deliver.worker.DeliveryWorker.add_subscription`). Raises
        ``ConfigError`` for a config-file name or a handler that cannot be built (nothing
        is changed or persisted then), ``BusError`` if Kafka did not acknowledge (the local
        change is rolled back).
        """
        if sub.name in self.reserved:
            raise ConfigError(f"subscription {sub.name!r} is defined in the configuration "
                              "file and is read-only", field="name")
        if fields := fields_with_references(sub.options):
            raise ConfigError(REFUSAL, field=fields[0])
        async with self._lock:
            previous = self.subscriptions.get(sub.name)
            changed = previous is None or previous.model_dump() != sub.model_dump()
            # a new description alone leaves the running subscription as it is; a handler
            # that cannot be built raises here with nothing changed (the old one still runs)
            if changed:
                await self._start(sub)
            try:
                offset = await self._send(sub.name.encode(), encode(
                    sub, description=description, now=datetime.now(UTC)))
            except BusError:
                if changed:
                    await self._rollback(sub.name, previous)
                raise
            self.subscriptions[sub.name] = sub
            self.descriptions[sub.name] = description
            self._applied[sub.name] = offset
        log.info("substore.put", subscription=sub.name, handler=sub.handler, offset=offset)

    async def delete(self, name: str) -> bool:
        """Stop the subscription here, then write its tombstone: from the call on no delivery
        of it starts in this process, and none is under way once this returns. ``False`` if
        it did not exist; ``BusError`` if Kafka did not acknowledge (it runs again here)."""
        async with self._lock:
            previous = self.subscriptions.get(name)
            if previous is None:
                return False
            if self._worker is not None:
                await self._worker.remove_subscription(name)
            try:
                offset = await self._send(name.encode(), None)
            except BusError:
                if self._worker is not None:
                    with contextlib.suppress(ConfigError, PluginError):  # not running before
                        await self._worker.add_subscription(previous)
                raise
            self._applied[name] = offset
            self.subscriptions.pop(name, None)
            self.descriptions.pop(name, None)
        log.info("substore.deleted", subscription=name, offset=offset)
        return True

    # --- internals ----------------------------------------------------------------------

    async def _apply_all(self, records: list[ConsumerRecord]) -> None:
        async with self._lock:
            for record in records:
                await self._apply(record)
                self._next = record.offset + 1

    async def _apply(self, record: ConsumerRecord) -> None:
        if record.key is None:
            return
        name = record.key.decode("utf-8", errors="replace")
        if record.offset <= self._applied.get(name, -1):
            return  # this process wrote it (or something newer) already
        if name in self.reserved:
            log.warning("substore.name_taken_by_config", subscription=name,
                        action="ignored; the configuration file wins")
            return
        self._applied[name] = record.offset
        if record.value is None:
            if self.subscriptions.pop(name, None) is not None:
                self.descriptions.pop(name, None)
                if self._worker is not None:
                    await self._worker.remove_subscription(name)
                log.info("substore.removed", subscription=name, offset=record.offset)
            return
        try:
            sub, description = decode(record.value)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            log.error("substore.bad_record", offset=record.offset, subscription=name,
                      error=type(exc).__name__, action="skipped")
            return
        self.descriptions[name] = description
        current = self.subscriptions.get(name)
        if current is not None and current.model_dump() == sub.model_dump():
            return
        self.subscriptions[name] = sub
        if fields := fields_with_references(sub.options):  # older versions took them
            if self._worker is not None:  # never expanded; not the old settings either
                await self._worker.refuse(sub)
            log.error("substore.refused", subscription=name, offset=record.offset,
                      fields=fields, reason=REFUSAL,
                      action="listed, not delivered; replace it (PUT/PATCH) or delete it")
            return
        try:
            await self._start(sub)
        except (ConfigError, PluginError) as exc:
            if self._worker is not None:  # not the old settings either: readiness says why
                await self._worker.refuse(sub)
            log.error("substore.apply_failed", subscription=name, error=str(exc),
                      action="listed, but not delivered by this process")
            return
        log.info("substore.applied", subscription=name, handler=sub.handler,
                 offset=record.offset)

    async def _start(self, sub: SubscriptionConfig) -> None:
        if self._worker is not None:
            await self._worker.add_subscription(sub)

    async def _rollback(self, name: str, previous: SubscriptionConfig | None) -> None:
        if self._worker is None:
            return
        if previous is None:
            await self._worker.remove_subscription(name)
        else:
            await self._worker.add_subscription(previous)

    async def _send(self, key: bytes, value: bytes | None) -> int:
        producer = self._require(self._producer)
        try:
            # partition 0, the one this store reads: a broker that re-created the topic by
            # itself (auto-creation) may have given it more
            metadata = await (await producer.send(self.topic, key=key, value=value,
                                                  partition=self._tp.partition))
        except KafkaError as exc:
            raise BusError(f"writing to {self.topic} failed: {exc!r}") from exc
        return int(metadata.offset)

    def _require(self, client: Any) -> Any:
        if client is None or self._closed:
            raise RuntimeError("SubscriptionStore used outside 'async with'")
        return client
