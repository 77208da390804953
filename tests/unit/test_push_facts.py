"""Pushed facts (``hub.detect.facts``): MLflow's tag and alias payloads read as changes, applied
to the model the detector holds and published without reading MLflow; stale or unplaceable
facts re-read instead; a re-read follows; and with facts in any interleaving of pushes and
polls, every field of every model still moves through its history in order, once."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.entities.webhook import WebhookAction, WebhookEntity
from mlflow.webhooks.types import EVENT_TO_PAYLOAD_CLASS

from hub.detect.checkpoint import DetectorState
from hub.detect.detector import Detector
from hub.detect.diff import apply, diff
from hub.detect.facts import FRESH_AFTER_S, Fact, fact_of, fresh
from hub.detect.snapshot import ModelState, Snapshot
from hub.events import Event
from hub.testing import MemoryCheckpoint, MemorySink
from tests.support.histories import NAMES, histories
from tests.support.wait import eventually
from tests.unit.test_detector_rounds import EPOCH, IRIS, detector, kinds
from tests.unit.test_push_refresh import SteppedScanner, as_change, interleave

SENT = "2027-01-15T08:00:00+00:00"
SENT_S = datetime.fromisoformat(SENT).timestamp()
FACTS = {("model_version_tag", "set"), ("model_version_tag", "deleted"),
         ("prompt_version_tag", "set"), ("prompt_version_tag", "deleted"),
         ("prompt_tag", "set"), ("prompt_tag", "deleted"),
         ("model_version_alias", "created"), ("model_version_alias", "deleted"),
         ("prompt_alias", "created"), ("prompt_alias", "deleted")}


# --- reading MLflow's payloads -----------------------------------------------------------------


@pytest.mark.parametrize("event", sorted(EVENT_TO_PAYLOAD_CLASS, key=str), ids=str)
def test_every_mlflow_payload_is_a_fact_exactly_when_it_states_a_tag_or_alias(
        event: tuple[WebhookEntity, WebhookAction]) -> None:
    """MLflow's own example payload for each of its webhook events (``mlflow.webhooks.types``):
    tag and alias events give the fact they state; creations and others give none."""
    entity, action = event[0].value, event[1].value
    data = dict(EVENT_TO_PAYLOAD_CLASS[event].example())
    fact = fact_of(entity, action, data, SENT)
    if (entity, action) not in FACTS:
        assert fact is None
        return
    assert fact is not None and fact.name == data["name"] and fact.sent_at == SENT_S
    key, value = ("alias", "version") if "alias" in entity else ("key", "value")
    assert fact.key == data[key]
    assert fact.value == (data[value] if action in ("set", "created") else None)
    assert fact.version == (data["version"] if entity.endswith("version_tag") else None)


@pytest.mark.parametrize(("data", "timestamp"), [
    ({"name": "iris", "version": "1", "key": "k", "value": "v"}, None),  # no timestamp
    ({"name": "iris", "version": "1", "key": "k", "value": "v"}, "yesterday"),
    ({"name": "iris", "version": "1", "key": "k", "value": "v"}, "2027-01-15T08:00:00"),  # no tz
    ({"name": "iris", "version": "1", "key": "k", "value": 3}, SENT),
    ({"name": "iris", "version": "1", "key": "", "value": "v"}, SENT),
    ({"name": "iris", "key": "k", "value": "v"}, SENT),  # a version tag without its version
    ({"name": ["iris"], "version": "1", "key": "k", "value": "v"}, SENT),
])
def test_a_payload_missing_a_field_is_no_fact(data: dict[str, object], timestamp: object
                                               ) -> None:
    assert fact_of("model_version_tag", "set", data, timestamp) is None


def test_a_fact_is_fresh_only_if_sent_more_than_the_margin_after_the_last_read() -> None:
    fact = Fact("iris", "model_tag", "k", "v", sent_at=1000.0)
    assert fresh(fact, 1000.0 - FRESH_AFTER_S - 0.01)
    assert not fresh(fact, 1000.0 - FRESH_AFTER_S)
    assert not fresh(fact, 0.0)  # not read since the state was loaded


@pytest.mark.parametrize(("fact", "expected"), [
    (Fact("iris", "version_tag", "k", "v", 0, "1"), [("model_version_tag.set", "iris", "1")]),
    (Fact("iris", "version_tag", "old", None, 0, "1"),
     [("model_version_tag.deleted", "iris", "1")]),
    (Fact("iris", "model_tag", "team", "ml", 0), [("registered_model_tag.set", "iris", None)]),
    (Fact("iris", "alias", "champion", "1", 0), [("model_version_alias.created", "iris", "1")]),
    (Fact("iris", "alias", "gone", None, 0), [("model_version_alias.deleted", "iris", "1")]),
    (Fact("iris", "version_tag", "absent", None, 0, "1"), []),  # already so: nothing
])
def test_a_fact_applied_diffs_as_the_event_mlflow_pushed(
        fact: Fact, expected: list[tuple[str, str, str | None]]) -> None:
    held = replace(IRIS, aliases={"gone": "1"}, versions={
        "1": replace(IRIS.versions["1"], tags={"old": "x"})})
    after = fact.apply(held)
    assert after is not None
    changes = diff(Snapshot.of([held]), Snapshot.of([after]))
    assert [(c.type.value, c.model, c.version) for c in changes] == expected
    assert apply(Snapshot.of([held]), changes) == Snapshot.of([after])


def test_a_fact_about_a_version_the_model_lacks_cannot_apply() -> None:
    assert Fact("iris", "version_tag", "k", "v", 0, "7").apply(IRIS) is None
    assert Fact("iris", "alias", "champion", "7", 0).apply(IRIS) is None


# --- the detector ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


async def started(*models: ModelState, reread_after_s: float = 3600
                  ) -> tuple[SteppedScanner, MemorySink, Clock, Detector]:
    """A detector whose first scan (at ``clock.now``) found ``models`` as its checkpoint had
    them (epoch ``EPOCH``: two such detectors draw the same ids)."""
    registry = Snapshot.of(list(models))
    scanner, sink, clock = SteppedScanner(registry), MemorySink(), Clock()
    checkpoint = MemoryCheckpoint(DetectorState(registry, {}, EPOCH))
    hub_detector = detector(scanner, sink, checkpoint, clock=clock,
                            reread_after_s=reread_after_s)
    assert await hub_detector.poll_once() == []
    return scanner, sink, clock, hub_detector


async def test_a_fresh_fact_publishes_without_reading_mlflow_the_event_a_re_read_would() -> None:
    scanner, _sink, clock, hub_detector = await started(IRIS)
    tagged = replace(IRIS, versions={"1": replace(IRIS.versions["1"], tags={"k": "v"})})
    scanner.snapshot = Snapshot.of([tagged])
    fact = Fact("iris", "version_tag", "k", "v", clock.now + 2, "1")
    pushed = await hub_detector.pushed("iris", fact)
    assert kinds(pushed) == [("model_version_tag.set", "iris", "1")]
    assert scanner.reads == []  # MLflow not read
    other_scanner, _, _, rereading = await started(IRIS)
    other_scanner.snapshot = Snapshot.of([tagged])
    reread = await rereading.refresh_model("iris")
    assert [(e.id, e.type, e.data) for e in reread] == [(e.id, e.type, e.data) for e in pushed]
    assert hub_detector.state is not None and hub_detector.state.snapshot == scanner.snapshot


async def test_a_stale_fact_re_reads_instead_and_never_reverts() -> None:
    """Sent before the hub's last read (a late retry): the model is re-read, not reverted."""
    scanner, sink, clock, hub_detector = await started(replace(IRIS, tags={"k": "new"}))
    stale = Fact("iris", "model_tag", "k", "old", clock.now - 5)
    assert await hub_detector.pushed("iris", stale) == []
    assert scanner.reads == ["iris"]
    assert sink.events == []


