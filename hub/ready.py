"""The one line that tells a person the hub is ready — and, just as clearly, why it is not.

Ready means: the detector (if this process runs one) finished a scan, or stands by while
another detector leads; every enabled subscription has a running lane that owns its partitions.
The ready line goes to standard output, once; while the hub is not ready, each new reason
goes to standard error, once, with what to do about it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from hub.config import HubConfig
from hub.redaction import redact_url

if TYPE_CHECKING:
    from hub.admin.server import AdminServer
    from hub.broker.journal import Journal
    from hub.deliver.worker import DeliveryWorker
    from hub.detect.detector import Detector
    from hub.elect.election import LeaderElection

__all__ = ["NotReady", "ReadyHost", "not_ready", "ready_line", "report_readiness"]


@dataclass(frozen=True)
class NotReady:
    reason: str
    problem: bool = False
    """True when it will not pass by waiting alone: something needs looking at."""


class ReadyHost(Protocol):
    """What readiness needs from :class:`hub.app.Hub`."""

    @property
    def config(self) -> HubConfig: ...

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def detector(self) -> Detector | None: ...

    @property
    def worker(self) -> DeliveryWorker | None: ...

    @property
    def election(self) -> LeaderElection | None: ...

    @property
    def admin(self) -> AdminServer | None: ...

    @property
    def journal(self) -> Journal | None: ...


def not_ready(host: ReadyHost) -> NotReady | None:
    """Why ``host`` is not ready yet (with what to do), or None when it is."""
    detector, worker, election = host.detector, host.worker, host.election
    standby = election is not None and not election.is_leader
    if detector is not None and election is not None and standby \
            and not election.leader_elsewhere:
        return NotReady("waiting for the detector election to settle")
    if detector is not None and not standby:
        if detector.last_success_monotonic is None:
            error = detector.last_error
            if not detector.consecutive_failures or not error:
                return NotReady("waiting for the first scan of the registry")
            mlflow = host.config.mlflow
            uri = redact_url(mlflow.registry)
            setting = ("mlflow.registry_uri (or MLFLOW_REGISTRY_URI)" if mlflow.registry_uri
                       else "mlflow.tracking_uri (or MLFLOW_TRACKING_URI)")
            return NotReady(f"cannot read the registry {uri}: {error} — check {setting} "
                            f"and that the registry is reachable; retrying", problem=True)
    if worker is not None:
        if not worker.running:
            return NotReady("the delivery worker is starting")
        missing = worker.missing_lanes()
        if missing:
            return NotReady(f"no lane for subscription(s) {', '.join(missing)}: their handler "
                            f"could not be built (see the log); fix the subscription or "
                            f"disable it", problem=True)
        waiting = worker.waiting_lanes()
        if waiting:
            return NotReady(f"waiting for Kafka to assign partitions to {', '.join(waiting)}")
    return None


def ready_line(host: ReadyHost, elapsed_s: float) -> str:
    """``registry-hub ready in 4.2 s: watching ... · events → ... · subscriptions ... · admin``."""
    cfg = host.config
    parts = []
    if host.detector is not None:
        state = getattr(host.detector, "state", None)
        models = f" ({len(state.snapshot)} models)" if state is not None else " (standby)"
        parts.append(f"watching {redact_url(cfg.mlflow.registry)}{models}")
    if host.journal is not None:
        kept = Path(host.journal.directory).resolve().parent
        broker = f"the embedded broker, kept in {kept}"
    else:
        broker = host.bootstrap_servers
    parts.append(f"events → topic {cfg.kafka.topic} on {broker}")
    if host.worker is not None:
        names = sorted(host.worker.lanes)
        parts.append(f"{len(names)} subscription(s): {', '.join(names) or 'none'}")
    if host.admin is not None:
        parts.append(f"admin {host.admin.url} ({host.admin.token.describe()})")
    return f"registry-hub ready in {elapsed_s:.1f} s: " + " · ".join(parts)


async def report_readiness(host: ReadyHost, *, started: float,
                           out: TextIO | None = None, err: TextIO | None = None,
                           interval_s: float = 0.1, patience_s: float = 15.0,
                           clock: Callable[[], float] = time.monotonic) -> None:
    """Print the ready line once the hub is ready. Until then, print each new problem at
    once, and a reason that only needs time once it took longer than ``patience_s``."""
    out, err = out or sys.stdout, err or sys.stderr
    said: set[str] = set()
    while (state := not_ready(host)) is not None:
        due = state.problem or clock() - started > patience_s
        if due and state.reason not in said:
            print(f"registry-hub not ready: {state.reason}", file=err, flush=True)
            said.add(state.reason)
        await asyncio.sleep(interval_s)
    print(ready_line(host, clock() - started), file=out, flush=True)
