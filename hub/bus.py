"""Kafka plumbing shared by the detector, the workers and the admin API: connection settings,
topics, a publisher that only returns once the broker acknowledged (``acks=all``), and
group-less reads of a topic (all of it, or its newest records)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import aclosing
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from hub.codec import encode
from hub.config import KafkaConfig
from hub.errors import BusError
from hub.events import Event

log = structlog.get_logger(__name__)


def connection_options(config: KafkaConfig, bootstrap_servers: str) -> dict[str, Any]:
    """Options every aiokafka client of the hub shares (servers, TLS, SASL)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
    }
    if config.sasl_mechanism:
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username
        if config.sasl_password is not None:
            options["sasl_plain_password"] = config.sasl_password.get_secret_value()
    if config.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(cafile=config.ssl_cafile)
    return options


TopicSpec = tuple[str, int, dict[str, str]]
"""A topic the hub owns: ``(name, partitions, topic_configs)``."""


async def ensure_topics(config: KafkaConfig, bootstrap_servers: str,
                        topics: Iterable[TopicSpec]) -> None:
    """Create missing topics: ``(name, partitions, topic_configs)``. Existing ones are kept."""
    admin = AIOKafkaAdminClient(**connection_options(config, bootstrap_servers))
    try:
        await admin.start()
        created = await create_missing(admin, config, topics, set(await admin.list_topics()))
        if created:
            log.info("bus.topics_created", topics=created)
    except KafkaError as exc:
        raise BusError(f"cannot create topics on {bootstrap_servers}: {exc!r}") from exc
    finally:
        await admin.close()


async def create_missing(admin: AIOKafkaAdminClient, config: KafkaConfig,
                         topics: Iterable[TopicSpec], existing: set[str]) -> list[str]:
    """Create those of ``topics`` not in ``existing``; return their names."""
    missing = [
        NewTopic(name, num_partitions=partitions,
                 replication_factor=config.replication_factor, topic_configs=configs)
        for name, partitions, configs in topics
        if name not in existing
    ]
    if missing:
        try:
            await admin.create_topics(missing)
        except TopicAlreadyExistsError:
            pass  # another process won the race
    return [t.name for t in missing]


CLOSE_TIMEOUT_S = 1.0
"""How long closing one Kafka client may take (flushing, leaving its group) before it is let
go: a broker that is away must not hold up a shutdown."""


