"""The attempt trail: one record per delivery attempt on the deliveries topic, and its
``delivery.attempt`` log line, written in batches off the delivery path.

The admin API and the dashboard read the deliveries topic, so every attempt is recorded,
once, in order (per subscription: the record key, hence one partition). Deliveries never
wait for it: :meth:`AttemptTrail.add` only queues the record and wakes one writer task,
which takes everything queued since its last turn and sends it as one producer batch per
partition (``create_batch``/``send_batch``: a handful of sends per lane batch instead of one
per attempt), then waits for the acknowledgement before it takes the next lot — so the
order holds across batches. A batch the broker refuses is put back in front of what came
since and retried with a growing pause (the outage is logged once, and its end); while the
broker is away the queue is bounded by ``max_pending`` records, beyond which the oldest are
dropped and counted (deliveries go on meanwhile: the trail is an audit log, not a delivery
guarantee).

Log lines: an attempt that did not deliver is a WARNING at once, from :meth:`add`; a
success is a DEBUG line, written by the writer only when DEBUG is enabled (checked once per
batch), so with the default INFO level a success costs no log call at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import structlog
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from hub.deliver.jobs import Attempt

log = structlog.get_logger(__name__)

DELIVERED = "delivered"


class BatchBuilder(Protocol):
    def append(self, *, timestamp: float | None, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes]] = ...) -> Any: ...


class BatchProducer(Protocol):
    """What the trail uses of a producer: an ``AIOKafkaProducer``, or
    :class:`hub.testing.FakeProducer`."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int
                         ) -> asyncio.Future[Any]: ...

    async def partitions_for(self, topic: str) -> Iterable[int]: ...


def log_fields(attempt: Attempt) -> dict[str, Any]:
    """An attempt as the fields of its ``delivery.attempt`` log line."""
    return {"event_id": attempt.event_id, "event_type": attempt.event_type,
            "model": attempt.model, "subscription": attempt.subscription,
            "attempt": attempt.attempt, "status": attempt.status,
            "http_status": attempt.http_status, "latency_ms": attempt.latency_ms,
            "error": attempt.error, "at": attempt.at,
            "next_attempt_in_s": attempt.next_attempt_in_s}


class AttemptTrail:
    def __init__(self, producer: BatchProducer, topic: str, *, max_pending: int = 100_000,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._producer = producer
        self._topic = topic
        self._max_pending = max_pending
        self._sleep = sleep
        self._incoming: list[Attempt] = []  # added since the writer's last turn
        self._outgoing: deque[tuple[bytes, bytes]] = deque()  # taken, not acknowledged yet
        self._partitioner = DefaultPartitioner()
        self._writer: asyncio.Task[None] | None = None
        self._failures = 0  # failed sends in a row (the broker is away)
        self.dropped = 0
        """Records dropped because the broker stayed away while ``max_pending`` piled up."""

    @property
    def pending(self) -> int:
        """Records not acknowledged yet."""
        return len(self._incoming) + len(self._outgoing)

    def add(self, attempt: Attempt) -> None:
        if attempt.status != DELIVERED:
            log.warning("delivery.attempt", **log_fields(attempt))
        self._incoming.append(attempt)
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything added so far is acknowledged (or the time is up); whether
        it was."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._writer is not None:
                    await asyncio.shield(self._writer)
        return self.pending == 0

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Send what is pending (up to ``timeout_s``), then stop the writer. Idempotent."""
        if not await self.flush(timeout_s) and self.pending:
            log.warning("delivery.attempt_records_unsent", records=self.pending,
                        action="the broker did not take them before shutdown: the attempt "
                               "log misses them")
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    async def _write(self) -> None:
        try:
            await asyncio.sleep(0)  # let this loop turn's attempts join the batch
            while self._incoming or self._outgoing:
                self._take()
                try:
                    await self._send()
                except Exception as exc:  # KafkaError mostly; never a reason to lose them
                    await self._failed(exc)
                    continue
                if self._failures:
                    log.info("delivery.attempt_records_resumed", failed_sends=self._failures,
                             dropped=self.dropped)
                    self._failures = 0
        finally:
            if asyncio.current_task() is self._writer:
                self._writer = None

    def _take(self) -> None:
        """Move what was added to the outgoing queue, encoded; log the successes at DEBUG
        if that level is on (one check per batch)."""
        incoming, self._incoming = self._incoming, []
        if not incoming:
            return
        debug = _debug_enabled()
        for attempt in incoming:
            if debug and attempt.status == DELIVERED:
                log.debug("delivery.attempt", **log_fields(attempt))
            self._outgoing.append((attempt.subscription.encode(), attempt.encode()))
        excess = len(self._outgoing) - self._max_pending
        if excess > 0:
            for _ in range(excess):
                self._outgoing.popleft()
            self.dropped += excess

    async def _send(self) -> None:
        """Send the outgoing queue, one batch per partition (more when one fills up), and
        wait for the acknowledgements; what a partition acknowledged leaves the queue, what
        it refused stays, in order."""
        records = list(self._outgoing)
        partitions = sorted(await self._producer.partitions_for(self._topic))
        by_partition: dict[int, list[int]] = {}
        of_key: dict[bytes, int] = {}  # a few subscriptions, many records: hash each key once
        for index, (key, _) in enumerate(records):
            partition = of_key.get(key)
            if partition is None:
                partition = of_key[key] = self._partitioner(key, partitions, partitions)
            by_partition.setdefault(partition, []).append(index)
        sends: list[tuple[list[int], asyncio.Future[Any]]] = []
        acknowledged: set[int] = set()
        error: KafkaError | None = None
        for partition, indexes in by_partition.items():
            start = 0
            while start < len(indexes):
                batch = self._producer.create_batch()
                end = start
                while end < len(indexes):
                    key, value = records[indexes[end]]
                    if batch.append(timestamp=None, key=key, value=value, headers=[]) is None:
                        break
                    end += 1
                if end == start:  # larger than a whole batch: it can never be sent
                    log.error("delivery.attempt_record_too_large", key=records[indexes[end]][0],
                              bytes=len(records[indexes[end]][1]), action="dropped")
                    self.dropped += 1
                    acknowledged.add(indexes[end])
                    start += 1
                    continue
                try:
                    sent = await self._producer.send_batch(batch, self._topic,
                                                           partition=partition)
                except KafkaError as exc:
                    error = exc
                    break
                sends.append((indexes[start:end], sent))
                start = end
        for indexes, sent in sends:
            try:
                await sent
            except KafkaError as exc:
                error = exc
            else:
                acknowledged.update(indexes)
        if acknowledged:  # only _take adds to _outgoing, and not while this runs
            self._outgoing = deque(r for i, r in enumerate(records) if i not in acknowledged)
        if error is not None:
            raise error

    async def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if self._failures == 1:
            log.warning("delivery.attempt_records_waiting", error=repr(exc),
                        records=self.pending,
                        action="kept and sent again once the broker takes them (the "
                               f"oldest are dropped past {self._max_pending}); deliveries go "
                               "on")
        await self._sleep(min(0.5 * 2 ** (self._failures - 1), 5.0))


def _debug_enabled() -> bool:
    enabled = getattr(log, "is_enabled_for", None)
    return True if enabled is None else bool(enabled(logging.DEBUG))
