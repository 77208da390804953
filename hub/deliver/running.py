"""A subscription as it runs in this process: its settings, its handler, its filter and its
410-Gone state, one object.

A lane holds one :class:`RunningSubscription` and reads it at the moment a delivery starts.
Changing a subscription never edits the object: the worker builds a new one (a new handler,
ready, and a fresh Gone state) and swaps it in whole, then *retires* the old one — no new
attempt starts with it, the attempts already in flight finish (up to the grace period; past
it they are cut short and retried with the new settings), and only then is its handler
closed. So an attempt is made with one subscription's settings from start to end, never
with the filter of one and the handler of another.
"""

from __future__ import annotations

import asyncio

import structlog

from hub.config import SubscriptionConfig
from hub.deliver.routing import matches
from hub.events import Event
from hub.outcome import Outcome
from hub.plugins import Handler

log = structlog.get_logger(__name__)

CUT_SHORT = ("cut short: the subscription was changed or deleted while this attempt was in "
             "flight; it is retried with the subscription's settings then")
UNWIND_S = 1.0
"""How long attempts cut short get to unwind before the handler is closed anyway."""


class RunningSubscription:
    def __init__(self, config: SubscriptionConfig, handler: Handler) -> None:
        self.config = config
        self.handler = handler
        self.gone = False
        """The endpoint answered 410 Gone: later events are dead-lettered without an attempt.
        A replaced subscription is a new object, so replacing it clears this."""
        self._calls: set[asyncio.Timeout] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._retired = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    @property
    def retired(self) -> bool:
        return self._retired

    def wants(self, event: Event) -> bool:
        """The subscription's filter: enabled, event-type and model globs, ``when``."""
        return matches(self.config, event)

    async def deliver(self, event: Event) -> Outcome:
        """One attempt through this subscription's handler; the handler's exceptions pass
        through (the dispatcher turns them into outcomes)."""
        if self._retired:  # callers look the subscription up right before the call
            return Outcome.retry(CUT_SHORT)
        cut = asyncio.timeout(None)  # retire() reschedules it to "now" to cut the attempt
        try:
            async with cut:
                self._calls.add(cut)
                self._idle.clear()
                try:
                    return await self.handler.deliver(event)
                finally:
                    self._calls.discard(cut)
                    if not self._calls:
                        self._idle.set()
        except TimeoutError:
            if not cut.expired():
                raise  # the handler's own
            return Outcome.retry(CUT_SHORT)

    async def retire(self, grace_s: float) -> int:
        """Start no attempt any more; let those in flight finish for up to ``grace_s``, cut
        the rest short, then close the handler. Returns how many attempts were cut."""
        self._retired = True
        cut = 0
        if self._calls:
            try:
                await asyncio.wait_for(self._idle.wait(), grace_s)
            except TimeoutError:
                cut = len(self._calls)
                now = asyncio.get_running_loop().time()
                for call in list(self._calls):
                    call.reschedule(now)
                log.warning("delivery.attempts_cut", subscription=self.name, attempts=cut,
                            grace_period_s=grace_s,
                            action="retried with the subscription's current settings; the "
                                   "endpoint may have received them")
                try:
                    await asyncio.wait_for(self._idle.wait(), UNWIND_S)
                except TimeoutError:
                    log.warning("delivery.attempts_not_unwound", subscription=self.name,
                                attempts=len(self._calls), action="handler closed anyway")
        try:
            await self.handler.aclose()
        except Exception:
            log.exception("delivery.handler_close_failed", subscription=self.name)
        return cut

    def __repr__(self) -> str:
        state = "retired" if self._retired else "gone" if self.gone else "running"
        return f"RunningSubscription({self.name!r}, {self.handler!r}, {state})"