async def test_facts_overtaken_by_a_newer_one_re_read() -> None:
    """MLflow sends from a thread pool: b (sent later) arrives before a. b is published; a,
    older than what the state now holds for iris, re-reads and publishes nothing."""
    scanner, sink, clock, hub_detector = await started(IRIS)
    scanner.snapshot = Snapshot.of([replace(IRIS, tags={"k": "b"})])
    b = Fact("iris", "model_tag", "k", "b", clock.now + 3)
    a = Fact("iris", "model_tag", "k", "a", clock.now + 2)
    assert kinds(await hub_detector.pushed("iris", b)) == [
        ("registered_model_tag.set", "iris", None)]
    assert await hub_detector.pushed("iris", a) == []
    assert scanner.reads == ["iris"]
    assert [e.data["value"] for e in sink.events] == ["b"]


@pytest.mark.parametrize("fact", [
    Fact("iris", "version_tag", "k", "v", 0, "9"),  # a version created since the last read
    Fact("wine", "model_tag", "k", "v", 0),  # a model the hub does not hold
])
async def test_a_fact_the_state_cannot_place_re_reads_the_model(fact: Fact) -> None:
    scanner, _sink, clock, hub_detector = await started(IRIS)
    await hub_detector.pushed(fact.name, replace(fact, sent_at=clock.now + 5))
    assert scanner.reads == [fact.name]


