"""The durable retry schedule: a Kafka topic of :class:`~hub.deliver.jobs.Job` records.

The scheduler consumes the retry topic in its own group, holds each job in memory until it
is due (at most ``delivery.max_pending_retries``; past that the topic is paused), then hands
it to the dispatcher. A job's offset counts as done once the dispatcher returned (delivered,
re-scheduled as a new job, or dead-lettered); the committed offset is the lowest offset not
yet done, so a restart re-reads exactly the jobs still waiting. Jobs of different
subscriptions never wait for each other: a job due in ten hours does not hold back one due
in five seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from hub.broker.resets import ResetWatch
from hub.bus import close_client, new_group_consumer
from hub.config import DeliveryConfig, KafkaConfig
from hub.deliver.dispatch import Dispatcher
from hub.deliver.jobs import Job
from hub.deliver.offsets import OffsetTracker
from hub.metrics import Metrics

log = structlog.get_logger(__name__)


class _Forget(ConsumerRebalanceListener):
    def __init__(self, scheduler: RetryScheduler, consumer: AIOKafkaConsumer) -> None:
        self._scheduler = scheduler
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._scheduler.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """A partition committed before that comes back with no committed offset was lost by
        the broker (it came back empty): read from its beginning, as a new topic."""
        before = self._scheduler.committed_before
        lost = [tp for tp in assigned
                if tp in before and await self._consumer.committed(tp) is None]
        if lost:
            log.warning("retry.offsets_lost", partitions=sorted(tp.partition for tp in lost),
                        action="the broker lost them with the jobs they held: starting over")
            self._scheduler.started_over(lost)


class RetryScheduler:
    def __init__(self, *, dispatcher: Dispatcher, kafka: KafkaConfig, bootstrap_servers: str,
                 topic: str, config: DeliveryConfig, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._dispatcher = dispatcher
        self._kafka = kafka
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self.group_id = f"{config.group_id_prefix}.retry"
        self._heap: list[tuple[int, int, TopicPartition, int, Job]] = []
        self._tie = itertools.count()
        self._offsets = OffsetTracker()
        self._generation: dict[TopicPartition, int] = {}  # bumped when a partition is forgotten
        self._resets = ResetWatch()
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.assigned = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def pending(self) -> int:
        return len(self._heap)

    @property
    def committed_before(self) -> set[TopicPartition]:
        return self._offsets.ever_committed

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Partitions moved to another worker, which will re-read their jobs. Jobs of theirs
        still running finish uncounted: the partition may come back (as a new topic, after
        the broker lost its data) with other jobs at the same offsets."""
        self._heap = [entry for entry in self._heap if entry[2] not in partitions]
        heapq.heapify(self._heap)
        self._offsets.forget(partitions)
        for tp in partitions:
            self._generation[tp] = self._generation.get(tp, 0) + 1

    def started_over(self, partitions: list[TopicPartition]) -> None:
        """These partitions start over as new ones (see :mod:`hub.broker.resets`)."""
        self._resets.forget(partitions)

    def _restart(self, consumer: AIOKafkaConsumer, rewinds: dict[TopicPartition, int]) -> None:
        """The broker re-created these partitions under this consumer (see
        :mod:`hub.broker.resets`): read them again from the given offsets. Jobs already read from
        the old ones stay scheduled (memory is their only copy now), uncounted."""
        if not rewinds:
            return
        log.warning("retry.partition_reset",
                    partitions={tp.partition: offset for tp, offset in rewinds.items()},
                    action="the broker re-created them (it came back empty?): reading again")
        self._heap = [(due, tie, tp, -1 if tp in rewinds else offset, job)
                      for due, tie, tp, offset, job in self._heap]
        heapq.heapify(self._heap)
        self._offsets.forget(rewinds)
        self._resets.forget(rewinds)
        for tp, offset in rewinds.items():
            self._generation[tp] = self._generation.get(tp, 0) + 1
            consumer.seek(tp, offset)

    async def run(self) -> None:
        consumer = new_group_consumer(self._kafka, self._bootstrap, self.group_id,
                                      auto_offset_reset="earliest")
        consumer.subscribe([self._topic], listener=_Forget(self, consumer))
        await consumer.start()
        next_check = 0.0
        try:
            while not self._stopping.is_set():
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 2
                    self._restart(consumer, await self._resets.rewinds(consumer))
                await self._fetch(consumer)
                self._fire_due()
                self._metrics.retries_pending.set(len(self._heap))
                await self._commit(consumer)
                await asyncio.sleep(0)  # let the deliveries it started run, whatever fetch did
            await self._drain()
            await self._commit(consumer)
        finally:
            for task in self._tasks:
                task.cancel()
            await close_client(consumer)

    async def _fetch(self, consumer: AIOKafkaConsumer) -> None:
        assignment = consumer.assignment()
        if assignment:
            self.assigned.set()
        else:  # rebalancing, or the broker lost the topic
            self.assigned.clear()
        full = len(self._heap) >= self._config.max_pending_retries
        if full:
            consumer.pause(*assignment)
        else:
            consumer.resume(*assignment)
        wait_ms = 300
        if self._heap and not self._slots.locked():
            wait_ms = max(0, min(wait_ms, self._heap[0][0] - int(self._clock() * 1000)))
        # Every slot busy: a due job cannot start before one frees, so never spin on a zero
        # wait here (that loop would never yield and would freeze the whole worker).
        if full:
            await asyncio.sleep(wait_ms / 1000)  # nothing to fetch: wait for the next due job
            return
        batch = await consumer.getmany(timeout_ms=wait_ms, max_records=self._config.max_batch)
        for tp, records in batch.items():
            for record in records:
                self._offsets.seen(tp, record.offset)
                self._resets.took(tp, record.timestamp, record.offset)
                try:
                    job = Job.decode(record.value)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("retry.bad_record", partition=tp.partition, offset=record.offset,
                              error=repr(exc), action="skipped")
                    continue
                self._offsets.opened(tp, record.offset)
                heapq.heappush(self._heap, (job.due_ms, next(self._tie), tp, record.offset, job))

    def _fire_due(self) -> None:
        now_ms = int(self._clock() * 1000)
        while self._heap and self._heap[0][0] <= now_ms and not self._slots.locked():
            _, _, tp, offset, job = heapq.heappop(self._heap)
            task = asyncio.create_task(
                self._run_job(tp, offset, job, self._generation.get(tp, 0)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_job(self, tp: TopicPartition, offset: int, job: Job,
                       generation: int) -> None:
        async with self._slots:
            await self._dispatcher.deliver(job.subscription, job.event, job.attempt,
                                           replayed=job.replayed)
        if offset >= 0 and self._generation.get(tp, 0) == generation:  # still counted
            self._offsets.finished(tp, offset)

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._config.grace_period_s)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        await self._offsets.commit(consumer, event="retry.commit_failed")
