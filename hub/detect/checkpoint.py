"""The detector's checkpoint, kept in Kafka so a container without a volume survives restarts.

A compacted, single-partition topic holds one record per model (key ``model:<name>``,
value = the model's last published state and its event sequence number) and a
``__baseline__`` marker carrying the checkpoint's *epoch* (see :func:`hub.events.event_id`).
Deleted models get tombstones. The detector writes a model's record only after that model's
events were acknowledged, so a crash in between re-publishes the same events, with the same
ids, on restart. A lost checkpoint means a new baseline and a new epoch: new ids.

A broker that comes back empty loses the checkpoint: :meth:`KafkaCheckpoint.lost` tells, by
the topic now ending below a record this process wrote or read, and the detector then
writes its in-memory state back whole (:meth:`hub.detect.detector.Detector.poll_once`).

Format 1 (before epochs) is still read: its marker has no epoch, and the detector gives it
one before publishing anything (see :meth:`hub.detect.detector.Detector.poll_once`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from hub.bus import (
    TopicSpec,
    close_client,
    connection_options,
    ensure_topics,
    read_to_end,
    start_producer,
)
from hub.config import KafkaConfig
from hub.detect.snapshot import ModelState, Snapshot
from hub.errors import BusError

log = structlog.get_logger(__name__)

BASELINE_KEY = b"__baseline__"
MODEL_PREFIX = "model:"
FORMAT = 2  # 2: the baseline marker carries the epoch


@dataclass
class DetectorState:
    """The last snapshot the detector published, per-model event counters, and the epoch
    their ids are drawn in (``None`` only when loaded from a format 1 checkpoint)."""

    snapshot: Snapshot = field(default_factory=Snapshot)
    sequences: dict[str, int] = field(default_factory=dict)
    epoch: str | None = None


class Checkpoint(Protocol):
    """Where the detector keeps its state: :class:`KafkaCheckpoint`, or
    :class:`hub.testing.MemoryCheckpoint` in tests."""

    topic: str

    async def load(self) -> DetectorState | None: ...

    async def save(self, state: DetectorState, *, changed: set[str], removed: set[str],
                   baseline: bool = False) -> None: ...

    async def lost(self) -> bool:
        """Whether the store lost what it had (a broker that came back empty)."""
        ...


class KafkaCheckpoint:
    def __init__(self, config: KafkaConfig, bootstrap_servers: str, topic: str) -> None:
        self._config = config
        self._bootstrap = bootstrap_servers
        self.topic = topic
        self.topic_spec: TopicSpec = (topic, 1, {"cleanup.policy": "compact"})
        self._tp = TopicPartition(topic, 0)
        self._producer: Any = None
        self._probe: AIOKafkaConsumer | None = None  # asks for the end offset, no group
        # An offset this process wrote or read, so the topic must end above it (the base
        # offset of a batch: some brokers, Tansu, report the end of a batch short).
        self._floor: int | None = None
        self._went_back = False  # a write landed below the floor: the topic was re-created

    async def __aenter__(self) -> KafkaCheckpoint:
        await ensure_topics(self._config, self._bootstrap, [self.topic_spec])
        self._producer = await start_producer(self._config, self._bootstrap, linger_ms=0,
                                              compression_type="gzip",
                                              max_request_size=8 * 1024 * 1024)
        self._probe = AIOKafkaConsumer(**connection_options(self._config, self._bootstrap),
                                       enable_auto_commit=False)
        try:
            await self._probe.start()
        except KafkaError as exc:
            await self.aclose()
            raise BusError(f"cannot connect to Kafka at {self._bootstrap}: {exc!r}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        probe, self._probe = self._probe, None
        if producer is not None:
            await close_client(producer)
        if probe is not None:
            await close_client(probe)

    async def lost(self) -> bool:
        """True when the broker lost what this process wrote or read here: the topic ends
        at or below a record it saw (the broker came back empty). False when it cannot tell
        (the broker does not answer)."""
        if self._went_back:
            return True
        if self._floor is None:
            return False
        end = await self._end_offset()
        return end is not None and end <= self._floor

    async def _end_offset(self, timeout_s: float = 2.0) -> int | None:
        if self._probe is None:
            raise RuntimeError("KafkaCheckpoint used outside 'async with'")
        try:
            async with asyncio.timeout(timeout_s):
                return int((await self._probe.end_offsets([self._tp]))[self._tp])
        except (KafkaError, TimeoutError):
            return None

    async def load(self) -> DetectorState | None:
        """Read the topic to its end. ``None`` when no baseline was ever taken."""
        end = await self._end_offset()
        self._floor = end - 1 if end else None
        self._went_back = False
        records: dict[bytes, bytes | None] = {}
        for msg in await read_to_end(self._config, self._bootstrap, self.topic):
            if msg.key is not None:
                records[msg.key] = msg.value
        marker = records.get(BASELINE_KEY)
        if marker is None:
            return None
        state = DetectorState(epoch=json.loads(marker).get("epoch"))
        models = {}
        for key, value in records.items():
            name = key.decode()
            if value is None or not name.startswith(MODEL_PREFIX):
                continue
            entry = json.loads(value)
            model = ModelState.from_dict(entry["model"])
            models[model.name] = model
            state.sequences[model.name] = int(entry["seq"])
        state.snapshot = Snapshot(models)
        log.info("checkpoint.loaded", topic=self.topic, models=len(models), epoch=state.epoch)
        return state

    async def save(self, state: DetectorState, *, changed: set[str], removed: set[str],
                   baseline: bool = False) -> None:
        """Persist the records of ``changed`` models and tombstones for ``removed`` ones; with
        ``baseline``, also the marker that holds the epoch. Always to partition 0: a broker
        that re-created the topic by itself may have given it more."""
        if self._producer is None:
            raise RuntimeError("KafkaCheckpoint used outside 'async with'")
        try:
            futures = []
            for name in sorted(removed - changed):
                futures.append(await self._producer.send(
                    self.topic, partition=0, key=f"{MODEL_PREFIX}{name}".encode(), value=None))
            for name in sorted(changed):
                value = json.dumps({
                    "format": FORMAT,
                    "model": state.snapshot.models[name].to_dict(),
                    "seq": state.sequences.get(name, 0),
                }, separators=(",", ":")).encode()
                futures.append(await self._producer.send(
                    self.topic, partition=0, key=f"{MODEL_PREFIX}{name}".encode(), value=value))
            if baseline:
                if state.epoch is None:
                    raise ValueError("a baseline needs an epoch")
                marker = {"format": FORMAT, "epoch": state.epoch}
                futures.append(await self._producer.send(
                    self.topic, partition=0, key=BASELINE_KEY, value=json.dumps(marker).encode()))
            written = [(await future).offset for future in futures]
        except KafkaError as exc:
            raise BusError(f"writing the checkpoint to {self.topic} failed: {exc!r}") from exc
        if written:
            first = min(written)
            went_back = self._floor is not None and first < self._floor
            self._floor = first
            # a baseline writes the state whole: whatever the topic had lost is back
            self._went_back = not baseline and (self._went_back or went_back)
