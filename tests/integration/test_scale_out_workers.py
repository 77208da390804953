"""Scale-out of delivery on the real broker, with real processes: two delivery workers share
a subscription's partitions (each event once; after a SIGKILL, at least once, same ids).
The detector's leader election is in test_scale_out_leaders.py.

Every process logs JSON to stderr; the tests wait on those lines and on the broker's group
state, with deadlines, never on sleeps.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from hub.bus import Publisher
from hub.config import HubConfig
from hub.deliver.worker import ensure_hub_topics
from hub.events import Event
from tests.support.kafka_reader import read_topic
from tests.support.procs import WORKER_CMD, Proc, Procs, base_env
from tests.support.receiver import SECRET, Receiver, running_receiver

pytestmark = pytest.mark.timeout(240)


# --- two delivery workers ----------------------------------------------------------------
# Both workers run the same subscription ("hook", one consumer group) but post to
# ``/a/...`` or ``/b/...`` (their handler options differ, their group does not), so the
# receiver knows which worker made each request.

class Gate:
    """Holds requests under ``path prefix`` once that prefix's budget is used up, until
    :meth:`open`; other paths pass."""

    def __init__(self, budgets: dict[str, int] | None = None) -> None:
        self.budgets = dict(budgets or {})
        self.passed: Counter[str] = Counter()
        self.held: list[tuple[str, str]] = []  # (path, webhook-id)
        self.changed = asyncio.Condition()
        self._open = asyncio.Event()

    async def enter(self, path: str, webhook_id: str) -> None:
        prefix = next((p for p in self.budgets if path.startswith(p)), None)
        if prefix is None or self._open.is_set():
            return
        async with self.changed:
            if self.passed[prefix] < self.budgets[prefix]:
                self.passed[prefix] += 1
                self.changed.notify_all()
                return
            self.held.append((path, webhook_id))
            self.changed.notify_all()
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


@asynccontextmanager
async def gated_receiver(gate: Gate) -> AsyncIterator[Receiver]:
    """The support receiver (signature check, recorded hits) behind ``gate``."""

    async def enter(request: web.Request) -> None:
        await gate.enter(request.path, request.headers.get("webhook-id", ""))

    async with running_receiver(enter) as receiver:
        try:
            yield receiver
        finally:
            gate.open()  # release held requests before the server shuts down


def worker_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / f"worker-{abs(hash(url))}.yaml"
    path.write_text(yaml.safe_dump({"subscriptions": [{
        "name": "hook", "handler": "webhook", "url": url, "secret": SECRET, "timeout_s": 30,
    }]}))
    return path


def worker_env(bootstrap: str, topic: str) -> dict[str, str]:
    return base_env(
        bootstrap, topic,
        HUB_DELIVERY__ALLOWED_NETWORKS='["127.0.0.0/8"]',
        HUB_DELIVERY__START_FROM="earliest",
        HUB_DELIVERY__RETRY_SCHEDULE_S="[0.2, 0.2]",
        HUB_DELIVERY__JITTER="0",
        HUB_DELIVERY__GRACE_PERIOD_S="2",
        HUB_LOG_LEVEL="DEBUG",  # a successful attempt's delivery.attempt line is DEBUG
    )


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """The group's state and member count, as the broker's coordinator sees them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        (described,) = response.groups
        return described[2], len(described[5])
    finally:
        await admin.close()


async def wait_group(bootstrap: str, group: str, members: int, timeout_s: float = 60) -> None:
    """Until the group is Stable with ``members`` members (every member got its partitions)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    seen: tuple[str, int] = ("", 0)
    while seen != ("Stable", members):
        if loop.time() > deadline:
            raise AssertionError(f"group {group} is {seen}, not Stable with {members} members")
        seen = await group_members(bootstrap, group)
        await asyncio.sleep(0.1)  # poll interval of the predicate


async def two_workers(start_proc: Procs, tmp_path: Path, bootstrap: str, topic: str,
                      receiver_url: str) -> tuple[Proc, Proc]:
    env = worker_env(bootstrap, topic)
    config = HubConfig(kafka={"bootstrap_servers": bootstrap, "topic": topic, "partitions": 6},
                       subscriptions=[])
    await ensure_hub_topics(config, bootstrap)  # both start on the same, existing topics
    procs = []
    for name in ("a", "b"):
        cmd = [*WORKER_CMD, "--config", str(worker_config(tmp_path, f"{receiver_url}/{name}/"))]
        procs.append(await start_proc(f"worker-{name}", cmd, env))
    for proc in procs:
        await proc.wait_for("delivery.worker_started")
    await wait_group(bootstrap, f"{topic}.hook", members=2)
    return procs[0], procs[1]


def many_events(n: int) -> list[Event]:
    """``n`` events over ``n // 2`` models (two versions each), so every partition gets some."""
    now = datetime.now(UTC)
    return [Event(id=f"evt-{i}", type="model_version.created", model=f"m{i // 2}",
                  version=str(i % 2 + 1), time=now, source="http://mlflow",
                  data={"model_name": f"m{i // 2}", "version": str(i % 2 + 1), "tags": {}})
            for i in range(n)]


