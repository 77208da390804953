"""The dashboard's pure parts: the timeline's marks and stage bands, the per-minute charts,
where a sign-in may send the browser, the session rules, and how a subscription form maps
to the admin API's body and its errors back to the fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.admin.bodies import ApiError
from hub.dashboard.charts import MINUTE_MS, bars, per_minute, success_per_minute
from hub.dashboard.session import IDLE_S, MAX_SESSIONS, Sessions, safe_next
from hub.dashboard.subscriptions import body_from_form, error_field, form_from_view
from hub.dashboard.timeline import build
from hub.events import Event

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def ev(n: int, type_: str, version: str | None = None, **data: object) -> Event:
    return Event(id=f"e{n}", type=type_, model="iris", version=version,
                 time=T0 + timedelta(seconds=n), source="http://mlflow",
                 data={"model_name": "iris", **({"version": version} if version else {}),
                       **data})


def story() -> list[Event]:
    return [ev(0, "registered_model.created"),
            *[ev(n, "model_version.created", str(n)) for n in (1, 2, 3)],
            ev(4, "model_version.stage_transitioned", "1", from_stage="None",
               to_stage="Staging"),
            ev(5, "model_version.stage_transitioned", "1", from_stage="Staging",
               to_stage="Production"),
            ev(6, "model_version_alias.created", "1", alias="champion",
               previous_version=None),
            ev(7, "model_version_alias.created", "2", alias="champion", previous_version="1"),
            ev(8, "registered_model_tag.set", key="team", value="ml")]


def test_the_timeline_has_a_mark_per_event_in_order_on_its_version_row() -> None:
    t = build("iris", story())
    assert t.rows == ["model", "v1", "v2", "v3"]
    assert [m.event_id for m in t.marks] == [f"e{n}" for n in range(9)]
    assert [m.label for m in t.marks] == [
        "model created", "v1 created", "v2 created", "v3 created", "v1 None → Staging",
        "v1 Staging → Production", "@champion set on v1", "@champion moved v1 → v2",
        "tag team=ml"]
    assert [m.row for m in t.marks] == [0, 1, 2, 3, 1, 1, 1, 2, 0]
    xs = [m.x for m in t.marks]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


def test_stage_bands_run_from_a_transition_to_the_next_or_the_end() -> None:
    t = build("iris", story())
    assert [(b.row, b.stage, b.start, b.end) for b in t.bands] == [
        (1, "Staging", 4, 5), (1, "Production", 5, 9)]
    gone = build("iris", [*story(), ev(9, "model_version.deleted", "1")])
    assert [(b.stage, b.end) for b in gone.bands] == [("Staging", 5), ("Production", 9)]


def test_per_minute_counts_only_the_window() -> None:
    now = 100 * MINUTE_MS
    times = [now, now - 1, now - MINUTE_MS, now - 60 * MINUTE_MS, now - 61 * MINUTE_MS, now + 1]
    counts = per_minute(times, now)
    assert len(counts) == 60 and counts[-1] == 3 and counts[-2] == 0 and counts[0] == 1
    assert sum(counts) == 4


@given(st.lists(st.integers(0, 200 * MINUTE_MS)), st.integers(60 * MINUTE_MS, 200 * MINUTE_MS))
def test_per_minute_never_counts_more_than_it_was_given(times: list[int], now: int) -> None:
    assert sum(per_minute(times, now)) == sum(now - 60 * MINUTE_MS <= t <= now for t in times)


def test_success_share_and_bars() -> None:
    now = 10 * MINUTE_MS
    shares = success_per_minute([(now - 1, True), (now - 2, False)], now, minutes=3)
    assert shares == [None, None, 0.5]
    chart = bars(shares, width=30, height=10, peak=1.0)
    assert [b.height for b in chart.bars] == [0.0, 0.0, 5.0]
    assert bars([0, 0]).empty and not bars([0, 3]).empty


@pytest.mark.parametrize("target, expected", [
    (None, "/"), ("", "/"), ("/events?model=x", "/events?model=x"), ("//evil.example", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("events", "/")])
def test_sign_in_only_sends_the_browser_to_a_path_of_this_site(target: str | None,
                                                               expected: str) -> None:
    assert safe_next(target) == expected


def test_sessions_expire_when_idle_and_are_bounded() -> None:
    now = [0.0]
    sessions = Sessions("t", clock=lambda: now[0])
    assert sessions.check_token("t") and sessions.check_token(" t\n")
    assert not sessions.check_token("T") and not sessions.check_token("")

    class Request:
        def __init__(self, sid: str) -> None:
            self.cookies = {"hub_session": sid}

    sid, session = sessions.open()
    assert sessions.get(Request(sid)) is session  # type: ignore[arg-type]
    now[0] += IDLE_S + 1
    assert sessions.get(Request(sid)) is None  # type: ignore[arg-type]
    first, _ = sessions.open()
    for _ in range(MAX_SESSIONS):
        sessions.open()
    assert sessions.get(Request(first)) is None  # type: ignore[arg-type]


def test_a_form_becomes_the_api_body_and_back() -> None:
    form = {"name": "hook", "handler": "webhook", "url": " https://x.example/h ",
            "events": "model_version.*, registered_model.created", "models": "iris*",
            "description": "", "options": '{"secret": "***", "when": {"to_stage": "Production"}}',
            "enabled": "on"}
    body = body_from_form(form)
    assert body == {"name": "hook", "handler": "webhook", "url": "https://x.example/h",
                    "events": ["model_version.*", "registered_model.created"],
                    "models": ["iris*"], "secret": "***",
                    "when": {"to_stage": "Production"}, "enabled": True}
    shown = form_from_view({**body, "source": "runtime", "description": "d"})
    assert shown["options"] and '"secret": "***"' in shown["options"]
    assert shown["events"] == "model_version.*, registered_model.created"
    assert body_from_form({**form, "enabled": None})["enabled"] is False


@pytest.mark.parametrize("options", ["[1]", "{not json"])
def test_more_settings_must_be_a_json_object(options: str) -> None:
    with pytest.raises(ApiError) as refused:
        body_from_form({"name": "x", "options": options})
    assert refused.value.field == "options"


def test_an_api_error_lands_next_to_its_field() -> None:
    body = {"name": "x", "timeout_s": -1}
    assert error_field(ApiError(422, "bad", "url"), body) == "url"
    assert error_field(ApiError(422, "bad", "events.0"), body) == "events"
    assert error_field(ApiError(422, "bad", "timeout_s"), body) == "options"
    assert error_field(ApiError(409, "read-only"), body) == ""


def test_replay_since_takes_what_went_dead_at_or_after_the_time() -> None:
    from hub.deliver.dlq import LetterState
    from hub.deliver.replay import dead_since

    def letter(dead_at: str) -> LetterState:
        return LetterState("s", "e", "t", "m", None, "dead", 1, "", None, "failed", dead_at,
                           0, 0, (0, 0, 0))

    since = T0
    assert dead_since(letter((T0 + timedelta(seconds=1)).isoformat()), since)
    assert dead_since(letter(T0.isoformat()), since)
    assert not dead_since(letter((T0 - timedelta(seconds=1)).isoformat()), since)
    assert dead_since(letter("2026-11-30T10:00:00"), since)  # no zone: UTC
    assert not dead_since(letter("garbled"), since)
    assert dead_since(letter("garbled"), None)
