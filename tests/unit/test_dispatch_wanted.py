"""A lane's filter answer carried to the dispatcher (``Dispatcher.deliver(wanted_by=...)``):
it stands only while the subscription that gave it is still the one in effect."""

from __future__ import annotations

from hub.config import DeliveryConfig, SubscriptionConfig
from hub.deliver.dispatch import Dispatcher, Topics
from hub.deliver.running import RunningSubscription
from hub.events import Event
from hub.metrics import Metrics
from hub.outcome import Outcome, Status
from hub.testing import FakeProducer, make_event

TOPICS = Topics(events="ev", retry="ev.retry", dead_letter="ev.dlq", deliveries="ev.deliveries")


class Answers:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def deliver(self, event: Event) -> Outcome:
        self.seen.append(event.id)
        return Outcome.delivered(http_status=200)

    async def aclose(self) -> None:
        return None


def running(models: list[str], handler: Answers) -> RunningSubscription:
    return RunningSubscription(SubscriptionConfig(name="hook", handler="console",
                                                  models=models), handler)


async def test_a_filter_answer_stands_only_for_the_subscription_that_gave_it() -> None:
    handler = Answers()
    taken_by = running(["iris"], handler)
    current = {"hook": taken_by}
    dispatcher = Dispatcher(subscriptions=current.get, producer=FakeProducer(), topics=TOPICS,
                            config=DeliveryConfig(), metrics=Metrics())
    event = make_event(model="iris", id="evt-1")
    assert await dispatcher.deliver("hook", event, wanted_by=taken_by) is Status.DELIVERED
    # swapped (PUT) for one that no longer wants iris: the new filter is asked, and says no
    current["hook"] = running(["wine"], handler)
    assert await dispatcher.deliver("hook", make_event(model="iris", id="evt-2"),
                                    wanted_by=taken_by) is None
    assert handler.seen == ["evt-1"]
    await dispatcher.aclose()
