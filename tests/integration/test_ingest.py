"""The push path, end to end: a real ``mlflow server`` whose own webhook points at
``/ingest/mlflow`` (aiohttp on 127.0.0.1), a real detector on the session broker, and an
independent consumer on the topic.

The detector's loop never runs (and its interval is an hour): until a test calls
``poll_once``, a push is the only way an event reaches Kafka. ``registry-hub mlflow-webhook``
(installing and testing MLflow's webhook) is in test_mlflow_webhook.py.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from mlflow.tracking import MlflowClient
from structlog.testing import capture_logs

from hub.app import Hub, Roles
from hub.config import HubConfig
from hub.detect.facts import FRESH_AFTER_S
from hub.detect.rereads import REREAD_AFTER_S
from hub.events import IS_PROMPT_TAG
from hub.ingest.mlflow_webhook import WEBHOOK_EVENTS
from hub.ingest.push import add_ingest_routes
from tests.support.ingest_hub import SECRET, config_for, serve
from tests.support.kafka_reader import read_topic
from tests.support.wait import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@dataclass
class Arrival:
    type: str
    key: str | None
    version: str | None
    kafka_ms: int  # producer timestamp: when the hub published it
    read_at: float  # time.time() when the independent consumer got it


@dataclass
class Tail:
    """An independent consumer on the events topic, from its beginning, fetching eagerly."""

    consumer: AIOKafkaConsumer
    arrivals: list[Arrival] = field(default_factory=list)

    async def wait(self, count: int, timeout_s: float = 15) -> list[Arrival]:
        """The next ``count`` arrivals (fails at the deadline)."""
        start = len(self.arrivals)
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals) < start + count:
            if time.monotonic() > deadline:
                got = [a.type for a in self.arrivals[start:]]
                raise AssertionError(f"expected {count} new events in {timeout_s}s, got {got}")
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    headers = {k: v.decode() for k, v in m.headers}
                    data = json.loads(m.value)
                    self.arrivals.append(Arrival(
                        headers["ce_type"], m.key.decode() if m.key else None,
                        data.get("version"), m.timestamp, now))
        return self.arrivals[start:]


async def tail_topic(bootstrap: str, topic: str) -> Tail:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await consumer.start()
    partitions = consumer.partitions_for_topic(topic)
    while partitions is None:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    return Tail(consumer)

def mlflow_client(url: str) -> MlflowClient:
    return MlflowClient(tracking_uri=url, registry_uri=url)


def experiment_run(client: MlflowClient) -> tuple[str, str]:
    exp = client.get_experiment_by_name("ingest")
    exp_id = exp.experiment_id if exp else client.create_experiment("ingest")
    run = client.create_run(exp_id)
    return run.info.run_id, f"{run.info.artifact_uri}/model"


@dataclass
class Pushed:
    hub: Hub
    client: MlflowClient
    tail: Tail
    ingest_url: str
    config: HubConfig


@pytest.fixture
async def pushed(kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any
                 ) -> AsyncIterator[Pushed]:
    """A detector hub with its ingest endpoint, baselined; the MLflow server's webhook points
    at the endpoint."""
    server = mlflow_server_factory()
    config = config_for(server.url, kafka_bootstrap, topic_name)
    client = mlflow_client(server.url)
    async with Hub(config, Roles(deliver=False)) as hub:
        assert hub.detector is not None
        app = web.Application()
        add_ingest_routes(app, hub)
        runner, base = await serve(app)
        tail = await tail_topic(kafka_bootstrap, topic_name)
        try:
            assert await hub.detector.poll_once() == []  # baseline
            events: list[Any] = list(WEBHOOK_EVENTS)
            await asyncio.to_thread(client.create_webhook, "registry-hub",
                                    f"{base}/ingest/mlflow", events, None, SECRET)
            yield Pushed(hub, client, tail, f"{base}/ingest/mlflow", config)
        finally:
            await tail.consumer.stop()
            await runner.cleanup()


def pushes(logs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(e["mlflow_event"], e["model"]) for e in logs if e["event"] == "ingest.received"]


async def test_a_push_publishes_at_once_and_the_poll_does_not_repeat_it(
        pushed: Pushed, kafka_bootstrap: str, topic_name: str) -> None:
    hub, client, tail = pushed.hub, pushed.client, pushed.tail
    assert hub.detector is not None
    latencies: list[tuple[float, float]] = []

    async def mutate(fn: Any, *args: Any, **kwargs: Any) -> Arrival:
        started = time.time()
        await asyncio.to_thread(fn, *args, **kwargs)
        (arrival,) = await tail.wait(1)
        latencies.append((arrival.kafka_ms / 1000 - started, arrival.read_at - started))
        return arrival

    with capture_logs() as logs:
        arrival = await mutate(client.create_registered_model, "iris")
        assert (arrival.type, arrival.key) == ("registered_model.created", "iris")
        assert await hub.detector.poll_once() == []

        for n in range(1, 6):
            run_id, source = await asyncio.to_thread(experiment_run, client)
            arrival = await mutate(client.create_model_version, "iris", source, run_id)
            assert (arrival.type, arrival.version) == ("model_version.created", str(n))
            assert await hub.detector.poll_once() == []

        arrival = await mutate(client.set_registered_model_alias, "iris", "champion", "2")
        assert (arrival.type, arrival.version) == ("model_version_alias.created", "2")
        arrival = await mutate(client.set_model_version_tag, "iris", "2", "validated", "true")
        assert (arrival.type, arrival.version) == ("model_version_tag.set", "2")
        arrival = await mutate(client.delete_model_version_tag, "iris", "2", "validated")
        assert arrival.type == "model_version_tag.deleted"
        arrival = await mutate(client.delete_registered_model_alias, "iris", "champion")
        assert arrival.type == "model_version_alias.deleted"
        assert await hub.detector.poll_once() == []

    assert pushes(logs) == [("registered_model.created", "iris")] + [
        ("model_version.created", "iris")] * 5 + [
        ("model_version_alias.created", "iris"), ("model_version_tag.set", "iris"),
        ("model_version_tag.deleted", "iris"), ("model_version_alias.deleted", "iris")]
    metrics = hub.metrics.registry
    assert metrics.get_sample_value("registry_hub_events_detected_total",
                                    {"type": "model_version.created", "path": "push"}) == 5
    assert metrics.get_sample_value("registry_hub_events_detected_total",
                                    {"type": "model_version.created", "path": "poll"}) is None

    records = await read_topic(kafka_bootstrap, topic_name, at_least=10, settle_s=1.0)
    assert len(records) == 10, [r.type for r in records]
    assert len({r.headers["ce_id"] for r in records}) == 10

    to_kafka = sorted(1000 * k for k, _ in latencies)
    to_reader = sorted(1000 * r for _, r in latencies)
    print(f"\npush path, MLflow mutation start -> event on Kafka over {len(latencies)} changes: "
          f"median {statistics.median(to_kafka):.1f} ms, max {to_kafka[-1]:.1f} ms; "
          f"-> read by a consumer: median {statistics.median(to_reader):.1f} ms, "
          f"max {to_reader[-1]:.1f} ms")
    assert statistics.median(to_kafka) < 2000  # the loop's interval is an hour


async def test_what_mlflow_does_not_push_is_left_to_the_poll(pushed: Pushed) -> None:
    hub, client, tail = pushed.hub, pushed.client, pushed.tail
    assert hub.detector is not None
    with capture_logs() as logs:
        run_id, source = await asyncio.to_thread(experiment_run, client)
        for name in ("iris", "other"):
            await asyncio.to_thread(client.create_registered_model, name)
            await asyncio.to_thread(client.create_model_version, name, source, run_id)
        assert len(await tail.wait(4)) == 4
        # MLflow sends concurrently: one push may publish what a later one is about
        await until(lambda: len(pushes(logs)) == 4, "the four pushes")

        # Not pushed by MLflow: a stage transition. Then a pushed change to another model,
        # as a barrier: its push arriving means MLflow has sent what it sends by then.
        await asyncio.to_thread(client.transition_model_version_stage, "iris", "1", "Staging")
        await asyncio.to_thread(client.set_model_version_tag, "other", "1", "k", "v")
        (barrier,) = await tail.wait(1)
        await until(lambda: len(pushes(logs)) == 5, "the barrier's push")
    assert (barrier.type, barrier.key) == ("model_version_tag.set", "other")
    assert pushes(logs)[4:] == [("model_version_tag.set", "other")]

    polled = await hub.detector.poll_once()
    assert [(e.type, e.model, e.version, e.data["to_stage"]) for e in polled] == [
        ("model_version.stage_transitioned", "iris", "1", "Staging")]
    (arrival,) = await tail.wait(1)
    assert (arrival.type, arrival.key) == ("model_version.stage_transitioned", "iris")
    assert await hub.detector.poll_once() == []


async def test_a_tag_or_alias_push_publishes_from_its_payload_then_a_re_read_follows(
        pushed: Pushed) -> None:
    """Sent more than ``FRESH_AFTER_S`` after the hub last read the model, MLflow's tag and
    alias pushes publish from their payload, the model not read first; the re-read after
    them publishes what MLflow never pushed (a stage transition made just before), and
    nothing else: the state the payloads gave was the registry's."""
    client, tail, detector = pushed.client, pushed.tail, pushed.hub.detector
    assert detector is not None

    def metric(name: str, **labels: str) -> float | None:
        return pushed.hub.metrics.registry.get_sample_value(name, labels)

    run_id, source = await asyncio.to_thread(experiment_run, client)
    await asyncio.to_thread(client.create_registered_model, "iris")
    await asyncio.to_thread(client.create_model_version, "iris", source, run_id)
    assert len(await tail.wait(2)) == 2
    read = time.time()  # the pushes' re-reads ended by now
    await until(lambda: time.time() > read + FRESH_AFTER_S + 0.1, "the margin after the read")
    with capture_logs() as logs:
        await asyncio.to_thread(client.transition_model_version_stage, "iris", "1", "Staging")
        await asyncio.to_thread(client.set_model_version_tag, "iris", "1", "validated", "true")
        (tagged,) = await tail.wait(1)
        (staged,) = await tail.wait(1, timeout_s=REREAD_AFTER_S + 10)
        read = time.time()
        await until(lambda: time.time() > read + FRESH_AFTER_S + 0.1, "the margin again")
        await asyncio.to_thread(client.set_registered_model_alias, "iris", "champion", "1")
        (aliased,) = await tail.wait(1)
        await until(lambda: metric("registry_hub_rereads_total") == 2, "the alias's re-read")
    assert [tagged.type, staged.type, aliased.type] == [
        "model_version_tag.set", "model_version.stage_transitioned",
        "model_version_alias.created"]
    # (events published, the model re-read first): the tag from its payload, the transition
    # by the re-read after it, the alias from its payload (its re-read found nothing new)
    assert published(logs) == [(1, False), (1, True), (1, False)]
    assert metric("registry_hub_pushes_total", how="payload") == 2
    assert await detector.poll_once() == []


