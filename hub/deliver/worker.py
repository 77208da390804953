"""The delivery worker: one lane per subscription, the retry scheduler, and what they share
(a producer for retry / dead-letter / attempt records, the HTTP clients, the handlers).

Shutdown is one fixed sequence: stop intake (lanes and scheduler stop fetching) → drain
in-flight deliveries up to ``delivery.grace_period_s`` → commit what finished (each lane
commits its last full batch) → close handlers → send the attempt records still queued
(bounded) → close HTTP clients and the producer.

**Changing a subscription at runtime** (:meth:`DeliveryWorker.add_subscription`,
:meth:`~DeliveryWorker.remove_subscription`) is effective when the call returns: a
replacement is built first (a handler that cannot be built changes nothing), swapped into
the lane whole (:mod:`hub.deliver.running`), and the old one retired — its attempts in flight
finish, up to ``delivery.grace_period_s``, then they are cut short and retried with the new
settings — before the call returns. A deleted subscription's lane starts no delivery from
the moment of the call and is stopped before it returns. From then on nothing is delivered
with the old settings or handler in this process.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from hub.bus import TopicSpec, close_client, ensure_topics, start_producer
from hub.codec import SharedDecoder
from hub.config import HubConfig, SubscriptionConfig
from hub.deliver.dispatch import Dispatcher, Topics
from hub.deliver.lane import SubscriptionLane
from hub.deliver.running import RunningSubscription
from hub.deliver.scheduler import RetryScheduler
from hub.detect.source import RegistrySource
from hub.http import HttpClients
from hub.metrics import Metrics
from hub.plugins import Handler, HandlerContext, build_handlers

log = structlog.get_logger(__name__)


def topics_of(config: HubConfig) -> Topics:
    return Topics(events=config.kafka.topic, retry=config.retry_topic,
                  dead_letter=config.dead_letter_topic, deliveries=config.deliveries_topic)


def hub_topic_specs(config: HubConfig) -> list[TopicSpec]:
    """The events, retry, dead-letter and deliveries topics, as the hub creates them."""
    topics = topics_of(config)
    n = config.kafka.partitions
    return [
        (topics.events, n, {}),
        (topics.retry, n, {}),
        (topics.dead_letter, 1, {}),
        (topics.deliveries, n, {}),
    ]


async def ensure_hub_topics(config: HubConfig, bootstrap_servers: str) -> None:
    await ensure_topics(config.kafka, bootstrap_servers, hub_topic_specs(config))


class DeliveryWorker:
    def __init__(self, config: HubConfig, bootstrap_servers: str, *,
                 metrics: Metrics | None = None,
                 subscriptions: list[SubscriptionConfig] | None = None) -> None:
        self._config = config
        self._bootstrap = bootstrap_servers
        self.metrics = metrics or Metrics()
        self.subscriptions = {s.name: s for s in
                              (config.subscriptions if subscriptions is None else subscriptions)}
        """Every subscription this worker is asked to deliver (disabled ones included); an
        enabled one without a lane is one whose handler could not be built here."""
        self.lanes: dict[str, SubscriptionLane] = {}
        """One lane per running subscription; ``lanes[name].running`` is the one place a
        running subscription (settings, handler, filter, Gone state) lives."""
        self._changes = asyncio.Lock()
        self._stack = AsyncExitStack()
        self._decoder = SharedDecoder()  # each record decoded once for every lane
        self._producer: AIOKafkaProducer | None = None
        self._source: RegistrySource | None = None
        self.dispatcher: Dispatcher | None = None
        self.scheduler: RetryScheduler | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._context = HandlerContext()
        self._running = False
        self._stopping = asyncio.Event()
        self._closed = False

    async def __aenter__(self) -> DeliveryWorker:
        try:
            await ensure_hub_topics(self._config, self._bootstrap)
            self._producer = await start_producer(self._config.kafka, self._bootstrap)
            self._stack.push_async_callback(close_client, self._producer)
            http = await self._stack.enter_async_context(
                HttpClients(allowed_networks=self._config.delivery.allowed_networks))
            self._source = await self._stack.enter_async_context(
                RegistrySource(self._config.mlflow))
            context = HandlerContext(
                tracking_uri=self._config.mlflow.tracking_uri,
                ui_url=self._config.mlflow.ui_url or _http_or_none(
                    self._config.mlflow.tracking_uri),
                http_session=http.session,
                kafka_send=self._kafka_send,
                mlflow_call=self._mlflow_call,
            )
            self._context = context
            self.dispatcher = Dispatcher(subscriptions=self.running_subscription,
                                         producer=self._producer,
                                         topics=topics_of(self._config),
                                         config=self._config.delivery, metrics=self.metrics)
            # before the producer closes: the attempt records still queued are sent first
            self._stack.push_async_callback(self.dispatcher.aclose)
            self.scheduler = RetryScheduler(
                dispatcher=self.dispatcher, kafka=self._config.kafka,
                bootstrap_servers=self._bootstrap, topic=self._config.retry_topic,
                config=self._config.delivery, metrics=self.metrics)
            self._stack.push_async_callback(self._close_handlers)
            enabled = [s for s in self.subscriptions.values() if s.enabled]
            for name, handler in build_handlers(enabled, context).items():
                self.lanes[name] = self._lane(
                    RunningSubscription(self.subscriptions[name], handler))
            await self._ensure_handler_topics(self.handlers.values())
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        return self._running

    def missing_lanes(self) -> list[str]:
        """Enabled subscriptions without a lane: their handler could not be built here."""
        return sorted(n for n, s in self.subscriptions.items() if s.enabled and n not in self.lanes)

    def waiting_lanes(self) -> list[str]:
        """Lanes that own no partition: the group is rebalancing, or the broker lost the
        events topic."""
        return sorted(n for n, lane in self.lanes.items() if not lane.assigned.is_set())

    def health(self) -> dict[str, Any]:
        """``/readyz``'s worker check: running, a lane per enabled subscription, each owning
        partitions."""
        missing, idle = self.missing_lanes(), self.waiting_lanes()
        detail = "lanes running" if self._running else "worker not running"
        if missing:
            detail = f"no lane for {', '.join(missing)} (handler could not be built)"
        elif self._running and idle:
            detail = (f"not consuming: {', '.join(idle)} (no partitions assigned: the group "
                      "is rebalancing, or the broker lost the events topic)")
        return {"ok": self._running and not missing and not idle, "detail": detail,
                "lanes": len(self.lanes)}

    @property
    def context(self) -> HandlerContext:
        """What handlers of this worker are built with (the admin API's test call uses it)."""
        return self._context

    @property
    def handlers(self) -> dict[str, Handler]:
        """The handler of each running subscription, as of now (a snapshot)."""
        return {name: running.handler for name, lane in self.lanes.items()
                if (running := lane.running) is not None}

    def running_subscription(self, name: str) -> RunningSubscription | None:
        """The subscription ``name`` as it runs now (the dispatcher's look-up)."""
        lane = self.lanes.get(name)
        return None if lane is None else lane.running

    def _lane(self, running: RunningSubscription) -> SubscriptionLane:
        assert self.dispatcher is not None
        return SubscriptionLane(
            running, dispatcher=self.dispatcher,
            kafka=self._config.kafka, bootstrap_servers=self._bootstrap,
            topic=self._config.kafka.topic, config=self._config.delivery, metrics=self.metrics,
            decoder=self._decoder)

    async def run(self) -> None:
        """Run every lane and the retry scheduler until :meth:`stop`."""
        assert self.scheduler is not None
        self._tasks["__retry__"] = asyncio.create_task(self.scheduler.run())
        for name, lane in self.lanes.items():
            self._tasks[name] = asyncio.create_task(lane.run())
        log.info("delivery.worker_started", subscriptions=sorted(self.lanes))
        self._running = True
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while self._tasks and not self._stopping.is_set():
                # lanes come and go at runtime: wait for whatever is running now
                await asyncio.wait({stopping, *self._tasks.values()},
                                   return_when=asyncio.FIRST_COMPLETED)
                for name, task in list(self._tasks.items()):
                    if task.done():
                        del self._tasks[name]
                        task.result()  # a crashed lane crashes the worker, loudly
            if self._tasks:  # drain in-flight batches, bounded by the grace period
                # each lane drains for the grace period, then commits and closes: allow that
                _, late = await asyncio.wait(set(self._tasks.values()),
                                             timeout=self._config.delivery.grace_period_s + 5)
                if late:
                    log.warning("delivery.drain_timeout", unfinished=len(late),
                                action="uncommitted batches are delivered again on restart")
        finally:
            self._running = False
            stopping.cancel()
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def add_subscription(self, sub: SubscriptionConfig) -> None:
        """Create or replace a subscription at runtime (validated like config); in effect
        when this returns (see the module docstring). ``ConfigError``/``PluginError`` (its
        handler cannot be built) and ``BusError`` leave everything as it was."""
        async with self._changes:
            if not sub.enabled:
                self.subscriptions[sub.name] = sub
                await self._stop_lane(sub.name)
                return
            handler = build_handlers([sub], self._context)[sub.name]
            try:
                await self._ensure_handler_topics([handler])
            except BaseException:
                await handler.aclose()
                raise
            running = RunningSubscription(sub, handler)
            self.subscriptions[sub.name] = sub
            lane = self.lanes.get(sub.name)
            if lane is None:
                lane = self.lanes[sub.name] = self._lane(running)
                if self._running:
                    self._tasks[sub.name] = asyncio.create_task(lane.run())
                return
            started = time.monotonic()
            old = lane.swap(running)
            in_flight = old.in_flight
            cut = await old.retire(self._config.delivery.grace_period_s)
            log.info("delivery.subscription_replaced", subscription=sub.name,
                     in_flight=in_flight, cut_short=cut,
                     took_ms=round((time.monotonic() - started) * 1000, 1))

    async def remove_subscription(self, name: str) -> None:
        """Stop delivering a subscription: no delivery starts from the call on; attempts in
        flight finish (cut short after the grace period); the lane commits what finished
        and leaves its group before this returns. Events it had taken but not started stay
        uncommitted (a subscription created again under this name gets them)."""
        async with self._changes:
            self.subscriptions.pop(name, None)
            await self._stop_lane(name)

    async def refuse(self, sub: SubscriptionConfig) -> None:
        """Stop delivering ``sub.name`` and keep ``sub`` listed without a lane: its handler
        cannot be built in this process (readiness names it)."""
        async with self._changes:
            self.subscriptions[sub.name] = sub
            await self._stop_lane(sub.name)

    async def _stop_lane(self, name: str) -> None:
        lane = self.lanes.pop(name, None)
        if lane is None:
            return
        running = lane.close()  # from here on no delivery starts, not even a queued one
        grace = self._config.delivery.grace_period_s
        cut = 0 if running is None else await running.retire(grace)
        task = self._tasks.pop(name, None)
        if task is not None:  # chains end at once now; then commit and leave the group
            _, late = await asyncio.wait({task}, timeout=grace)
            if late:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        log.info("delivery.subscription_stopped", subscription=name, cut_short=cut)

    def stop(self) -> None:
        """Stop intake; ``run`` returns once in-flight work drained (bounded by the grace)."""
        self._stopping.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        for lane in self.lanes.values():
            lane.stop()

    async def wait_ready(self, timeout_s: float = 30) -> None:
        """Until every lane and the scheduler own partitions (tests and benchmarks)."""
        waits = [lane.assigned.wait() for lane in self.lanes.values()]
        if self.scheduler is not None:
            waits.append(self.scheduler.assigned.wait())
        await asyncio.wait_for(asyncio.gather(*waits), timeout_s)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stack.aclose()

    async def _ensure_handler_topics(self, handlers: Any) -> None:
        """Handlers may list Kafka topics they write (``topics``); create the missing ones."""
        wanted = {t for h in handlers for t in getattr(h, "topics", ())}
        if wanted:
            await ensure_topics(self._config.kafka, self._bootstrap,
                                [(t, self._config.kafka.partitions, {}) for t in sorted(wanted)])

    async def _close_handlers(self) -> None:
        for name, handler in self.handlers.items():  # the lanes are done: nothing in flight
            try:
                await handler.aclose()
            except Exception:
                log.exception("delivery.handler_close_failed", subscription=name)

    async def _kafka_send(self, topic: str, key: bytes, value: bytes,
                          headers: list[tuple[str, bytes]]) -> None:
        assert self._producer is not None
        await (await self._producer.send(topic, key=key, value=value, headers=headers))

    async def _mlflow_call(self, fn: Any, *args: Any) -> Any:
        assert self._source is not None
        source = self._source
        return await source.call(lambda: fn(source.client, *args))


def _http_or_none(uri: str) -> str | None:
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None
