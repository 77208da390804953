"""Slack message templates: a matching template replaces the default message, renders
missing keys as empty text and escapes values; malformed templates are rejected up front,
naming the template, and the Slack options validate them at construction."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from handlers.slack import SlackOptions
from handlers.slack_messages import build_message
from handlers.slack_templates import TemplateError, validate_templates
from tests.support.slack_events import SAMPLES, UI, check_limits, make_event


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
