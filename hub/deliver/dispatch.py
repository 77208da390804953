"""One delivery attempt, taken to a durable end.

``Dispatcher.deliver`` looks the subscription up by name — the
:class:`~hub.deliver.running.RunningSubscription` in effect at that moment, so an attempt is made
with one subscription's filter and handler together — calls its handler once, records the
attempt (the deliveries topic, always, in batches through :class:`~hub.deliver.trail.AttemptTrail`;
the ``delivery.attempt`` log at DEBUG for a success and WARNING for anything else), and then
makes the outcome *final* before it returns:

* delivered → done (a replayed delivery also writes a ``delivered`` mark to the dead-letter
  topic, acknowledged, so a later replay skips that dead letter; see :mod:`hub.deliver.dlq`);
* transient failure → a :class:`~hub.deliver.jobs.Job` for the next attempt is written to the retry
  topic and acknowledged (durably scheduled), unless the schedule is exhausted; a replayed
  job's next job is marked replayed too;
* final failure, 410 Gone, exhausted schedule, unknown subscription → a dead-letter record
  is written and acknowledged;
* a retry job whose event the subscription no longer matches (it was changed since) → no
  attempt, final (replayed jobs are attempted whatever the filter says: someone asked).

Callers commit their Kafka offsets only after ``deliver`` returned: that is the whole
at-least-once rule.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from aiokafka.errors import KafkaError

from hub.bus import Producer
from hub.config import DeliveryConfig
from hub.deliver.jobs import Attempt, DeadLetter, DeadLetterMark, Job
from hub.deliver.running import RunningSubscription
from hub.deliver.schedule import next_delay
from hub.deliver.trail import AttemptTrail, BatchProducer
from hub.events import Event
from hub.metrics import Metrics
from hub.outcome import Outcome, Status

log = structlog.get_logger(__name__)


class DispatchProducer(Producer, BatchProducer, Protocol):
    """Single sends (retry jobs, dead letters: each acknowledged before the outcome is
    final) and batches (the attempt trail)."""


@dataclass(frozen=True)
class Topics:
    events: str
    retry: str
    dead_letter: str
    deliveries: str


class Dispatcher:
    def __init__(self, *, subscriptions: Callable[[str], RunningSubscription | None],
                 producer: DispatchProducer,
                 topics: Topics, config: DeliveryConfig, metrics: Metrics,
                 clock: Callable[[], float] = time.time,
                 draw: Callable[[], float] = random.random) -> None:
        self._subscriptions = subscriptions
        self._producer = producer
        self.topics = topics
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._draw = draw
        self.trail = AttemptTrail(producer, topics.deliveries)
        # metric children looked up once: subscription → latency histograms, and
        # (subscription, status) → attempt counter
        self._observers: dict[str, tuple[Any, Any]] = {}
        self._counters: dict[tuple[str, str], Any] = {}

    async def aclose(self) -> None:
        """Send the attempt records still pending (bounded), before the producer closes."""
        await self.trail.aclose()

    async def deliver(self, subscription: str, event: Event, attempt: int = 1, *,
                      replayed: bool = False,
                      wanted_by: RunningSubscription | None = None) -> Status | None:
        """``None``: not attempted, the subscription no longer wants the event (final).
        ``wanted_by``: the subscription whose filter already took the event (a lane's); if
        it is still the one in effect its answer stands (its settings never change)."""
        running = self._subscriptions(subscription)
        if running is None:
            log.error("delivery.unknown_subscription", subscription=subscription,
                      event_id=event.id)
            await self._dead(subscription, event, attempt - 1,
                             Outcome.failed("subscription no longer exists"),
                             "unknown_subscription")
            return Status.FAILED
        if not replayed and running is not wanted_by and not running.wants(event):
            # a retry dropped by a change is worth a line; first attempts skip in bulk
            level = log.info if attempt > 1 else log.debug
            level("delivery.skipped", subscription=subscription, event_id=event.id,
                  attempt=attempt, reason="the subscription was changed and no longer "
                                          "matches this event")
            return None
        if running.gone:
            await self._dead(subscription, event, attempt - 1,
                             Outcome.gone("endpoint answered 410 Gone; delivery stopped"), "gone")
            return Status.GONE
        started = time.perf_counter()
        try:
            # no await since the look-up: the object is current when the attempt starts
            outcome = await running.deliver(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a plugin bug must not lose the event: retry, then DLQ
            outcome = Outcome.retry(f"handler raised {type(exc).__name__}: {exc}")
            log.exception("delivery.handler_raised", subscription=subscription,
                          event_id=event.id)
        latency = outcome.latency_s if outcome.latency_s is not None \
            else time.perf_counter() - started
        delay = None
        if outcome.status is Status.RETRY:
            delay = next_delay(self._config.retry_schedule_s, attempt,
                               retry_after_s=outcome.retry_after_s,
                               jitter=self._config.jitter, draw=self._draw())
        self._record(subscription, event, attempt, outcome, latency, delay)
        if outcome.status is Status.DELIVERED:
            self._observe(subscription)[1].observe(
                max(0.0, self._clock() - event.time.timestamp()))
            if replayed:
                mark = DeadLetterMark(subscription, event.id, "delivered",
                                      datetime.now(UTC).isoformat())
                await self._send(self.topics.dead_letter, mark.key, mark.encode())
        elif outcome.status is Status.RETRY and delay is not None:
            job = Job(subscription, event, attempt + 1,
                      int((self._clock() + delay) * 1000), last_error=outcome.detail,
                      replayed=replayed)
            await self._send(self.topics.retry, job.key, job.encode())
        elif outcome.status is Status.RETRY:
            await self._dead(subscription, event, attempt, outcome, "exhausted")
        elif outcome.status is Status.GONE:
            running.gone = True  # this subscription as it is now; a replaced one starts afresh
            log.error("delivery.endpoint_gone", subscription=subscription,
                      http_status=outcome.http_status, detail=outcome.detail,
                      action="delivery to this subscription stopped; later events go to the "
                             "dead-letter topic until the subscription is replaced (PUT/PATCH) "
                             "and its dead letters replayed")
            await self._dead(subscription, event, attempt, outcome, "gone")
        else:
            await self._dead(subscription, event, attempt, outcome, "failed")
        return outcome.status

    def _record(self, subscription: str, event: Event, attempt: int, outcome: Outcome,
                latency_s: float, next_in_s: float | None) -> None:
        status = outcome.status.value
        self.trail.add(Attempt(
            event_id=event.id, event_type=event.type, model=event.model,
            subscription=subscription, attempt=attempt, status=status,
            http_status=outcome.http_status, latency_ms=round(latency_s * 1000, 2),
            error="" if outcome.status is Status.DELIVERED else outcome.detail,
            at=datetime.now(UTC).isoformat(),
            next_attempt_in_s=None if next_in_s is None else round(next_in_s, 3),
        ))
        counter = self._counters.get((subscription, status))
        if counter is None:
            counter = self._counters[subscription, status] = self._metrics.deliveries.labels(
                subscription, status)
        counter.inc()
        self._observe(subscription)[0].observe(latency_s)

    def _observe(self, subscription: str) -> tuple[Any, Any]:
        """The subscription's latency histograms (attempt, event → delivery), looked up once."""
        children = self._observers.get(subscription)
        if children is None:
            children = self._observers[subscription] = (
                self._metrics.delivery_latency.labels(subscription),
                self._metrics.event_to_delivery.labels(subscription))
        return children

    async def _dead(self, subscription: str, event: Event, attempts: int, outcome: Outcome,
                    reason: str) -> None:
        letter = DeadLetter(subscription, event, attempts, outcome.detail, outcome.http_status,
                            reason, datetime.now(UTC).isoformat())
        await self._send(self.topics.dead_letter, letter.key, letter.encode())
        self._metrics.dead_letters.labels(subscription, reason).inc()
        log.error("delivery.dead_lettered", subscription=subscription, event_id=event.id,
                  event_type=event.type, model=event.model, attempts=attempts, reason=reason,
                  last_error=outcome.detail)

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        """Publish and wait for the acknowledgement; retried until it succeeds (never lost)."""
        delay, failures = 0.5, 0
        while True:
            try:
                await (await self._producer.send(topic, key=key, value=value))
            except KafkaError as exc:
                failures += 1
                if failures == 1:  # once per outage, not once per retry
                    log.error("delivery.bus_error", topic=topic, error=repr(exc),
                              action="retrying until the broker acknowledges; the offset waits")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)  # resume within seconds once the broker is back
                continue
            if failures:
                log.info("delivery.bus_resumed", topic=topic, failed_attempts=failures)
            return