async def publish(bootstrap: str, topic: str, events: list[Event]) -> dict[str, int]:
    """Publish; return each event id's partition (read back independently)."""
    config = HubConfig(kafka={"bootstrap_servers": bootstrap, "topic": topic}, subscriptions=[])
    async with Publisher(config.kafka, bootstrap, topic) as publisher:
        await publisher.publish(events)
    records = await read_topic(bootstrap, topic, at_least=len(events))
    return {r.headers["ce_id"]: r.partition for r in records}


def attempted(proc: Proc) -> list[str]:
    return [e["event_id"] for e in proc.events("delivery.attempt", status="delivered")]


def ids_at(receiver: Receiver, prefix: str) -> list[str]:
    return [h.headers["webhook-id"] for h in receiver.delivered(prefix)]


@pytest.mark.slow  # 4 s: the quick tier keeps test_leader_choice and the delivery tests
async def test_two_workers_share_the_partitions_and_deliver_each_event_once(
        kafka_bootstrap: str, topic_name: str, tmp_path: Path, start_proc: Procs) -> None:
    n = 200
    async with gated_receiver(Gate()) as receiver:
        a, b = await two_workers(start_proc, tmp_path, kafka_bootstrap, topic_name, receiver.url)
        events = many_events(n)
        partition_of = await publish(kafka_bootstrap, topic_name, events)
        hits = await receiver.wait_for(n, timeout_s=60)
        with pytest.raises(AssertionError):  # and nothing more arrives
            await receiver.wait_for(n + 1, timeout_s=1.0)

    assert sorted(h.headers["webhook-id"] for h in hits) == sorted(e.id for e in events)
    assert all(h.verified for h in hits)
    by_a, by_b = ids_at(receiver, "/a/"), ids_at(receiver, "/b/")
    assert by_a and by_b, "both workers should have delivered a share"
    parts_a = {partition_of[i] for i in by_a}
    parts_b = {partition_of[i] for i in by_b}
    assert not parts_a & parts_b and len(parts_a | parts_b) == 6, (parts_a, parts_b)
    # each worker's own record of what it delivered agrees
    assert sorted(attempted(a)) == sorted(by_a) and sorted(attempted(b)) == sorted(by_b)


@pytest.mark.slow
async def test_a_killed_worker_s_share_is_delivered_by_the_other_with_the_same_ids(
        kafka_bootstrap: str, topic_name: str, tmp_path: Path, start_proc: Procs) -> None:
    n, budget = 200, 20
    gate = Gate({"/a/": budget})  # A delivers 20, then its requests hang: work in flight
    async with gated_receiver(gate) as receiver:
        a, b = await two_workers(start_proc, tmp_path, kafka_bootstrap, topic_name, receiver.url)
        events = many_events(n)
        partition_of = await publish(kafka_bootstrap, topic_name, events)
        async with asyncio.timeout(60), gate.changed:
            await gate.changed.wait_for(lambda: gate.passed["/a/"] == budget and bool(gate.held))
        await receiver.wait_for(budget, "/a/")
        parts_a = {partition_of[i] for i in ids_at(receiver, "/a/")}
        in_flight = sorted(i for _, i in gate.held)

        await a.kill()
        gate.open()
        expected = {e.id for e in events}
        async with asyncio.timeout(90), receiver.changed:
            await receiver.changed.wait_for(
                lambda: {h.headers["webhook-id"] for h in receiver.hits} >= expected)
        hits = list(receiver.hits)

    assert all(h.verified for h in hits)
    by_change: dict[tuple[str, str], set[str]] = {}
    for h in hits:
        key = (h.body["data"]["model_name"], h.body["data"]["version"])
        by_change.setdefault(key, set()).add(h.headers["webhook-id"])
    assert len(by_change) == n
    assert all(len(ids) == 1 for ids in by_change.values()), \
        "a re-delivered event must carry the same webhook-id"
    taken_over = set(ids_at(receiver, "/b/")) & set(in_flight)
    assert taken_over, f"B re-delivered none of A's in-flight events {in_flight}\n{b.dump()}"
    assert {partition_of[i] for i in ids_at(receiver, "/b/")} >= parts_a
    assert await b.terminate() == 0, b.dump()
