"""The detector's checkpoint, kept in Kafka so a container without a volume survives restarts.

A compacted, single-partition topic holds one record per model (key ``model:<name>``,
value = the model's last published state and its event sequence number) and a
``__baseline__`` marker carrying the checkpoint's *epoch* (see :func:`hub.events.event_id`).
Deleted models get tombstones. The detector writes a model's record only after that model's
events were acknowledged, so a crash in between re-publishes the same events, with the same
ids, on restart. A lost checkpoint means a new baseline and a new epoch: new ids.

Format 1 (before epochs) is still read: its marker has no epoch, and the detector gives it
one before publishing anything (see :meth:`hub.detector.Detector.poll_once`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka.errors import KafkaError

from hub.bus import TopicSpec, ensure_topics, read_to_end, start_producer
from hub.config import KafkaConfig
from hub.errors import BusError
from hub.snapshot import ModelState, Snapshot

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


class KafkaCheckpoint:
    def __init__(self, config: KafkaConfig, bootstrap_servers: str, topic: str) -> None:
        self._config = config
        self._bootstrap = bootstrap_servers
        self.topic = topic
        self.topic_spec: TopicSpec = (topic, 1, {"cleanup.policy": "compact"})
        self._producer: Any = None

    async def __aenter__(self) -> KafkaCheckpoint:
        await ensure_topics(self._config, self._bootstrap, [self.topic_spec])
        self._producer = await start_producer(self._config, self._bootstrap,
                                              compression_type="gzip",
                                              max_request_size=8 * 1024 * 1024)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def load(self) -> DetectorState | None:
        """Read the topic to its end. ``None`` when no baseline was ever taken."""
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
        ``baseline``, also the marker that holds the epoch."""
        if self._producer is None:
            raise RuntimeError("KafkaCheckpoint used outside 'async with'")
        try:
            futures = []
            for name in sorted(removed - changed):
                futures.append(await self._producer.send(
                    self.topic, key=f"{MODEL_PREFIX}{name}".encode(), value=None))
            for name in sorted(changed):
                value = json.dumps({
                    "format": FORMAT,
                    "model": state.snapshot.models[name].to_dict(),
                    "seq": state.sequences.get(name, 0),
                }, separators=(",", ":")).encode()
                futures.append(await self._producer.send(
                    self.topic, key=f"{MODEL_PREFIX}{name}".encode(), value=value))
            if baseline:
                if state.epoch is None:
                    raise ValueError("a baseline needs an epoch")
                marker = {"format": FORMAT, "epoch": state.epoch}
                futures.append(await self._producer.send(
                    self.topic, key=BASELINE_KEY, value=json.dumps(marker).encode()))
            for future in futures:
                await future
        except KafkaError as exc:
            raise BusError(f"writing the checkpoint to {self.topic} failed: {exc!r}") from exc
