"""Delivery through the real broker to real receivers: retries, isolation, dead letters,
replay, 410 Gone. Retry schedules are injected so every test takes seconds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from hub.config import HubConfig
from hub.deliver.replay import dead_letters, replay_dead_letters, replay_events
from hub.events import Event
from tests.support.delivery import delivery_config, event, publish, running_worker, webhook
from tests.support.kafka_reader import read_topic
from tests.support.receiver import Receiver
from tests.support.wait import eventually

pytestmark = pytest.mark.timeout(180)


async def test_flaky_endpoint_gets_each_event_once_with_the_same_id(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    receiver.failures["a"] = 2
    config = delivery_config(kafka_bootstrap, topic_name,
                             [webhook("flaky", f"{receiver.url}/fail/a")])
    await publish(config, [event(1)])
    with capture_logs() as logs:
        async with running_worker(config):
            (hit,) = await receiver.wait_for(1)
    assert hit.verified, "signature must verify with the standardwebhooks library"
    assert hit.headers["webhook-id"] == "evt-1"
    assert hit.body["type"] == "model_version.created"
    attempts = await read_topic(kafka_bootstrap, config.deliveries_topic, at_least=3)
    assert [(a.data["attempt"], a.data["status"]) for a in attempts] == [
        (1, "retry"), (2, "retry"), (3, "delivered")]
    assert {a.data["event_id"] for a in attempts} == {"evt-1"}
    # quiet by default: the retries are warnings, the success only a DEBUG line
    assert [(e["attempt"], e["status"], e["log_level"]) for e in logs
            if e["event"] == "delivery.attempt"] == [
        (1, "retry", "warning"), (2, "retry", "warning"), (3, "delivered", "debug")]


@pytest.mark.slow
async def test_hanging_endpoint_does_not_delay_a_healthy_one(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    config = delivery_config(kafka_bootstrap, topic_name, [
        webhook("healthy", f"{receiver.url}/ok"),
        webhook("stuck", f"{receiver.url}/hang", timeout_s=60),
    ])
    await publish(config, [event(n, model=f"m{n}") for n in range(30)])
    async with running_worker(config):
        started = asyncio.get_running_loop().time()
        hits = await receiver.wait_for(30, "/ok", timeout_s=20)
        took = asyncio.get_running_loop().time() - started
    assert sorted(h.headers["webhook-id"] for h in hits) == sorted(f"evt-{n}" for n in range(30))
    assert took < 10, f"healthy subscription waited {took:.1f}s behind a hanging one"


async def test_exhausted_retries_dead_letter_and_replay_delivers(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    receiver.down.add("x")
    config = delivery_config(kafka_bootstrap, topic_name,
                             [webhook("down", f"{receiver.url}/down/x")], schedule=[0.1])
    await publish(config, [event(1), event(2, model="other")])
    async with running_worker(config):
        letters = await read_topic(kafka_bootstrap, config.dead_letter_topic, at_least=2)
        assert sorted(d.data["event"]["id"] for d in letters) == ["evt-1", "evt-2"]
        assert {d.data["attempts"] for d in letters} == {2}
        assert {d.data["reason"] for d in letters} == {"exhausted"}
        assert all("503" in d.data["last_error"] or d.data["http_status"] == 503
                   for d in letters)
        assert receiver.delivered() == []

        receiver.down.clear()
        only = await dead_letters(config, kafka_bootstrap, event_id="evt-2")
        assert [(d.event_id, d.state) for d in only] == [("evt-2", "dead")]
        result = await replay_dead_letters(config, kafka_bootstrap, subscription="down",
                                           event_id="evt-2")
        assert [d.event_id for d in result.replayed] == ["evt-2"]
        (hit,) = await receiver.wait_for(1)
        assert hit.headers["webhook-id"] == "evt-2" and hit.verified
        # evt-2 is delivered once its mark is written: a replay of everything skips it
        await _until_delivered(config, kafka_bootstrap, "evt-2")
        result = await replay_dead_letters(config, kafka_bootstrap)
        assert [d.event_id for d in result.replayed] == ["evt-1"]
        assert result.skipped == {"delivered_after_replay": 1}
        hits = await receiver.wait_for(2)
    assert sorted(h.headers["webhook-id"] for h in hits) == ["evt-1", "evt-2"]


async def _until_delivered(config: HubConfig, bootstrap: str, event_id: str) -> None:
    await eventually(lambda: dead_letters(config, bootstrap, event_id=event_id),
                     lambda letters: [d.state for d in letters] == ["delivered"],
                     what=f"{event_id} delivered after its replay")


@pytest.mark.slow
async def test_gone_endpoint_stops_and_dead_letters_later_events(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    config = delivery_config(kafka_bootstrap, topic_name,
                             [webhook("gone", f"{receiver.url}/status/410")])
    await publish(config, [event(1), event(2)])
    with capture_logs() as logs:
        async with running_worker(config) as worker:
            letters = await read_topic(kafka_bootstrap, config.dead_letter_topic, at_least=2)
            assert (running := worker.running_subscription("gone")) is not None and running.gone
    assert [(d.data["event"]["id"], d.data["reason"]) for d in letters] == [
        ("evt-1", "gone"), ("evt-2", "gone")]
    # a failed attempt and each dead letter stay visible at the default level
    assert [(e["status"], e["log_level"]) for e in logs if e["event"] == "delivery.attempt"] \
        == [("gone", "warning")]
    assert [(e["event_id"], e["log_level"]) for e in logs
            if e["event"] == "delivery.dead_lettered"] == [("evt-1", "error"), ("evt-2", "error")]
    attempts = await read_topic(kafka_bootstrap, config.deliveries_topic, at_least=1,
                                settle_s=0.3)
    assert [a.data["http_status"] for a in attempts] == [410]  # no second attempt


async def test_subscription_filters_and_replay_from_the_events_topic(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    config = delivery_config(kafka_bootstrap, topic_name, [
        webhook("prod-only", f"{receiver.url}/ok", events=["model_version.*"],
                models=["iris*"], when={"to_stage": "Production"}),
    ])
    promoted = Event(id="evt-p", type="model_version.stage_transitioned", model="iris",
                     version="3", time=datetime.now(UTC), source="s",
                     data={"model_name": "iris", "version": "3", "to_stage": "Production"})
    staged = Event(id="evt-s", type="model_version.stage_transitioned", model="iris",
                   version="2", time=datetime.now(UTC), source="s",
                   data={"model_name": "iris", "version": "2", "to_stage": "Staging"})
    other = Event(id="evt-o", type="model_version.stage_transitioned", model="wine",
                  version="1", time=datetime.now(UTC), source="s",
                  data={"model_name": "wine", "version": "1", "to_stage": "Production"})
    since = datetime.now(UTC)
    await publish(config, [staged, promoted, other])
    async with running_worker(config):
        (hit,) = await receiver.wait_for(1)
        assert hit.headers["webhook-id"] == "evt-p"
        jobs = await replay_events(config, kafka_bootstrap, since=since)
        assert [j.event.id for j in jobs] == ["evt-p"]
        hits = await receiver.wait_for(2)
    assert [h.headers["webhook-id"] for h in hits] == ["evt-p", "evt-p"]


@pytest.mark.slow
async def test_retry_after_on_429_is_honoured_over_a_shorter_schedule(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    receiver.failures["b"] = 1
    config = delivery_config(kafka_bootstrap, topic_name,
                             [webhook("busy", f"{receiver.url}/busy/b/2")], schedule=[0.05])
    await publish(config, [event(1)])
    async with running_worker(config):
        (hit,) = await receiver.wait_for(1)
    attempts = await read_topic(kafka_bootstrap, config.deliveries_topic, at_least=2)
    first, second = (a.data for a in attempts)
    assert (first["status"], first["http_status"], second["status"]) == (
        "retry", 429, "delivered")
    assert first["next_attempt_in_s"] >= 2
    waited = (datetime.fromisoformat(second["at"]) - datetime.fromisoformat(first["at"]))
    assert waited.total_seconds() >= 1.9, "the 0.05 s schedule must yield to Retry-After: 2"
    assert hit.headers["webhook-id"] == "evt-1"


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_retries_due_while_every_slot_is_busy_do_not_freeze_the_worker(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    """Found by bench/deliver.py: with every retry slot taken and the next job already due,
    the scheduler spun on a zero wait without yielding, freezing every lane of the worker."""
    receiver.down.add("x")
    config = delivery_config(kafka_bootstrap, topic_name, [
        webhook("healthy", f"{receiver.url}/ok"),
        webhook("failing", f"{receiver.url}/down/x"),
    ], schedule=[0, 0, 0])
    config = config.model_copy(update={
        "delivery": config.delivery.model_copy(update={"max_in_flight": 2})})
    n = 150
    await publish(config, [event(i, model=f"m{i % 15}") for i in range(n)])
    async with running_worker(config):
        hits = await receiver.wait_for(n, "/ok", timeout_s=45)
        letters = await read_topic(kafka_bootstrap, config.dead_letter_topic, at_least=n,
                                   timeout_s=45)
    assert {h.headers["webhook-id"] for h in hits} == {f"evt-{i}" for i in range(n)}
    assert {d.data["reason"] for d in letters} == {"exhausted"}
