"""What a consumer may commit when records finish out of order.

Records are *taken* in offset order but become final in any order (different models,
different retry times). The committed offset of a partition is the lowest offset taken and
not yet final — or, when none is open, the offset after the last record taken. A restart
therefore re-reads exactly what was not final. Used by the subscription lanes and the retry
scheduler.

While the broker is away a commit cannot complete: it gives up after ``COMMIT_TIMEOUT_S``
(so a consumer loop stays responsive and stops on time), is logged once until commits work
again, and is retried with whatever is safe then. Offsets of a partition that was taken
away are forgotten; a partition whose records the broker lost (it came back empty) comes
back with no committed offset, so nothing of the old topic is ever committed onto the new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

log = structlog.get_logger(__name__)

COMMIT_TIMEOUT_S = 2.0


class OffsetTracker:
    def __init__(self) -> None:
        self._open: dict[TopicPartition, set[int]] = {}  # taken, not yet final
        self._next: dict[TopicPartition, int] = {}  # offset after the last record taken
        self._committed: dict[TopicPartition, int] = {}
        self.ever_committed: set[TopicPartition] = set()  # kept when forgotten
        self._failures = 0  # commits failed in a row

    def seen(self, tp: TopicPartition, offset: int) -> None:
        """A record was read (final at once unless :meth:`opened` too)."""
        self._next[tp] = offset + 1

    def opened(self, tp: TopicPartition, offset: int) -> None:
        self._open.setdefault(tp, set()).add(offset)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        open_offsets = self._open.get(tp)
        if open_offsets is not None:  # None: the partition moved away meanwhile
            open_offsets.discard(offset)

    def pending(self, partitions: Iterable[TopicPartition] | None = None) -> int:
        tps = self._open if partitions is None else partitions
        return sum(len(self._open.get(tp, ())) for tp in tps)

    @property
    def partitions(self) -> set[TopicPartition]:
        return set(self._next)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._open.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)

    def to_commit(self, only: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        offsets = {}
        for tp, after_last in self._next.items():
            if only is not None and tp not in only:
                continue
            open_offsets = self._open.get(tp)
            target = min(open_offsets) if open_offsets else after_last
            if self._committed.get(tp) != target:
                offsets[tp] = target
        return offsets

    async def commit(self, consumer: AIOKafkaConsumer, *, event: str,
                     only: set[TopicPartition] | None = None, **fields: object) -> None:
        """Commit what is safe. A failure (the partitions moved to another member, which
        re-reads what was not committed; the broker is away) is logged as ``event``, once
        until a commit succeeds again, and is otherwise harmless."""
        offsets = self.to_commit(only)
        if not offsets:
            return
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await consumer.commit(offsets)
        except (CommitFailedError, KafkaError, TimeoutError) as exc:
            self._failures += 1
            if self._failures == 1:
                log.warning(event, error="timeout" if isinstance(exc, TimeoutError)
                            else repr(exc), **fields)
            return
        self._committed.update(offsets)
        self.ever_committed.update(offsets)
        if self._failures:
            log.info(event.rsplit(".", 1)[0] + ".commit_resumed", failed=self._failures,
                     **fields)
            self._failures = 0
