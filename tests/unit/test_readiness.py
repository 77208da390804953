"""/readyz and the ready line say "not ready" whenever events would not flow: no detector
leads anywhere, the detector has not completed a round for a few poll intervals, a lane owns
no partition. Checked against stand-ins of the hub's parts (no broker needed)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from hub.admin.server import AdminServer
from hub.config import HubConfig
from hub.ready import not_ready

CONFIG = HubConfig(kafka={"bootstrap_servers": "127.0.0.1:9", "topic": "t"},
                   detector={"poll_interval_s": 1},
                   admin={"port": 0, "token": "readiness-token-0123456789"},
                   subscriptions=[{"name": "hook", "handler": "console"}])


def detector(succeeded_s_ago: float | None, error: str | None = None) -> SimpleNamespace:
    last = None if succeeded_s_ago is None else time.monotonic() - succeeded_s_ago
    return SimpleNamespace(last_success_monotonic=last, consecutive_failures=int(bool(error)),
                           last_error=error, last_scan_s=0.1, state=None)


def election(*, leads: bool, elsewhere: bool) -> SimpleNamespace:
    return SimpleNamespace(is_leader=leads, leader_elsewhere=elsewhere, topic="t.leader")


def worker(*, consuming: bool) -> SimpleNamespace:
    assigned = asyncio.Event()
    if consuming:
        assigned.set()
    return SimpleNamespace(subscriptions={s.name: s for s in CONFIG.subscriptions},
                           lanes={"hook": SimpleNamespace(assigned=assigned)}, running=True)


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
    check = AdminServer(hub(worker=worker(consuming=False)))._worker_check()  # type: ignore[arg-type]
    assert not check["ok"] and "not consuming: hook" in check["detail"], check
    check = AdminServer(hub(worker=worker(consuming=True)))._worker_check()  # type: ignore[arg-type]
    assert check["ok"], check
