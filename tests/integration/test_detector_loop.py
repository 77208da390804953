"""The detector loop against a real broker and a real MLflow server: restarts and MLflow
outages lose nothing and invent nothing, and event ids are never reused, not even after the
checkpoint was lost. Crashes between publish and checkpoint and publish failures are unit tests
over in-memory edges (tests/unit/test_detector_rounds.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from mlflow.tracking import MlflowClient

from hub.app import Hub, Roles
from hub.config import HubConfig
from hub.detect.checkpoint import BASELINE_KEY
from hub.detect.snapshot import ModelState
from tests.support.detector import Running, hub_config
from tests.support.kafka_reader import read_topic
from tests.support.wait import eventually, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_restart_emits_changes_made_while_down_and_nothing_twice(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any) -> None:
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    client.create_registered_model("existing")  # part of the baseline: never emitted
    config = hub_config(server.url, kafka_bootstrap, topic_name)

    async with Running(config):
        client.create_registered_model("a")
        await read_topic(kafka_bootstrap, topic_name, at_least=1)

    client.set_registered_model_tag("a", "stage", "down")  # made while the hub is down
    client.create_registered_model("b")

    async with Running(config) as hub:
        assert hub.detector is not None and hub.detector.state is not None
        records = await read_topic(kafka_bootstrap, topic_name, at_least=3, settle_s=1.0)
    assert [(r.key, r.type) for r in records if r.key == "a"] == [
        ("a", "registered_model.created"), ("a", "registered_model_tag.set")]
    assert [(r.key, r.type) for r in records if r.key != "a"] == [
        ("b", "registered_model.created")]


async def test_mlflow_outage_emits_nothing_and_resumes(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any) -> None:
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    client.create_registered_model("kept")
    client.create_model_version("kept", source="s3://bucket/k1")
    config = hub_config(server.url, kafka_bootstrap, topic_name)
    async with Running(config) as hub:
        detector = hub.detector
        assert detector is not None
        server.stop()
        await until(lambda: detector.consecutive_failures >= 3, "failed scans")
        assert (await read_topic(kafka_bootstrap, topic_name, settle_s=0.3)) == []
        server.start()
        await until(lambda: detector.consecutive_failures == 0, "recovery")
        client.create_model_version("kept", source="s3://bucket/k2")
        records = await read_topic(kafka_bootstrap, topic_name, at_least=1, settle_s=0.5)
    assert [(r.type, r.data["version"]) for r in records] == [("model_version.created", "2")]


async def test_first_start_can_emit_existing_objects(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any) -> None:
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    client.create_registered_model("old")
    client.create_model_version("old", source="s3://bucket/o1")
    client.set_registered_model_alias("old", "champion", "1")
    config = hub_config(server.url, kafka_bootstrap, topic_name, emit_existing=True)
    async with Hub(config, Roles(deliver=False)) as hub:
        assert hub.detector is not None
        await hub.detector.poll_once()
    records = await read_topic(kafka_bootstrap, topic_name, at_least=3, settle_s=0.3)
    assert [r.type for r in records] == [
        "registered_model.created", "model_version.created", "model_version_alias.created"]


async def test_a_lost_checkpoint_gives_new_changes_new_ids(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any) -> None:
    """The reported bug: the state topic is deleted (and re-created empty on start), so the
    detector takes a new baseline and its per-model sequences restart. Then the model's
    first change is the same as its first change before (tag ``k`` set to ``a``, as the
    model's first event): a new change, which receivers that drop repeated ids must not drop."""
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    client.create_registered_model("m")  # in the baseline
    config = hub_config(server.url, kafka_bootstrap, topic_name)
    async with Running(config) as hub:
        assert hub.detector is not None and hub.detector.state is not None
        first_epoch = hub.detector.state.epoch
        client.set_registered_model_tag("m", "k", "a")
        await read_topic(kafka_bootstrap, topic_name, at_least=1)
        client.delete_registered_model_tag("m", "k")
        await read_topic(kafka_bootstrap, topic_name, at_least=2)

    await delete_topic(kafka_bootstrap, config.state_topic)  # the checkpoint is lost

    async with Running(config) as hub:
        assert hub.detector is not None and hub.detector.state is not None
        assert hub.detector.state.epoch != first_epoch, "a new baseline starts a new epoch"
        client.set_registered_model_tag("m", "k", "a")
        records = await read_topic(kafka_bootstrap, topic_name, at_least=3, settle_s=0.5)
    assert [(r.type, r.data.get("previous_value"), r.data.get("value")) for r in records] == [
        ("registered_model_tag.set", None, "a"), ("registered_model_tag.deleted", "a", None),
        ("registered_model_tag.set", None, "a")]
    ids = [r.headers["ce_id"] for r in records]
    assert ids[2] not in ids[:2], "a new change reused an id"


async def test_a_format_1_checkpoint_is_kept_and_gets_an_epoch_of_its_own(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any) -> None:
    """A checkpoint written before epochs is resumed (no new baseline, sequences kept); the
    epoch it is given is saved before the first event is stamped with it, so a restart reads
    the same one back."""
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    created = client.create_registered_model("m").creation_timestamp
    config = hub_config(server.url, kafka_bootstrap, topic_name)
    model = ModelState("m", created).to_dict()
    await write_format_1_checkpoint(kafka_bootstrap, config, {
        b"model:m": {"format": 1, "model": model, "seq": 3}, BASELINE_KEY: {"format": 1}})

    async with Hub(config, Roles(deliver=False)) as hub:
        detector = hub.detector
        assert detector is not None
        assert await detector.poll_once() == []
        assert detector.state is not None and detector.state.sequences == {"m": 3}
        epoch = detector.state.epoch
        assert epoch is not None
        # the two format 1 records and the new marker: saved before anything used the epoch
        state = await read_topic(kafka_bootstrap, config.state_topic, at_least=3)
        assert [r.data for r in state if r.key == BASELINE_KEY.decode()][-1]["epoch"] == epoch
        client.set_registered_model_tag("m", "k", "v")
        assert [e.type for e in await detector.poll_once()] == ["registered_model_tag.set"]
        assert detector.state.sequences == {"m": 4}
    async with Hub(config, Roles(deliver=False)) as hub:
        assert hub.detector is not None
        assert await hub.detector.poll_once() == []
        assert hub.detector.state is not None
        assert (hub.detector.state.epoch, hub.detector.state.sequences) == (epoch, {"m": 4})


async def write_format_1_checkpoint(bootstrap: str, config: HubConfig,
                                    records: dict[bytes, dict[str, Any]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(config.state_topic, 1, 1,
                                            topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in records.items():
            await producer.send_and_wait(config.state_topic, key=key,
                                         value=json.dumps(value).encode())
    finally:
        await producer.stop()


async def delete_topic(bootstrap: str, topic: str, timeout_s: float = 20) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        await eventually(admin.list_topics, lambda topics: topic not in topics,
                         what=f"{topic} deleted", timeout_s=timeout_s)
    finally:
        await admin.close()
