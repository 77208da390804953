"""Slack's default messages: Block Kit per event type (models and prompts), links, escaping,
and Slack's limits kept by cutting values (``truncate``, which never breaks the markup).
Templates are in test_slack_templates.py, the handler's pure decisions in
test_slack_handler.py and test_slack_pacing.py."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.slack_messages import build_message
from handlers.slack_mrkdwn import escape, truncate
from hub.events import EVENT_TYPES, Event
from tests.support.slack_events import SAMPLES, TIME, UI, check_limits, make_event, texts


def test_the_samples_cover_every_event_type() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("type_", EVENT_TYPES)
@pytest.mark.parametrize("ui_url", [UI, None])
def test_every_event_type_renders_within_limits(type_: str, ui_url: str | None) -> None:
    message = build_message(make_event(type_), ui_url=ui_url, templates=None)
    check_limits(message)
    assert message.blocks[0]["type"] == "header"
    assert "iris" in message.text and "iris" in message.blocks[0]["text"]["text"]
    assert "s3cret" not in texts(message) + message.text  # tracking_uri is never shown
    if type_.startswith(("model_version", "prompt_version", "prompt_alias")):
        assert "v3" in message.text
    assert ("mlflow.example" in texts(message)) is (ui_url is not None)


def test_prompt_events_say_prompt_link_the_prompt_page_and_show_the_template() -> None:
    message = build_message(make_event("prompt_version.created", model="summarize"),
                            ui_url=UI, templates=None)
    assert message.blocks[0]["text"]["text"].endswith("New prompt version: summarize v3")
    body = texts(message)
    assert "*Prompt*\\n<http://mlflow.example:5000/#/prompts/summarize|summarize>" in body
    assert "/#/models/" not in body
    assert "```Summarise {{text}}```" in body
    assert "mlflow.prompt.text" not in body  # shown once, as the template
    created = build_message(make_event("prompt.created", model="summarize"), ui_url=None,
                            templates=None)
    assert created.text == "🆕 Prompt *summarize* was created"


def test_a_model_becoming_a_prompt_and_back_is_said_so() -> None:
    flip = {"model_name": "m", "key": "mlflow.prompt.is_prompt", "value": "true",
            "previous_value": None}
    message = build_message(make_event("prompt_tag.set", flip, model="m"), ui_url=None,
                            templates=None)
    assert message.text.endswith(": it is now a prompt")
    back = {"model_name": "m", "key": "mlflow.prompt.is_prompt", "previous_value": "true"}
    message = build_message(make_event("registered_model_tag.deleted", back, model="m"),
                            ui_url=None, templates=None)
    assert message.text.endswith(": it is a model again, no longer a prompt")
    other = build_message(make_event("prompt_tag.set", model="m"), ui_url=None,
                          templates=None)
    assert "prompt" not in other.text.split("set on")[-1]


def test_unknown_event_type_still_renders() -> None:
    event = Event(id="e", type="model_version.future", model="iris", time=TIME, source="s",
                  data={}, version="1")
    message = build_message(event, ui_url=None, templates=None)
    check_limits(message)
    assert "model_version.future" in message.text


def test_stage_transition_shows_stages_links_and_run() -> None:
    message = build_message(make_event("model_version.stage_transitioned", model="fraud det"),
                            ui_url=UI, templates=None)
    assert "*Staging*" in message.text and "*Production*" in message.text
    assert message.blocks[0]["text"]["text"].endswith("fraud det v3: Staging → Production")
    body = texts(message)
    assert "http://mlflow.example:5000/#/models/fraud%20det/versions/3|" in body
    assert "http://mlflow.example:5000/#/runs/r123|" in body
    assert "`validated`: true" in body and "champion" in body


def test_alias_tag_and_author_details() -> None:
    alias = build_message(make_event("model_version_alias.created"), ui_url=None, templates=None)
    assert "`@champion`" in alias.text and "(was v2)" in alias.text
    tag = build_message(make_event("model_version_tag.set"), ui_url=None, templates=None)
    assert "`validated` = `true`" in tag.text and "(was `false`)" in tag.text
    created = build_message(make_event("model_version.created"), ui_url=None, templates=None)
    assert "by alice" in created.text
    assert "*By*\\nalice" in texts(created)
    assert ">first" in texts(created)  # the description, quoted


def test_values_are_escaped_for_mrkdwn() -> None:
    data = {**SAMPLES["model_version.created"], "description": "<!channel> & <b>",
            "user_id": "<@U123>"}
    message = build_message(make_event("model_version.created", data), ui_url=None,
                            templates=None)
    assert "<!channel>" not in texts(message) and "<@U123>" not in message.text
    assert "&lt;!channel&gt; &amp; &lt;b&gt;" in texts(message)


def test_huge_values_are_truncated_within_limits() -> None:
    data = {**SAMPLES["model_version.created"], "description": "d" * 10_000,
            "user_id": "u" * 5000, "source": "<&>" * 2000,
            "tags": {f"k{i}": "v" * 500 for i in range(100)}}
    message = build_message(make_event("model_version.created", data, model="m" * 400),
                            ui_url=UI, templates=None)
    check_limits(message)
    assert message.blocks[0]["text"]["text"].endswith("…")
    assert len(message.text) < 1000


@given(st.text(alphabet="ab<>&|x;", max_size=60), st.integers(min_value=1, max_value=40))
def test_truncate_never_splits_a_link_or_an_entity(raw: str, limit: int) -> None:
    text = escape(raw) + "<http://u|label>" + escape(raw)
    cut = truncate(text, limit)
    assert len(cut) <= limit
    body = cut.removesuffix("…")
    assert text.startswith(body)
    assert body.count("<") == body.count(">")
    assert re.search(r"&[a-z]*$", body) is None


def test_truncate_keeps_short_text() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("0123456789", 5) == "0123…"
