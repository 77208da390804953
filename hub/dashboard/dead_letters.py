"""``/dead-letters``: each (event, subscription) at its latest state (dead, replayed,
delivered) with its reason and last error, and three replays — one entry, all of a
subscription, all that went dead since a time. Each is one POST calling
:func:`hub.deliver.replay.replay_dead_letters` once (the same path as the API and the CLI:
exactly once per request), then a redirect (post/redirect/get: reloading the page does not
replay again) to the list, which says what the replay did."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from hub.dashboard.context import Pages, form_text
from hub.deliver.dlq import STATES
from hub.deliver.replay import ReplayResult, dead_letters, replay_dead_letters

LIMIT = 500


def parse_since(text: str) -> datetime:
    """A time typed in the form (``datetime-local``, or ISO 8601), as UTC when it has no
    zone; ValueError saying what to type."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r}; use e.g. 2026-11-30T10:00 (UTC)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def summary(result: ReplayResult, what: str) -> str:
    """What a replay did, in one sentence."""
    n = len(result.replayed)
    said = f"Replay of {what}: {n} dead letter{'' if n == 1 else 's'} enqueued for delivery"
    skipped = {**result.skipped, **({"missing": result.missing} if result.missing else {})}
    if skipped:
        said += "; skipped " + ", ".join(f"{count} {reason.replace('_', ' ')}"
                                         for reason, count in sorted(skipped.items()))
    return said + "."


class DeadLetterPages:
    def __init__(self, pages: Pages) -> None:
        self.p = pages

    def add_to(self, router: web.UrlDispatcher) -> None:
        guard = self.p.sessions.page
        router.add_get("/dead-letters", guard(self.index))
        router.add_post("/dead-letters/replay", guard(self.replay))

    async def index(self, request: web.Request) -> web.Response:
        subscription = request.query.get("subscription", "").strip() or None
        state = request.query.get("state", "").strip() or None
        if state not in (None, *STATES):
            state = None
        cfg = self.p.host.config
        letters = await dead_letters(cfg, self.p.host.bootstrap_servers,
                                     subscription=subscription, state=state)
        return self.p.render.page(
            request, "dead_letters.html", title="Dead letters", letters=letters[:LIMIT],
            total=len(letters), limit=LIMIT, subscription=subscription or "", state=state or "",
            states=STATES, subscriptions=self.p.subscription_names(),
            waiting=sum(s.state == "dead" for s in letters))

    async def replay(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        subscription = form_text(form, "subscription") or None
        event_id = form_text(form, "event_id") or None
        since_text = form_text(form, "since")
        back = {k: v for k, v in (("subscription", form_text(form, "back_subscription")),
                                  ("state", form_text(form, "back_state"))) if v}
        target = "/dead-letters" + (f"?{urlencode(back)}" if back else "")
        since = None
        if since_text:
            try:
                since = parse_since(since_text)
            except ValueError as exc:
                self.p.flash(request, "error", str(exc))
                raise web.HTTPSeeOther(target) from None
        if event_id is None and subscription is None and since is None:
            self.p.flash(request, "error", "Say what to replay: one entry, a subscription, "
                                           "or a time.")
            raise web.HTTPSeeOther(target)
        cfg = self.p.host.config
        result = await replay_dead_letters(cfg, self.p.host.bootstrap_servers,
                                           subscription=subscription, event_id=event_id,
                                           since=since)
        if event_id:
            what = f"event {event_id} to {subscription}"
        elif since is not None:
            what = (f"{subscription or 'every subscription'} since "
                    f"{since:%Y-%m-%d %H:%M:%S} UTC")
        else:
            what = f"all of {subscription}"
        self.p.flash(request, "ok" if result.replayed else "info", summary(result, what))
        raise web.HTTPSeeOther(target)


__all__ = ["DeadLetterPages", "parse_since", "summary"]
