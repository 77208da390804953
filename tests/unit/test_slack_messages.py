"""Slack messages (Block Kit per event type, limits, templates) and the Slack handler's pure
decisions: pacing arithmetic, the answer → outcome table, options validation."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from handlers.slack import SlackOptions, classify
from handlers.slack_messages import (
    MAX_BLOCKS,
    MAX_FIELD,
    MAX_HEADER,
    MAX_SECTION,
    SlackMessage,
    build_message,
)
from handlers.slack_mrkdwn import escape, truncate
from handlers.slack_pacing import ChannelPacer, ThreadMap, blocked_for, pacing_delay
from handlers.slack_templates import TemplateError, validate_templates
from hub.events import EVENT_TYPES, PROMPT_TWIN, Event, EventType
from hub.outcome import Status

UI = "http://mlflow.example:5000/"
TIME = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
LINEAGE = {"model_name": "iris", "version": "3", "run_id": "r123", "source": "runs:/r123/m",
           "tags": {"validated": "true"}, "aliases": ["champion"],
           "tracking_uri": "postgresql://user:s3cret@db/mlflow"}

SAMPLES: dict[str, dict[str, Any]] = {
    "registered_model.created": {"model_name": "iris", "creation_timestamp": 1,
                                 "description": "Iris classifier", "tags": {"team": "ml"}},
    "registered_model.updated": {"model_name": "iris", "description": "new",
                                 "previous_description": "old"},
    "registered_model.renamed": {"model_name": "iris", "previous_name": "iris-old"},
    "registered_model.deleted": {"model_name": "iris", "creation_timestamp": 1,
                                 "versions": ["1", "2"], "aliases": {"champion": "2"}},
    "registered_model_tag.set": {"model_name": "iris", "key": "team", "value": "ml",
                                 "previous_value": "data"},
    "registered_model_tag.deleted": {"model_name": "iris", "key": "team",
                                     "previous_value": "ml"},
    "model_version.created": {**LINEAGE, "creation_timestamp": 1, "user_id": "alice",
                              "status": "READY", "stage": "None", "description": "first"},
    "model_version.updated": {**LINEAGE, "description": "better",
                              "previous_description": "first"},
    "model_version.status_changed": {**LINEAGE, "status": "READY",
                                     "previous_status": "PENDING_REGISTRATION"},
    "model_version.stage_transitioned": {**LINEAGE, "from_stage": "Staging",
                                         "to_stage": "Production"},
    "model_version.deleted": {**LINEAGE, "stage": "Archived", "status": "READY"},
    "model_version_tag.set": {**LINEAGE, "key": "validated", "value": "true",
                              "previous_value": "false"},
    "model_version_tag.deleted": {**LINEAGE, "key": "validated", "previous_value": "true"},
    "model_version_alias.created": {**LINEAGE, "alias": "champion", "previous_version": "2"},
    "model_version_alias.deleted": {**LINEAGE, "alias": "champion"},
}
PROMPT_VERSION = {**LINEAGE, "run_id": None, "source": "prompt-template",
                  "tags": {"mlflow.prompt.is_prompt": "true",
                           "mlflow.prompt.text": "Summarise {{text}}"}}
# a prompt's events carry the same fields as their model twins; a new version its template
SAMPLES.update({
    PROMPT_TWIN[EventType(t)].value: (
        {**data, **PROMPT_VERSION} if t.startswith("model_version") else dict(data))
    for t, data in list(SAMPLES.items())
})
SAMPLES["prompt_version.created"]["template"] = "Summarise {{text}}"


def make_event(type_: str, data: dict[str, Any] | None = None, *, model: str = "iris",
               version: str | None = None) -> Event:
    data = dict(SAMPLES[type_] if data is None else data)
    if version is None and type_.startswith(("model_version", "prompt_version", "prompt_alias")):
        version = "3"
    return Event(id="ev-1", type=type_, model=model, time=TIME, source="mlflow:test",
                 data=data, version=version)


def texts(message: SlackMessage) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


def check_limits(message: SlackMessage) -> None:
    """What Slack checks: text fallback, ≤ 50 blocks, header/section/field lengths."""
    assert message.text.strip()
    assert 1 <= len(message.blocks) <= MAX_BLOCKS
    json.dumps(message.blocks)
    for block in message.blocks:
        assert block["type"] in {"header", "section", "context"}
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= len(block["text"]["text"]) <= MAX_HEADER
        elif block["type"] == "section":
            assert "text" in block or block.get("fields")
            if "text" in block:
                assert 1 <= len(block["text"]["text"]) <= MAX_SECTION
            assert len(block.get("fields", [])) <= 10
            assert all(1 <= len(f["text"]) <= MAX_FIELD for f in block.get("fields", []))
        else:
            assert 1 <= len(block["elements"]) <= 10


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


# --- templates -----------------------------------------------------------------------------


def test_template_overrides_text_and_blocks() -> None:
    templates = {"model_version.*": "{model} v{version} → {to_stage} ({tags[validated]})",
                 "model_version.created": "created {model} v{version} by {user_id}"}
    stage = build_message(make_event("model_version.stage_transitioned"), ui_url=UI,
                          templates=templates)
    assert stage.text == "iris v3 → Production (true)"
    assert stage.blocks == [{"type": "section",
                             "text": {"type": "mrkdwn", "text": stage.text}}]
    created = build_message(make_event("model_version.created"), ui_url=UI,
                            templates=templates)
    assert created.text == "created iris v3 by alice"  # the exact key beats the glob
    other = build_message(make_event("registered_model.created"), ui_url=UI,
                          templates=templates)
    assert other.blocks[0]["type"] == "header"  # no template: the default message


def test_template_missing_keys_render_empty_and_never_raise() -> None:
    templates = {"*": "[{nope}] [{tags[missing]}] [{aliases[9]}] [{version:d}] "
                      "<{version_url}|open> {id} {type}"}
    message = build_message(make_event("model_version.stage_transitioned"), ui_url=UI,
                            templates=templates)
    assert message.text == ("[] [] [] [3] <http://mlflow.example:5000/#/models/iris/versions/3"
                            "|open> ev-1 model_version.stage_transitioned")


def test_template_values_are_escaped_and_long_output_truncated() -> None:
    data = {**SAMPLES["model_version_tag.set"], "value": "<!here>" + "x" * 5000}
    message = build_message(make_event("model_version_tag.set", data), ui_url=None,
                            templates={"model_version_tag.set": "*{key}*: {value}"})
    assert message.text.startswith("*validated*: &lt;!here&gt;")
    check_limits(message)


def test_template_rendering_to_nothing_falls_back_to_default() -> None:
    message = build_message(make_event("model_version.created"), ui_url=None,
                            templates={"*": "{nothing}  "})
    assert message.text.strip() and message.blocks[0]["type"] == "header"


@pytest.mark.parametrize(("templates", "says"), [
    ({"model_version.*": "{model"}, "not a valid format string"),
    ({"model_version.*": "}"}, "not a valid format string"),
    ({"*": "{0}"}, "positional"),
    ({"*": "{}"}, "positional"),
    ({"*": "{model.__class__}"}, "attribute access"),
    ({"*": "{model!x}"}, "unknown conversion"),
    ({"model_versoin.*": "{model}"}, "matches no event type"),
    ({"*": "   "}, "non-empty"),
])
def test_bad_templates_are_rejected_naming_the_template(templates: dict[str, str],
                                                        says: str) -> None:
    with pytest.raises(TemplateError, match=says) as info:
        validate_templates(templates)
    assert repr(next(iter(templates))) in str(info.value)


def test_options_validate_templates_at_construction() -> None:
    with pytest.raises(ValidationError) as info:
        SlackOptions(webhook_url="https://hooks.slack.com/services/T/B/X",
                     templates={"model_version.created": "{model"})
    error = info.value.errors()[0]
    assert error["loc"] == ("templates",)
    assert "template 'model_version.created'" in error["msg"]


# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "says"), [
    ({}, "set webhook_url .* or token \\+ channel"),
    ({"webhook_url": "https://hooks.slack.com/services/T/B/X", "token": "xoxb-1",
      "channel": "#c"}, "not both"),
    ({"token": "xoxb-1"}, "channel is required with token"),
    ({"channel": "#c"}, "token is required with channel"),
    ({"webhook_url": "ftp://x/y"}, "webhook_url must be an http"),
    ({"token": "xoxb-1", "channel": "#c", "api_base_url": "nope"}, "api_base_url"),
    ({"token": "xoxb-1", "channel": "#c", "colour": "red"}, "Extra inputs"),
])
def test_options_need_exactly_one_destination(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        SlackOptions.model_validate(options)


def test_options_accept_each_destination_and_hide_secrets() -> None:
    hook = SlackOptions.model_validate({"webhook_url": "https://hooks.slack.com/services/T/B/X"})
    bot = SlackOptions.model_validate({"token": "xoxb-secret", "channel": "#models",
                                       "api_base_url": "http://127.0.0.1:1/api"})
    assert bot.api_base_url == "http://127.0.0.1:1/api/"
    assert "xoxb-secret" not in repr(bot) and "/T/B/X" not in repr(hook)


# --- pacing --------------------------------------------------------------------------------


def test_pacing_delay_arithmetic() -> None:
    assert pacing_delay(now=5.0, last_sent=None, min_interval_s=1.0) == 0.0
    assert pacing_delay(now=5.0, last_sent=4.5, min_interval_s=1.0) == pytest.approx(0.5)
    assert pacing_delay(now=5.0, last_sent=4.0, min_interval_s=1.0) == 0.0
    assert pacing_delay(now=5.0, last_sent=1.0, min_interval_s=1.0) == 0.0
    assert pacing_delay(now=5.0, last_sent=5.0, min_interval_s=0.0) == 0.0
    assert blocked_for(now=5.0, blocked_until=None) == 0.0
    assert blocked_for(now=5.0, blocked_until=12.0) == pytest.approx(7.0)
    assert blocked_for(now=13.0, blocked_until=12.0) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_pacer_spaces_requests_from_the_end_of_the_previous_one() -> None:
    clock = FakeClock()
    pacer = ChannelPacer(clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(3):
        async with pacer.turn(1.0) as blocked:
            assert blocked == 0.0
            starts.append(clock.now)
            clock.now += 0.25  # the request itself took a while
    assert starts == [100.0, 101.25, 102.5]
    assert clock.sleeps == pytest.approx([1.0, 1.0])
    clock.now += 5.0
    async with pacer.turn(1.0) as blocked:
        assert blocked == 0.0 and len(clock.sleeps) == 2  # idle long enough: no wait


async def test_blocked_pacer_yields_the_time_left_without_sending() -> None:
    clock = FakeClock()
    pacer = ChannelPacer(clock=clock, sleep=clock.sleep)
    pacer.block(30.0)
    async with pacer.turn(1.0) as blocked:
        assert blocked == pytest.approx(30.0)
    assert pacer.last_sent is None and clock.sleeps == []
    clock.now += 30.0
    async with pacer.turn(1.0) as blocked:
        assert blocked == 0.0


def test_thread_map_evicts_least_recently_used() -> None:
    threads = ThreadMap(2)
    threads.put(("m", "1"), ("C", "1.0"))
    threads.put(("m", "2"), ("C", "2.0"))
    assert threads.get(("m", "1")) == ("C", "1.0")  # now most recently used
    threads.put(("m", "3"), ("C", "3.0"))
    assert threads.get(("m", "2")) is None
    assert threads.get(("m", "1")) == ("C", "1.0") and len(threads) == 2


# --- answers → outcomes --------------------------------------------------------------------


@pytest.mark.parametrize(("status", "error", "expected"), [
    (200, "", Status.DELIVERED),
    (204, "", Status.DELIVERED),
    (429, "ratelimited", Status.RETRY),
    (200, "ratelimited", Status.RETRY),
    (500, "", Status.RETRY),
    (503, "service_unavailable", Status.RETRY),
    (500, "rollup_error", Status.RETRY),
    (200, "internal_error", Status.RETRY),
    (408, "", Status.RETRY),
    (200, "thread_not_found", Status.RETRY),
    (410, "channel_is_archived", Status.GONE),
    (200, "channel_not_found", Status.FAILED),
    (200, "invalid_auth", Status.FAILED),
    (200, "not_authed", Status.FAILED),
    (200, "account_inactive", Status.FAILED),
    (200, "token_revoked", Status.FAILED),
    (200, "channel_is_archived", Status.FAILED),
    (200, "is_archived", Status.FAILED),
    (200, "not_in_channel", Status.FAILED),
    (200, "invalid_blocks", Status.FAILED),
    (400, "invalid_payload", Status.FAILED),
    (404, "channel_not_found", Status.FAILED),
    (404, "no_service", Status.FAILED),
    (403, "invalid_token", Status.FAILED),
    (403, "action_prohibited", Status.FAILED),
    (400, "something_new", Status.FAILED),
    (200, "something_new", Status.FAILED),
])
def test_classify(status: int, error: str, expected: Status) -> None:
    outcome = classify(status, error, retry_after_s=None)
    assert outcome.status is expected
    assert outcome.http_status == status
    if expected is not Status.DELIVERED:
        assert error in outcome.detail


def test_classify_keeps_retry_after() -> None:
    assert classify(429, "ratelimited", 7.0).retry_after_s == 7.0
    assert classify(200, "ok", None).status is Status.DELIVERED
