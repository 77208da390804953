"""Leader election for the detector, through plain Kafka consumer-group membership.

Every detector process joins the group ``<delivery.group_id_prefix>._detector`` on a
single-partition coordination topic ``<kafka.topic>.leader``. Whoever is assigned partition 0
is the leader and runs the detector; the others stand by with a live membership and take
over when the group rebalances without the leader. A custom assignor keeps partition 0 with
its current holder, so a standby joining (or a deploy restarting one) does not move it.

Guarantee and its limits:

* **At most one active detector while group membership is healthy.** Kafka's (eager)
  rebalance revokes partition 0 from the old holder before anyone else is assigned it, and
  the revocation callback waits until the caller stepped down (:meth:`stepped_down`, done by
  :func:`hub.elect.lead.lead` once the detector loop has returned) or
  ``handover_timeout_s`` passed.
* **A leader must keep proving its membership.** It renews a lease by committing its offset
  on partition 0 every heartbeat interval; the broker refuses the commit from a member it
  has expelled. The lease lasts ``session_timeout - heartbeat_interval`` from the moment the
  last successful renewal was *sent*, which ends before the broker can expel the member and
  hand partition 0 to someone else. :attr:`is_leader` reads the lease against the clock, and
  :meth:`fence` wraps the detector's publisher so that a leader that was frozen (GC pause,
  SIGSTOP, a stalled host) refuses to publish the moment it wakes up, before it has even
  heard that it was replaced.
* **After a SIGKILL** the standby takes over after the session timeout plus one rebalance,
  then reloads the detector checkpoint from Kafka and catches up on what changed meanwhile.
* **A broker that comes back empty** has no coordination topic and no group: the hub's
  :class:`~hub.broker.topics.TopicKeeper` creates the topic again, the members join again, and the
  last holder (else the oldest process) leads again. Until then no one leads, and
  :attr:`LeaderElection.leader_elsewhere` is False, so ``/readyz`` says so: a standby counts
  as ready only while a settled group gave partition 0 to another member.
* **Residual risk: duplicates, never loss.** A publish that passed the fence just before the
  process froze can still reach the broker after the new leader started. The checkpoint only
  advances after an acknowledged publish, and event ids are deterministic (same change at the
  same place in a model's history → same id), so such a late batch repeats ids the new leader
  also publishes; consumers drop them by id. Nothing is ever skipped: the new leader diffs
  from the last acknowledged checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from hub.bus import TopicSpec, close_client, ensure_topics, new_group_consumer, new_producer
from hub.config import HubConfig, KafkaConfig
from hub.detect.detector import EventSink
from hub.elect.claim import Claim, KeepLeaderAssignor
from hub.errors import BusError
from hub.events import Event

log = structlog.get_logger(__name__)

LEADER_PARTITION = 0
_TICK_S = 0.2  # how often the membership loop polls and checks the lease


# --- the election ------------------------------------------------------------------------

class _Listener(ConsumerRebalanceListener):
    def __init__(self, election: LeaderElection) -> None:
        self._election = election

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._election._on_revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._election._on_assigned(set(assigned))


class LeaderElection:
    """``async with LeaderElection.for_hub(config, servers) as election: ...``

    ``await election.wait_until_leader()``, then act while :attr:`is_leader`; learn of the
    loss with :meth:`wait_until_lost` (or the :attr:`lost` event), stop acting, and call
    :meth:`stepped_down`. :func:`hub.elect.lead.lead` does exactly this for the detector.
    """

    def __init__(self, kafka: KafkaConfig, bootstrap_servers: str, *, group_id: str,
                 topic: str, identity: str | None = None,
                 handover_timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._kafka = kafka
        self._bootstrap = bootstrap_servers
        self.group_id = group_id
        self.topic = topic
        self.topic_spec: TopicSpec = (topic, 1, {"cleanup.policy": "compact"})
        self.identity = identity or f"{socket.gethostname()}/{os.getpid()}"
        self._clock = clock
        self._renew_every_s = kafka.heartbeat_interval_ms / 1000
        self._lease_s = max(0.1, (kafka.session_timeout_ms - kafka.heartbeat_interval_ms) / 1000)
        self.handover_timeout_s = (kafka.session_timeout_ms / 1000 if handover_timeout_s is None
                                   else handover_timeout_s)
        self._tp = TopicPartition(topic, LEADER_PARTITION)
        self._assignor = KeepLeaderAssignor(Claim(started_ms=int(time.time() * 1000)))
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._assigned = False  # partition 0 is ours in the current generation
        self._assignments = 0  # counts assignments: a renewal only counts for its own
        self._next_renewal = 0.0
        self._leader = False  # we told the caller it leads (lost is not set)
        self._elsewhere = False  # a settled group gave partition 0 to another member
        self._lease_until = 0.0
        self._since: datetime | None = None
        self.acquired = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost.set()  # not leading yet
        self._released = asyncio.Event()
        self._released.set()
        self._closed = False

    @classmethod
    def for_hub(cls, config: HubConfig, bootstrap_servers: str, **kwargs: Any) -> LeaderElection:
        """The detector's election: group ``<prefix>._detector`` (the underscore keeps it apart
        from subscription groups ``<prefix>.<name>``, whose names start with a letter or
        digit), topic ``<kafka.topic>.leader``."""
        return cls(config.kafka, bootstrap_servers,
                   group_id=f"{config.delivery.group_id_prefix}._detector",
                   topic=f"{config.kafka.topic}.leader", **kwargs)

    # -- lifecycle --

    async def __aenter__(self) -> LeaderElection:
        await ensure_topics(self._kafka, self._bootstrap, [self.topic_spec])
        self._consumer = new_group_consumer(
            self._kafka, self._bootstrap, self.group_id, auto_offset_reset="latest",
            partition_assignment_strategy=(self._assignor,),
        )
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        self._producer = new_producer(self._kafka, self._bootstrap)
        log.info("leader.joining", group=self.group_id, topic=self.topic,
                 identity=self.identity)
        try:
            await self._consumer.start()
            await self._producer.start()
        except KafkaError as exc:
            await self.aclose()
            raise BusError(f"cannot join the detector election on {self._bootstrap}: "
                           f"{exc!r}") from exc
        self._task = asyncio.create_task(self._keep_membership(), name="leader-election")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Leave the group (a standby takes over after one rebalance, not a session timeout).
        Stop acting as leader before calling this. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._lose("closing")
        self._released.set()
        for task in (self._task, self._announcing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._announcing = None
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            await close_client(consumer)
        if producer is not None:
            await close_client(producer)
        log.info("leader.left", group=self.group_id, identity=self.identity)

    # -- what callers use --

    @property
    def is_leader(self) -> bool:
        """True while partition 0 is ours *and* the lease is valid, read against the clock
        (so it turns False on time even if the membership loop is late)."""
        return self._leader and self._clock() < self._lease_until

    @property
    def leader_elsewhere(self) -> bool:
        """True while this process stands by in a settled group that gave partition 0 to
        another member: someone else detects. False while the group rebalances, has no
        partition to give (the coordination topic is gone) or this process leads."""
        return self._elsewhere

    @property
    def since(self) -> datetime | None:
        return self._since if self._leader else None

    async def wait_until_leader(self) -> None:
        await self._wait(self.acquired)

    async def wait_until_lost(self) -> None:
        await self._wait(self.lost)

    def stepped_down(self) -> None:
        """The caller stopped acting as leader: a pending rebalance may hand over now."""
        self._released.set()

    def fence(self, sink: EventSink) -> EventSink:
        """``sink`` that refuses (BusError) to publish unless this process leads right now."""
        return _FencedSink(sink, self)

    # -- membership loop and callbacks --

    async def _wait(self, event: asyncio.Event) -> None:
        membership = self._task
        if membership is None:
            raise RuntimeError("LeaderElection used outside 'async with' (or closed)")
        waiter = asyncio.create_task(event.wait())
        try:
            await asyncio.wait({waiter, membership}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not event.is_set():
            if not membership.cancelled():
                membership.result()  # raises what ended the membership loop
            raise BusError("the detector election stopped")

    async def _keep_membership(self) -> None:
        """Poll (keeps the membership alive: aiokafka leaves a group it stopped polling),
        renew the lease while partition 0 is ours, and turn lease changes into events.

        Never ends for a Kafka error: the broker may come back (even empty, once the
        coordination topic is created again), and then this member joins, and leads if no
        one else does. A failure loses the leadership and is logged once until it passes."""
        assert self._consumer is not None
        failing = False
        while True:
            try:
                await self._consumer.getmany(timeout_ms=int(_TICK_S * 1000), max_records=100)
            except KafkaError as exc:
                self._lose("consumer_failed")
                if not failing:
                    log.warning("leader.membership_failed", group=self.group_id,
                                error=repr(exc), action="retrying")
                failing = True
                await asyncio.sleep(_TICK_S)  # the loop's own pace; the error may repeat
                continue
            failing = False
            now = self._clock()
            if self._assigned and now >= self._next_renewal:
                self._next_renewal = now + self._renew_every_s
                assignment = self._assignments
                if await self._renew(now) and assignment == self._assignments:
                    self._lease_until = now + self._lease_s
            if self._leader and not self.is_leader:
                self._lose("lease_expired")
            elif not self._leader and self._assigned and self._clock() < self._lease_until:
                self._acquire()

    async def _renew(self, sent: float) -> bool:
        """Commit our position on partition 0: succeeds only while the broker still counts
        us as the member owning it in the current generation."""
        assert self._consumer is not None
        timeout = (self._lease_until - sent) if self._leader else self._renew_every_s
        try:
            async with asyncio.timeout(max(0.05, timeout)):
                position = await self._consumer.position(self._tp)
                await self._consumer.commit({self._tp: position})
        except (TimeoutError, KafkaError) as exc:
            if self._leader:
                log.warning("leader.renewal_failed", group=self.group_id,
                            error="timeout" if isinstance(exc, TimeoutError) else repr(exc))
            return False
        return True

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assignments += 1
        self._assigned = self._tp in assigned
        self._next_renewal = 0.0  # prove it at once: the lease starts with a renewal
        # the assignor always gives partition 0 to a member, if the topic has it
        exists = self._consumer is not None and bool(
            self._consumer.partitions_for_topic(self.topic))
        self._elsewhere = exists and not self._assigned
        if self._elsewhere:
            log.info("leader.standby", group=self.group_id, identity=self.identity)
        elif not self._assigned:
            log.warning("leader.no_partition", group=self.group_id, topic=self.topic,
                        action="no detector can lead until the topic exists again")

    async def _on_revoked(self) -> None:
        was_leader = self._leader
        self._assignments += 1
        self._assigned = False
        self._elsewhere = False
        self._lease_until = 0.0
        self._lose("rebalance")
        if was_leader:
            try:
                # a little longer than lead() waits before it cancels the detector
                await asyncio.wait_for(self._released.wait(), self.handover_timeout_s + 1)
            except TimeoutError:
                log.warning("leader.handover_timeout", group=self.group_id,
                            waited_s=self.handover_timeout_s + 1)

    def _acquire(self) -> None:
        self._leader = True
        self._since = datetime.now(UTC)
        self._assignor.claim = Claim(self._assignor.claim.started_ms,
                                     acquired_ms=int(time.time() * 1000))
        self._released.clear()
        self.lost.clear()
        self.acquired.set()
        log.info("leader.acquired", group=self.group_id, identity=self.identity,
                 since=self._since.isoformat())
        if self._announcing is None or self._announcing.done():
            self._announcing = asyncio.create_task(self._announce(self._since))

    def _lose(self, reason: str) -> None:
        if not self._leader:
            return
        held = (datetime.now(UTC) - self._since).total_seconds() if self._since else 0.0
        self._leader = False
        self.acquired.clear()
        self.lost.set()
        log.warning("leader.lost", group=self.group_id, identity=self.identity,
                    reason=reason, held_s=round(held, 3))

    async def _announce(self, since: datetime) -> None:
        """For operators: who leads since when, as a record on the coordination topic."""
        if self._producer is None:
            return
        value = json.dumps({"leader": self.identity, "since": since.isoformat()}).encode()
        try:
            async with asyncio.timeout(self._lease_s):
                await (await self._producer.send(self.topic, key=b"leader", value=value,
                                                 partition=LEADER_PARTITION))
        except (TimeoutError, KafkaError) as exc:
            log.warning("leader.announce_failed", error=repr(exc))


class _FencedSink:
    def __init__(self, sink: EventSink, election: LeaderElection) -> None:
        self._sink = sink
        self._election = election

    async def publish(self, events: list[Event]) -> None:
        if not self._election.is_leader:
            raise BusError("not the elected detector any more; publishing refused")
        await self._sink.publish(events)


__all__ = ["LEADER_PARTITION", "LeaderElection"]
