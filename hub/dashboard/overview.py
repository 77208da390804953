"""``/``: what the hub watches and how it is doing — registry, topic, leader, push path, last
scan; events per minute and delivery success per subscription over the last hour; dead
letters waiting."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from aiohttp import web

from hub.admin.host import AdminHost
from hub.dashboard.charts import bars, per_minute, success_per_minute
from hub.dashboard.context import Pages, now_ms
from hub.deliver.jobs import Attempt
from hub.deliver.replay import dead_letters
from hub.outcome import Status
from hub.redaction import redact_url


def leader(host: AdminHost) -> tuple[str, bool]:
    """Who detects, said for people, and whether that is a healthy state."""
    if host.detector is None:
        return "no detector in this process (deliver role only)", True
    election = host.election
    if election is None:
        return "this process (single detector, no election)", True
    if election.is_leader:
        since = election.since
        return f"this process, elected{f' at {since:%H:%M:%S}' if since else ''}", True
    if election.leader_elsewhere:
        return "another detector (this one stands by)", True
    return "nobody: the election has not settled", False


def push_path(host: AdminHost) -> tuple[str, bool]:
    """MLflow's pushed webhooks: on or off, and how many events they brought."""
    if host.config.ingest.mlflow_secret is None:
        return "off (set ingest.mlflow_secret to accept MLflow's webhooks); polling only", True
    if host.detector is None:
        return "on, but no detector here: pushes wait for a detecting hub's poll", False
    pushed = sum(s.value for metric in host.metrics.events_detected.collect()
                 for s in metric.samples
                 if s.name.endswith("_total") and s.labels.get("path") == "push")
    return f"on at /ingest/mlflow · {pushed:.0f} event(s) pushed since start", True


def last_scan(host: AdminHost) -> dict[str, Any]:
    detector = host.detector
    if detector is None:
        return {"text": "no detector in this process", "ok": True, "error": None}
    if detector.last_success_monotonic is None:
        return {"text": "no successful scan yet", "ok": False, "error": detector.last_error}
    ago = time.monotonic() - detector.last_success_monotonic
    took = detector.last_scan_s or 0.0
    ok = detector.consecutive_failures == 0
    return {"text": f"{ago:.0f} s ago, took {took * 1000:.0f} ms", "ok": ok,
            "error": detector.last_error if not ok else None}


def delivery_rows(names: list[str], attempts: list[Attempt], now: int) -> list[dict[str, Any]]:
    """Per subscription: last hour's attempts, success share, and a chart of it."""
    by_sub: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for a in attempts:
        by_sub[a.subscription].append((_ms(a.at), a.status == Status.DELIVERED.value))
    rows = []
    for name in sorted(set(names) | set(by_sub)):
        outcomes = by_sub.get(name, [])
        good = sum(ok for _, ok in outcomes)
        rows.append({"name": name, "attempts": len(outcomes),
                     "rate": good / len(outcomes) if outcomes else None,
                     "chart": bars(success_per_minute(outcomes, now), peak=1.0)})
    return rows


def _ms(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return 0


class Overview:
    def __init__(self, pages: Pages) -> None:
        self.p = pages

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self.p.sessions.page(self.show))

    async def show(self, request: web.Request) -> web.Response:
        host, cfg = self.p.host, self.p.host.config
        now = now_ms()
        event_times, attempts = await self.p.reads.last_hour(now)
        letters = await dead_letters(cfg, host.bootstrap_servers, state="dead")
        waiting = Counter(s.subscription for s in letters)
        who, leader_ok = leader(host)
        push, push_ok = push_path(host)
        events_chart = bars(per_minute(event_times, now))
        return self.p.render.page(
            request, "overview.html", title="Overview",
            registry=redact_url(cfg.mlflow.registry_uri or cfg.mlflow.tracking_uri),
            topic=cfg.kafka.topic, broker=cfg.kafka.bootstrap_servers,
            leader=who, leader_ok=leader_ok, push=push, push_ok=push_ok,
            scan=last_scan(host), events_chart=events_chart,
            events_last_hour=len(event_times),
            deliveries=delivery_rows(self.p.subscription_names(), attempts, now),
            waiting=sorted(waiting.items()), waiting_total=sum(waiting.values()))


__all__ = ["Overview", "delivery_rows", "leader", "push_path"]