async def test_a_fact_while_stood_down_is_left_to_the_poll_and_after_it_applies() -> None:
    """Stood down (the state dropped), a fact neither reads nor publishes; the next round
    reloads the state and reads the registry, and a fact sent after that applies."""
    scanner, sink, clock, hub_detector = await started(IRIS)
    hub_detector.forget()
    assert await hub_detector.pushed("iris", Fact("iris", "model_tag", "k", "v",
                                                  clock.now + 5)) == []
    assert scanner.reads == [] and sink.events == []
    clock.now += 10
    await hub_detector.poll_once()
    clock.now += 10
    fact = Fact("iris", "model_tag", "k", "v", clock.now)
    assert kinds(await hub_detector.pushed("iris", fact)) == [
        ("registered_model_tag.set", "iris", None)]
    assert scanner.reads == []


async def test_a_re_read_follows_a_fact_and_publishes_what_its_payload_could_not_say() -> None:
    scanner, sink, clock, hub_detector = await started(IRIS, reread_after_s=0.01)
    staged = replace(IRIS, tags={"k": "v"}, versions={
        "1": replace(IRIS.versions["1"], stage="Production")})
    scanner.snapshot = Snapshot.of([staged])  # MLflow pushes the tag, never the transition
    await hub_detector.pushed(
        "iris", Fact("iris", "model_tag", "k", "v", clock.now + 5))
    await eventually(lambda: len(sink.events), lambda n: n == 2, what="the re-read's event")
    assert kinds(sink.events) == [("registered_model_tag.set", "iris", None),
                                  ("model_version.stage_transitioned", "iris", "1")]
    assert scanner.reads == ["iris"]
    assert hub_detector.state is not None and hub_detector.state.snapshot == scanner.snapshot


async def test_a_burst_of_facts_about_one_model_costs_one_re_read() -> None:
    scanner, sink, clock, hub_detector = await started(IRIS, reread_after_s=0.05)
    for i in range(5):
        clock.now += 2
        scanner.snapshot = Snapshot.of([replace(IRIS, tags={"k": str(i)})])
        await hub_detector.pushed(
            "iris", Fact("iris", "model_tag", "k", str(i), clock.now))
    await eventually(lambda: scanner.reads, what="the re-read")
    await asyncio.sleep(0.2)  # nothing more is scheduled: a second re-read would show here
    assert scanner.reads == ["iris"]
    assert [e.data["value"] for e in sink.events] == ["0", "1", "2", "3", "4"]


# --- any interleaving --------------------------------------------------------------------------


