"""The embedded broker's journal (hub/broker/journal.py) on real Tansu brokers: what one broker held
— records at their offsets with keys, headers and timestamps, and consumer-group offsets —
is in the next, empty broker; a torn last line is cut off; one hub per directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub.broker.embedded import EmbeddedBroker
from hub.broker.journal import Journal
from hub.bus import ensure_topics, new_group_consumer, start_producer
from hub.config import KafkaConfig
from hub.errors import BusError

pytestmark = pytest.mark.timeout(120)
KAFKA = KafkaConfig()


async def _records(bootstrap: str, tp: TopicPartition) -> list[tuple[int, int, bytes | None,
                                                                      bytes | None, tuple]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        out = []
        while batch := await consumer.getmany(tp, timeout_ms=500):
            out += [(m.offset, m.timestamp, m.key, m.value, tuple(m.headers)) for m in batch[tp]]
        return out
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = new_group_consumer(KAFKA, bootstrap, group)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


async def test_a_restarted_broker_gets_back_records_offsets_and_group_positions(
        tmp_path: Path) -> None:
    directory = tmp_path / "broker"
    tp = TopicPartition("jt.events", 1)
    async with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        async with Journal(directory, KAFKA, bootstrap, sync_interval_s=0.2):
            await ensure_topics(KAFKA, bootstrap, [("jt.events", 3, {})])
            producer = await start_producer(KAFKA, bootstrap)
            for i in range(25):
                await producer.send_and_wait("jt.events", f"v{i}".encode(), key=b"iris",
                                             partition=1, timestamp_ms=1_700_000_000_000 + i,
                                             headers=[("ce_id", f"id-{i}".encode())])
            await producer.stop()
            consumer = new_group_consumer(KAFKA, bootstrap, "jt.group")
            await consumer.start()
            consumer.assign([tp])
            await consumer.commit({tp: 17})
            await consumer.stop()
            before = await _records(bootstrap, tp)
        assert len(before) == 25
    groups = json.loads((directory / "groups.json").read_text())
    assert groups["jt.group"] == {"jt.events:1": 17}

    async with EmbeddedBroker() as broker, \
            Journal(directory, KAFKA, broker.bootstrap_servers) as journal:
        assert journal.restored_records == 25
        assert await _records(broker.bootstrap_servers, tp) == before
        assert await _committed(broker.bootstrap_servers, "jt.group", tp) == 17


async def test_a_torn_last_line_is_cut_off_and_the_rest_restored(tmp_path: Path) -> None:
    directory = tmp_path / "broker"
    async with EmbeddedBroker() as broker, \
            Journal(directory, KAFKA, broker.bootstrap_servers, sync_interval_s=0.2):
        await ensure_topics(KAFKA, broker.bootstrap_servers, [("jt.torn", 1, {})])
        producer = await start_producer(KAFKA, broker.bootstrap_servers)
        for i in range(3):
            await producer.send_and_wait("jt.torn", f"v{i}".encode())
        await producer.stop()
    path = directory / "topics" / "jt.torn" / "0.jsonl"
    path.write_bytes(path.read_bytes() + b'{"o":3,"t":1,"k":nu')  # a hard kill mid-write
    async with EmbeddedBroker() as broker, \
            Journal(directory, KAFKA, broker.bootstrap_servers) as journal:
        assert journal.restored_records == 3
        values = [r[3] for r in await _records(broker.bootstrap_servers,
                                               TopicPartition("jt.torn", 0))]
        assert values == [b"v0", b"v1", b"v2"]
    assert path.read_bytes().endswith(b"\n") and len(path.read_bytes().splitlines()) == 3


async def test_one_hub_per_directory(tmp_path: Path) -> None:
    async with EmbeddedBroker() as broker, \
            Journal(tmp_path / "broker", KAFKA, broker.bootstrap_servers):
        with pytest.raises(BusError, match="in use by registry-hub pid"):
            async with Journal(tmp_path / "broker", KAFKA, broker.bootstrap_servers):
                pass
