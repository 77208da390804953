"""The event catalog and the event value that travels through Kafka.

``hub.diff`` produces :class:`Change` values (what changed, pure). The detector *stamps* them
into :class:`Event` values: a deterministic id, a time, the registry's URI. The type names
match MLflow's own webhook event names where the two overlap.
"""

from __future__ import annotations

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


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)

# CloudEvents ``source`` prefix and the namespace of deterministic event ids.
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

    def discriminator(self) -> str:
        """The part of the change that tells two changes of the same type apart."""
        d = self.data
        for key in ("alias", "key", "to_stage", "status", "previous_name"):
            if key in d:
                return f"{key}={d[key]}"
        return ""


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
        if self.version is not None:
            return f"models/{self.model}/versions/{self.version}"
        return f"models/{self.model}"


def event_id(change: Change, *, model_creation_timestamp: int, sequence: int) -> str:
    """Deterministic id: the same change at the same place in a model's history.

    ``sequence`` counts the events emitted for this model so far (kept in the detector's
    checkpoint), so setting an alias back and forth gives distinct ids, while a detector
    that crashed between publishing and checkpointing re-publishes with the same ids.
    """
    name = "|".join(
        (
            change.model,
            str(model_creation_timestamp),
            str(sequence),
            change.type.value,
            change.version or "",
            change.discriminator(),
        )
    )
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))
