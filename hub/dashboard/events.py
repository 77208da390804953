"""``/events``: the newest events, filtered by model, type and subscription, refreshed in
place by ``dashboard.js`` polling ``/events/rows``; ``/events/{id}``: one event — payload,
CloudEvent attributes, and every delivery attempt per subscription."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from hub.admin.bodies import ApiError
from hub.dashboard.context import Pages
from hub.dashboard.reads import EventRecord
from hub.deliver.jobs import Attempt
from hub.deliver.routing import matches
from hub.events import EventType
from hub.redaction import mask

LIMIT = 200


def filters(request: web.Request) -> dict[str, str]:
    return {name: request.query.get(name, "").strip()
            for name in ("model", "type", "subscription")}


def attempt_rows(attempts: list[Attempt]) -> dict[str, list[dict[str, Any]]]:
    """Each subscription's attempts, oldest first, with when the next one is due."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        next_at = None
        if a.next_attempt_in_s is not None:
            try:
                next_at = (datetime.fromisoformat(a.at)
                           + timedelta(seconds=a.next_attempt_in_s)).isoformat()
            except ValueError:
                next_at = None
        grouped[a.subscription].append({
            "attempt": a.attempt, "at": a.at, "status": a.status,
            "http_status": a.http_status, "latency_ms": a.latency_ms,
            "response": a.error[:300], "next_at": next_at})
    return dict(sorted(grouped.items()))


class EventPages:
    def __init__(self, pages: Pages) -> None:
        self.p = pages

    def add_to(self, router: web.UrlDispatcher) -> None:
        guard = self.p.sessions.page
        router.add_get("/events", guard(self.live))
        router.add_get("/events/rows", guard(self.rows, api=True))
        router.add_get("/events/{event_id}", guard(self.one))

    async def _matching(self, wanted: dict[str, str]) -> list[EventRecord]:
        records = await self.p.reads.recent_events(LIMIT)
        sub = None
        if wanted["subscription"]:
            try:
                sub, _ = self.p.subs.find(wanted["subscription"])
            except ApiError:
                return []
        model = wanted["model"]
        return [r for r in records
                if (not model or fnmatch.fnmatchcase(r.event.model, model))
                and wanted["type"] in ("", r.event.type)
                and (sub is None or matches(sub, r.event))]

    async def live(self, request: web.Request) -> web.Response:
        wanted = filters(request)
        return self.p.render.page(
            request, "events.html", title="Live events", wanted=wanted,
            records=await self._matching(wanted), limit=LIMIT,
            types=[t.value for t in EventType], subscriptions=self.p.subscription_names())

    async def rows(self, request: web.Request) -> web.Response:
        records = await self._matching(filters(request))
        return web.Response(text=self.p.render.html("_event_rows.html", records=records),
                            content_type="text/html", charset="utf-8")

    async def one(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        record = await self.p.reads.find_event(event_id)
        if record is None:
            return self.p.render.page(request, "missing.html", status=404, title="No such event",
                                      what=f"No event with id {event_id} is on the topic.")
        attempts = await self.p.reads.attempts(event_id, record.timestamp_ms)
        routed = [name for name in self.p.subscription_names()
                  if _routes(self.p, name, record)]
        return self.p.render.page(
            request, "event.html", title=f"Event {record.event.type}", record=record,
            data=mask(record.event.data), attempts=attempt_rows(attempts), routed=routed)


def _routes(pages: Pages, name: str, record: EventRecord) -> bool:
    try:
        sub, _ = pages.subs.find(name)
    except ApiError:
        return False
    return matches(sub, record.event)


__all__ = ["EventPages", "attempt_rows", "filters"]
