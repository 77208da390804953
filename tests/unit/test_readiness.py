"""/readyz and the ready line say "not ready" whenever events would not flow: no detector
leads anywhere, the detector has not completed a round for a few poll intervals, a lane owns
no partition. The detector and the worker are real (over the in-memory edges of hub.testing, not
started); the election, whose membership needs a broker, is a stand-in."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from hub.admin.server import AdminServer
from hub.config import HubConfig
from hub.deliver.worker import DeliveryWorker
from hub.detect.detector import Detector
from hub.detect.snapshot import Snapshot
from hub.ready import not_ready
from hub.testing import MemoryCheckpoint, MemorySink, StaticScanner

CONFIG = HubConfig(kafka={"bootstrap_servers": "127.0.0.1:9", "topic": "t"},
                   detector={"poll_interval_s": 1},
                   admin={"port": 0, "token": "readiness-token-0123456789"},
                   subscriptions=[{"name": "hook", "handler": "console"}])


def detector(succeeded_s_ago: float | None, error: str | None = None) -> Detector:
    found = Detector(CONFIG.detector, scanner=StaticScanner(Snapshot()), sink=MemorySink(),
                     checkpoint=MemoryCheckpoint(), tracking_uri="http://m")
    found.last_success_monotonic = None if succeeded_s_ago is None \
        else time.monotonic() - succeeded_s_ago
    found.consecutive_failures, found.last_error = int(bool(error)), error
    found.last_scan_s = 0.1
    return found


def election(*, leads: bool, elsewhere: bool) -> SimpleNamespace:
    return SimpleNamespace(is_leader=leads, leader_elsewhere=elsewhere, topic="t.leader")


def worker(*, consuming: bool) -> DeliveryWorker:
    found = DeliveryWorker(CONFIG, "127.0.0.1:9")
    assigned = asyncio.Event()
    if consuming:
        assigned.set()
    found.lanes["hook"] = SimpleNamespace(assigned=assigned)  # type: ignore[assignment]
    found._running = True  # as after start(), which needs a broker
    return found


def hub(**parts: Any) -> SimpleNamespace:
    base: dict[str, Any] = {"config": CONFIG, "bootstrap_servers": "127.0.0.1:9",
                            "detector": None, "worker": None, "election": None, "admin": None,
                            "journal": None}
    return SimpleNamespace(**(base | parts))


def detector_check(host: SimpleNamespace) -> dict[str, Any]:
    return AdminServer(host)._detector_check()  # type: ignore[arg-type]


def test_a_standby_is_ready_only_while_another_detector_leads() -> None:
    standby = hub(detector=detector(None), election=election(leads=False, elsewhere=True))
    assert detector_check(standby)["ok"]
    assert not_ready(standby) is None

    alone = hub(detector=detector(None), election=election(leads=False, elsewhere=False))
    check = detector_check(alone)
    assert not check["ok"] and "no detector leads" in check["detail"], check
    assert "t.leader" in check["detail"]
    reason = not_ready(alone)
    assert reason is not None and "election" in reason.reason


def test_a_detector_with_no_round_for_a_few_poll_intervals_is_not_ready() -> None:
    fresh = hub(detector=detector(2.0), election=election(leads=True, elsewhere=False))
    assert detector_check(fresh)["ok"]
    # poll interval 1 s: stale after max(3 x 1 s, 10 s) (+ twice the last scan's time)
    stale = hub(detector=detector(11.0, error="MLflow at http://m did not answer"),
                election=election(leads=True, elsewhere=False))
    check = detector_check(stale)
    assert not check["ok"] and "MLflow at http://m did not answer" in check["detail"], check


def test_a_lane_that_owns_no_partition_is_not_consuming() -> None:
    idle = hub(worker=worker(consuming=False))
    check = AdminServer(idle)._worker_check()  # type: ignore[arg-type]
    assert not check["ok"] and "not consuming: hook" in check["detail"], check
    reason = not_ready(idle)  # type: ignore[arg-type]
    assert reason is not None and "assign partitions to hook" in reason.reason, reason
    consuming = hub(worker=worker(consuming=True))
    assert AdminServer(consuming)._worker_check()["ok"]  # type: ignore[arg-type]
    assert not_ready(consuming) is None  # type: ignore[arg-type]


def test_an_enabled_subscription_without_a_lane_is_a_problem() -> None:
    broken = worker(consuming=True)
    del broken.lanes["hook"]  # its handler could not be built
    check = AdminServer(hub(worker=broken))._worker_check()  # type: ignore[arg-type]
    assert not check["ok"] and "no lane for hook" in check["detail"], check
    reason = not_ready(hub(worker=broken))  # type: ignore[arg-type]
    assert reason is not None and reason.problem and "hook" in reason.reason


def test_a_registry_that_cannot_be_read_is_a_problem_naming_the_registry_setting() -> None:
    error = "the registry at databricks-uc answered the model search with ..."
    config = CONFIG.model_copy(update={"mlflow": CONFIG.mlflow.model_copy(
        update={"tracking_uri": "databricks", "registry_uri": "databricks-uc"})})
    unread = hub(config=config, detector=detector(None, error=error))
    reason = not_ready(unread)  # type: ignore[arg-type]
    assert reason is not None and reason.problem
    assert reason.reason.startswith(f"cannot read the registry databricks-uc: {error}")
    assert "check mlflow.registry_uri (or MLFLOW_REGISTRY_URI)" in reason.reason
    plain = not_ready(hub(detector=detector(None, error=error)))  # type: ignore[arg-type]
    assert plain is not None and "check mlflow.tracking_uri" in plain.reason
