"""The event catalog and the event value that travels through Kafka.

``hub.detect.diff`` produces :class:`Change` values (what changed, pure). The detector *stamps* them
into :class:`Event` values: an id (:func:`event_id`), a time, the registry's URI. The type
names match MLflow's own webhook event names where the two overlap.

Two families share one shape. MLflow keeps its prompt registry in the model registry: a prompt
is a registered model tagged ``mlflow.prompt.is_prompt=true``, its versions are model
versions. Every model event has a prompt twin (:data:`PROMPT_TWIN`: ``registered_model`` →
``prompt``, ``model_version`` → ``prompt_version``, ``model_version_alias`` → ``prompt_alias``)
carrying the same fields, ``model_name`` being the prompt's name. Which family an event is in
depends on what the model is at that moment, never on what it was.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    REGISTERED_MODEL_CREATED = "registered_model.created"
    REGISTERED_MODEL_UPDATED = "registered_model.updated"
    REGISTERED_MODEL_RENAMED = "registered_model.renamed"
    REGISTERED_MODEL_DELETED = "registered_model.deleted"
    REGISTERED_MODEL_TAG_SET = "registered_model_tag.set"
    REGISTERED_MODEL_TAG_DELETED = "registered_model_tag.deleted"
    MODEL_VERSION_CREATED = "model_version.created"
    MODEL_VERSION_UPDATED = "model_version.updated"
    MODEL_VERSION_STATUS_CHANGED = "model_version.status_changed"
    MODEL_VERSION_STAGE_TRANSITIONED = "model_version.stage_transitioned"
    MODEL_VERSION_DELETED = "model_version.deleted"
    MODEL_VERSION_TAG_SET = "model_version_tag.set"
    MODEL_VERSION_TAG_DELETED = "model_version_tag.deleted"
    MODEL_VERSION_ALIAS_CREATED = "model_version_alias.created"
    MODEL_VERSION_ALIAS_DELETED = "model_version_alias.deleted"
    PROMPT_CREATED = "prompt.created"
    PROMPT_UPDATED = "prompt.updated"
    PROMPT_RENAMED = "prompt.renamed"
    PROMPT_DELETED = "prompt.deleted"
    PROMPT_TAG_SET = "prompt_tag.set"
    PROMPT_TAG_DELETED = "prompt_tag.deleted"
    PROMPT_VERSION_CREATED = "prompt_version.created"
    PROMPT_VERSION_UPDATED = "prompt_version.updated"
    PROMPT_VERSION_STATUS_CHANGED = "prompt_version.status_changed"
    PROMPT_VERSION_STAGE_TRANSITIONED = "prompt_version.stage_transitioned"
    PROMPT_VERSION_DELETED = "prompt_version.deleted"
    PROMPT_VERSION_TAG_SET = "prompt_version_tag.set"
    PROMPT_VERSION_TAG_DELETED = "prompt_version_tag.deleted"
    PROMPT_ALIAS_CREATED = "prompt_alias.created"
    PROMPT_ALIAS_DELETED = "prompt_alias.deleted"


IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
"""The registered-model tag that makes a model a prompt (MLflow's ``IS_PROMPT_TAG_KEY``)."""
PROMPT_TEXT_TAG = "mlflow.prompt.text"
"""The prompt-version tag holding the template (MLflow's ``PROMPT_TEXT_TAG_KEY``)."""

PROMPT_TWIN: dict[EventType, EventType] = {
    EventType(m): EventType(p) for m, p in [
        ("registered_model.created", "prompt.created"),
        ("registered_model.updated", "prompt.updated"),
        ("registered_model.renamed", "prompt.renamed"),
        ("registered_model.deleted", "prompt.deleted"),
        ("registered_model_tag.set", "prompt_tag.set"),
        ("registered_model_tag.deleted", "prompt_tag.deleted"),
        ("model_version.created", "prompt_version.created"),
        ("model_version.updated", "prompt_version.updated"),
        ("model_version.status_changed", "prompt_version.status_changed"),
        ("model_version.stage_transitioned", "prompt_version.stage_transitioned"),
        ("model_version.deleted", "prompt_version.deleted"),
        ("model_version_tag.set", "prompt_version_tag.set"),
        ("model_version_tag.deleted", "prompt_version_tag.deleted"),
        ("model_version_alias.created", "prompt_alias.created"),
        ("model_version_alias.deleted", "prompt_alias.deleted"),
    ]
}
"""Each model event type → the same change to a prompt."""
MODEL_TWIN: dict[EventType, EventType] = {p: m for m, p in PROMPT_TWIN.items()}
"""Each prompt event type → the same change to a model."""


def is_prompt(tags: dict[str, str]) -> bool:
    """Whether a registered model with these tags is a prompt, as MLflow decides it."""
    return tags.get(IS_PROMPT_TAG, "false").lower() == "true"


def is_prompt_event(event_type: str) -> bool:
    return event_type in MODEL_TWIN


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)

# The namespace of event ids (uuid5).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1a52-6d1e-4f57-9a53-3f0a3b1a8c11")


@dataclass(frozen=True)
class Change:
    """One observed registry change, before it is stamped with an id and a time.

    ``data`` holds the model name, the version where relevant, the new and previous values,
    and the version's lineage (``run_id``, ``source``).
    """

    type: EventType
    model: str
    data: dict[str, Any]
    version: str | None = None


@dataclass(frozen=True)
class Event:
    """A registry event, as published (CloudEvents 1.0, binary mode, key = model name)."""

    id: str
    type: str
    model: str
    time: datetime
    source: str
    data: dict[str, Any] = field(default_factory=dict)
    version: str | None = None

    @property
    def subject(self) -> str:
        kind = "prompts" if is_prompt_event(self.type) else "models"
        if self.version is not None:
            return f"{kind}/{self.model}/versions/{self.version}"
        return f"{kind}/{self.model}"


def new_epoch() -> str:
    """A fresh, random epoch: one per checkpoint lifetime (see :func:`event_id`)."""
    return str(uuid.uuid4())


def event_id(change: Change, *, epoch: str, model_creation_timestamp: int, sequence: int
             ) -> str:
    """The id of ``change``: a pure function of what the detector knows when it publishes.

    * ``epoch`` is random, created with the checkpoint and kept in it. A detector that lost its
      checkpoint (or whose state topic was re-created) starts a new epoch, so none of its ids
      can repeat one used before, even though its per-model sequences restart.
    * ``model_creation_timestamp`` and ``sequence`` (the count of events emitted for this
      model in this epoch, kept in the checkpoint) place the change in the model's history, so
      setting a value back and forth gives distinct ids.
    * The change's full content: a detector that crashed between publishing and checkpointing
      re-publishes the same change with the same id, but if the registry moved on meanwhile
      (``a→b`` published, then ``b→c`` merged into ``a→c`` by the re-scan) the new change
      gets a new id instead of the published one's.
    """
    name = json.dumps(
        [epoch, change.model, model_creation_timestamp, sequence, change.type.value,
         change.version, change.data],
        sort_keys=True, separators=(",", ":"),  # ASCII: lone surrogates in names hash too
    )
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))
