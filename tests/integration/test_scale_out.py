"""Scale-out on the real broker, with real processes: exactly one detector leads (a standby
takes over after SIGKILL, a frozen leader is fenced), and delivery workers share a
subscription's partitions (each event once; after a SIGKILL, at least once, same ids).

Every process logs JSON to stderr; the tests wait on those lines and on the broker's group
state, with deadlines, never on sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from mlflow.tracking import MlflowClient

from hub.bus import Publisher
from hub.config import HubConfig
from hub.deliver.worker import ensure_hub_topics
from hub.elect.election import LeaderElection
from hub.elect.lead import lead
from hub.events import Event
from tests.support.kafka_reader import Record, read_topic
from tests.support.receiver import SECRET, Receiver, running_receiver

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
DETECTOR_CMD = [sys.executable, "-m", "hub", "detect"]
WORKER_CMD = [sys.executable, "-m", "hub", "deliver"]
SESSION_TIMEOUT_MS = 2000
TAKEOVER_BUDGET_S = 20.0  # session timeout + one Tansu rebalance (~4 s) + slack for CI


# --- processes -------------------------------------------------------------------------

class Proc:
    """A child process whose JSON log lines (stderr) are collected as they come."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process,
                 changed: asyncio.Condition) -> None:
        self.name = name
        self.proc = proc
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = changed  # shared by the test's processes: wait on several at once
        self._eof = False
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            text = line.decode(errors="replace").rstrip("\n")
            async with self._changed:
                self.raw.append(text)
                try:
                    entry = json.loads(text)
                except ValueError:
                    entry = None
                if isinstance(entry, dict):
                    self.logs.append(entry)
                self._changed.notify_all()
        async with self._changed:
            self._eof = True
            self._changed.notify_all()

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name
                and all(e.get(k) == v for k, v in fields.items())]

    async def wait_for(self, name: str, count: int = 1, timeout_s: float = 60,
                       **fields: Any) -> dict[str, Any]:
        """The ``count``-th log line ``name`` (with ``fields``); fails at the deadline or
        when the process exits first."""
        def ready() -> bool:
            return len(self.events(name, **fields)) >= count or self._eof

        try:
            async with asyncio.timeout(timeout_s):
                async with self._changed:
                    await self._changed.wait_for(ready)
        except TimeoutError:
            pass
        found = self.events(name, **fields)
        if len(found) < count:
            pytest.fail(f"{self.name}: no {name} #{count} {fields or ''} within {timeout_s:g} s"
                        f" (exit code {self.proc.returncode})\n{self.dump()}")
        return found[count - 1]

    def dump(self, lines: int = 60) -> str:
        return f"--- {self.name} stderr (last {lines})\n" + "\n".join(self.raw[-lines:])

    def send(self, sig: signal.Signals) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def kill(self) -> None:
        self.send(signal.SIGKILL)
        await self.proc.wait()
        await asyncio.wait({self._pump}, timeout=5)

    async def terminate(self, timeout_s: float = 20) -> int:
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await self.kill()
            pytest.fail(f"{self.name} ignored SIGTERM for {timeout_s:g} s\n{self.dump()}")


class Procs:
    """Starts the test's processes; :meth:`until` waits for a predicate over their logs."""

    def __init__(self) -> None:
        self.started: list[Proc] = []
        self.changed = asyncio.Condition()

    async def __call__(self, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        self.started.append(Proc(name, proc, self.changed))
        return self.started[-1]

    async def until(self, predicate: Callable[[], bool], what: str,
                    timeout_s: float = 60) -> None:
        try:
            async with asyncio.timeout(timeout_s), self.changed:
                await self.changed.wait_for(predicate)
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}\n"
                        + "\n".join(p.dump(20) for p in self.started))


@pytest.fixture
async def start_proc() -> AsyncIterator[Procs]:
    procs = Procs()
    yield procs
    for proc in procs.started:
        await proc.kill()


