"""Databricks-style upper-case event names: the alias table, and that an expanded subscription
routes exactly like the union of its aliases taken one by one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hub.config import HubConfig, SubscriptionConfig
from hub.deliver.routing import matches
from hub.event_aliases import ALIASES, UNSUPPORTED, expand, is_alias, resolve
from hub.events import EVENT_TYPES, Event

STAGE = "model_version.stage_transitioned"


@pytest.mark.parametrize(("name", "globs", "when"), [
    ("MODEL_VERSION_CREATED", ["model_version.created"], {}),
    ("MODEL_VERSION_TRANSITIONED_STAGE", [STAGE], {}),
    ("MODEL_VERSION_TRANSITIONED_TO_STAGING", [STAGE], {"to_stage": "Staging"}),
    ("MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", [STAGE], {"to_stage": "Production"}),
    ("MODEL_VERSION_TRANSITIONED_TO_ARCHIVED", [STAGE], {"to_stage": "Archived"}),
    ("REGISTERED_MODEL_CREATED", ["registered_model.created"], {}),
    ("MODEL_VERSION_TAG_SET", ["model_version_tag.set"], {}),
    ("MODEL_VERSION_ALIAS_CREATED", ["model_version_alias.created"], {}),
    ("model_version.*", ["model_version.*"], {}),
])
def test_resolve(name: str, globs: list[str], when: dict[str, str]) -> None:
    assert resolve(name) == (globs, when)


@pytest.mark.parametrize("name", ["TRANSITION_REQUEST_CREATED", "COMMENT_CREATED",
                                  "TRANSITION_REQUEST_TO_PRODUCTION_CREATED"])
def test_databricks_only_names_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(ValueError, match="Databricks workspace feature"):
        resolve(name)


def test_unknown_upper_case_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="MODEL_VERSION_TRANSITIONED_STAGE"):
        resolve("MODEL_VERSION_PROMOTED")


def test_every_alias_points_into_the_catalog() -> None:
    for name, (globs, _) in ALIASES.items():
        assert is_alias(name) and all(g in EVENT_TYPES for g in globs), name
    assert not set(ALIASES) & set(UNSUPPORTED)


def test_two_stage_aliases_become_an_any_of_condition() -> None:
    events, when = expand(["MODEL_VERSION_TRANSITIONED_TO_STAGING",
                           "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"], {})
    assert (events, when) == ([STAGE], {"to_stage": ["Staging", "Production"]})


def test_the_generic_transition_absorbs_a_specific_one() -> None:
    assert expand(["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
                   "MODEL_VERSION_TRANSITIONED_STAGE"], {"tags": {"ok": "1"}}) == (
        [STAGE], {"tags": {"ok": "1"}})
    assert expand(["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", "*"], {}) == (["*"], {})


def test_user_condition_is_intersected() -> None:
    assert expand(["MODEL_VERSION_TRANSITIONED_TO_STAGING",
                   "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"],
                  {"to_stage": ["Production", "Archived"]}) == ([STAGE], {"to_stage": "Production"})
    with pytest.raises(ValueError, match="could never match"):
        expand(["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"], {"to_stage": "Staging"})


def test_a_stage_condition_beside_other_types_is_refused() -> None:
    with pytest.raises(ValueError, match="create one subscription for each"):
        expand(["MODEL_VERSION_CREATED", "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"], {})


def test_expand_is_idempotent_and_leaves_catalog_names_alone() -> None:
    once = expand(["MODEL_VERSION_TRANSITIONED_TO_ARCHIVED",
                   "MODEL_VERSION_TRANSITIONED_TO_STAGING"], {})
    assert expand(*once) == once
    plain = ["model_version.*"], {"to_stage": "Production"}
    assert expand(*plain) == plain


def test_config_file_subscriptions_accept_aliases_and_name_the_field() -> None:
    config = HubConfig(subscriptions=[{
        "name": "prod", "handler": "console",
        "events": ["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"]}])
    (sub,) = config.subscriptions
    assert (sub.events, sub.when) == ([STAGE], {"to_stage": "Production"})
    with pytest.raises(ValidationError) as info:
        HubConfig(subscriptions=[{"name": "c", "handler": "console",
                                  "events": ["COMMENT_CREATED"]}])
    assert info.value.errors()[0]["loc"] == ("subscriptions", 0, "events")
    with pytest.raises(ValidationError) as info:
        SubscriptionConfig(name="c", handler="console",
                           events=["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"],
                           when={"to_stage": "Archived"})
    assert info.value.errors()[0]["loc"] == ("when",)


# --- routing equivalence --------------------------------------------------------------------

STAGES = ["None", "Staging", "Production", "Archived"]
names = st.lists(st.sampled_from(sorted(ALIASES)), min_size=1, max_size=4)
events = st.builds(
    lambda type_, from_stage, to_stage: Event(
        id="e", type=type_, model="iris", time=datetime(2026, 1, 1, tzinfo=UTC), source="s",
        version="1", data={"model_name": "iris", "version": "1", "from_stage": from_stage,
                           "to_stage": to_stage} if type_ == STAGE else {"model_name": "iris"}),
    st.sampled_from(EVENT_TYPES), st.sampled_from(STAGES), st.sampled_from(STAGES))


@given(names, events)
def test_expanded_subscription_routes_like_its_aliases_one_by_one(
        aliases: list[str], event: Event) -> None:
    singles = [SubscriptionConfig(name="one", handler="console", events=resolve(a)[0],
                                  when=resolve(a)[1]) for a in aliases]
    expected = any(matches(s, event) for s in singles)
    try:
        combined = SubscriptionConfig(name="all", handler="console", events=aliases)
    except ValidationError as exc:
        # only refused when a condition meets other event types
        assert "create one subscription for each" in str(exc)
        conditioned = [a for a in aliases if resolve(a)[1]]
        assert conditioned and len({resolve(a)[0][0] for a in aliases}) > 1
        return
    assert matches(combined, event) == expected