def published(logs: Sequence[Mapping[str, Any]]) -> list[tuple[int, bool]]:
    return [(e["events"], e["reread"]) for e in logs if e["event"] == "detector.published"]


async def test_prompt_pushes_publish_prompt_events_and_a_flip_is_no_deletion(
        pushed: Pushed) -> None:
    """MLflow's prompt webhooks (the ones ``install`` subscribes to) reach the hub: each names
    the prompt, the hub re-reads it and publishes the prompt events at once."""
    client, tail, detector = pushed.client, pushed.tail, pushed.hub.detector
    assert detector is not None

    def published(logs: Sequence[Mapping[str, Any]]) -> int:
        return sum(e["published"] for e in logs if e["event"] == "ingest.received")

    async def mutate(fn: Any, *args: Any, sent: int = 1
                     ) -> list[tuple[str, str | None, str | None]]:
        """Change the registry, wait for the ``sent`` pushes MLflow makes about it; what
        they published arrives, and the poll finds nothing more."""
        pushed_before, published_before = len(pushes(logs)), published(logs)
        await asyncio.to_thread(fn, *args)
        await until(lambda: len(pushes(logs)) == pushed_before + sent, f"{sent} push(es)")
        arrivals = await tail.wait(published(logs) - published_before)
        assert await detector.poll_once() == []  # published by the push already
        return [(a.type, a.key, a.version) for a in arrivals]

    with capture_logs() as logs:
        # MLflow's client then links the new prompt to the active experiment (a prompt tag set
        # on a thread): a third push, whose event may already be in prompt.created's tags
        assert (await mutate(client.register_prompt, "summarize", "Summarise {{text}}",
                             sent=3))[:2] == [("prompt.created", "summarize", None),
                                              ("prompt_version.created", "summarize", "1")]
        assert await mutate(client.register_prompt, "summarize", "Summarise: {{text}}") == [
            ("prompt_version.created", "summarize", "2")]
        assert await mutate(client.set_prompt_alias, "summarize", "production", 1) == [
            ("prompt_alias.created", "summarize", "1")]
        assert await mutate(client.set_prompt_alias, "summarize", "production", 2) == [
            ("prompt_alias.created", "summarize", "2")]
        assert await mutate(client.set_prompt_tag, "summarize", "owner", "bob") == [
            ("prompt_tag.set", "summarize", None)]
        assert await mutate(client.set_prompt_version_tag, "summarize", 2, "ok", "yes") == [
            ("prompt_version_tag.set", "summarize", "2")]
        assert await mutate(client.create_registered_model, "classifier") == [
            ("registered_model.created", "classifier", None)]
        assert await mutate(client.set_registered_model_tag, "classifier",
                            IS_PROMPT_TAG, "true") == [("prompt_tag.set", "classifier", None)]
    assert {event for event, _ in pushes(logs)} == {
        "prompt.created", "prompt_version.created", "prompt_alias.created", "prompt_tag.set",
        "prompt_version_tag.set", "registered_model.created"}
    assert not [a for a in tail.arrivals if a.type.endswith(".deleted")]
