"""Noticing a partition that the broker re-created under a running consumer.

A broker that comes back empty starts every partition again at offset 0. A consumer that
keeps its position (no rebalance told it otherwise) then reads from where it was in the old
partition: Kafka answers "offset out of range" and the consumer jumps to its reset policy
(``latest`` skips what was published meanwhile); some brokers (Tansu) answer nothing until
the new partition grows past that position. Either way the records below it are skipped,
and committing that position writes the old topic's offset onto the new one.

The same happens after a rebalance when the group's committed offsets survived, or were
written again by a member that still held the old ones (some brokers take commits from a
member they do not know).

The end offset cannot tell: some brokers report the end of a multi-record batch short, so
"end below position" also happens on a healthy partition. Timestamps can: every record a
consumer took is older than what is published after the broker came back. :class:`ResetWatch`
remembers, per partition, the newest record taken as of its previous check (its timestamp
and offset: the consumer may meanwhile have taken records of a new partition past its old
position) and asks the broker (``ListOffsets`` by time) for the first record newer than it
by more than ``MARGIN_MS`` (brokers that index their own append time differ from the
producer's by a few milliseconds; a broker that lost its data takes longer than that to
come back). In a healthy partition that record, if any, comes after the one remembered; at
or before it, the partition was re-created — read again from there. The memory is kept
across rebalances (a partition that moves away and back is the same partition), so a
position taken over from stale committed offsets is caught too. An answer older than what
was asked is no match (some brokers answer "none" so). At worst (clocks far apart, a record
out of time order) that re-reads a few records: duplicates with the same ids, never a skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["MARGIN_MS", "ResetWatch"]

MARGIN_MS = 250


class ResetWatch:
    def __init__(self, timeout_s: float = 2.0) -> None:
        self._newest: dict[TopicPartition, tuple[int, int]] = {}  # (timestamp ms, offset)
        self._checked: dict[TopicPartition, tuple[int, int]] = {}  # newest, when last checked
        self._timeout_s = timeout_s

    def took(self, tp: TopicPartition, timestamp_ms: int, offset: int) -> None:
        if timestamp_ms > self._newest.get(tp, (-1, -1))[0]:
            self._newest[tp] = (timestamp_ms, offset)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._newest.pop(tp, None)
            self._checked.pop(tp, None)

    async def rewinds(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """Assigned partitions with a record newer than the newest taken as of the previous
        check, at or before that one's offset: where to read again. Empty when the broker
        does not answer (then nothing moves on: the next check asks the same)."""
        marks = {tp: self._checked.get(tp, newest) for tp, newest in self._newest.items()
                 if tp in consumer.assignment()}
        if not marks:
            return {}
        asked = {tp: ts + MARGIN_MS for tp, (ts, _) in marks.items()}
        try:
            async with asyncio.timeout(self._timeout_s):
                found = await consumer.offsets_for_times(asked)
        except (KafkaError, TimeoutError):
            return {}
        rewinds = {}
        for tp, newer_than in asked.items():
            match = found.get(tp)  # an answer older than asked is no match
            if match is not None and match.timestamp >= newer_than \
                    and match.offset <= marks[tp][1]:
                rewinds[tp] = match.offset
            else:
                self._checked[tp] = self._newest[tp]
        return rewinds
