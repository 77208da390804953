"""The detector's recent events (published again if the broker loses them): bounded by age
and by count, oldest first."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.detect.recent import RecentEvents
from hub.events import Event


def _event(n: int) -> Event:
    return Event(id=f"e{n}", type="registered_model.created", model=f"m{n}",
                 time=datetime.now(UTC), source="s", data={"model_name": f"m{n}"})


def test_kept_within_the_window_oldest_first() -> None:
    now = [0.0]
    recent = RecentEvents(window_s=60, limit=100, clock=lambda: now[0])
    recent.add([_event(1), _event(2)])
    now[0] = 30.0
    recent.add([_event(3)])
    assert [e.id for e in recent.events()] == ["e1", "e2", "e3"]
    now[0] = 61.0
    assert [e.id for e in recent.events()] == ["e3"]
    now[0] = 91.0
    assert recent.events() == []


def test_at_most_limit_events_the_newest() -> None:
    recent = RecentEvents(window_s=60, limit=3, clock=lambda: 0.0)
    recent.add([_event(n) for n in range(5)])
    assert [e.id for e in recent.events()] == ["e2", "e3", "e4"]
