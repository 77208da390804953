"""The broker goes away and comes back (with its data, or empty) while registry changes stream:
nothing is lost.

``python -m hub run`` as a real process, with leader election on (the default on a
non-embedded broker), a webhook subscription to a real receiver, and a Tansu broker on a
fixed port that the test first freezes (SIGSTOP: it comes back with its data), then kills
and restarts. Tansu keeps its data in memory, so the broker that comes back from the kill
is empty: no topics, no committed offsets, no checkpoint, no election.

* every change made before, during and after the outage reaches the receiver (duplicates
  only with the same ``webhook-id``);
* ``/readyz`` is 503 during the outage and 200 again after it;
* the hub says so once per state change, not once per retry;
* SIGTERM during an outage stops the hub within ``grace_period_s`` + a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support.broker import Broker, running_broker
from tests.support.hub_process import STARTUP_TIMEOUT_S, HubProcess, clean_env
from tests.support.receiver import SECRET, Hit, Receiver, running_receiver

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
ADMIN_TOKEN = "broker-loss-" + uuid.uuid4().hex
GRACE_S = 3.0
STOP_SLACK_S = 5.0  # "grace_period_s + a few seconds"
OUTAGE_CHANGES = 40  # at least this many changes while the broker is down (~10 s)
RECOVERY_TIMEOUT_S = 120.0
_LEVEL = re.compile(r"\[(warning|error|critical)\s*\]|^(WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


@dataclass
class Changes:
    """Registry changes that each yield exactly one event, whenever the detector scans: a
    new model each (a tag set on a model created since the last scan would merge into its
    ``registered_model.created``)."""

    client: MlflowClient
    prefix: str
    made: dict[str, list[str]] = field(default_factory=dict)

    async def make(self, phase: str) -> None:
        name = f"{self.prefix}-{phase}-{len(self.made.get(phase, []))}"
        await asyncio.to_thread(self.client.create_registered_model, name)
        self.made.setdefault(phase, []).append(name)

    def all(self) -> set[str]:
        return {name for names in self.made.values() for name in names}


def _model_of(hit: Hit) -> str:
    assert hit.body["type"] == "registered_model.created", hit.body
    return str(hit.body["data"]["model_name"])


def _missing(receiver: Receiver, changes: Changes) -> set[str]:
    return changes.all() - {_model_of(h) for h in receiver.delivered("/ok")}


async def _readyz(admin: str) -> tuple[int, dict[str, Any]]:
    def get() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{admin}/readyz", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError as exc:
            return 0, {"error": repr(exc)}

    return await asyncio.to_thread(get)


async def _poll(what: str, check: Callable[[], Any], timeout_s: float,
                hub: HubProcess, every_s: float = 0.25, detail: Callable[[], str] = str) -> Any:
    """Await ``check()`` (an async predicate) until it is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what} {detail()}\n"
                        f"{hub.dump()}")
        if hub.proc.poll() is not None:
            pytest.fail(f"the hub exited while waiting for {what}\n{hub.dump()}")
        await asyncio.sleep(every_s)  # the pace of a polled condition, not a wait for time


def _warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if _LEVEL.search(line)]


@dataclass
class Outage:
    """One broker outage while changes stream, as the test saw it."""

    name: str
    outage_s: float = 0.0
    ready_after_s: float = 0.0  # from the broker's return to /readyz 200
    recovered_s: float = 0.0  # from the broker's return to every change at the receiver
    readyz_503: list[str] = field(default_factory=list)  # the checks that failed
    warnings: list[str] = field(default_factory=list)  # hub lines at WARNING+ meanwhile

    def figures(self, changes: Changes) -> dict[str, Any]:
        return {"outage_s": self.outage_s, "ready_after_s": self.ready_after_s,
                "recovered_s": self.recovered_s, "readyz_503": self.readyz_503,
                "warnings": len(self.warnings),
                "made": {p: len(n) for p, n in changes.made.items()
                         if p.startswith(self.name)}}


async def _outage(name: str, begin: Callable[[], None], end: Callable[[], None],
                  hub: HubProcess, admin_url: str, changes: Changes,
                  receiver: Receiver) -> Outage:
    """``begin()`` the outage while changes keep coming, until /readyz says 503 and the
    leadership is lost; ``end()`` it; keep changing until /readyz is 200 again; then every
    change made so far must reach the receiver."""
    seen = Outage(name)
    lost_before = _count(hub, "leader.lost")
    begin()
    began_at = time.monotonic()
    first_line = len(hub.lines("stderr"))

    async def observed() -> bool:
        await changes.make(f"{name}-during")
        status, body = await _readyz(admin_url)
        if status == 503 and not seen.readyz_503:
            seen.readyz_503 = body["failed"]
        return (bool(seen.readyz_503) and len(changes.made[f"{name}-during"]) >= OUTAGE_CHANGES
                and _count(hub, "leader.lost") > lost_before)

    await _poll(f"/readyz 503 and a lost leadership ({name})", observed, 60, hub)
    end()
    back_at = time.monotonic()
    seen.outage_s = round(back_at - began_at, 1)
    seen.warnings = _warnings(hub.lines("stderr")[first_line:])

    async def ready_again() -> bool:
        await changes.make(f"{name}-after")
        return (await _readyz(admin_url))[0] == 200

    await _poll(f"/readyz 200 after the outage ({name})", ready_again, RECOVERY_TIMEOUT_S,
                hub)
    seen.ready_after_s = round(time.monotonic() - back_at, 1)
    for _ in range(5):
        await changes.make(f"{name}-after")

    async def all_delivered() -> bool:
        return not _missing(receiver, changes)

    await _poll(f"every change at the receiver ({name})", all_delivered, RECOVERY_TIMEOUT_S,
                hub, detail=lambda: f"missing: {sorted(_missing(receiver, changes))}")
    seen.recovered_s = round(time.monotonic() - back_at, 1)
    return seen


