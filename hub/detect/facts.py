"""What one MLflow push says, as a change to the model state the hub holds (pure).

MLflow's webhook payload for a tag or an alias states the whole change: model, version, key
and value (``mlflow.webhooks.types``). Applied to the model the hub already holds, it gives the
model as it is now without reading MLflow, so the push path publishes within milliseconds
(:meth:`hub.detect.detector.Detector.pushed`); a re-read of the model follows and publishes
whatever the payload could not say (a change MLflow never pushes, such as a stage transition).

A creation is not a fact here: MLflow's payload has no creation time, user or status, so the
event would be incomplete and the version's identity unknown; those pushes re-read the model.

A fact carries the time MLflow sent it (the payload's ``timestamp``, taken when MLflow hands
the delivery to its sender, just after the change). A fact sent before the hub last read the
model is already in (or superseded by) the state held: applying it could revert a newer
value, so :func:`fresh` refuses it and the push re-reads instead. "Before" has a margin of
:data:`FRESH_AFTER_S`: MLflow's sender may start a moment after the change (a thread pool),
and the two clocks may differ a little; a push within the margin re-reads, which is only
slower.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from hub.detect.snapshot import ModelState

FRESH_AFTER_S = 1.0
Kind = Literal["model_tag", "version_tag", "alias"]

_KINDS: dict[tuple[str, str], tuple[Kind, bool]] = {  # (entity, action) -> (kind, sets)
    ("model_version_tag", "set"): ("version_tag", True),
    ("model_version_tag", "deleted"): ("version_tag", False),
    ("prompt_version_tag", "set"): ("version_tag", True),
    ("prompt_version_tag", "deleted"): ("version_tag", False),
    ("prompt_tag", "set"): ("model_tag", True),
    ("prompt_tag", "deleted"): ("model_tag", False),
    ("model_version_alias", "created"): ("alias", True),
    ("model_version_alias", "deleted"): ("alias", False),
    ("prompt_alias", "created"): ("alias", True),
    ("prompt_alias", "deleted"): ("alias", False),
}


@dataclass(frozen=True)
class Fact:
    """One pushed change: ``key`` (a tag key or an alias) of model ``name`` (of its
    ``version`` for a version tag) set to ``value`` (a tag value, or the version an alias
    points to), or deleted (``value`` None). ``sent_at``: unix seconds."""

    name: str
    kind: Kind
    key: str
    value: str | None
    sent_at: float
    version: str | None = None

    def apply(self, model: ModelState) -> ModelState | None:
        """``model`` with this change; None when ``model`` cannot take it (a version it does
        not have: the push re-reads the model instead)."""
        if self.kind == "model_tag":
            return replace(model, tags=_put(model.tags, self.key, self.value))
        if self.kind == "alias":
            if self.value is not None and self.value not in model.versions:
                return None
            return replace(model, aliases=_put(model.aliases, self.key, self.value))
        held = model.versions.get(self.version or "")
        if held is None:
            return None
        tagged = replace(held, tags=_put(held.tags, self.key, self.value))
        return replace(model, versions={**model.versions, held.version: tagged})


def fact_of(entity: str, action: str, data: dict[str, Any], timestamp: Any) -> Fact | None:
    """The fact an MLflow payload states, or None (a creation, an unknown event, or a field
    missing or of the wrong type: the push then re-reads the model)."""
    found = _KINDS.get((entity, action))
    sent_at = _unix(timestamp)
    if found is None or sent_at is None:
        return None
    kind, sets = found
    name, key = data.get("name"), data.get("alias" if kind == "alias" else "key")
    value = data.get("version" if kind == "alias" else "value") if sets else None
    version = data.get("version") if kind == "version_tag" else None
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        return None
    if (sets and not isinstance(value, str)) or \
            (kind == "version_tag" and not (isinstance(version, str) and version)):
        return None
    return Fact(name, kind, key, value, sent_at, version)


def fresh(fact: Fact, read_at: float) -> bool:
    """True if MLflow sent ``fact`` more than :data:`FRESH_AFTER_S` after the hub last read
    its model (at ``read_at``, unix seconds; 0: not read since the state was loaded)."""
    return read_at > 0 and fact.sent_at > read_at + FRESH_AFTER_S


def _put(mapping: dict[str, str], key: str, value: str | None) -> dict[str, str]:
    if value is None:
        return {k: v for k, v in mapping.items() if k != key}
    return {**mapping, key: value}


def _unix(timestamp: Any) -> float | None:
    """MLflow's ISO 8601 payload timestamp (with its UTC offset) → unix seconds."""
    if not isinstance(timestamp, str) or len(timestamp) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


__all__ = ["FRESH_AFTER_S", "Fact", "fact_of", "fresh"]
