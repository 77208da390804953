"""In-memory stand-ins for the hub's edges, for plugin authors and for the hub's own tests.

As ``structlog.testing.capture_logs`` does for logs, these replace an outside system with a
small object that behaves like it and remembers what happened, so a test asserts on results
rather than on calls:

* :class:`FakeHandlerContext` — the :class:`~hub.plugins.HandlerContext` a handler plugin is
  built with: a *real* SSRF-guarded aiohttp session (loopback allowed: test against an
  ``aiohttp.web`` app on 127.0.0.1), Kafka sends recorded in memory, MLflow calls run with
  the client you give it. ``async with FakeHandlerContext() as context:`` closes the session.
* :class:`FakeProducer` — what the hub's Kafka producer is to its callers: ``send`` returns an
  acknowledgement (or the failure you asked for) and records what was acknowledged.
* :class:`MemorySink`, :class:`MemoryCheckpoint`, :class:`StaticScanner` — the detector's
  three edges (events topic, checkpoint topic, registry scan), to run
  :class:`hub.detect.detector.Detector` rounds without a broker or an MLflow server.
* :func:`make_event` — an :class:`~hub.events.Event` with plausible defaults.

Nothing here is imported by the running hub.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiokafka.errors import KafkaConnectionError

from hub.detect.checkpoint import DetectorState
from hub.detect.snapshot import ModelState, Snapshot
from hub.errors import BusError, SourceError
from hub.events import Event
from hub.http import HttpClients
from hub.plugins import HandlerContext

__all__ = [
    "FakeHandlerContext",
    "FakeProducer",
    "MemoryCheckpoint",
    "MemorySink",
    "SentRecord",
    "StaticScanner",
    "make_event",
]

LOOPBACK = ("127.0.0.0/8", "::1/128")


def make_event(type: str = "model_version.stage_transitioned", model: str = "iris",
               version: str | None = "1", *, id: str | None = None,
               time: datetime | None = None, registry: str = "http://mlflow.example",
               **data: Any) -> Event:
    """An event as the detector would publish it: ``registry`` is its ``source`` (and
    ``data.tracking_uri``); ``data`` gets ``model_name`` (and ``version``) unless given, e.g.
    ``make_event(to_stage="Production", source="models:/m/1")``."""
    defaults: dict[str, Any] = {"model_name": model, "tracking_uri": registry}
    if version is not None:
        defaults["version"] = version
    return Event(id=id or str(uuid.uuid4()), type=type, model=model,
                 time=time or datetime.now(UTC), source=registry, data={**defaults, **data},
                 version=version)


# --- Kafka: a producer --------------------------------------------------------------------------

class SentRecord(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int
    offset: int


class FakeProducer:
    """Stands in for ``aiokafka.AIOKafkaProducer`` where the hub uses one: ``await
    (await producer.send(topic, key=..., value=..., headers=...))`` is acknowledged at once
    and the record lands in :attr:`sent`. After :meth:`fail`, acknowledgements fail with the
    given error (default: a ``KafkaConnectionError``, as a broker outage) and nothing is
    recorded (:attr:`refused` counts them), until :meth:`recover`. Offsets count per topic;
    one partition per topic. Batches (``create_batch``/``send_batch``) work the same way,
    one acknowledgement per batch."""

    def __init__(self, *, batch_records: int = 100) -> None:
        self.sent: list[SentRecord] = []
        self.refused = 0
        self.batches = 0  # send_batch calls
        self.batch_records = batch_records  # records a create_batch() batch holds
        self._error: BaseException | None = None
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def fail(self, error: BaseException | None = None) -> None:
        self._error = error or KafkaConnectionError("FakeProducer: the broker is unreachable")

    def recover(self) -> None:
        self._error = None

    def on(self, topic: str) -> list[SentRecord]:
        """What was acknowledged on ``topic``, in order."""
        return [r for r in self.sent if r.topic == topic]

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Iterable[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._error is not None:
            self.refused += 1
            ack.set_exception(self._error)
            return ack
        record = SentRecord(topic, key, value, list(headers or []), 0, len(self.on(topic)))
        self.sent.append(record)
        ack.set_result(record)  # has .topic, .partition and .offset, like RecordMetadata
        return ack

    async def send_and_wait(self, topic: str, value: bytes | None = None,
                            key: bytes | None = None, **kwargs: Any) -> Any:
        return await (await self.send(topic, value, key, **kwargs))

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_records)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int
                         ) -> asyncio.Future[Any]:
        """The batch's records, acknowledged (or refused) together, as ``send`` does."""
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches += 1
        if self._error is not None:
            self.refused += len(batch.records)
            ack.set_exception(self._error)
            return ack
        base = len(self.on(topic))
        for n, (key, value, headers) in enumerate(batch.records):
            self.sent.append(SentRecord(topic, key, value, headers, partition, base + n))
        ack.set_result(None)
        return ack


