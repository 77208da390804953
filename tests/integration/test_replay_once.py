"""Dead-letter replay on the real broker, to a real receiver: each dead letter is replayed
once per request, shows once in the view at its latest state, and an event delivered since
a replay is not delivered again (issue 9)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import pytest

from hub.bus import start_producer
from hub.config import HubConfig
from hub.deliver.dlq import LetterState
from hub.deliver.jobs import DeadLetter
from hub.deliver.replay import dead_letters, replay_dead_letters
from hub.deliver.worker import ensure_hub_topics
from hub.events import Event
from tests.support.delivery import delivery_config, event, publish, running_worker, webhook
from tests.support.kafka_reader import read_topic
from tests.support.receiver import running_receiver
from tests.support.wait import eventually

pytestmark = pytest.mark.timeout(180)
WAIT_S = 30  # replays of many dead letters through the broker


def states(letters: list[LetterState]) -> dict[str, tuple[str, int]]:
    return {s.event_id: (s.state, s.replays) for s in letters}


@pytest.mark.slow
async def test_five_replays_of_ten_dead_letters_keep_ten_and_deliver_each_once(
        kafka_bootstrap: str, topic_name: str) -> None:
    async with running_receiver() as receiver:
        receiver.down.add("x")
        config = delivery_config(kafka_bootstrap, topic_name,
                                 [webhook("down", f"{receiver.url}/down/x")], schedule=[0.05])
        ids = [f"evt-{n}" for n in range(10)]

        async def view() -> list[LetterState]:
            return await dead_letters(config, kafka_bootstrap)

        await publish(config, [event(n, model=f"m{n}") for n in range(10)])
        async with running_worker(config):
            letters = await eventually(view, lambda ls: len(ls) == 10, timeout_s=WAIT_S)
            assert states(letters) == {i: ("dead", 0) for i in ids}
            dead_at = {s.event_id: s.dead_at for s in letters}

            for n in range(1, 6):  # the endpoint is still down: each replay fails again
                result = await replay_dead_letters(config, kafka_bootstrap)
                assert (len(result.replayed), result.skipped) == (10, {}), f"replay {n}"
                letters = await eventually(view, lambda ls, n=n: states(ls) == {
                    i: ("dead", n) for i in ids}, timeout_s=WAIT_S)
                assert len(letters) == 10
                assert {(s.attempts, s.reason) for s in letters} == {(2, "exhausted")}
                assert all(s.dead_at > dead_at[s.event_id] for s in letters), \
                    "a dead-again entry carries its latest dead letter"
                dead_at = {s.event_id: s.dead_at for s in letters}
            assert receiver.delivered() == []

        # workers stopped: a replay is enqueued, and a second one skips what is under way
        receiver.down.clear()
        first = await replay_dead_letters(config, kafka_bootstrap)
        again = await replay_dead_letters(config, kafka_bootstrap)
        assert len(first.replayed) == 10
        assert (again.replayed, again.skipped) == ([], {"replay_in_progress": 10})
        assert states(await view()) == {i: ("replayed", 6) for i in ids}

        async with running_worker(config):
            hits = await receiver.wait_for(10)
            await eventually(view, lambda ls: states(ls) == {i: ("delivered", 6) for i in ids},
                             timeout_s=WAIT_S)
            after = await replay_dead_letters(config, kafka_bootstrap)
            assert (after.replayed, after.skipped) == ([], {"delivered_after_replay": 10})
            # the one way to deliver again: name the event
            forced = await replay_dead_letters(config, kafka_bootstrap, event_id="evt-3")
            assert [s.event_id for s in forced.replayed] == ["evt-3"]
            hits = await receiver.wait_for(11)
            await eventually(
                lambda: dead_letters(config, kafka_bootstrap, event_id="evt-3"),
                lambda ls: states(ls) == {"evt-3": ("delivered", 7)}, timeout_s=WAIT_S)

    assert sorted(h.headers["webhook-id"] for h in hits[:10]) == sorted(ids), \
        "after the receiver recovered, each event was delivered once"
    assert hits[10].headers["webhook-id"] == "evt-3"
    assert len(await view()) == 10
    # every job ever written: 10 first retries, per replay 10 jobs + 10 retries (x5), the
    # recovered replay's 10 and the forced one; doubling would show as hundreds
    jobs = await read_topic(kafka_bootstrap, config.retry_topic, at_least=121, settle_s=0.3)
    assert len(jobs) == 121


async def test_view_filters_by_state_and_a_replay_by_subscription_leaves_others(
        kafka_bootstrap: str, topic_name: str) -> None:
    async with running_receiver() as receiver:
        receiver.down.update({"a", "b"})
        config = delivery_config(kafka_bootstrap, topic_name, [
            webhook("a", f"{receiver.url}/down/a"), webhook("b", f"{receiver.url}/down/b")],
            schedule=[])
        await publish(config, [event(1), event(2, model="other")])
        async with running_worker(config):
            await eventually(lambda: dead_letters(config, kafka_bootstrap),
                             lambda ls: len(ls) == 4, timeout_s=WAIT_S)
            receiver.down.clear()
            result = await replay_dead_letters(config, kafka_bootstrap, subscription="a")
            assert sorted(s.event_id for s in result.replayed) == ["evt-1", "evt-2"]
            await receiver.wait_for(2, "/down/a")
            delivered = await eventually(
                lambda: dead_letters(config, kafka_bootstrap, state="delivered"),
                lambda ls: len(ls) == 2, timeout_s=WAIT_S)
            assert {s.subscription for s in delivered} == {"a"}
            dead = await dead_letters(config, kafka_bootstrap, state="dead")
            assert sorted((s.subscription, s.event_id) for s in dead) == [
                ("b", "evt-1"), ("b", "evt-2")]
            with pytest.raises(ValueError, match="state must be one of"):
                await dead_letters(config, kafka_bootstrap, state="lost")
            # a dry run lists and writes nothing
            dry = await replay_dead_letters(config, kafka_bootstrap, dry_run=True)
            assert sorted((s.subscription, s.event_id) for s in dry.replayed) == [
                ("b", "evt-1"), ("b", "evt-2")]
            assert dry.skipped == {"delivered_after_replay": 2}
        assert len(await dead_letters(config, kafka_bootstrap, state="dead")) == 2
        assert receiver.delivered("/down/b") == []


@pytest.mark.slow
async def test_reading_a_long_dead_letter_topic_holds_one_small_state_per_key(
        kafka_bootstrap: str, topic_name: str) -> None:
    """600 dead letters of 20 kB events (12 MB) for three keys: the view and a replay read
    it all, holding a few batches, never the topic."""
    config: HubConfig = delivery_config(kafka_bootstrap, topic_name,
                                        [webhook("w", "http://127.0.0.1:9/")])
    await ensure_hub_topics(config, kafka_bootstrap)
    big = "x" * 20_000
    producer = await start_producer(config.kafka, kafka_bootstrap)
    try:
        for n in range(600):
            e = Event(id=f"evt-{n % 3}", type="model_version.created", model="iris",
                      version="1", time=datetime.now(UTC), source="s", data={"blob": big})
            letter = DeadLetter("w", e, n, f"error {n}", 503, "exhausted",
                                datetime.now(UTC).isoformat())
            await producer.send(config.dead_letter_topic, key=letter.key,
                                value=letter.encode())
        await producer.flush()
    finally:
        await producer.stop()

    tracemalloc.start()
    try:
        letters = await dead_letters(config, kafka_bootstrap)
        result = await replay_dead_letters(config, kafka_bootstrap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted((s.event_id, s.attempts) for s in letters) == [
        ("evt-0", 597), ("evt-1", 598), ("evt-2", 599)]
    assert sorted(s.event_id for s in result.replayed) == ["evt-0", "evt-1", "evt-2"]
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB while reading a 12 MB topic"
    jobs = await read_topic(kafka_bootstrap, config.retry_topic, at_least=3, settle_s=0.3)
    assert sorted(j.data["event"]["id"] for j in jobs) == ["evt-0", "evt-1", "evt-2"]
    assert {len(j.data["event"]["data"]["blob"]) for j in jobs} == {20_000}
