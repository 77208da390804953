"""Scale-out of the detector on the real broker: exactly one detector leads. In one process,
a graceful handover is quick and two leaders never overlap; with real processes, a standby
takes over after SIGKILL (resuming from the checkpoint) and a frozen leader is fenced when it
wakes up. Delivery workers sharing a subscription are in test_scale_out_workers.py.

Every process logs JSON to stderr; the tests wait on those lines and on the broker's group
state, with deadlines, never on sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from hub.config import HubConfig
from hub.elect.election import LeaderElection
from hub.elect.lead import lead
from tests.support.kafka_reader import Record, read_topic
from tests.support.procs import DETECTOR_CMD, Proc, Procs, base_env

pytestmark = pytest.mark.timeout(240)

TAKEOVER_BUDGET_S = 20.0  # session timeout + one Tansu rebalance (~4 s) + slack for CI


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
