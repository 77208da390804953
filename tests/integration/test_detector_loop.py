"""The detector loop against a real broker and a real MLflow server: restarts, crashes,
outages and publish failures lose nothing and invent nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from hub.app import Hub, Roles
from hub.errors import BusError
from hub.events import Event
from tests.integration.test_detector_workflow import hub_config
from tests.support.kafka_reader import read_topic

pytestmark = pytest.mark.timeout(240)


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 20, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


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
        await wait_for(lambda: detector.state is not None, what="baseline")
        return self.hub

    async def __aexit__(self, *exc: object) -> None:
        self.hub.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 20)
        await self.hub.aclose()


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


async def test_crash_between_publish_and_checkpoint_repeats_the_same_ids(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any) -> None:
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    config = hub_config(server.url, kafka_bootstrap, topic_name)
    first = Hub(config, Roles(deliver=False))
    async with first:
        detector = first.detector
        assert detector is not None
        await detector.poll_once()  # baseline
        client.create_registered_model("m", tags={"k": "v"})
        client.create_model_version("m", source="s3://bucket/m1")
        stuck = asyncio.Event()

        async def crash_before_checkpoint(*_: Any, **__: Any) -> None:
            stuck.set()
            await asyncio.Event().wait()  # the process "dies" here

        detector._save = crash_before_checkpoint  # type: ignore[method-assign]
        poll = asyncio.create_task(detector.poll_once())
        await asyncio.wait_for(stuck.wait(), 20)
        poll.cancel()
    async with Hub(config, Roles(deliver=False)) as second:
        assert second.detector is not None
        again = await second.detector.poll_once()
    records = await read_topic(kafka_bootstrap, topic_name, at_least=4, settle_s=0.5)
    assert [r.type for r in records] == ["registered_model.created", "model_version.created"] * 2
    assert [r.headers["ce_id"] for r in records[:2]] == [r.headers["ce_id"] for r in records[2:]]
    assert [e.id for e in again] == [r.headers["ce_id"] for r in records[2:]]


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
        await wait_for(lambda: detector.consecutive_failures >= 3, what="failed scans")
        assert (await read_topic(kafka_bootstrap, topic_name, settle_s=0.3)) == []
        server.start()
        await wait_for(lambda: detector.consecutive_failures == 0, what="recovery")
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


async def test_publish_failures_are_retried_and_the_checkpoint_waits(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any) -> None:
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    config = hub_config(server.url, kafka_bootstrap, topic_name)
    async with Hub(config, Roles(deliver=False)) as hub:
        detector = hub.detector
        assert detector is not None
        await detector.poll_once()
        real_sink = detector._sink
        failures = []

        class FlakySink:
            async def publish(self, events: list[Event]) -> None:
                if len(failures) < 2:
                    failures.append(len(events))
                    assert detector.state is not None
                    assert "m" not in detector.state.snapshot.models  # checkpoint not advanced
                    raise BusError("broker unavailable")
                await real_sink.publish(events)

        detector._sink = FlakySink()
        client.create_registered_model("m")
        events = await detector.poll_once()
    assert failures == [1, 1]
    assert [e.type for e in events] == ["registered_model.created"]
    records = await read_topic(kafka_bootstrap, topic_name, at_least=1, settle_s=0.3)
    assert [r.type for r in records] == ["registered_model.created"]