async def test_broker_lost_and_back_empty_loses_no_change(
    tmp_path: Path, broker: Broker, start_hub: Callable[..., HubProcess],
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    changes = Changes(client, f"loss-{uuid.uuid4().hex[:6]}")

    async with running_receiver() as receiver:
        config = tmp_path / "hub.yaml"
        config.write_text(yaml.safe_dump({
            "kafka": {"bootstrap_servers": broker.bootstrap, "topic": changes.prefix,
                      "partitions": 3, "session_timeout_ms": 3000,
                      "heartbeat_interval_ms": 1000},
            "detector": {"poll_interval_s": 0.5},
            "admin": {"port": 0, "token": ADMIN_TOKEN},
            "delivery": {"allowed_networks": ["127.0.0.0/8"], "grace_period_s": GRACE_S,
                         "retry_schedule_s": [0.5, 1, 1, 2, 2, 2]},
            "subscriptions": [{"name": "hook", "handler": "webhook",
                               "url": f"{receiver.url}/ok", "secret": SECRET}],
        }))
        hub = start_hub(["run", "--config", str(config)], tmp_path,
                        clean_env(MLFLOW_TRACKING_URI=uri))
        ready = await asyncio.to_thread(
            hub.wait_line, "stdout", lambda ln: ln.startswith("registry-hub ready"),
            "the ready line", STARTUP_TIMEOUT_S)
        admin = re.search(r"admin (http://\S+)", ready)
        assert admin, ready
        admin_url = admin.group(1)

        async def baseline_taken() -> bool:
            return _count(hub, "detector.baseline") > 0

        await _poll("the elected detector's baseline", baseline_taken, 30, hub)

        # before: delivered as usual
        for _ in range(10):
            await changes.make("before")

        async def before_delivered() -> bool:
            return not _missing(receiver, changes)

        await _poll("the changes made before the outages", before_delivered, 60, hub,
                    detail=lambda: f"missing: {sorted(_missing(receiver, changes))}")

        # a broker that stops answering and comes back with its data (a partition, a pause)
        frozen = await _outage("frozen", broker.freeze, broker.thaw, hub, admin_url, changes,
                               receiver)
        # a broker that dies and comes back empty (memory storage; a re-created cluster)
        emptied = await _outage("emptied", broker.kill, broker.start, hub, admin_url, changes,
                                receiver)

        hits = receiver.delivered("/ok")
        assert all(h.verified for h in hits)
        ids = Counter(h.headers["webhook-id"] for h in hits)
        by_change: dict[str, set[str]] = {}
        for h in hits:
            by_change.setdefault(_model_of(h), set()).add(h.headers["webhook-id"])
        assert all(len(i) == 1 for i in by_change.values()), \
            f"a change was delivered under two ids: {by_change}"
        figures = {
            "made": {phase: len(names) for phase, names in changes.made.items()},
            "delivered": len(hits), "distinct": len(ids),
            "duplicates": sum(n - 1 for n in ids.values()),
            "frozen": frozen.figures(changes), "emptied": emptied.figures(changes),
        }
        print("\nbroker loss figures:", json.dumps(figures))
        for outage in (frozen, emptied):
            print(f"--- WARNING+ lines during the {outage.name} outage\n"
                  + "\n".join(outage.warnings))
            # one line per state change (broker lost, leadership lost, ...), not per retry
            assert len(outage.warnings) <= 20, "\n".join(outage.warnings)

        # SIGTERM during an outage stops the hub within the grace period + a few seconds
        broker.kill()

        async def not_ready() -> bool:
            return (await _readyz(admin_url))[0] == 503

        await _poll("/readyz 503 in the last outage", not_ready, 30, hub)
        started = time.monotonic()
        code = hub.terminate(timeout_s=GRACE_S + STOP_SLACK_S + 1)  # + the process's exit
        stopped_s = time.monotonic() - started
        print(f"stopped in {stopped_s:.1f} s during an outage (exit code {code})")
        (tmp_path / "hub.log").write_text("\n".join(hub.lines("stderr")))
        # orderly (0), or cut short at the deadline by the CLI (1, and it says so)
        assert code == 0 or (code == 1 and _count(hub, "hub.stop_cut_short")), hub.dump()


def _count(hub: HubProcess, event: str) -> int:
    pattern = re.compile(rf"\]\s+{re.escape(event)}(\s|$)")
    return sum(1 for line in hub.lines("stderr") if pattern.search(line))
