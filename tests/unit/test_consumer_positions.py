"""Where a lane starts reading and when the retry scheduler stops fetching, against an
in-memory consumer (no broker): ``delivery.start_from`` and the retry topic's pause at
``delivery.max_pending_retries``. The same on a real broker: tests/integration/test_delivery.py
and test_broker_loss.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndTimestamp

from hub.config import DeliveryConfig, KafkaConfig
from hub.deliver.jobs import Job
from hub.deliver.lane import _Rebalance
from hub.deliver.scheduler import RetryScheduler
from hub.metrics import Metrics
from hub.testing import make_event

STARTED_MS = 1_700_000_000_000
P0, P1, P2 = (TopicPartition("events", p) for p in range(3))


@dataclass
class MemoryConsumer:
    """The parts of ``AIOKafkaConsumer`` the lane's rebalance listener and the scheduler's
    fetch use, over in-memory partitions."""

    committed_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    first_at_or_after: dict[TopicPartition, int] = field(default_factory=dict)  # start time
    records: dict[TopicPartition, list[Any]] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    paused: set[TopicPartition] = field(default_factory=set)
    fetches: int = 0

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def offsets_for_times(self, times: dict[TopicPartition, int]
                                ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        assert set(times.values()) == {STARTED_MS}
        return {tp: (OffsetAndTimestamp(self.first_at_or_after[tp], STARTED_MS)
                     if tp in self.first_at_or_after else None) for tp in times}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def assignment(self) -> set[TopicPartition]:
        return set(self.records)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        batch = {tp: records for tp, records in self.records.items()
                 if tp not in self.paused and records}
        self.records = {tp: [] for tp in self.records}
        return batch


class Lane:
    """What the rebalance listener needs of its lane."""

    name = "hook"

    def __init__(self, committed_before: set[TopicPartition] = frozenset()) -> None:  # type: ignore[assignment]
        self.committed_before = set(committed_before)
        self.restarted: list[TopicPartition] = []

    def started_over(self, tps: list[TopicPartition]) -> None:
        self.restarted.extend(tps)


async def test_start_from_now_skips_history_on_partitions_the_group_never_committed() -> None:
    consumer = MemoryConsumer(committed_offsets={P2: 7}, ends={P0: 50, P1: 30, P2: 40},
                              first_at_or_after={P0: 42})  # P1: nothing since the start
    listener = _Rebalance(Lane(), consumer, STARTED_MS)  # type: ignore[arg-type]
    await listener.on_partitions_assigned([P0, P1, P2])
    # P0 from its first record at or after the start; P1 at its end as it was before the
    # search; P2 was committed by the group: Kafka resumes it there, the lane does not seek
    assert consumer.positions == {P0: 42, P1: 30}


async def test_an_answer_older_than_the_start_is_no_match() -> None:
    """Some brokers answer a time past their last record with that record: it is not one
    published since the start, so the partition starts at its end."""

    class Answers(MemoryConsumer):
        async def offsets_for_times(self, times: dict[TopicPartition, int]
                                    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
            return {tp: OffsetAndTimestamp(29, STARTED_MS - 30_000) for tp in times}

    consumer = Answers(ends={P1: 30})
    await _Rebalance(Lane(), consumer, STARTED_MS).on_partitions_assigned([P1])  # type: ignore[arg-type]
    assert consumer.positions == {P1: 30}


async def test_start_from_earliest_leaves_every_partition_to_kafka() -> None:
    consumer = MemoryConsumer(ends={P0: 50}, first_at_or_after={P0: 42})
    await _Rebalance(Lane(), consumer, None).on_partitions_assigned([P0])  # type: ignore[arg-type]
    assert consumer.positions == {}


async def test_a_partition_whose_committed_offset_vanished_starts_over() -> None:
    lane = Lane(committed_before={P0})
    consumer = MemoryConsumer(ends={P0: 3, P1: 9}, first_at_or_after={P0: 0})
    await _Rebalance(lane, consumer, STARTED_MS).on_partitions_assigned([P0, P1])  # type: ignore[arg-type]
    assert lane.restarted == [P0]  # the broker lost it (came back empty)
    assert consumer.positions == {P0: 0, P1: 9}


def job_record(offset: int, due_ms: int) -> SimpleNamespace:
    job = Job("hook", make_event(), attempt=2, due_ms=due_ms)
    return SimpleNamespace(offset=offset, timestamp=STARTED_MS, value=job.encode())


class Dispatcher:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, int]] = []

    async def deliver(self, subscription: str, event: Any, attempt: int, *,
                      replayed: bool = False) -> None:
        self.delivered.append((subscription, attempt))


async def test_the_retry_topic_pauses_at_max_pending_retries_and_resumes_when_jobs_fire() -> None:
    now_s = STARTED_MS / 1000
    dispatcher = Dispatcher()
    scheduler = RetryScheduler(
        dispatcher=dispatcher, kafka=KafkaConfig(), bootstrap_servers="memory",  # type: ignore[arg-type]
        topic="events.retry", config=DeliveryConfig(max_pending_retries=2), metrics=Metrics(),
        clock=lambda: now_s)
    due = STARTED_MS + 60_000
    consumer = MemoryConsumer(records={P0: [job_record(0, due), job_record(1, due)]})
    await scheduler._fetch(consumer)  # type: ignore[arg-type]
    assert scheduler.pending == 2 and consumer.paused == set()

    consumer.records[P0] = [job_record(2, due)]
    await scheduler._fetch(consumer)  # type: ignore[arg-type]
    assert consumer.paused == {P0}, "full: the retry topic is paused"
    assert scheduler.pending == 2 and consumer.fetches == 1, "nothing more is taken while full"

    now_s = due / 1000  # the jobs fall due and start
    scheduler._fire_due()
    await asyncio.gather(*scheduler._tasks)
    assert dispatcher.delivered == [("hook", 2), ("hook", 2)] and scheduler.pending == 0
    await scheduler._fetch(consumer)  # type: ignore[arg-type]
    assert consumer.paused == set() and scheduler.pending == 1, "resumed: the third job is read"
