"""EmbeddedBroker against the real Tansu binary: Kafka round trip, shutdown, start-up failures."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord
from structlog.testing import capture_logs

from hub.broker.embedded import EmbeddedBroker, wait_kafka_ready
from hub.errors import BusError


def _is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_keyed_records_with_headers_round_trip_through_a_consumer_group(
    topic_name: str,
) -> None:
    with capture_logs() as logs:
        async with EmbeddedBroker() as broker:
            bootstrap = broker.bootstrap_servers
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                created = await admin.create_topics(
                    [NewTopic(topic_name, num_partitions=3, replication_factor=1)]
                )
            finally:
                await admin.close()
            assert [err for _, err, *_ in created.topic_errors] == [0]

            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
            await producer.start()
            try:
                sent: dict[bytes, int] = {}
                for i in range(3):
                    key = f"model-{i}".encode()
                    meta = await producer.send_and_wait(
                        topic_name, value=f"v{i}".encode(), key=key, headers=[("n", bytes([i]))]
                    )
                    sent[key] = meta.partition
            finally:
                await producer.stop()

            consumer = AIOKafkaConsumer(
                topic_name,
                bootstrap_servers=bootstrap,
                group_id=f"group-{uuid.uuid4().hex}",
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                session_timeout_ms=2000,  # Tansu answers the first JoinGroup after ~half of it
                heartbeat_interval_ms=500,
            )
            await consumer.start()
            try:
                assert consumer.partitions_for_topic(topic_name) == {0, 1, 2}
                received: list[ConsumerRecord[bytes, bytes]] = []
                async with asyncio.timeout(30):
                    while len(received) < 3:
                        for records in (await consumer.getmany(timeout_ms=200)).values():
                            received.extend(records)
                await consumer.commit()
                committed = [
                    await consumer.committed(TopicPartition(topic_name, p)) for p in range(3)
                ]
            finally:
                await consumer.stop()

    assert sorted((r.key, r.value, r.headers) for r in received) == [
        (f"model-{i}".encode(), f"v{i}".encode(), (("n", bytes([i])),)) for i in range(3)
    ]
    assert {r.key: r.partition for r in received} == sent
    assert sum(offset or 0 for offset in committed) == 3
    started = [e for e in logs if e["event"] == "embedded_broker.started"]
    assert len(started) == 1
    assert started[0]["log_level"] == "warning"
    assert started[0]["port"] == int(bootstrap.rsplit(":", 1)[1])
    assert isinstance(started[0]["pid"], int)
    assert "local use only" in started[0]["warning"]


async def test_aclose_is_idempotent_and_leaves_no_process_behind() -> None:
    async with EmbeddedBroker() as broker:
        pid, log_path = broker.pid, broker.log_path
        port = int(broker.bootstrap_servers.rsplit(":", 1)[1])
        assert pid is not None and log_path is not None and _is_listening(port)
        await broker.aclose()
        await broker.aclose()
    # __aexit__ made a third call
    assert not _is_alive(pid)
    assert not _is_listening(port)
    assert not log_path.exists()
    with pytest.raises(BusError, match="not running"):
        _ = broker.bootstrap_servers


@pytest.mark.parametrize("via", ["parameter", "env"])
async def test_a_broker_binary_that_exits_at_once_raises_bus_error_quickly(
    via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if via == "env":
        monkeypatch.setenv("CALF_TANSU_BIN", "/bin/false")
        broker = EmbeddedBroker()
    else:
        broker = EmbeddedBroker(binary="/bin/false")
    started = time.monotonic()
    with pytest.raises(BusError, match="exited with code 1"):
        async with broker:
            pytest.fail("the broker must not be usable")
    assert time.monotonic() - started < 5


async def test_a_missing_broker_binary_raises_bus_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BusError, match="CALF_TANSU_BIN"):
        async with EmbeddedBroker():
            pass


async def test_a_broker_that_never_answers_times_out_with_its_log_and_is_killed(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "fake-tansu"
    fake.write_text('#!/bin/sh\necho "fake broker pid $$ booting"\nexec sleep 60\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    started = time.monotonic()
    with pytest.raises(BusError, match=r"not ready within 0\.5 s") as info:
        async with EmbeddedBroker(binary=str(fake), startup_timeout_s=0.5):
            pass
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "fake broker pid" in message  # the tail of the broker's log
    pid = int(message.split("fake broker pid ", 1)[1].split()[0])
    assert not _is_alive(pid)


async def test_a_port_in_use_is_reported_instead_of_probing_a_foreign_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BusError, match=f"port {port} is already in use"):
            async with EmbeddedBroker(port=port):
                pass


def test_wait_kafka_ready_does_not_mistake_a_silent_tcp_listener_for_kafka() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog but nothing ever answers
        bootstrap = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(BusError, match=r"not ready within 0\.3 s \(last error: TimeoutError"):
            wait_kafka_ready(bootstrap, timeout_s=0.3)