def sent_facts(previous: Snapshot, current: Snapshot, now: float) -> list[Fact]:
    """What MLflow pushes, sent now, as the registry moves from ``previous`` to ``current``:
    tag ``k`` and alias ``champion`` changes (the ones ``tests.support.histories`` makes that
    MLflow pushes as payloads), for models that exist now."""
    out = []
    for name, model in current.models.items():
        old = previous.models.get(name)
        before_tag = old.tags.get("k") if old else None
        before_alias = old.aliases.get("champion") if old else None
        if model.tags.get("k") != before_tag:
            out.append(Fact(name, "model_tag", "k", model.tags.get("k"), now))
        if model.aliases.get("champion") != before_alias:
            out.append(Fact(name, "alias", "champion", model.aliases.get("champion"), now))
    return out


def fields(model: ModelState | None) -> dict[str, object]:
    """A model as separate fields: what each event changes."""
    if model is None:
        return {}
    out: dict[str, object] = {"model": model.creation_timestamp, "description": model.description}
    out |= {f"tag {k}": v for k, v in model.tags.items()}
    out |= {f"alias {a}": v for a, v in model.aliases.items()}
    for number, v in model.versions.items():
        out |= {f"v{number}": v.identity(), f"v{number} stage": v.stage,
                f"v{number} status": v.status, f"v{number} description": v.description}
        out |= {f"v{number} tag {k}": value for k, value in v.tags.items()}
    return out


def replay_fieldwise(history: list[Snapshot], batches: list[list[Event]]) -> Snapshot:
    """Apply each published batch to ``history[0]``: every field of every model passes
    through its values in the history's order (a subsequence: nothing reverted, nothing
    repeated). Facts publish one field ahead of a model's others, so whole models may
    pass through states the history never had; fields may not."""
    state = history[0]
    seen = [{n: fields(s.models.get(n)) for n in NAMES} for s in history]
    position: dict[tuple[str, str], int] = {}
    for batch in batches:
        state = apply(state, [as_change(e) for e in batch])
        for name in NAMES:
            now = fields(state.models.get(name))
            for field in set(now) | {f for s in seen for f in s[name]}:
                start = position.get((name, field), 0)
                found = [j for j in range(start, len(history))
                         if seen[j][name].get(field) == now.get(field)]
                assert found, f"{name}: {field} went back or off the history after " \
                              f"{kinds(batch)}"
                position[(name, field)] = found[0]
    return state


FACT_STEPS = st.lists(st.sampled_from(["fact", "fact", "fact", "late", "next", "next", "push",
                                       "start", "finish", "hold", "release"]),
                      min_size=20, max_size=80)
INTERLEAVINGS = (histories(), FACT_STEPS, st.lists(st.integers(0, len(NAMES) - 1),
                                                   min_size=1, max_size=8))


def distinct_tag_values(history: list[Snapshot]) -> list[Snapshot]:
    """``history`` with each run of a model's tag ``k`` value renamed after where it starts
    ("a", "a", "b", "a" -> "a@0", "a@0", "b@2", "a@3"): a value published again after a newer
    one (a revert) then matches no later point of the history."""
    out, last = [], {}
    for j, snapshot in enumerate(history):
        models = {}
        for name, model in snapshot.models.items():
            value = model.tags.get("k")
            if value is not None:
                if last.get(name, (None, 0))[0] != value:
                    last[name] = (value, j)
                model = replace(model, tags={**model.tags, "k": f"{value}@{last[name][1]}"})
            else:
                last.pop(name, None)
            models[name] = model
        out.append(Snapshot(models))
    return out


def run_interleaving(history: list[Snapshot], steps: list[str], names: list[int]) -> None:
    asyncio.run(interleave(distinct_tag_values(history), steps, names,
                           check=replay_fieldwise, facts=sent_facts))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*INTERLEAVINGS)
def test_any_interleaving_of_facts_pushes_and_polls_keeps_every_field_in_order(
        history: list[Snapshot], steps: list[str], names: list[int]) -> None:
    """Facts (MLflow's tag and alias payloads, sent as the registry changes) beside re-read
    pushes and polls whose scans span changes: every field of every model is published in
    its order, none twice, ending at the registry as it is (checked by ``interleave``)."""
    run_interleaving(history, steps, names)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*INTERLEAVINGS)
def test_any_interleaving_of_facts_quick(history: list[Snapshot], steps: list[str],
                                         names: list[int]) -> None:
    run_interleaving(history, steps, names)
