"""The dead-letter topic read as one entry per (event, subscription), at its latest state.

Kafka topics are append-only, so a dead letter is never changed in place: what became of it
later is written next to it, with the same key (the subscription), hence on the same
partition and after it.

* a :class:`~hub.deliver.jobs.DeadLetter` (the dispatcher: a final failure) → ``dead``;
* a ``replayed`` :class:`~hub.deliver.jobs.DeadLetterMark` (replay, acknowledged before it writes
  the job) → ``replayed``: the replay's delivery has not reached an outcome yet;
* a ``delivered`` mark (the dispatcher, when a replayed job was delivered) → ``delivered``.

A replayed job that fails for good writes a new dead letter: the entry is ``dead`` again,
with that run's attempts and error and its ``replays`` count kept.

:class:`DeadLetterView` folds records into one small :class:`LetterState` per key (pure, no
I/O; the event's data is not kept, only where its latest dead letter is). :func:`scan`
streams a topic in batches. Together they read a dead-letter topic of any length holding one
state per (event, subscription), never the records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hub.deliver.jobs import DeadLetter, DeadLetterMark

STATES = ("dead", "replayed", "delivered")
_MAX_ERROR_CHARS = 1000


@dataclass(slots=True)
class LetterState:
    """The latest state of one (event, subscription) in the dead-letter topic."""

    subscription: str
    event_id: str
    event_type: str
    model: str
    version: str | None
    state: str  # one of STATES
    attempts: int
    last_error: str
    http_status: int | None
    reason: str
    dead_at: str
    partition: int  # where its latest dead letter is (replay reads the event from there)
    offset: int
    changed: tuple[int, int, int]  # (timestamp ms, partition, offset) of its latest record
    replays: int = 0
    replayed_at: str | None = None
    delivered_at: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.event_id, self.subscription

    def summary(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription, "event_id": self.event_id,
            "event_type": self.event_type, "model": self.model, "version": self.version,
            "state": self.state, "attempts": self.attempts, "last_error": self.last_error,
            "http_status": self.http_status, "reason": self.reason, "dead_at": self.dead_at,
            "replays": self.replays, "replayed_at": self.replayed_at,
            "delivered_at": self.delivered_at,
        }


class DeadLetterView:
    """Folds dead-letter-topic records, in partition order, into one state per key.

    Only keys matching ``subscription`` / ``event_id`` (when given) are kept. A mark for a
    key with no dead letter seen yet is ignored (replays from the events topic mark every
    delivery; only dead letters make an entry). Records that are neither a dead letter nor
    a mark are counted in ``unreadable`` and skipped.
    """

    def __init__(self, *, subscription: str | None = None, event_id: str | None = None
                 ) -> None:
        self._subscription = subscription
        self._event_id = event_id
        self.states: dict[tuple[str, str], LetterState] = {}
        self.unreadable = 0

    def add(self, partition: int, offset: int, timestamp_ms: int, value: bytes | None
            ) -> None:
        try:
            raw = json.loads(value or b"")
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            if "mark" in raw:
                self._mark(DeadLetterMark.from_dict(raw), (timestamp_ms, partition, offset))
            else:
                self._dead(DeadLetter.from_dict(raw), partition, offset, timestamp_ms)
        except (ValueError, KeyError, TypeError, AttributeError):
            self.unreadable += 1

    def letters(self) -> list[LetterState]:
        """Newest change first."""
        return sorted(self.states.values(), key=lambda s: s.changed, reverse=True)

    def _wanted(self, subscription: str, event_id: str) -> bool:
        return self._subscription in (None, subscription) and self._event_id in (None, event_id)

    def _dead(self, letter: DeadLetter, partition: int, offset: int, timestamp_ms: int) -> None:
        event = letter.event
        if not self._wanted(letter.subscription, event.id):
            return
        key = (event.id, letter.subscription)
        known = self.states.get(key)
        self.states[key] = LetterState(
            subscription=letter.subscription, event_id=event.id, event_type=event.type,
            model=event.model, version=event.version, state="dead", attempts=letter.attempts,
            last_error=letter.last_error[:_MAX_ERROR_CHARS], http_status=letter.http_status,
            reason=letter.reason, dead_at=letter.dead_at, partition=partition, offset=offset,
            changed=(timestamp_ms, partition, offset),
            replays=known.replays if known else 0,
            replayed_at=known.replayed_at if known else None)

    def _mark(self, mark: DeadLetterMark, changed: tuple[int, int, int]) -> None:
        state = self.states.get((mark.event_id, mark.subscription))
        if state is None:
            return
        state.state, state.changed = mark.state, changed
        if mark.state == "replayed":
            state.replays += 1
            state.replayed_at = mark.at
        else:
            state.delivered_at = mark.at


def fold(records: Iterable[Any], *, subscription: str | None = None,
         event_id: str | None = None) -> DeadLetterView:
    """A view of ``records`` (objects with ``partition``, ``offset``, ``timestamp``,
    ``value``) in the order given."""
    view = DeadLetterView(subscription=subscription, event_id=event_id)
    for r in records:
        view.add(r.partition, r.offset, r.timestamp, r.value)
    return view


__all__ = ["STATES", "DeadLetterView", "LetterState", "fold"]
