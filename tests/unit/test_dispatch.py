"""One delivery attempt taken to a durable end (``hub.deliver.dispatch.Dispatcher``), over
``hub.testing.FakeProducer``: what is written where, acknowledged, for each outcome — with
jitter on, and the clock and the random draw injected. The same flows through a real broker
and a real receiver: tests/integration/test_delivery.py."""

from __future__ import annotations

import asyncio
import json

from hub.config import DeliveryConfig, SubscriptionConfig
from hub.deliver.dispatch import Dispatcher, Topics
from hub.deliver.jobs import DeadLetter, Job
from hub.deliver.running import RunningSubscription
from hub.events import Event
from hub.metrics import Metrics
from hub.outcome import Outcome, Status
from hub.testing import FakeProducer, make_event
from tests.support.wait import eventually

TOPICS = Topics(events="ev", retry="ev.retry", dead_letter="ev.dlq", deliveries="ev.deliveries")
NOW_S = 1_000.0
SCHEDULE = [10.0, 20.0]


class Scripted:
    """A handler answering the given outcomes in turn (or raising, for an exception)."""

    def __init__(self, *answers: Outcome | Exception) -> None:
        self.answers = list(answers)
        self.seen: list[str] = []

    async def deliver(self, event: Event) -> Outcome:
        self.seen.append(event.id)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self) -> None:
        return None


def setup(handler: Scripted, *, draw: float = 0.75, **delivery: object
          ) -> tuple[Dispatcher, FakeProducer, RunningSubscription]:
    running = RunningSubscription(SubscriptionConfig(name="hook", handler="console",
                                                     models=["iris"]), handler)
    producer = FakeProducer()
    config = DeliveryConfig(retry_schedule_s=SCHEDULE, jitter=0.2, **delivery)
    # FakeProducer answers send() as the AIOKafkaProducer that Dispatcher annotates
    dispatcher = Dispatcher(subscriptions=lambda name: running if name == "hook" else None,
                            producer=producer, topics=TOPICS, config=config,
                            metrics=Metrics(), clock=lambda: NOW_S, draw=lambda: draw)
    return dispatcher, producer, running


async def attempts(producer: FakeProducer, count: int) -> list[dict[str, object]]:
    """The attempt log (written after the loop's next turn, not awaited by deliver)."""
    records = await eventually(lambda: producer.on(TOPICS.deliveries),
                               lambda r: len(r) >= count, what=f"{count} attempt records")
    return [json.loads(r.value or b"") for r in records]


async def test_a_delivery_writes_only_its_attempt_record() -> None:
    dispatcher, producer, _ = setup(Scripted(Outcome.delivered(http_status=200)))
    assert await dispatcher.deliver("hook", make_event()) is Status.DELIVERED
    [record] = await attempts(producer, 1)
    assert record["status"] == "delivered" and record["next_attempt_in_s"] is None
    assert {r.topic for r in producer.sent} == {TOPICS.deliveries}


async def test_a_retry_is_scheduled_durably_after_the_jittered_delay() -> None:
    dispatcher, producer, _ = setup(Scripted(Outcome.retry("HTTP 503", http_status=503)),
                                    draw=0.75)
    event = make_event()
    assert await dispatcher.deliver("hook", event) is Status.RETRY
    [sent] = producer.on(TOPICS.retry)  # acknowledged before deliver returned
    job = Job.decode(sent.value or b"")
    assert (job.attempt, job.event, job.last_error) == (2, event, "HTTP 503")
    assert job.due_ms == int((NOW_S + 11.0) * 1000)  # 10 s, drawn 0.75 of ±20% → +10%
    assert sent.key == b"hook|iris"
    [record] = await attempts(producer, 1)
    assert record["next_attempt_in_s"] == 11.0


async def test_a_longer_retry_after_outweighs_the_schedule() -> None:
    dispatcher, producer, _ = setup(Scripted(Outcome.retry("429", retry_after_s=30.0)))
    await dispatcher.deliver("hook", make_event())
    job = Job.decode(producer.on(TOPICS.retry)[0].value or b"")
    assert job.due_ms == int((NOW_S + 30.0) * 1000)


async def test_an_exhausted_schedule_dead_letters() -> None:
    dispatcher, producer, _ = setup(Scripted(Outcome.retry("HTTP 502", http_status=502)))
    last = len(SCHEDULE) + 1
    assert await dispatcher.deliver("hook", make_event(), attempt=last) is Status.RETRY
    assert producer.on(TOPICS.retry) == []
    letter = DeadLetter.decode(producer.on(TOPICS.dead_letter)[0].value or b"")
    assert (letter.reason, letter.attempts, letter.http_status) == ("exhausted", last, 502)


async def test_a_handler_that_raises_is_retried_not_lost() -> None:
    dispatcher, producer, _ = setup(Scripted(RuntimeError("plugin bug")))
    assert await dispatcher.deliver("hook", make_event()) is Status.RETRY
    job = Job.decode(producer.on(TOPICS.retry)[0].value or b"")
    assert job.last_error == "handler raised RuntimeError: plugin bug"


async def test_gone_dead_letters_this_and_later_events_without_an_attempt() -> None:
    handler = Scripted(Outcome.gone("HTTP 410", http_status=410))
    dispatcher, producer, running = setup(handler)
    first, later = make_event(), make_event()
    assert await dispatcher.deliver("hook", first) is Status.GONE
    assert await dispatcher.deliver("hook", later) is Status.GONE
    assert running.gone and handler.seen == [first.id]
    letters = [DeadLetter.decode(r.value or b"") for r in producer.on(TOPICS.dead_letter)]
    assert [(d.event.id, d.reason) for d in letters] == [(first.id, "gone"), (later.id, "gone")]


async def test_unknown_subscriptions_and_unwanted_retries() -> None:
    dispatcher, producer, _ = setup(Scripted())
    assert await dispatcher.deliver("deleted", make_event()) is Status.FAILED
    assert DeadLetter.decode(producer.on(TOPICS.dead_letter)[0].value or b"").reason == \
        "unknown_subscription"
    # a retry of an event the subscription no longer matches: final, nothing written
    assert await dispatcher.deliver("hook", make_event(model="wine"), attempt=2) is None
    assert len(producer.sent) == 1


async def test_an_outage_of_the_broker_holds_the_outcome_until_it_is_acknowledged() -> None:
    dispatcher, producer, _ = setup(Scripted(Outcome.failed("HTTP 400", http_status=400)))
    producer.fail()
    attempt = asyncio.create_task(dispatcher.deliver("hook", make_event()))
    await eventually(lambda: producer.refused, what="a refused dead-letter write")
    assert not attempt.done() and producer.on(TOPICS.dead_letter) == []
    producer.recover()
    assert await attempt is Status.FAILED  # after the backoff (0.5 s), acknowledged
    assert len(producer.on(TOPICS.dead_letter)) == 1
