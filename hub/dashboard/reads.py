"""What the dashboard reads from Kafka, group-less and bounded: the newest events, one event
and its delivery attempts, one model's history, the last hour of events and attempts.

Every read goes through :mod:`hub.bus` (``recent_records``, ``scan``, ``read_to_end``) under
one semaphore, so a burst of page loads holds at most ``concurrency`` consumers open. The
newest events are kept for ``ttl_s`` (the live list polls them every few seconds, from
every open tab).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

from hub.bus import read_to_end, recent_records, scan
from hub.codec import decode
from hub.config import HubConfig
from hub.deliver.jobs import Attempt
from hub.events import Event

HOUR_MS = 3_600_000


class ReadsHost(Protocol):
    @property
    def config(self) -> HubConfig: ...

    @property
    def bootstrap_servers(self) -> str: ...


@dataclass(frozen=True)
class EventRecord:
    """An event as the topic holds it: the event, where it is, its CloudEvent attributes."""

    event: Event
    partition: int
    offset: int
    timestamp_ms: int
    attributes: dict[str, str]


def to_event_record(record: Any) -> EventRecord | None:
    """A consumer record of the events topic, or ``None`` if it is not a CloudEvent."""
    try:
        event = decode(record.key, record.value, record.headers)
    except ValueError:
        return None
    attributes = {}
    for name, value in record.headers or ():
        if name.startswith("ce_") or name == "content-type":
            attributes[name.removeprefix("ce_")] = value.decode("utf-8", "replace")
    return EventRecord(event, record.partition, record.offset, record.timestamp, attributes)


def to_attempt(record: Any) -> Attempt | None:
    try:
        return Attempt.decode(record.value)
    except (ValueError, TypeError):
        return None


def _newest_first(records: list[EventRecord]) -> list[EventRecord]:
    return sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset), reverse=True)


class Reads:
    def __init__(self, host: ReadsHost, *, concurrency: int = 4, ttl_s: float = 1.0) -> None:
        self._host = host
        self._gate = asyncio.Semaphore(concurrency)
        self._ttl_s = ttl_s
        self._recent: tuple[float, int, list[EventRecord]] | None = None
        self._recent_lock = asyncio.Lock()

    @property
    def _cfg(self) -> HubConfig:
        return self._host.config

    async def recent_events(self, limit: int = 200) -> list[EventRecord]:
        """The newest ``limit`` events, newest first."""
        async with self._recent_lock:
            now = time.monotonic()
            if self._recent and now - self._recent[0] < self._ttl_s and self._recent[1] >= limit:
                return self._recent[2][:limit]
            async with self._gate:
                raw = await recent_records(self._cfg.kafka, self._host.bootstrap_servers,
                                           self._cfg.kafka.topic, limit)
            records = _newest_first([r for r in map(to_event_record, raw) if r])[:limit]
            self._recent = (time.monotonic(), limit, records)
            return records

    async def find_event(self, event_id: str) -> EventRecord | None:
        """The event ``event_id``: among the newest first, else by one scan of the topic."""
        for record in await self.recent_events():
            if record.event.id == event_id:
                return record
        async with self._gate, aclosing(scan(self._cfg.kafka, self._host.bootstrap_servers,
                                             self._cfg.kafka.topic)) as batches:
            async for batch in batches:
                for raw in batch:
                    found = to_event_record(raw)
                    if found is not None and found.event.id == event_id:
                        return found
        return None

    async def attempts(self, event_id: str, since_ms: int) -> list[Attempt]:
        """The delivery attempts of ``event_id`` recorded since ``since_ms`` (the event's
        timestamp: no attempt comes before it), oldest first."""
        async with self._gate:
            raw = await read_to_end(self._cfg.kafka, self._host.bootstrap_servers,
                                    self._cfg.deliveries_topic, since_ms=since_ms - 60_000)
        found = [a for a in map(to_attempt, raw) if a is not None and a.event_id == event_id]
        return sorted(found, key=lambda a: (a.subscription, a.at, a.attempt))

    async def model_events(self, model: str) -> list[EventRecord]:
        """Every event of ``model`` on the topic, oldest first."""
        found: list[EventRecord] = []
        async with self._gate, aclosing(scan(self._cfg.kafka, self._host.bootstrap_servers,
                                             self._cfg.kafka.topic)) as batches:
            async for batch in batches:
                for raw in batch:
                    if raw.key is not None and raw.key.decode("utf-8", "replace") != model:
                        continue
                    record = to_event_record(raw)
                    if record is not None and record.event.model == model:
                        found.append(record)
        return sorted(found, key=lambda r: (r.event.time, r.timestamp_ms, r.offset))

    async def last_hour(self, now_ms: int) -> tuple[list[int], list[Attempt]]:
        """The timestamps of the last hour's events, and its delivery attempts."""
        return await asyncio.gather(self.event_times(now_ms - HOUR_MS),
                                    self.attempts_since(now_ms - HOUR_MS))

    async def event_times(self, since_ms: int) -> list[int]:
        async with self._gate:
            records = await read_to_end(self._cfg.kafka, self._host.bootstrap_servers,
                                        self._cfg.kafka.topic, since_ms=since_ms)
        return [r.timestamp for r in records]

    async def attempts_since(self, since_ms: int) -> list[Attempt]:
        async with self._gate:
            records = await read_to_end(self._cfg.kafka, self._host.bootstrap_servers,
                                        self._cfg.deliveries_topic, since_ms=since_ms)
        return [a for a in map(to_attempt, records) if a is not None]


__all__ = ["EventRecord", "Reads", "ReadsHost", "to_attempt", "to_event_record"]