def base_env(bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    """The caller's environment minus anything configuring the hub or MLflow, plus a
    config for the session broker, a topic and consumer groups of this test only."""
    drop = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k not in drop}
    return env | {
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "HUB_KAFKA__TOPIC": topic,
        "HUB_KAFKA__PARTITIONS": "6",
        "HUB_KAFKA__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "HUB_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "HUB_DELIVERY__GROUP_ID_PREFIX": topic,
        "HUB_ADMIN__ENABLED": "false",
        "HUB_LOG_FORMAT": "json",
    } | extra


def unique(records: list[Record]) -> None:
    ids = Counter(r.headers["ce_id"] for r in records)
    changes = Counter((r.type, r.key, r.data.get("version")) for r in records)
    assert all(n == 1 for n in ids.values()), f"duplicate event ids: {ids}"
    assert all(n == 1 for n in changes.values()), f"duplicate changes: {changes}"


# --- leader election in one process: the invariant, and a graceful handover -------------

class ActivityLog:
    """A stand-in detector for :func:`lead`: records when its loop runs."""

    def __init__(self, name: str, spans: list[tuple[str, float, float]],
                 changed: asyncio.Condition) -> None:
        self.name = name
        self.state: object = None
        self.runs = 0
        self.running = False
        self._spans = spans
        self._changed = changed
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._set(running=True)
        try:
            await self._stopping.wait()
        finally:
            self._spans.append((self.name, started, loop.time()))
            await self._set(running=False)

    async def _set(self, *, running: bool) -> None:
        async with self._changed:
            self.running = running
            self.runs += running
            self._changed.notify_all()

    def stop(self) -> None:
        self._stopping.set()

    def resume(self) -> None:
        self._stopping.clear()

    def forget(self) -> None:
        self.state = None


