"""Building blocks of the Slack message tests: one sample event of every type (prompt twins
included, with lineage and a tracking URI holding a password that must never be shown), and
the limits Slack checks on a message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from handlers.slack_messages import MAX_BLOCKS, MAX_FIELD, MAX_HEADER, MAX_SECTION, SlackMessage
from hub.events import PROMPT_TWIN, Event, EventType

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
