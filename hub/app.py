"""The hub process: composes the embedded broker (if asked for), the detector (with leader election
on a real cluster), the delivery worker, the runtime subscription store and the HTTP listener
(admin API, metrics, health, MLflow ingest), as async context managers on one ``AsyncExitStack``:
started in that order, closed in reverse. A :class:`~hub.broker.topics.TopicKeeper` re-creates
their topics if the broker comes back without them."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog

from hub.admin.server import AdminServer
from hub.admin.store import SubscriptionStore
from hub.broker.embedded import EmbeddedBroker
from hub.broker.journal import Journal
from hub.broker.topics import TopicKeeper
from hub.bus import Publisher
from hub.config import HubConfig
from hub.deliver.worker import DeliveryWorker, ensure_hub_topics, hub_topic_specs
from hub.detect.checkpoint import KafkaCheckpoint
from hub.detect.detector import Detector, EventSink
from hub.detect.source import RegistrySource
from hub.elect.election import LeaderElection
from hub.elect.lead import STOP_PATIENCE_S, lead
from hub.metrics import Metrics
from hub.redaction import redact_url

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Roles:
    detect: bool = True
    deliver: bool = True


class Hub:
    def __init__(self, config: HubConfig, roles: Roles = Roles(),
                 bootstrap_servers: str | None = None) -> None:
        self.config = config
        self.roles = roles
        self.metrics = Metrics()
        self.bootstrap_servers = bootstrap_servers or config.kafka.bootstrap_servers
        self.detector: Detector | None = None
        self.worker: DeliveryWorker | None = None
        self.election: LeaderElection | None = None
        self.store: SubscriptionStore | None = None
        self.admin: AdminServer | None = None
        self.journal: Journal | None = None
        self.keeper: TopicKeeper | None = None
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()

    async def __aenter__(self) -> Hub:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        cfg = self.config
        embedded = self.bootstrap_servers == "embedded"
        if embedded:
            broker = await self._stack.enter_async_context(EmbeddedBroker())
            self.bootstrap_servers = broker.bootstrap_servers
            # restores the previous run's topics and offsets before anything reads them
            self.journal = await self._stack.enter_async_context(
                Journal(cfg.state_dir / "broker", cfg.kafka, self.bootstrap_servers))
        await ensure_hub_topics(cfg, self.bootstrap_servers)
        if self.roles.detect:
            source = await self._stack.enter_async_context(RegistrySource(cfg.mlflow))
            publisher = await self._stack.enter_async_context(
                Publisher(cfg.kafka, self.bootstrap_servers, cfg.kafka.topic))
            checkpoint = await self._stack.enter_async_context(
                KafkaCheckpoint(cfg.kafka, self.bootstrap_servers, cfg.state_topic))
            sink: EventSink = publisher
            if cfg.detector.leader_election and not embedded:
                # entered after the producers: on shutdown it leaves the group first
                self.election = await self._stack.enter_async_context(
                    LeaderElection.for_hub(cfg, self.bootstrap_servers))
                sink = self.election.fence(publisher)
            self.detector = Detector(cfg.detector, scanner=source, sink=sink,
                                     checkpoint=checkpoint, tracking_uri=cfg.mlflow.tracking_uri,
                                     metrics=self.metrics)
        if self.roles.deliver:
            self.worker = await self._stack.enter_async_context(
                DeliveryWorker(cfg, self.bootstrap_servers, metrics=self.metrics))
        # Runtime subscriptions: loading them starts their lanes, so the worker comes first.
        self.store = await self._stack.enter_async_context(
            SubscriptionStore(cfg, self.bootstrap_servers, worker=self.worker))
        # every topic above, re-created if the broker comes back without it
        topics = [*hub_topic_specs(cfg), self.store.topic_spec]
        if self.roles.detect:
            topics.append(checkpoint.topic_spec)
        if self.election is not None:
            topics.append(self.election.topic_spec)
        self.keeper = await self._stack.enter_async_context(
            TopicKeeper(cfg.kafka, self.bootstrap_servers, topics))
        if cfg.admin.enabled:  # last in, first out: it serves everything above
            self.admin = await self._stack.enter_async_context(
                AdminServer(self, store=self.store))
        log.info("hub.started", registry=redact_url(cfg.mlflow.registry),
                 admin=self.admin.url if self.admin else None,
                 kafka=self.bootstrap_servers, topic=cfg.kafka.topic,
                 detect=self.roles.detect, deliver=self.roles.deliver,
                 subscriptions=sorted(self.worker.lanes) if self.worker else [])

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def run(self) -> None:
        """Run every role until :meth:`stop`, then shut down in order."""
        async with asyncio.TaskGroup() as group:
            detecting = None
            if self.detector is not None and self.election is not None:
                group.create_task(lead(self.election, self.detector, self._stopping))
            elif self.detector is not None:
                detecting = group.create_task(self.detector.run())
            if self.worker is not None:
                group.create_task(self.worker.run())
            if self.store is not None:
                group.create_task(self.store.watch())
            await self._stopping.wait()
            if self.detector is not None:
                self.detector.stop()
            if self.store is not None:
                self.store.stop()
            if self.worker is not None:
                self.worker.stop()
            if detecting is not None:  # as lead() does: a round cut short is repeated
                await asyncio.wait({detecting}, timeout=STOP_PATIENCE_S)
                detecting.cancel()

    def stop(self) -> None:
        self._stopping.set()
