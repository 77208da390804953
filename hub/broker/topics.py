"""Keeps the hub's topics in place while the broker goes away and comes back.

The hub creates its topics at start-up. A broker that comes back *empty* (a cluster
re-created at the same address, a broker without persistent storage) has none of them, and
no Kafka client re-creates a topic by itself: producers wait for metadata that never comes,
group consumers get no partitions, the detector election has nothing to elect on.

:class:`TopicKeeper` asks the broker every ``interval_s`` which topics exist and creates the
missing ones with the hub's own partitions and settings. It also tells a state change in
the log once — ``bus.unreachable`` when the broker stops answering, ``bus.reachable`` (info) when
it answers again, ``bus.topics_recreated`` naming what it re-created — never once per retry.
What the topics held is the business of their owners: the detector re-seeds its checkpoint,
the subscription store its subscriptions, lanes start over on a partition that was reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from hub.bus import TopicSpec, connection_options, create_missing
from hub.config import KafkaConfig

log = structlog.get_logger(__name__)

__all__ = ["TopicKeeper"]


class TopicKeeper:
    """``async with TopicKeeper(kafka, servers, topics) as keeper``: re-creates any of
    ``topics`` that goes missing, until closed."""

    def __init__(self, config: KafkaConfig, bootstrap_servers: str,
                 topics: Iterable[TopicSpec], *, interval_s: float = 2.0,
                 timeout_s: float = 10.0) -> None:
        self._config = config
        self._bootstrap = bootstrap_servers
        self.topics = list(topics)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None
        self._task: asyncio.Task[None] | None = None
        self.reachable = True  # the hub just created its topics on it
        self.down_since: float | None = None
        self.recreated = 0  # how many times topics had to be created again

    async def __aenter__(self) -> TopicKeeper:
        self._task = asyncio.create_task(self._watch(), name="topic-keeper")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close_admin()

    async def _watch(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._interval_s)  # the check's period

    async def check(self) -> list[str]:
        """One round: note whether the broker answers; create what is missing (returned)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._admin is None:
                    self._admin = AIOKafkaAdminClient(
                        **connection_options(self._config, self._bootstrap))
                    await self._admin.start()
                created = await create_missing(self._admin, self._config, self.topics,
                                               set(await self._admin.list_topics()))
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._close_admin()  # a fresh client next round: no stale connections
            if self.reachable:
                self.reachable, self.down_since = False, time.monotonic()
                log.warning("bus.unreachable", servers=self._bootstrap,
                            error=type(exc).__name__,
                            action="retrying; missing topics are created when it is back")
            return []
        if not self.reachable:
            down_s = time.monotonic() - (self.down_since or time.monotonic())
            self.reachable, self.down_since = True, None
            log.info("bus.reachable", servers=self._bootstrap, down_s=round(down_s, 1))
        if created:
            self.recreated += 1
            log.warning("bus.topics_recreated", topics=created,
                        action="the broker had lost them; their owners re-seed what they can")
        return created

    async def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(KafkaError, OSError):
                await admin.close()
