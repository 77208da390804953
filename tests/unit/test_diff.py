"""Property tests of the pure diff: it is empty on equal snapshots, it is undone by apply, and
each model's events come contiguous and in causal order. Models may be prompts (tagged
``mlflow.prompt.is_prompt``), and may become or stop being prompts between two snapshots."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.detect.diff import apply, diff
from hub.detect.snapshot import ModelState, Snapshot, VersionState
from hub.events import IS_PROMPT_TAG, MODEL_TWIN, PROMPT_TWIN, Change, EventType, is_prompt

NAMES = ["alpha", "beta", "gamma", "delta"]
small_text = st.sampled_from(["", "x", "yes", "true", "validated"])
tags = st.dictionaries(st.sampled_from(["k1", "k2", "validated"]), small_text, max_size=3)
descriptions = st.one_of(st.none(), st.sampled_from(["d1", "d2"]))
# a model's tags may make it a prompt ("true", "TRUE") or not ("false", absent)
model_tags = st.dictionaries(st.sampled_from(["k1", IS_PROMPT_TAG, IS_PROMPT_TAG]),
                             st.sampled_from(["", "x", "true", "TRUE", "false"]), max_size=2)


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
        tags=draw(model_tags),
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
    for i, change in enumerate(changes):
        c = as_model_event(change)
        later = [as_model_event(x) for x in changes[i + 1 :]]
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
            earlier = [as_model_event(x) for x in changes[:i] if x.model == c.model]
            assert all(x.type is EventType.REGISTERED_MODEL_DELETED for x in earlier)


def as_model_event(c: Change) -> Change:
    """The model twin of a prompt event (the ordering rules are the same for both)."""
    return Change(MODEL_TWIN.get(c.type, c.type), c.model, c.data, c.version)


def check_each_event_is_of_the_kind_its_model_is(a: Snapshot, b: Snapshot) -> None:
    for c in diff(a, b):
        deleted = c.type in (EventType.REGISTERED_MODEL_DELETED, EventType.PROMPT_DELETED)
        state = (a if deleted else b).models[c.model]  # a deletion: what it was
        assert (c.type in MODEL_TWIN) == is_prompt(state.tags), (c, state)


def check_a_kept_model_is_never_deleted_nor_created(a: Snapshot, b: Snapshot) -> None:
    kept = {n for n in a.models if n in b.models
            and a.models[n].creation_timestamp == b.models[n].creation_timestamp}
    for c in diff(a, b):
        if c.model in kept:
            assert MODEL_TWIN.get(c.type, c.type) not in (
                EventType.REGISTERED_MODEL_DELETED, EventType.REGISTERED_MODEL_CREATED), c


@settings(max_examples=30)  # the quick twin; 600 in the full suite
@given(snapshots(), snapshots())
def test_events_are_of_the_kind_the_model_is_and_a_flip_is_no_deletion(
        a: Snapshot, b: Snapshot) -> None:
    check_each_event_is_of_the_kind_its_model_is(a, b)
    check_a_kept_model_is_never_deleted_nor_created(a, b)


@pytest.mark.slow
@settings(max_examples=600)
@given(snapshots(), snapshots())
def test_events_are_of_the_kind_the_model_is_and_a_flip_is_no_deletion_full(
        a: Snapshot, b: Snapshot) -> None:
    check_each_event_is_of_the_kind_its_model_is(a, b)
    check_a_kept_model_is_never_deleted_nor_created(a, b)


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


# --- prompts ------------------------------------------------------------------------------

PROMPT = {IS_PROMPT_TAG: "true"}


def _prompt_version(number: str, text: str) -> VersionState:
    tags = {IS_PROMPT_TAG: "true", "mlflow.prompt.text": text}
    return VersionState(number, 10 + int(number), None, "prompt-template", tags=tags)


def test_a_prompts_life_is_told_in_the_prompt_family() -> None:
    v1, v2 = _prompt_version("1", "Hi {{name}}"), _prompt_version("2", "Hello {{name}}")
    life = [
        Snapshot(),
        Snapshot.of([ModelState("greet", 1, "greets", PROMPT, versions={"1": v1})]),
        Snapshot.of([ModelState("greet", 1, "greets", PROMPT, {"prod": "1"},
                                {"1": v1, "2": v2})]),
        Snapshot.of([ModelState("greet", 1, "greets", {**PROMPT, "team": "nlp"},
                                {"prod": "2"}, {"1": v1, "2": v2})]),
        Snapshot(),
    ]
    told = [[(c.type.value, c.version) for c in diff(a, b)] for a, b in pairwise(life)]
    assert told == [
        [("prompt.created", None), ("prompt_version.created", "1")],
        [("prompt_version.created", "2"), ("prompt_alias.created", "1")],
        [("prompt_tag.set", None), ("prompt_alias.created", "2")],
        [("prompt.deleted", None)],
    ]
    created = diff(life[1], life[2])[0]
    assert created.data["template"] == "Hello {{name}}"
    assert created.data["model_name"] == "greet"
    for a, b in pairwise(life):
        assert apply(a, diff(a, b)) == b


def test_a_model_that_becomes_a_prompt_is_reported_by_the_tag_then_as_a_prompt() -> None:
    v1 = VersionState("1", 10, "r", "s")
    model = ModelState("m", 1, tags={"team": "ml"}, versions={"1": v1})
    prompt = ModelState("m", 1, tags={"team": "ml", **PROMPT}, aliases={"prod": "1"},
                        versions={"1": v1})
    to_prompt = diff(Snapshot.of([model]), Snapshot.of([prompt]))
    assert [(c.type, c.data.get("key")) for c in to_prompt] == [
        (EventType.PROMPT_TAG_SET, IS_PROMPT_TAG), (EventType.PROMPT_ALIAS_CREATED, None)]
    assert to_prompt[0].data["value"] == "true" and to_prompt[0].data["previous_value"] is None
    back = diff(Snapshot.of([prompt]), Snapshot.of([model]))
    assert [(c.type, c.data.get("key")) for c in back] == [
        (EventType.REGISTERED_MODEL_TAG_DELETED, IS_PROMPT_TAG),
        (EventType.MODEL_VERSION_ALIAS_DELETED, None)]
    false = replace_tags(prompt, {"team": "ml", IS_PROMPT_TAG: "false"})
    assert [c.type for c in diff(Snapshot.of([prompt]), Snapshot.of([false]))] == [
        EventType.REGISTERED_MODEL_TAG_SET, EventType.MODEL_VERSION_ALIAS_DELETED]


def replace_tags(model: ModelState, tags: dict[str, str]) -> ModelState:
    return ModelState(model.name, model.creation_timestamp, model.description, tags,
                      {}, model.versions)


def test_a_prompt_re_created_as_a_model_is_a_prompt_deleted_then_a_model_created() -> None:
    a = Snapshot.of([ModelState("m", 1, tags=PROMPT)])
    b = Snapshot.of([ModelState("m", 2)])
    assert [c.type for c in diff(a, b)] == [EventType.PROMPT_DELETED,
                                            EventType.REGISTERED_MODEL_CREATED]


def test_every_model_event_has_one_prompt_twin() -> None:
    assert len(PROMPT_TWIN) == len(MODEL_TWIN) == len(EventType) // 2
    assert set(PROMPT_TWIN) | set(MODEL_TWIN) == set(EventType)
