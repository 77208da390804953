"""Records the delivery machinery keeps in Kafka, as JSON.

* :class:`Job` — a delivery to make at ``due_ms`` (retry topic; replay writes them too).
* :class:`DeadLetter` — a delivery that reached a final failure (dead-letter topic).
* :class:`DeadLetterMark` — what became of a dead letter later: replayed, delivered (the
  dead-letter topic too, next to the dead letter; :mod:`hub.deliver.dlq` folds them).
* :class:`Attempt` — one attempt and how it went (deliveries topic, and the log).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.events import Event


def event_to_dict(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "model": event.model,
        "version": event.version,
        "time": event.time.isoformat(),
        "source": event.source,
        "data": event.data,
    }


def event_from_dict(raw: dict[str, Any]) -> Event:
    return Event(
        id=raw["id"],
        type=raw["type"],
        model=raw["model"],
        version=raw.get("version"),
        time=datetime.fromisoformat(raw["time"]),
        source=raw["source"],
        data=dict(raw["data"]),
    )


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
"""``json.dumps`` with arguments builds an encoder per call: one, made once."""


def _dumps(value: dict[str, Any]) -> bytes:
    return _ENCODER.encode(value).encode()


@dataclass(frozen=True)
class Job:
    subscription: str
    event: Event
    attempt: int  # the attempt this job makes (1 = first)
    due_ms: int
    last_error: str = ""
    replayed: bool = False  # a replay made it (and the retries of such a job)

    @property
    def key(self) -> bytes:
        return f"{self.subscription}|{self.event.model}".encode()

    def encode(self) -> bytes:
        return _dumps({
            "subscription": self.subscription,
            "event": event_to_dict(self.event),
            "attempt": self.attempt,
            "due_ms": self.due_ms,
            "last_error": self.last_error,
            "replayed": self.replayed,
        })

    @classmethod
    def decode(cls, value: bytes) -> Job:
        raw = json.loads(value)
        return cls(
            subscription=raw["subscription"],
            event=event_from_dict(raw["event"]),
            attempt=int(raw["attempt"]),
            due_ms=int(raw["due_ms"]),
            last_error=raw.get("last_error", ""),
            replayed=bool(raw.get("replayed", False)),
        )


@dataclass(frozen=True)
class DeadLetter:
    subscription: str
    event: Event
    attempts: int
    last_error: str
    http_status: int | None
    reason: str  # "exhausted" | "failed" | "gone" | "unknown_subscription"
    dead_at: str

    @property
    def key(self) -> bytes:
        """The subscription: its dead letters and their marks share one partition, in order."""
        return self.subscription.encode()

    def encode(self) -> bytes:
        return _dumps({
            "subscription": self.subscription,
            "event": event_to_dict(self.event),
            "attempts": self.attempts,
            "last_error": self.last_error,
            "http_status": self.http_status,
            "reason": self.reason,
            "dead_at": self.dead_at,
        })

    @classmethod
    def decode(cls, value: bytes) -> DeadLetter:
        return cls.from_dict(json.loads(value))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeadLetter:
        return cls(
            subscription=raw["subscription"],
            event=event_from_dict(raw["event"]),
            attempts=int(raw["attempts"]),
            last_error=raw.get("last_error", ""),
            http_status=raw.get("http_status"),
            reason=raw.get("reason", ""),
            dead_at=raw.get("dead_at", ""),
        )


MARK_STATES = ("replayed", "delivered")


@dataclass(frozen=True)
class DeadLetterMark:
    """A later state of the dead letter(s) of ``(event_id, subscription)``: ``replayed`` (a
    replay enqueued a job for it) or ``delivered`` (a replayed job was delivered).

    Written to the dead-letter topic with the dead letter's key (the subscription), so it
    lands on the same partition, after the dead letter it is about."""

    subscription: str
    event_id: str
    state: str  # one of MARK_STATES
    at: str

    @property
    def key(self) -> bytes:
        return self.subscription.encode()

    def encode(self) -> bytes:
        return _dumps({"mark": self.state, "subscription": self.subscription,
                       "event_id": self.event_id, "at": self.at})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeadLetterMark:
        state = raw["mark"]
        if state not in MARK_STATES:
            raise ValueError(f"unknown dead-letter mark {state!r}")
        return cls(subscription=str(raw["subscription"]), event_id=str(raw["event_id"]),
                   state=state, at=str(raw.get("at", "")))


@dataclass(frozen=True)
class Attempt:
    event_id: str
    event_type: str
    model: str
    subscription: str
    attempt: int
    status: str
    http_status: int | None
    latency_ms: float | None
    error: str
    at: str
    next_attempt_in_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        # written once per attempt on the hot path: a plain dict, not dataclasses.asdict
        return _dumps({
            "event_id": self.event_id, "event_type": self.event_type, "model": self.model,
            "subscription": self.subscription, "attempt": self.attempt, "status": self.status,
            "http_status": self.http_status, "latency_ms": self.latency_ms,
            "error": self.error, "at": self.at, "next_attempt_in_s": self.next_attempt_in_s,
            "extra": self.extra,
        })

    @classmethod
    def decode(cls, value: bytes) -> Attempt:
        return cls(**json.loads(value))
