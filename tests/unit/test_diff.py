"""Property tests of the pure diff: it is empty on equal snapshots, it is undone by apply, and
each model's events come contiguous and in causal order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.detect.diff import apply, diff
from hub.detect.snapshot import ModelState, Snapshot, VersionState
from hub.events import EventType

NAMES = ["alpha", "beta", "gamma", "delta"]
small_text = st.sampled_from(["", "x", "yes", "true", "validated"])
tags = st.dictionaries(st.sampled_from(["k1", "k2", "validated"]), small_text, max_size=3)
descriptions = st.one_of(st.none(), st.sampled_from(["d1", "d2"]))


@st.composite
def versions(draw: st.DrawFn, number: str) -> VersionState:
    return VersionState(
        version=number,
        creation_timestamp=draw(st.sampled_from([10, 11])),
        run_id=draw(st.sampled_from(["r1", "r2"])),
        source=draw(st.sampled_from(["s3://a", "s3://b"])),
        user_id=None,
        status=draw(st.sampled_from(["PENDING_REGISTRATION", "READY", "FAILED_REGISTRATION"])),
        stage=draw(st.sampled_from(["None", "Staging", "Production", "Archived"])),
        description=draw(descriptions),
        tags=draw(tags),
    )


@st.composite
def models(draw: st.DrawFn, name: str) -> ModelState:
    numbers = draw(st.lists(st.sampled_from(["1", "2", "3", "10"]), unique=True, max_size=4))
    vs = {n: draw(versions(n)) for n in numbers}
    aliases = (
        draw(st.dictionaries(st.sampled_from(["champion", "challenger"]), st.sampled_from(numbers),
                             max_size=2))
        if numbers
        else {}
    )
    return ModelState(
        name=name,
        creation_timestamp=draw(st.sampled_from([1, 2, 3])),
        description=draw(descriptions),
        tags=draw(tags),
        aliases=aliases,
        versions=vs,
    )


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    return Snapshot.of([draw(models(n)) for n in names])


@pytest.mark.slow
@settings(max_examples=300)
@given(snapshots())
def test_diff_of_equal_snapshots_is_empty(s: Snapshot) -> None:
    assert diff(s, s) == []


@settings(max_examples=60)
@given(snapshots())
def test_diff_of_equal_snapshots_is_empty_quick(s: Snapshot) -> None:
    assert diff(s, s) == []


# The two properties below run 600 examples each in the full suite (about 15 s apiece on a
# busy 2-core machine) and 60 in the quick tier (``-m "not slow"``, the ``_quick`` twins):
# same checks, fewer draws. Likewise diff(s, s) above: 300 and 60.

def check_apply_of_diff_yields_target(a: Snapshot, b: Snapshot) -> None:
    assert apply(a, diff(a, b)) == b


@pytest.mark.slow
@settings(max_examples=600)
@given(snapshots(), snapshots())
def test_apply_of_diff_yields_target(a: Snapshot, b: Snapshot) -> None:
    check_apply_of_diff_yields_target(a, b)


@settings(max_examples=60)
@given(snapshots(), snapshots())
def test_apply_of_diff_yields_target_quick(a: Snapshot, b: Snapshot) -> None:
    check_apply_of_diff_yields_target(a, b)


@pytest.mark.slow
@settings(max_examples=600)
@given(snapshots(), snapshots())
def test_each_models_events_are_contiguous_and_causal(a: Snapshot, b: Snapshot) -> None:
    check_each_models_events_are_contiguous_and_causal(a, b)


@settings(max_examples=60)
@given(snapshots(), snapshots())
def test_each_models_events_are_contiguous_and_causal_quick(a: Snapshot, b: Snapshot) -> None:
    check_each_models_events_are_contiguous_and_causal(a, b)


def check_each_models_events_are_contiguous_and_causal(a: Snapshot, b: Snapshot) -> None:
    changes = diff(a, b)
    seen_models: list[str] = []
    for c in changes:
        if not seen_models or seen_models[-1] != c.model:
            assert c.model not in seen_models, "a model's events must be contiguous"
            seen_models.append(c.model)
    for i, c in enumerate(changes):
        later = changes[i + 1 :]
        if c.type is EventType.MODEL_VERSION_ALIAS_CREATED:
            # the version an alias points to is never created after the alias
            assert not any(
                x.type is EventType.MODEL_VERSION_CREATED and x.model == c.model
                and x.version == c.version for x in later
            )
        if c.type is EventType.MODEL_VERSION_DELETED:
            # nothing may still point at a deleted version
            assert not any(
                x.type is EventType.MODEL_VERSION_ALIAS_DELETED and x.model == c.model
                and x.version == c.version for x in later
            )
        if c.type is EventType.REGISTERED_MODEL_CREATED:
            assert all(x.type is not EventType.REGISTERED_MODEL_CREATED or x.model != c.model
                       for x in later)
            earlier = [x for x in changes[:i] if x.model == c.model]
            assert all(x.type is EventType.REGISTERED_MODEL_DELETED for x in earlier)


def test_rename_is_reported_as_one_event_then_the_rest() -> None:
    v1 = VersionState("1", 10, "r", "s")
    a = Snapshot.of([ModelState("old", 5, versions={"1": v1})])
    b = Snapshot.of([ModelState("new", 5, description="d", versions={"1": v1})])
    changes = diff(a, b)
    assert [c.type for c in changes] == [
        EventType.REGISTERED_MODEL_RENAMED,
        EventType.REGISTERED_MODEL_UPDATED,
    ]
    assert changes[0].data == {"model_name": "new", "previous_name": "old"}


def test_ambiguous_rename_is_delete_plus_create() -> None:
    a = Snapshot.of([ModelState("a", 5), ModelState("b", 5)])
    b = Snapshot.of([ModelState("c", 5), ModelState("d", 5)])
    types = [(c.model, c.type) for c in diff(a, b)]
    assert (EventType.REGISTERED_MODEL_RENAMED) not in [t for _, t in types]
    assert ("a", EventType.REGISTERED_MODEL_DELETED) in types
    assert ("c", EventType.REGISTERED_MODEL_CREATED) in types


def test_promotion_is_reported_before_the_archiving_it_caused() -> None:
    v1 = VersionState("1", 10, stage="Production")
    v2 = VersionState("2", 11, stage="Staging")
    a = Snapshot.of([ModelState("m", 1, versions={"1": v1, "2": v2})])
    b = Snapshot.of([ModelState("m", 1, versions={
        "1": VersionState("1", 10, stage="Archived"),
        "2": VersionState("2", 11, stage="Production"),
    })])
    assert [(c.version, c.data["to_stage"]) for c in diff(a, b)] == [
        ("2", "Production"), ("1", "Archived")
    ]


def test_alias_moved_carries_previous_version() -> None:
    vs = {"1": VersionState("1", 10, "r1", "s1"), "2": VersionState("2", 11, "r2", "s2")}
    a = Snapshot.of([ModelState("m", 1, aliases={"champion": "1"}, versions=vs)])
    b = Snapshot.of([ModelState("m", 1, aliases={"champion": "2"}, versions=vs)])
    (c,) = diff(a, b)
    assert c.type is EventType.MODEL_VERSION_ALIAS_CREATED
    assert c.data == {"model_name": "m", "alias": "champion", "version": "2",
                      "previous_version": "1", "run_id": "r2", "source": "s2"}