class FakeBatch:
    """``FakeProducer.create_batch()``: holds up to ``size`` records, like aiokafka's
    ``BatchBuilder`` (``append`` answers ``None`` once it is full)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    def append(self, *, timestamp: float | None, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes]] | None = None) -> object | None:
        if len(self.records) >= self.size:
            return None
        self.records.append((key, value, list(headers or [])))
        return len(self.records)


# --- a handler's context ----------------------------------------------------------------------

@dataclass
class FakeHandlerContext(HandlerContext):
    """A :class:`~hub.plugins.HandlerContext` for plugin tests.

    * ``http_session(verify_tls=True)``: the hub's real session (SSRF guard and no redirects
      included), allowed to reach ``allowed_networks`` (default: loopback);
    * ``kafka_send(...)``: acknowledged by :attr:`producer`; read them back in :attr:`sent`
      (``context.producer.fail()`` makes the next sends fail);
    * ``mlflow_call(fn, *args)``: runs ``fn(mlflow_client, *args)`` in a thread, as the hub
      does; :attr:`mlflow_calls` lists ``(fn, args)``.
    """

    mlflow_client: Any = None
    allowed_networks: Iterable[str] = LOOPBACK
    producer: FakeProducer = field(default_factory=FakeProducer)
    mlflow_calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._http = HttpClients(self.allowed_networks, default_timeout_s=10)
        if self.http_session is None:
            self.http_session = self._http.session
        if self.kafka_send is None:
            self.kafka_send = self._kafka_send
        if self.mlflow_call is None:
            self.mlflow_call = self._mlflow_call

    @property
    def sent(self) -> list[SentRecord]:
        return self.producer.sent

    async def _kafka_send(self, topic: str, key: bytes, value: bytes,
                          headers: list[tuple[str, bytes]]) -> None:
        await self.producer.send_and_wait(topic, value, key, headers=headers)

    async def _mlflow_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.mlflow_calls.append((fn, args))
        return await asyncio.to_thread(fn, self.mlflow_client, *args)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> FakeHandlerContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# --- the detector's edges -------------------------------------------------------------------

class MemorySink:
    """The events topic: :meth:`publish` appends to :attr:`events` (and the batch to
    :attr:`batches`), or raises :class:`~hub.errors.BusError` after :meth:`fail`."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches: list[list[Event]] = []
        self.attempts = 0
        self._error: str | None = None

    def fail(self, reason: str = "the broker is unreachable") -> None:
        self._error = reason

    def recover(self) -> None:
        self._error = None

    async def publish(self, events: list[Event]) -> None:
        self.attempts += 1
        if self._error is not None:
            raise BusError(f"MemorySink: {self._error}")
        self.batches.append(list(events))
        self.events.extend(events)


class MemoryCheckpoint:
    """The detector's checkpoint topic, record by record as
    :class:`hub.detect.checkpoint.KafkaCheckpoint` writes it: ``save`` stores the records of the
    ``changed`` models (serialised, as on the topic), drops the ``removed`` ones and, with
    ``baseline``, the epoch marker; ``load`` rebuilds the state from those records. So a
    detector that forgets to save a model it changed loads a state without that change.

    :meth:`lose` empties it as a broker that came back empty would: :meth:`lost` is then
    true until the next baseline save. :meth:`fail` makes saves raise
    :class:`~hub.errors.BusError`. :attr:`saves` lists every save's arguments."""

    def __init__(self, state: DetectorState | None = None, *, topic: str = "memory.state"
                 ) -> None:
        self.topic = topic
        self.saves: list[dict[str, Any]] = []
        self._records: dict[str, str] = {}
        self._epoch: str | None = None
        self._marker = False
        self._lost = False
        self._error: str | None = None
        if state is not None:
            self._write(state, set(state.snapshot.models), set(), baseline=True)

    def fail(self, reason: str = "the broker is unreachable") -> None:
        self._error = reason

    def recover(self) -> None:
        self._error = None

    def lose(self) -> None:
        self._records.clear()
        self._marker, self._epoch, self._lost = False, None, True

    async def lost(self) -> bool:
        return self._lost

    async def load(self) -> DetectorState | None:
        self._lost = False
        if not self._marker:
            return None
        models, sequences = {}, {}
        for name, raw in self._records.items():
            entry = json.loads(raw)
            models[name] = ModelState.from_dict(entry["model"])
            sequences[name] = int(entry["seq"])
        return DetectorState(Snapshot(models), sequences, self._epoch)

    async def save(self, state: DetectorState, *, changed: set[str], removed: set[str],
                   baseline: bool = False) -> None:
        self.saves.append({"changed": set(changed), "removed": set(removed),
                           "baseline": baseline})
        if self._error is not None:
            raise BusError(f"MemoryCheckpoint: {self._error}")
        self._write(state, changed, removed, baseline=baseline)

    def _write(self, state: DetectorState, changed: set[str], removed: set[str], *,
               baseline: bool) -> None:
        for name in removed - changed:
            self._records.pop(name, None)
        for name in changed:
            self._records[name] = json.dumps({"model": state.snapshot.models[name].to_dict(),
                                              "seq": state.sequences.get(name, 0)})
        if baseline:
            if state.epoch is None:
                raise ValueError("a baseline needs an epoch")
            self._marker, self._epoch, self._lost = True, state.epoch, False


class StaticScanner:
    """The registry: :meth:`scan` returns :attr:`snapshot` (set it between rounds), or raises
    :class:`~hub.errors.SourceError` after :meth:`fail`; :attr:`scans` counts calls."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.snapshot = snapshot or Snapshot()
        self.scans = 0
        self._error: str | None = None

    def fail(self, reason: str = "the registry is unreachable") -> None:
        self._error = reason

    def recover(self) -> None:
        self._error = None

    async def scan(self) -> Snapshot:
        self.scans += 1
        if self._error is not None:
            raise SourceError(f"StaticScanner: {self._error}")
        return self.snapshot

    async def scan_model(self, name: str) -> ModelState | None:
        if self._error is not None:
            raise SourceError(f"StaticScanner: {self._error}")
        return self.snapshot.models.get(name)
