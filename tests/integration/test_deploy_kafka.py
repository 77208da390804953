"""The deploy handler's Kafka target on the session's real broker: schema-valid
deploy-request records keyed by model, a redelivery byte-identical."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from handlers.deploy import DeployHandler, DeployOptions
from handlers.deploy_targets import idempotency_key
from hub.outcome import Status
from hub.plugins import HandlerContext
from tests.support.deploy import alias_event
from tests.support.schema import schema_errors


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()


async def test_kafka_target_publishes_schema_valid_records_keyed_by_model(
        kafka_bootstrap: str, topic_name: str) -> None:
    await create_topic(kafka_bootstrap, topic_name)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                enable_idempotence=False)
    await producer.start()

    async def kafka_send(topic: str, key: bytes, value: bytes,
                         headers: list[tuple[str, bytes]]) -> None:
        await producer.send_and_wait(topic, key=key, value=value, headers=headers)

    try:
        options = DeployOptions.model_validate({"target": "kafka", "topic": topic_name})
        handler = DeployHandler(name="deploy-kafka", options=options,
                                context=HandlerContext(kafka_send=kafka_send))
        event = alias_event("fraud-model", "12")
        outcomes = [await handler.deliver(event), await handler.deliver(event)]
    finally:
        await producer.stop()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 2

    consumer = AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_bootstrap,
                                group_id=f"check-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=2000, heartbeat_interval_ms=500)
    await consumer.start()
    try:
        received: list[Any] = []
        async with asyncio.timeout(30):
            while len(received) < 2:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received.extend(records)
    finally:
        await consumer.stop()

    key = idempotency_key("deploy-kafka", event.id)
    first, second = received
    assert first.key == b"fraud-model" and first.partition == second.partition
    assert first.value == second.value  # a redelivery is byte-identical
    assert dict(first.headers) == {"content-type": b"application/json",
                                   "schema": b"registry-hub.deploy-request/v1",
                                   "idempotency_key": key.encode()}
    record = json.loads(first.value)
    assert schema_errors(record) == []
    assert record == {
        "schema": "registry-hub.deploy-request/v1", "idempotency_key": key,
        "event_id": event.id, "event_type": "model_version_alias.created",
        "model": "fraud-model", "version": "12", "alias": "champion", "stage": None,
        "source": "models:/m-1", "run_id": "r1", "tracking_uri": "http://mlflow.example",
        "requested_at": "2025-03-01T12:00:00+00:00"}