async def close_client(client: Any, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """``client.stop()``, bounded by ``timeout_s``. While the broker is away, aiokafka can
    raise the CancelledError of its own fetch tasks from ``stop()``: not a cancellation of
    the caller, so it does not propagate (a real one does)."""
    try:
        async with asyncio.timeout(timeout_s):
            await client.stop()
    except TimeoutError:
        log.debug("bus.close_timeout", client=type(client).__name__, after_s=timeout_s)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


class Producer(Protocol):
    """What the hub's writers use of a Kafka producer: ``await (await producer.send(...))``
    waits for the broker's acknowledgement. An ``AIOKafkaProducer``, or
    :class:`hub.testing.FakeProducer` in tests."""

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Iterable[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        ...


def new_producer(config: KafkaConfig, bootstrap_servers: str, *, linger_ms: int = 5,
                 **extra: Any) -> AIOKafkaProducer:
    """``linger_ms``: how long a send may wait for others to share its request; 0 where each
    write is waited on and latency counts (the detector's events and checkpoint)."""
    return AIOKafkaProducer(
        **connection_options(config, bootstrap_servers),
        acks="all",
        enable_idempotence=config.enable_idempotence,
        linger_ms=linger_ms,
        **extra,
    )


def new_group_consumer(config: KafkaConfig, bootstrap_servers: str, group_id: str,
                       **extra: Any) -> AIOKafkaConsumer:
    """A consumer in ``group_id`` that commits only when told to (never auto-commit: the
    hub commits after outcomes are final), with the configured session timings."""
    return AIOKafkaConsumer(
        **connection_options(config, bootstrap_servers),
        group_id=group_id,
        enable_auto_commit=False,
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
        **extra,
    )


async def start_producer(config: KafkaConfig, bootstrap_servers: str,
                         **extra: Any) -> AIOKafkaProducer:
    """A started producer (``acks=all``), or BusError saying which brokers were unreachable."""
    producer = new_producer(config, bootstrap_servers, **extra)
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise BusError(f"cannot connect to Kafka at {bootstrap_servers}: {exc!r}") from exc
    return producer


class Publisher:
    """Publishes events to the events topic; ``publish`` returns only when all are acked."""

    def __init__(self, config: KafkaConfig, bootstrap_servers: str, topic: str) -> None:
        self._config = config
        self._bootstrap = bootstrap_servers
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Publisher:
        # no linger: a push's event leaves as soon as it is stamped (the push path's latency)
        self._producer = await start_producer(self._config, self._bootstrap, linger_ms=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await close_client(producer)

    async def publish(self, events: list[Event]) -> None:
        """Send in order and wait for every acknowledgement; raise BusError if any failed.

        Events of one model share a key, hence a partition, and aiokafka keeps the order of
        sends within a partition, so per-model order holds on the topic.
        """
        if self._producer is None:
            raise RuntimeError("Publisher used outside 'async with'")
        try:
            futures = []
            for event in events:
                record = encode(event)
                futures.append(await self._producer.send(
                    self.topic, value=record.value, key=record.key, headers=record.headers))
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise BusError(f"publishing to {self.topic} failed: {exc!r}") from exc


async def scan(config: KafkaConfig, bootstrap_servers: str, topic: str, *,
               start: Mapping[int, int] | None = None, since_ms: int | None = None,
               until: Mapping[int, int] | None = None, max_records: int = 5000,
               fetch_max_bytes: int | None = None) -> AsyncGenerator[list[Any], None]:
    """Batches of ``topic``'s records, from the beginning (given ``start``: only on those
    partitions, from those offsets; given ``since_ms``: from that time) up to the end as it was
    when the scan started, and at least up to ``until`` (exclusive offsets known to exist: a
    broker that reports end offsets short cannot make the scan stop before them). No consumer
    group, nothing committed; one batch is held at a time. Use it inside
    ``contextlib.aclosing`` when breaking out early."""
    sizes = {} if fetch_max_bytes is None else {
        "fetch_max_bytes": fetch_max_bytes, "max_partition_fetch_bytes": fetch_max_bytes}
    consumer = AIOKafkaConsumer(**connection_options(config, bootstrap_servers),
                                enable_auto_commit=False, auto_offset_reset="earliest", **sizes)
    try:
        await consumer.start()
        tps = await _assign_all(consumer, topic)
        if start is not None:
            tps = [tp for tp in tps if tp.partition in start]
            consumer.assign(tps)
        if not tps:
            return
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            ends[tp] = max(ends[tp], (until or {}).get(tp.partition, 0))
        found = await consumer.offsets_for_times({tp: since_ms for tp in tps}) \
            if since_ms is not None else {}
        for tp in tps:
            if start is not None:
                consumer.seek(tp, start[tp.partition])
            elif since_ms is not None:
                consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])
            else:
                await consumer.seek_to_beginning(tp)
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=max_records)
            for records in batch.values():
                yield records
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        # Some brokers (Tansu) report the end offset of a multi-record batch short: what was
        # written before the scan reached the end is still ours.
        cutoff_ms = int(time.time() * 1000)
        while batch := await consumer.getmany(*tps, timeout_ms=100, max_records=max_records):
            fresh = [m for msgs in batch.values() for m in msgs]
            yield [m for m in fresh if m.timestamp <= cutoff_ms]
            if any(m.timestamp > cutoff_ms for m in fresh):
                break  # written after the scan started: not ours to read
    except KafkaError as exc:
        raise BusError(f"cannot read topic {topic} on {bootstrap_servers}: {exc!r}") from exc
    finally:
        await consumer.stop()


async def read_to_end(config: KafkaConfig, bootstrap_servers: str, topic: str, *,
                      since_ms: int | None = None) -> list[Any]:
    """Every record of ``topic`` from the beginning (or from ``since_ms``) up to its end
    (at least the end offsets as they were when the call started): :func:`scan`, collected."""
    async with aclosing(scan(config, bootstrap_servers, topic, since_ms=since_ms)) as batches:
        return [record async for batch in batches for record in batch]


async def recent_records(config: KafkaConfig, bootstrap: str, topic: str, per_partition: int,
                         *, timeout_s: float = 10) -> list[Any]:
    """At most the last ``per_partition`` records of each partition (no group, no commit)."""
    consumer = AIOKafkaConsumer(**connection_options(config, bootstrap),
                                enable_auto_commit=False)
    records: list[Any] = []
    try:
        await consumer.start()
        tps = await _assign_all(consumer, topic)
        if not tps:
            return records
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - per_partition))
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=per_partition)
            for msgs in batch.values():
                records.extend(msgs)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        # Tansu reports the end of a multi-record batch short: one more short fetch
        for msgs in (await consumer.getmany(*tps, timeout_ms=100)).values():
            records.extend(msgs)
    except KafkaError as exc:
        raise BusError(f"cannot read topic {topic}: {exc!r}") from exc
    finally:
        await consumer.stop()
    newest: dict[int, list[Any]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        newest.setdefault(record.partition, []).append(record)
    return [r for rs in newest.values() for r in rs[-per_partition:]]


async def _assign_all(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to the started ``consumer``, refreshing the
    metadata once if the topic is not known yet; ``[]`` (nothing assigned) if it has none."""
    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if tps:
        consumer.assign(tps)
    return tps
