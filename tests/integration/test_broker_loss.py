"""Each part of the hub survives a broker that dies and comes back empty (Tansu keeps its
data in memory: the restarted broker has no topics, offsets or groups).

* the topic keeper re-creates every topic, and says so once per state change;
* the detector (no election) writes its checkpoint back from memory and publishes the
  recent events again, so no change it saw is lost;
* lanes start over on the new topic, and commit nothing of the old one onto it; a
  partition re-created under a consumer that kept its position is noticed;
* the subscription store writes its runtime subscriptions back.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from structlog.testing import capture_logs

from hub.admin.store import SubscriptionStore
from hub.app import Hub, Roles
from hub.broker.resets import ResetWatch
from hub.broker.topics import TopicKeeper
from hub.bus import Publisher, close_client, ensure_topics
from hub.config import HubConfig, SubscriptionConfig
from hub.detect.checkpoint import KafkaCheckpoint
from hub.errors import BusError
from hub.events import Event
from tests.support.broker import Broker, running_broker
from tests.support.kafka_reader import read_topic
from tests.support.receiver import SECRET, running_receiver

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


async def until(what: str, check: Callable[[], bool | Awaitable[bool]],
                timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)  # the pace of a polled condition


async def topics_on(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_the_keeper_recreates_every_topic_and_logs_each_change_once(
        broker: Broker) -> None:
    config = HubConfig(kafka={"bootstrap_servers": broker.bootstrap})
    wanted = [("t.events", 3, {}), ("t.state", 1, {"cleanup.policy": "compact"})]
    await ensure_topics(config.kafka, broker.bootstrap, wanted)
    with capture_logs() as logs:
        async with TopicKeeper(config.kafka, broker.bootstrap, wanted, interval_s=0.2) as keeper:
            broker.kill()
            await until("the outage noticed", lambda: not keeper.reachable)
            for _ in range(3):  # more rounds in the outage: still one line
                await keeper.check()
            broker.start()  # empty

            async def recreated() -> bool:
                return {"t.events", "t.state"} <= await topics_on(broker.bootstrap)

            await until("the topics re-created", recreated)
            await until("the broker noticed back", lambda: keeper.reachable)
    assert [e["event"] for e in logs] == [
        "bus.unreachable", "bus.reachable", "bus.topics_recreated"], logs
    assert sorted(logs[-1]["topics"]) == ["t.events", "t.state"]
    assert keeper.recreated == 1


@pytest.mark.slow
async def test_the_detector_writes_its_checkpoint_back_and_publishes_recent_events_again(
        broker: Broker, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    config = HubConfig(
        mlflow={"tracking_uri": uri, "request_retries": 0, "scan_timeout_s": 10},
        kafka={"bootstrap_servers": broker.bootstrap, "topic": "loss", "partitions": 2},
        detector={"poll_interval_s": 0.2, "backoff_initial_s": 0.1, "backoff_max_s": 0.5,
                  "leader_election": False},
        subscriptions=[], admin={"enabled": False})
    client.create_registered_model("old")  # the baseline: never emitted
    hub = Hub(config, Roles(deliver=False))
    with capture_logs() as logs:
        async with hub:
            run = asyncio.create_task(hub.run())
            detector = hub.detector
            assert detector is not None
            await until("the baseline", lambda: detector.state is not None)
            client.create_registered_model("before")
            (before,) = await read_topic(broker.bootstrap, "loss", at_least=1)

            broker.kill()
            client.create_registered_model("during")  # seen while the broker is away
            broker.start()  # back, and empty
            client.create_registered_model("after")
            records = await read_topic(broker.bootstrap, "loss", at_least=3, timeout_s=60,
                                       settle_s=1.0)
            hub.stop()
            await asyncio.wait_for(run, 30)
    assert sorted(r.key or "" for r in records) == ["after", "before", "during"]
    again = next(r for r in records if r.key == "before")
    assert again.headers["ce_id"] == before.headers["ce_id"], "published again, same id"
    assert any(e["event"] == "detector.checkpoint_reseeded" for e in logs), logs
    async with KafkaCheckpoint(config.kafka, broker.bootstrap, config.state_topic) as cp:
        state = await cp.load()
    assert state is not None, "the checkpoint is back, baseline marker included"
    assert sorted(state.snapshot.models) == ["after", "before", "during", "old"]


@pytest.mark.slow
async def test_lanes_start_over_on_the_new_topic_and_never_commit_old_offsets(
        broker: Broker, tmp_path: Path) -> None:
    async with running_receiver() as receiver:
        config = HubConfig(
            mlflow={"tracking_uri": f"sqlite:///{tmp_path / 'unused.db'}"},
            kafka={"bootstrap_servers": broker.bootstrap, "topic": "lanes", "partitions": 2,
                   "session_timeout_ms": 3000, "heartbeat_interval_ms": 1000},
            delivery={"allowed_networks": ["127.0.0.0/8"], "start_from": "earliest",
                      "grace_period_s": 2},
            subscriptions=[{"name": "hook", "handler": "webhook",
                            "url": f"{receiver.url}/ok", "secret": SECRET}],
            admin={"enabled": False})
        with capture_logs() as logs:
            async with Hub(config, Roles(detect=False)) as hub:
                run = asyncio.create_task(hub.run())
                assert hub.worker is not None
                await hub.worker.wait_ready()
                async with Publisher(config.kafka, broker.bootstrap, "lanes") as publisher:
                    await publisher.publish([event(f"old-{n}") for n in range(20)])
                await receiver.wait_for(20, "/ok")

                broker.kill()
                broker.start()  # empty
                await until("the events topic again",
                            lambda: _has_topic(broker.bootstrap, "lanes"))
                async with Publisher(config.kafka, broker.bootstrap, "lanes") as publisher:
                    await publisher.publish([event(f"new-{n}") for n in range(5)])
                hits = await receiver.wait_for(25, "/ok", timeout_s=60)

                async def committed_all() -> bool:
                    offsets = await group_offsets(broker.bootstrap, "registry-hub.hook",
                                                  "lanes")
                    return sum(offsets.values()) == 5

                # the group rejoins the new broker first (3 s sessions): on a loaded machine,
                # rebalances can take a while before the first commit is accepted
                await until("the new offsets committed", committed_all, timeout_s=60)
                hub.stop()
                await asyncio.wait_for(run, 30)
    assert {h.headers["webhook-id"] for h in hits[20:]} == {f"new-{n}" for n in range(5)}
    lost = [e for e in logs if e["event"] == "delivery.offsets_lost"]
    assert lost and lost[0]["subscription"] == "hook", logs


def event(event_id: str) -> Event:
    n = int(event_id.rsplit("-", 1)[1])
    return Event(id=event_id, type="registered_model.created", model=f"m{n}",
                 time=datetime.now(UTC), source="s", data={"model_name": f"m{n}"})


async def _has_topic(bootstrap: str, topic: str) -> bool:
    return topic in await topics_on(bootstrap)


async def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets (read, not joined: a consumer that never subscribes)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        found = {p: await consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        await consumer.stop()
    return {p: offset for p, offset in found.items() if offset is not None}


async def test_runtime_subscriptions_are_written_back_from_memory(broker: Broker) -> None:
    config = HubConfig(kafka={"bootstrap_servers": broker.bootstrap, "topic": "subs"},
                       subscriptions=[], admin={"enabled": False})
    with capture_logs() as logs:
        async with Hub(config, Roles(detect=False, deliver=False)) as hub:
            run = asyncio.create_task(hub.run())
            assert hub.store is not None
            await hub.store.put(SubscriptionConfig(name="audit", handler="console"),
                                description="kept")
            broker.kill()
            broker.start()  # empty

            async def written_back() -> bool:
                try:
                    async with SubscriptionStore(config, broker.bootstrap) as reader:
                        return reader.descriptions.get("audit") == "kept"
                except BusError:
                    return False

            await until("the subscription written back", written_back, timeout_s=60)
            hub.stop()
            await asyncio.wait_for(run, 30)
    assert [e["subscriptions"] for e in logs if e["event"] == "substore.topic_lost"] == [
        ["audit"]], logs


async def test_a_partition_recreated_under_a_consumer_is_noticed_and_a_healthy_one_is_not(
        broker: Broker) -> None:
    """Tansu reports the end of a multi-record batch short and says nothing when a consumer
    reads past the end: "end below position" would misfire, and a consumer that kept its
    position would skip the new topic's records. The reset watch uses timestamps, and
    notices the reset even after the consumer took new records past its old position."""
    config = HubConfig(kafka={"bootstrap_servers": broker.bootstrap})
    tp = TopicPartition("reset", 0)

    await ensure_topics(config.kafka, broker.bootstrap, [("reset", 1, {})])
    async with Publisher(config.kafka, broker.bootstrap, "reset") as publisher:
        await publisher.publish([event(f"e-{i}") for i in range(20)])  # one batch
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    watch = ResetWatch()
    try:
        consumer.assign([tp])
        taken: list[int] = []  # timestamps
        while len(taken) < 20:
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                watch.took(tp, record.timestamp, record.offset)
                taken.append(record.timestamp)
        assert (await consumer.end_offsets([tp]))[tp] < await consumer.position(tp), \
            "this broker reports the end of a batch short: the case 'end < position' misreads"
        assert await watch.rewinds(consumer) == {}, "a healthy partition is left alone"

        broker.kill()
        broker.start()  # empty
        await ensure_topics(config.kafka, broker.bootstrap, [("reset", 1, {})])
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:  # stamped as published after the outage, whatever the test machine's speed
            later = max(taken) + 5000
            for n in range(25):
                await producer.send_and_wait("reset", b"new", partition=0,
                                             timestamp_ms=later + n)
        finally:
            await producer.stop()
        while await consumer.position(tp) < 25:  # it reads on from 20: the 20 before, skipped
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                assert record.offset >= 20
                watch.took(tp, record.timestamp, record.offset)

        async def noticed() -> bool:
            return await watch.rewinds(consumer) == {tp: 0}

        await until("the re-created partition noticed", noticed)
    finally:
        await close_client(consumer)  # aiokafka's stop() may raise its fetch tasks' cancel