@pytest.mark.slow
async def test_graceful_handover_is_quick_and_leaders_never_overlap(
        kafka_bootstrap: str, topic_name: str) -> None:
    session_s = 8.0  # a graceful handover must not wait for it (Tansu rebalances in ~4 s)
    config = HubConfig(kafka={"bootstrap_servers": kafka_bootstrap, "topic": topic_name,
                              "session_timeout_ms": int(session_s * 1000),
                              "heartbeat_interval_ms": 500},
                       delivery={"group_id_prefix": topic_name}, subscriptions=[])
    spans: list[tuple[str, float, float]] = []
    changed = asyncio.Condition()
    a, b = ActivityLog("a", spans, changed), ActivityLog("b", spans, changed)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    async def until(predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(30), changed:
            await changed.wait_for(predicate)

    async with LeaderElection.for_hub(config, kafka_bootstrap, identity="a") as election_a:
        lead_a = asyncio.create_task(lead(election_a, a, stop_a))
        await until(lambda: a.running)
        async with LeaderElection.for_hub(config, kafka_bootstrap, identity="b") as election_b:
            lead_b = asyncio.create_task(lead(election_b, b, stop_b))
            await until(lambda: a.runs == 2 and a.running)  # b's join rebalanced; a kept it
            assert not b.running and not election_b.is_leader

            stop_a.set()  # graceful: a stops detecting, then leaves the group
            await asyncio.wait_for(lead_a, 30)
            await election_a.aclose()
            left = loop.time()
            await until(lambda: b.running)
            took = loop.time() - left
            stop_b.set()
            await asyncio.wait_for(lead_b, 30)
    assert took < session_s, f"the standby waited {took:.1f} s: the leader did not leave"
    assert [name for name, _, _ in spans] == ["a", "a", "b"]
    ordered = sorted(spans, key=lambda span: span[1])
    for (_, _, end), (_, start, _) in itertools.pairwise(ordered):
        assert end <= start, f"two detectors were active at once: {ordered}"


# --- two detectors -----------------------------------------------------------------------

def detector_env(bootstrap: str, topic: str, tracking_uri: str) -> dict[str, str]:
    return base_env(
        bootstrap, topic,
        HUB_MLFLOW__TRACKING_URI=tracking_uri,
        HUB_MLFLOW__REQUEST_RETRIES="0",
        HUB_MLFLOW__SCAN_TIMEOUT_S="10",
        HUB_DETECTOR__POLL_INTERVAL_S="0.2",
        HUB_DETECTOR__BACKOFF_INITIAL_S="0.1",
        HUB_DETECTOR__BACKOFF_MAX_S="0.5",
        HUB_SUBSCRIPTIONS="[]",
    )


def assert_idle_until_leading(proc: Proc) -> None:
    """A standby neither scans, nor reads the checkpoint, nor publishes before it leads."""
    names = [e.get("event", "") for e in proc.logs]
    leading = names.index("leader.acquired") if "leader.acquired" in names else len(names)
    early = [n for n in names[:leading] if n.startswith(("detector.", "checkpoint."))]
    assert early == [], f"{proc.name} acted while standing by: {early}\n{proc.dump()}"


async def leader_and_standby(start_proc: Procs, env: dict[str, str]) -> tuple[Proc, Proc]:
    """Start A, let it lead and take its baseline, then start B: B stands by, A leads on."""
    a = await start_proc("detector-a", DETECTOR_CMD, env)
    await a.wait_for("leader.acquired")
    await a.wait_for("detector.baseline")
    b = await start_proc("detector-b", DETECTOR_CMD, env)
    await b.wait_for("leader.standby")
    await a.wait_for("leader.acquired", count=2)  # B's join made the group rebalance
    assert b.events("leader.acquired") == [], b.dump()
    return a, b


@pytest.mark.slow
async def test_one_detector_leads_and_the_standby_takes_over_after_sigkill(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any,
        start_proc: Procs) -> None:
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    client.create_registered_model("existing")  # in the baseline: never emitted
    a, b = await leader_and_standby(
        start_proc, detector_env(kafka_bootstrap, topic_name, server.url))

    client.create_registered_model("one")
    records = await read_topic(kafka_bootstrap, topic_name, at_least=1, settle_s=1.0)
    assert [(r.key, r.type) for r in records] == [("one", "registered_model.created")]
    assert b.events("detector.published") == [] and b.events("detector.baseline") == []

    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    await a.kill()
    client.create_registered_model("two")  # while nobody leads
    await b.wait_for("leader.acquired", timeout_s=TAKEOVER_BUDGET_S + 10)
    took = loop.time() - killed_at
    assert took < TAKEOVER_BUDGET_S, f"takeover took {took:.1f} s\n{b.dump()}"
    client.create_model_version("one", source="s3://bucket/one/1")

    records = await read_topic(kafka_bootstrap, topic_name, at_least=3, settle_s=1.5)
    assert sorted((r.key, r.type) for r in records) == [
        ("one", "model_version.created"), ("one", "registered_model.created"),
        ("two", "registered_model.created")], b.dump()
    unique(records)
    assert b.events("detector.baseline") == [], "the standby must resume from the checkpoint"
    assert b.events("checkpoint.loaded"), b.dump()
    assert_idle_until_leading(b)
    assert await b.terminate() == 0, b.dump()


@pytest.mark.slow
async def test_a_frozen_leader_is_fenced_when_it_wakes_up(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any,
        start_proc: Procs) -> None:
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    a, b = await leader_and_standby(
        start_proc, detector_env(kafka_bootstrap, topic_name, server.url))

    a.send(signal.SIGSTOP)  # a long GC pause, a stalled VM: alive but silent
    await b.wait_for("leader.acquired", timeout_s=TAKEOVER_BUDGET_S + 10)
    client.create_registered_model("while-frozen")
    await read_topic(kafka_bootstrap, topic_name, at_least=1)
    published_before = len(a.events("detector.published"))

    a.send(signal.SIGCONT)  # A's in-memory snapshot lacks "while-frozen": it must not act
    lost = await a.wait_for("leader.lost", count=len(a.events("leader.lost")) + 1)
    assert lost["reason"] in ("lease_expired", "rebalance"), lost
    await a.wait_for("leader.standby")  # rejoined as a standby
    await b.wait_for("leader.acquired", count=2)  # A's rejoin rebalanced; B kept the lead
    client.create_registered_model("after")

    records = await read_topic(kafka_bootstrap, topic_name, at_least=2, settle_s=1.5)
    assert sorted((r.key, r.type) for r in records) == [
        ("after", "registered_model.created"), ("while-frozen", "registered_model.created")]
    unique(records)
    assert len(a.events("detector.published")) == published_before, a.dump()


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
