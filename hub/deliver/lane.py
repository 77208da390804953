"""A subscription's own lane: one consumer group per subscription on the events topic.

Each subscription consumes at its own pace, so a slow or dead endpoint only holds back its
own group; other subscriptions never wait for it. Within a lane, the events of one model are
delivered one after the other (first attempts keep per-model order, a *chain* per model);
different models go concurrently, at most ``delivery.max_in_flight`` deliveries at a time,
and the lane keeps fetching while slots are free (at most ``delivery.max_batch`` records
taken and not yet final).

**Commit rule.** A partition's committed offset is the lowest offset not yet final — every
record below it was delivered, durably scheduled for retry, dead-lettered, or filtered out by
the subscription's rules. A worker killed at any moment therefore loses nothing; it
re-delivers what was not final, with the same event ids. Partitions taken away by a
rebalance are drained (up to the grace period) and committed before they go.

**The subscription it delivers** is one :class:`~hub.deliver.running.RunningSubscription` (settings,
filter, handler, Gone state), read when a record is taken (the filter) and again when its
delivery starts (the dispatcher looks it up through :meth:`SubscriptionLane.running`).
:meth:`~SubscriptionLane.swap` replaces it in one assignment: every delivery that starts
afterwards uses the new one, events already taken included. :meth:`~SubscriptionLane.close`
(the subscription was deleted) starts no delivery any more: what is in flight finishes, what
was taken and not started stays un-final, so it is not committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from hub.broker.resets import ResetWatch
from hub.bus import close_client, new_group_consumer
from hub.codec import decode
from hub.config import DeliveryConfig, KafkaConfig
from hub.deliver.dispatch import Dispatcher
from hub.deliver.offsets import OffsetTracker
from hub.deliver.running import RunningSubscription
from hub.events import Event
from hub.metrics import Metrics

log = structlog.get_logger(__name__)

ChainKey = tuple[TopicPartition, bytes | None]


class _Rebalance(ConsumerRebalanceListener):
    """Revoked partitions are drained and committed before they move. With
    ``delivery.start_from: now``, partitions this group never committed start at the worker's
    start time, not at the topic's whole history. A partition this lane had committed that
    comes back with no committed offset was lost by the broker (it came back empty): it
    starts over the same way, on the new topic."""

    def __init__(self, lane: SubscriptionLane, consumer: AIOKafkaConsumer,
                 started_ms: int | None) -> None:
        self._lane = lane
        self._consumer = consumer
        self._started_ms = started_ms

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._lane.release(self._consumer, set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        fresh = [tp for tp in assigned if await self._consumer.committed(tp) is None]
        if lost := [tp for tp in fresh if tp in self._lane.committed_before]:
            log.warning("delivery.offsets_lost", subscription=self._lane.name,
                        partitions=sorted(tp.partition for tp in lost),
                        action="the broker lost them (it came back empty?): starting over")
            self._lane.started_over(lost)
        if self._started_ms is None or not fresh:
            return
        # the end as it was *before* the search: a record published meanwhile (the detector
        # publishes at once on a topic that was just re-created) is read, not skipped
        ends = await self._consumer.end_offsets(fresh)
        found = await self._consumer.offsets_for_times({tp: self._started_ms for tp in fresh})
        for tp in fresh:
            # an answer older than asked is no match (some brokers answer so instead of none):
            # taking it would deliver again what was published before this start
            match = found.get(tp)
            older = match is None or match.timestamp < self._started_ms
            self._consumer.seek(tp, ends[tp] if older else match.offset)


class SubscriptionLane:
    def __init__(self, running: RunningSubscription, *, dispatcher: Dispatcher,
                 kafka: KafkaConfig, bootstrap_servers: str, topic: str,
                 config: DeliveryConfig, metrics: Metrics,
                 started_ms: int | None = None,
                 decoder: Callable[[bytes | None, bytes, tuple[Any, ...]], Event] = decode
                 ) -> None:
        self.name = name = running.name
        self._running: RunningSubscription | None = running
        self._dispatcher = dispatcher
        self._kafka = kafka
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._config = config
        self._metrics = metrics
        self._started_ms = started_ms or int(time.time() * 1000)
        self._decode = decoder  # the worker's lanes share one (hub.codec.SharedDecoder)
        self.group_id = f"{config.group_id_prefix}.{name}"
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._progress = asyncio.Event()
        self._offsets = OffsetTracker()
        self._resets = ResetWatch()
        # per chain: (offset, event, the subscription whose filter took it)
        self._chains: dict[ChainKey, deque[tuple[int, Event, RunningSubscription]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.assigned = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def running(self) -> RunningSubscription | None:
        """The subscription in effect; ``None`` once closed."""
        return self._running

    def swap(self, running: RunningSubscription) -> RunningSubscription:
        """Put ``running`` in effect now and return the one it replaces, which the caller
        retires (its attempts in flight finish; none starts with it any more)."""
        old = self._running
        if old is None or running.name != self.name:
            raise RuntimeError(f"cannot swap {running.name!r} into the closed or other lane "
                               f"{self.name!r}")
        self._running = running
        return old

    def close(self) -> RunningSubscription | None:
        """The subscription was deleted or disabled: stop fetching and start no delivery;
        returns what was in effect, which the caller retires."""
        old, self._running = self._running, None
        self.stop()
        return old

    @property
    def committed_before(self) -> set[TopicPartition]:
        """Partitions this lane committed an offset for, at any time."""
        return self._offsets.ever_committed

    @property
    def pending(self) -> int:
        """Records taken from Kafka whose outcome is not final yet."""
        return self._offsets.pending()

    async def run(self) -> None:
        consumer = new_group_consumer(
            self._kafka, self._bootstrap, self.group_id,
            auto_offset_reset="earliest" if self._config.start_from == "earliest" else "latest",
            fetch_max_wait_ms=self._config.fetch_max_wait_ms,
            max_poll_interval_ms=max(300_000, int(self._config.grace_period_s * 2000)),
        )
        started = self._started_ms if self._config.start_from == "now" else None
        consumer.subscribe([self._topic], listener=_Rebalance(self, consumer, started))
        await consumer.start()
        log.info("delivery.lane_started", subscription=self.name, group=self.group_id)
        next_lag_check = 0.0
        try:
            while not self._stopping.is_set():
                room = self._config.max_batch - self.pending
                if room <= 0:  # back-pressure: wait for outcomes, not for more records
                    await self._wait_for_progress(0.3)
                else:
                    batch = await consumer.getmany(timeout_ms=300, max_records=room)
                    self._take(batch)
                if consumer.assignment():
                    self.assigned.set()
                else:  # rebalancing, or the broker lost the topic: not consuming
                    self.assigned.clear()
                await self._commit(consumer)
                if time.monotonic() >= next_lag_check:
                    next_lag_check = time.monotonic() + 2
                    # one deadline for both: the broker may be away, the lane must go on
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2):
                            self._restart(consumer, await self._resets.rewinds(consumer))
                            await self._report_lag(consumer)
            if self._running is None:  # closed: in-flight attempts end (the caller retires
                if self._tasks:  # them, bounded); chains start nothing more
                    await asyncio.wait(set(self._tasks))
            else:
                await self._drain(self._offsets.partitions, self._config.grace_period_s)
            await self._commit(consumer)
        finally:
            for task in self._tasks:
                task.cancel()
            await close_client(consumer)
            log.info("delivery.lane_stopped", subscription=self.name)

    def _take(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        running = self._running
        if running is None:  # closed meanwhile: take nothing (nothing seen is committed)
            return
        for tp, records in batch.items():
            for record in records:
                self._offsets.seen(tp, record.offset)
                self._resets.took(tp, record.timestamp, record.offset)
                try:
                    event = self._decode(record.key, record.value, record.headers)
                except ValueError as exc:
                    log.error("delivery.bad_record", topic=tp.topic, partition=tp.partition,
                              offset=record.offset, error=str(exc), action="skipped")
                    continue
                if not running.wants(event):
                    continue  # filtered out: final
                self._offsets.opened(tp, record.offset)
                key = (tp, record.key)
                chain = self._chains.get(key)
                if chain is None:
                    chain = self._chains[key] = deque()
                    task = asyncio.create_task(self._run_chain(key, chain))
                    self._tasks.add(task)
                    task.add_done_callback(self._chain_done)
                chain.append((record.offset, event, running))

    async def _run_chain(self, key: ChainKey,
                         chain: deque[tuple[int, Event, RunningSubscription]]) -> None:
        """One model's events, in order, one delivery at a time."""
        tp = key[0]
        try:
            while chain:
                offset, event, taken_by = chain[0]
                async with self._slots:
                    if self._running is None:
                        return  # closed: the rest of the chain stays open, uncommitted
                    # looks up self.running with no await in between: the current one (its
                    # filter is asked again only if it was swapped since the take)
                    await self._dispatcher.deliver(self.name, event, wanted_by=taken_by)
                chain.popleft()
                if self._chains.get(key) is chain:  # not detached: its partition is ours
                    self._offsets.finished(tp, offset)
                self._progress.set()
        finally:
            if self._chains.get(key) is chain and not chain:
                del self._chains[key]

    def _chain_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # its offsets stay open, so nothing is committed past them: re-delivered later
            log.error("delivery.chain_failed", subscription=self.name,
                      error=repr(task.exception()))

    async def _wait_for_progress(self, timeout_s: float) -> None:
        self._progress.clear()
        try:
            await asyncio.wait_for(self._progress.wait(), timeout_s)
        except TimeoutError:
            pass

    async def _drain(self, partitions: set[TopicPartition], timeout_s: float) -> None:
        """Wait until the given partitions have nothing in flight (or the time is up). A
        closed lane does not wait: what it took and did not start never finishes."""
        deadline = time.monotonic() + timeout_s
        while self._offsets.pending(partitions) and self._running is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("delivery.drain_timeout", subscription=self.name,
                            unfinished=self._offsets.pending(partitions),
                            action="not committed: delivered again by the next owner")
                return
            await self._wait_for_progress(min(left, 0.3))

    async def release(self, consumer: AIOKafkaConsumer, revoked: set[TopicPartition]) -> None:
        """Partitions are moving to another worker: finish, commit, forget them."""
        await self._drain(revoked, self._config.grace_period_s)
        await self._commit(consumer, only=revoked)
        self._forget(revoked)

    def _restart(self, consumer: AIOKafkaConsumer, rewinds: dict[TopicPartition, int]) -> None:
        """The broker re-created these partitions under this consumer (see
        :mod:`hub.broker.resets`): read them again from the given offsets, counting nothing of the
        old ones (what was taken from them is delivered from memory)."""
        if not rewinds:
            return
        log.warning("delivery.partition_reset", subscription=self.name,
                    partitions={tp.partition: offset for tp, offset in rewinds.items()},
                    action="the broker re-created them (it came back empty?): reading again")
        self._forget(set(rewinds))
        self._resets.forget(rewinds)
        for tp, offset in rewinds.items():
            consumer.seek(tp, offset)

    def started_over(self, partitions: list[TopicPartition]) -> None:
        """These partitions start over as new ones: nothing taken from the old ones tells
        whether they were re-created (see :mod:`hub.broker.resets`)."""
        self._resets.forget(partitions)

    def _forget(self, partitions: set[TopicPartition]) -> None:
        self._offsets.forget(partitions)
        # chains still running (the grace period ran out) finish detached: their offsets
        # must not count if a partition comes back, maybe as a new topic after a broker loss
        for key in [k for k in self._chains if k[0] in partitions]:
            del self._chains[key]

    async def _commit(self, consumer: AIOKafkaConsumer,
                      only: set[TopicPartition] | None = None) -> None:
        # A failure means the partitions moved on: the next owner re-delivers what was not
        # committed (duplicates carry the same event id).
        await self._offsets.commit(consumer, event="delivery.commit_failed", only=only,
                                   subscription=self.name)

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        assigned = list(consumer.assignment())
        if not assigned:
            return
        try:
            ends = await consumer.end_offsets(assigned)
            lag = 0
            for tp in assigned:
                lag += max(0, ends[tp] - await consumer.position(tp))
        except KafkaError:
            return
        self._metrics.consumer_lag.labels(self.group_id).set(lag)
