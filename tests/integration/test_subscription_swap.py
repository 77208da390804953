"""Changing a subscription through the admin API while events stream: once PUT or DELETE
returned, nothing is delivered with the old settings or handler — a real hub, the session
broker, real receivers, 1,000 events.

Receivers stamp each request with ``time.monotonic()`` in this process, the clock the tests
read around the API call, so "after the call returned" is exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from hub.bus import Publisher
from hub.config import HubConfig
from hub.deliver.worker import ensure_hub_topics
from hub.events import Event
from tests.support.admin import Api, admin_config, running_hub
from tests.support.delivery import event, publish, webhook
from tests.support.kafka_reader import read_topic
from tests.support.receiver import Hit, Receiver, running_receiver
from tests.support.wait import eventually

pytestmark = pytest.mark.timeout(180)

EVENTS = 1000
IN_FLIGHT = 8  # delivery.max_in_flight: at most this many attempts can be under way
SLOW_MS = 5  # each delivery takes this long at the receiver: the lane always has a queue
CHUNK = 50
AHEAD = 150  # the stream stays this many events ahead of the deliveries
WINDOW = 2 * IN_FLIGHT
"""Deliveries the old handler may make while the call runs: the attempts under way at the
swap (at most IN_FLIGHT) and those finishing while the request makes its way to it. Letting
the old lane drain its queue instead would deliver the whole queue (asserted > 2 * WINDOW
before the call) with the old handler."""


def swap_config(bootstrap: str, topic: str, subscriptions: list[dict[str, Any]],
                grace_period_s: float = 5, retry_schedule_s: float = 0.2) -> HubConfig:
    return admin_config(bootstrap, topic, subscriptions, delivery={
        "retry_schedule_s": [retry_schedule_s] * 5, "jitter": 0, "start_from": "earliest",
        "allowed_networks": ["127.0.0.0/8"], "grace_period_s": grace_period_s,
        "max_in_flight": IN_FLIGHT})


def model_of(n: int) -> str:
    """700 ``keep-*`` events (both filters), 200 ``drop-*`` (only the old filter), 100
    ``never-*`` (neither)."""
    if n % 10 == 3:
        return f"never-{n % 3}"
    if n % 5 == 0:
        return f"drop-{n % 4}"
    return f"keep-{n % 16}"


def ids(hits: list[Hit]) -> set[str]:
    return {h.headers["webhook-id"] for h in hits}


async def until(receiver: Receiver, predicate: Callable[[], bool], what: str,
                timeout_s: float = 60) -> None:
    async def wait() -> None:
        async with receiver.changed:
            await receiver.changed.wait_for(predicate)

    try:
        await asyncio.wait_for(wait(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def stream(config: HubConfig, events: list[Event], receiver: Receiver,
                 delivered: Callable[[list[Event]], int]) -> None:
    """Publish ``events`` in chunks, each once the deliveries are close enough behind (paced
    by condition, not by time), so the change happens while the stream is on."""
    await ensure_hub_topics(config, config.kafka.bootstrap_servers)
    async with Publisher(config.kafka, config.kafka.bootstrap_servers,
                         config.kafka.topic) as publisher:
        for start in range(0, len(events), CHUNK):
            sent = events[:start]
            await until(receiver, caught_up(delivered, sent),
                        f"deliveries to catch up with event {start}")
            await publisher.publish(events[start:start + CHUNK])


def caught_up(delivered: Callable[[list[Event]], int], sent: list[Event]
              ) -> Callable[[], bool]:
    return lambda: delivered(sent) >= len(sent) - AHEAD


def between(hits: list[Hit], after: float, until_: float = float("inf")) -> list[Hit]:
    return [h for h in hits if after < h.at <= until_]


@pytest.mark.slow
async def test_put_mid_stream_moves_every_later_delivery_to_the_new_url(
        kafka_bootstrap: str, topic_name: str) -> None:
    async with running_receiver() as receiver:
        old_path, new_path = f"/slow/{SLOW_MS}/old", f"/slow/{SLOW_MS}/new"
        old_url, new_url = receiver.url + old_path, receiver.url + new_path
        config = swap_config(kafka_bootstrap, topic_name, [])
        events = [event(n, model=model_of(n)) for n in range(EVENTS)]
        keep = {e.id for e in events if e.model.startswith("keep-")}
        drop = {e.id for e in events if e.model.startswith("drop-")}

        def old() -> list[Hit]:
            return receiver.delivered(old_path)

        def new() -> list[Hit]:
            return receiver.delivered(new_path)

        def delivered_keep(sent: list[Event]) -> int:
            wanted = {e.id for e in sent} & keep
            return len(wanted & (ids(old()) | ids(new()))) + len({e.id for e in sent} - keep)

        async with running_hub(config) as (hub, _, admin), aiohttp.ClientSession() as http:
            assert hub.worker is not None
            api = Api(http, admin.url)
            status, _ = await api("POST", "/api/subscriptions",
                                  webhook("moving", old_url, models=["keep-*", "drop-*"]))
            assert status == 201
            await asyncio.wait_for(hub.worker.lanes["moving"].assigned.wait(), 30)
            streaming = asyncio.create_task(stream(config, events, receiver, delivered_keep))
            await until(receiver, lambda: len(old()) >= 300, "300 deliveries to the old URL")

            queued = hub.worker.lanes["moving"].pending
            with capture_logs() as logs:
                sent_at = time.monotonic()
                status, body = await api("PUT", "/api/subscriptions/moving",
                                         webhook("moving", new_url, models=["keep-*"]))
                returned_at = time.monotonic()
            assert (status, body["url"], body["models"]) == (200, new_url, ["keep-*"])
            old_at_return = len(old())

            await streaming
            await until(receiver, lambda: keep <= ids(old()) | ids(new()),
                        "every keep-* event at the old or the new URL")
            # the last events are published: once every keep-* one arrived, the lane has
            # taken them all; a swap that let the old handler go on would show by now
            running = hub.worker.running_subscription("moving")
            assert running is not None and running.config.models == ["keep-*"]

        old_hits, new_hits = old(), new()
        after_return = between(old_hits, returned_at)
        during_call = between(old_hits, sent_at, returned_at)
        replaced = [e for e in logs if e["event"] == "delivery.subscription_replaced"]
        print(f"\nPUT mid-stream: {EVENTS} events ({len(keep)} keep, {len(drop)} drop, "
              f"{EVENTS - len(keep) - len(drop)} never); old URL {len(old_hits)} deliveries "
              f"({len(ids(old_hits))} events), new URL {len(new_hits)} ({len(ids(new_hits))} "
              f"events); {queued} queued at the call; old URL during the call "
              f"{len(during_call)}, after it returned "
              f"{len(after_return)}; PUT took {(returned_at - sent_at) * 1000:.1f} ms; "
              f"duplicates {len(old_hits) + len(new_hits) - len(ids(old_hits) | ids(new_hits))}"
              f"; swap log {replaced}")

        assert after_return == [], "the old URL got deliveries after the PUT returned"
        assert len(old_hits) == old_at_return
        # only the attempts already under way finished with the old handler; the events the
        # lane had queued went to the new one
        assert queued > 2 * WINDOW, queued
        assert len(during_call) <= WINDOW, len(during_call)
        assert len(replaced) == 1 and replaced[0]["cut_short"] == 0
        assert new_hits and min(h.at for h in new_hits) > sent_at
        # nothing lost: every event both filters want reached one of the URLs
        assert keep <= ids(old_hits) | ids(new_hits)
        # the filter was swapped with the handler: the new URL never saw what it excludes,
        # the old URL never saw what the old filter excluded
        assert not ids(new_hits) - keep
        assert not ids(old_hits) - keep - drop
        assert all(h.verified for h in old_hits + new_hits)


@pytest.mark.slow
async def test_delete_mid_stream_delivers_nothing_after_it_returned(
        kafka_bootstrap: str, topic_name: str) -> None:
    async with running_receiver() as receiver:
        witness_path, leaving_path = f"/slow/{SLOW_MS}/witness", f"/slow/{SLOW_MS}/leaving"
        config = swap_config(kafka_bootstrap, topic_name,
                             [webhook("witness", receiver.url + witness_path)])
        events = [event(n, model=f"m-{n % 16}") for n in range(EVENTS)]

        def leaving() -> list[Hit]:
            return receiver.delivered(leaving_path)

        def witnessed(sent: list[Event]) -> int:
            return len(receiver.delivered(witness_path))

        async with running_hub(config) as (hub, store, admin), aiohttp.ClientSession() as http:
            assert hub.worker is not None
            api = Api(http, admin.url)
            status, _ = await api("POST", "/api/subscriptions",
                                  webhook("leaving", receiver.url + leaving_path))
            assert status == 201
            lane = hub.worker.lanes["leaving"]
            await asyncio.wait_for(lane.assigned.wait(), 30)
            streaming = asyncio.create_task(stream(config, events, receiver, witnessed))
            await until(receiver, lambda: len(leaving()) >= 300, "300 deliveries to 'leaving'")

            queued = lane.pending
            sent_at = time.monotonic()
            status, _ = await api("DELETE", "/api/subscriptions/leaving")
            returned_at = time.monotonic()
            assert status == 204
            left_at_return = len(leaving())
            assert "leaving" not in hub.worker.lanes and lane.running is None
            assert hub.worker.running_subscription("leaving") is None

            await streaming
            # the witness consumes the same topic at the same pace: once it has every event,
            # a lane that went on would have delivered more by now
            await until(receiver, lambda: len(ids(receiver.delivered(witness_path))) >= EVENTS,
                        "every event at the witness")
            assert "leaving" not in store.subscriptions

        hits = leaving()
        after_return = between(hits, returned_at)
        during_call = between(hits, sent_at, returned_at)
        print(f"\nDELETE mid-stream: {EVENTS} events; {queued} queued at the call; 'leaving' "
              f"got {len(hits) - len(during_call) - len(after_return)} before the call, "
              f"{len(during_call)} during it, {len(after_return)} after it returned; "
              f"DELETE took {(returned_at - sent_at) * 1000:.1f} ms")
        assert after_return == [], "deliveries arrived after DELETE returned"
        assert len(hits) == left_at_return
        assert queued > 2 * WINDOW, queued
        assert len(during_call) <= WINDOW, len(during_call)  # queued ones were not started
        assert len(ids(hits)) < EVENTS


@pytest.mark.slow  # 4 s; tests/unit/test_dispatch.py covers 410 Gone in the quick tier
async def test_gone_endpoint_resumes_once_the_subscription_is_replaced(
        kafka_bootstrap: str, topic_name: str) -> None:
    async with running_receiver() as receiver:
        config = swap_config(kafka_bootstrap, topic_name, [])
        async with running_hub(config) as (hub, _, admin), aiohttp.ClientSession() as http:
            assert hub.worker is not None
            api = Api(http, admin.url)
            assert (await api("POST", "/api/subscriptions",
                              webhook("ends", f"{receiver.url}/status/410")))[0] == 201
            await asyncio.wait_for(hub.worker.lanes["ends"].assigned.wait(), 30)
            await publish(config, [event(1)])
            letters = await read_topic(kafka_bootstrap, config.dead_letter_topic, at_least=1)
            gone = hub.worker.running_subscription("ends")
            assert gone is not None and gone.gone
            await publish(config, [event(2)])  # dead-lettered without an attempt
            letters = await read_topic(kafka_bootstrap, config.dead_letter_topic, at_least=2)
            assert [(d.data["event"]["id"], d.data["reason"]) for d in letters] == [
                ("evt-1", "gone"), ("evt-2", "gone")]

            status, _ = await api("PUT", "/api/subscriptions/ends",
                                  webhook("ends", f"{receiver.url}/ok/resumed"))
            assert status == 200
            replaced = hub.worker.running_subscription("ends")
            assert replaced is not None and replaced is not gone and not replaced.gone
            await publish(config, [event(3)])
            (hit,) = await receiver.wait_for(1, "/ok/resumed")
            assert hit.headers["webhook-id"] == "evt-3" and hit.verified


@pytest.mark.slow
async def test_put_cuts_an_attempt_hanging_past_the_grace_and_retries_it_at_the_new_url(
        kafka_bootstrap: str, topic_name: str) -> None:
    grace_s = 0.5
    hanging = asyncio.Event()

    async def before(request: web.Request) -> None:
        if request.path == "/hang":
            hanging.set()

    async with running_receiver(before) as receiver:
        config = swap_config(kafka_bootstrap, topic_name, [], grace_period_s=grace_s)
        async with running_hub(config) as (hub, _, admin), aiohttp.ClientSession() as http:
            assert hub.worker is not None
            api = Api(http, admin.url)
            assert (await api("POST", "/api/subscriptions",
                              webhook("stuck", f"{receiver.url}/hang", timeout_s=60)))[0] == 201
            await asyncio.wait_for(hub.worker.lanes["stuck"].assigned.wait(), 30)
            hung = hub.worker.running_subscription("stuck")
            assert hung is not None
            await publish(config, [event(1)])
            await asyncio.wait_for(hanging.wait(), 30)  # the attempt is under way
            assert hung.in_flight == 1

            sent_at = time.monotonic()
            status, _ = await api("PUT", "/api/subscriptions/stuck",
                                  webhook("stuck", f"{receiver.url}/ok/unstuck"))
            took = time.monotonic() - sent_at
            assert status == 200
            assert grace_s <= took < grace_s + 3, took  # bounded by the grace period
            assert hung.retired and hung.in_flight == 0

            (hit,) = await receiver.wait_for(1, "/ok/unstuck")
            assert hit.headers["webhook-id"] == "evt-1" and hit.verified
            attempts = await read_topic(kafka_bootstrap, config.deliveries_topic, at_least=2)
            assert [(a.data["attempt"], a.data["status"]) for a in attempts] == [
                (1, "retry"), (2, "delivered")]
            assert "cut short" in attempts[0].data["error"]


@pytest.mark.slow
async def test_a_pending_retry_the_new_filter_excludes_is_not_attempted(
        kafka_bootstrap: str, topic_name: str) -> None:
    async with running_receiver() as receiver:
        receiver.down.add("x")
        # retries a second apart: the PUT comes while evt-1 waits for one
        config = swap_config(kafka_bootstrap, topic_name, [], retry_schedule_s=1)
        async with running_hub(config) as (hub, _, admin), aiohttp.ClientSession() as http:
            assert hub.worker is not None
            api = Api(http, admin.url)
            assert (await api("POST", "/api/subscriptions",
                              webhook("narrowing", f"{receiver.url}/down/x")))[0] == 201
            await asyncio.wait_for(hub.worker.lanes["narrowing"].assigned.wait(), 30)
            with capture_logs() as logs:
                await publish(config, [event(1, model="wine")])
                first = (await read_topic(kafka_bootstrap, config.deliveries_topic,
                                          at_least=1))[0]
                assert (first.data["event_id"], first.data["status"]) == ("evt-1", "retry")
                assert (await api("PUT", "/api/subscriptions/narrowing", webhook(
                    "narrowing", f"{receiver.url}/ok/narrow", models=["iris"])))[0] == 200
                await publish(config, [event(2, model="iris")])
                await receiver.wait_for(1, "/ok/narrow")

                async def skipped() -> list[str]:
                    return [e["event_id"] for e in logs if e["event"] == "delivery.skipped"]

                assert await eventually(skipped, lambda s: s != []) == ["evt-1"]
            status, body = await api("GET", "/api/dead-letters?subscription=narrowing")
            assert (status, body) == (200, {"dead_letters": []})
        assert ids(receiver.delivered("/ok/narrow")) == {"evt-2"}
