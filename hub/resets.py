"""Noticing a partition that the broker re-created under a running consumer.

A broker that comes back empty starts every partition again at offset 0. A consumer that
keeps its position (no rebalance told it otherwise) then reads from where it was in the old
partition: Kafka answers "offset out of range" and the consumer jumps to its reset policy
(``latest`` skips what was published meanwhile); some brokers (Tansu) answer nothing until
the new partition grows past that position. Either way the records below it are skipped,
and committing that position writes the old topic's offset onto the new one.

The end offset cannot tell: some brokers report the end of a multi-record batch short, so
"end below position" also happens on a healthy partition. Timestamps can: every record a
consumer took is older than what is published after the broker came back. :class:`ResetWatch`
remembers the newest timestamp taken per partition and asks the broker (``ListOffsets`` by
time) for the first record newer than it by more than ``MARGIN_MS`` (brokers that index
their own append time differ from the producer's by a few milliseconds; a broker that lost
its data takes longer than that to come back). In a healthy partition that record, if any,
lies at or after the position; below it, the partition was re-created — read again from
there. An answer older than what was asked is no match (some brokers answer "none" so).
At worst (clocks far apart, a record out of time order) that re-reads a few records:
duplicates with the same ids, never a skip.
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
        self._newest: dict[TopicPartition, int] = {}  # newest timestamp taken, ms
        self._timeout_s = timeout_s

    def took(self, tp: TopicPartition, timestamp_ms: int) -> None:
        if timestamp_ms > self._newest.get(tp, -1):
            self._newest[tp] = timestamp_ms

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._newest.pop(tp, None)

    async def rewinds(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """Assigned partitions with a record newer than all taken below the position: where
        to read again. Empty when the broker does not answer (asked again next time)."""
        asked = {tp: ts + MARGIN_MS for tp, ts in self._newest.items()
                 if tp in consumer.assignment()}
        if not asked:
            return {}
        try:
            async with asyncio.timeout(self._timeout_s):
                found = await consumer.offsets_for_times(asked)
                rewinds = {}
                for tp, newer_than in asked.items():
                    match = found.get(tp)
                    if match is None or match.timestamp < newer_than:
                        continue  # none newer
                    if match.offset < await consumer.position(tp):
                        rewinds[tp] = match.offset
        except (KafkaError, TimeoutError):
            return {}
        return rewinds
