"""The attempt trail (``hub.deliver.trail.AttemptTrail``) over ``hub.testing.FakeProducer``:
every attempt recorded once and in order, in batches, through a broker outage; log lines
for failures at once, for successes only when DEBUG is on."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from structlog.testing import capture_logs

from hub.deliver.jobs import Attempt
from hub.deliver.trail import AttemptTrail
from hub.testing import FakeProducer

TOPIC = "ev.deliveries"


def attempt(n: int, status: str = "delivered", subscription: str = "hook") -> Attempt:
    return Attempt(event_id=f"evt-{n}", event_type="model_version.created", model="iris",
                   subscription=subscription, attempt=1, status=status,
                   http_status=200 if status == "delivered" else 503, latency_ms=1.0,
                   error="" if status == "delivered" else "HTTP 503", at="2026-11-30T00:00:00")


def recorded(producer: FakeProducer) -> list[str]:
    return [json.loads(r.value or b"")["event_id"] for r in producer.on(TOPIC)]


class Gate:
    """An injected sleep that waits until released: the outage lasts as long as the test
    wants, and the pauses asked for are kept."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.asked = asyncio.Event()
        self._open = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.asked.set()
        await self._open.wait()

    def release(self) -> None:
        self._open.set()


@contextmanager
def log_level(level: int) -> Iterator[None]:
    before = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    try:
        yield
    finally:
        structlog.configure(wrapper_class=before)


async def test_every_attempt_is_recorded_once_in_order_in_few_batches() -> None:
    producer = FakeProducer(batch_records=100)
    trail = AttemptTrail(producer, TOPIC)
    for n in range(250):  # one loop turn: one lot, three full-or-partial batches
        trail.add(attempt(n))
    assert producer.on(TOPIC) == []  # queued, not sent on the delivery path
    assert await trail.flush(5)
    assert recorded(producer) == [f"evt-{n}" for n in range(250)]
    assert producer.batches == 3
    assert {r.key for r in producer.on(TOPIC)} == {b"hook"}
    assert Attempt.decode(producer.on(TOPIC)[0].value or b"") == attempt(0)


async def test_a_refused_batch_is_sent_again_in_order_once_the_broker_is_back() -> None:
    producer = FakeProducer(batch_records=3)
    gate = Gate()
    trail = AttemptTrail(producer, TOPIC, sleep=gate.sleep)
    producer.fail()
    with capture_logs() as logs:
        for n in range(5):
            trail.add(attempt(n))
        await asyncio.wait_for(gate.asked.wait(), 5)  # the first send was refused
        for n in range(5, 8):  # more attempts while the broker is away
            trail.add(attempt(n))
        assert trail.pending == 8 and recorded(producer) == []
        producer.recover()
        gate.release()
        assert await trail.flush(5)
    assert recorded(producer) == [f"evt-{n}" for n in range(8)]  # each once, in order
    assert gate.pauses == [0.5]
    events = [e["event"] for e in logs]
    assert events.count("delivery.attempt_records_waiting") == 1
    assert events.count("delivery.attempt_records_resumed") == 1
    assert trail.dropped == 0


async def test_past_max_pending_the_oldest_records_are_dropped_and_counted() -> None:
    producer = FakeProducer()
    gate = Gate()
    trail = AttemptTrail(producer, TOPIC, max_pending=4, sleep=gate.sleep)
    producer.fail()
    for n in range(3):
        trail.add(attempt(n))
    await asyncio.wait_for(gate.asked.wait(), 5)
    for n in range(3, 6):
        trail.add(attempt(n))
    producer.recover()
    gate.release()
    assert await trail.flush(5)
    assert recorded(producer) == ["evt-2", "evt-3", "evt-4", "evt-5"]
    assert trail.dropped == 2


async def test_failures_are_warnings_at_once_and_successes_debug_lines_only_when_on() -> None:
    producer = FakeProducer()
    trail = AttemptTrail(producer, TOPIC)
    with capture_logs() as logs, log_level(logging.INFO):
        trail.add(attempt(1, "retry"))
        assert [(e["event_id"], e["log_level"]) for e in logs] == [("evt-1", "warning")]
        trail.add(attempt(2))
        assert await trail.flush(5)
    assert [e["event_id"] for e in logs if e["event"] == "delivery.attempt"] == ["evt-1"]
    with capture_logs() as logs, log_level(logging.DEBUG):
        trail.add(attempt(3))
        assert await trail.flush(5)
    assert [(e["event_id"], e["status"], e["log_level"]) for e in logs] == [
        ("evt-3", "delivered", "debug")]
    assert recorded(producer) == ["evt-1", "evt-2", "evt-3"]


async def test_close_sends_what_is_pending_and_is_idempotent() -> None:
    producer = FakeProducer()
    trail = AttemptTrail(producer, TOPIC)
    trail.add(attempt(1))
    await trail.aclose()
    await trail.aclose()
    assert recorded(producer) == ["evt-1"]
    producer.fail()
    trail.add(attempt(2))
    with capture_logs() as logs:
        await trail.aclose(timeout_s=0.05)
    assert [e["event"] for e in logs if e["event"] != "delivery.attempt"] == [
        "delivery.attempt_records_waiting", "delivery.attempt_records_unsent"]
