"""Stamping: the changes of one diff made into events — ids drawn in the checkpoint's epoch
from each model's running count (:func:`hub.events.event_id`), the time, the source, and the
context a subscriber's ``when`` conditions test (current tags, the aliases on the version)."""

from __future__ import annotations

from datetime import datetime

from hub.detect.snapshot import Snapshot
from hub.events import MODEL_TWIN, Change, Event, EventType, event_id


def stamp(changes: list[Change], previous: Snapshot, current: Snapshot,
          sequences: dict[str, int], *, epoch: str, source: str, now: datetime
          ) -> tuple[list[Event], dict[str, int]]:
    """Give changes their ids in ``epoch``; return the events and the advanced counters."""
    seqs = dict(sequences)
    events = []
    for change in changes:
        kind = MODEL_TWIN.get(change.type, change.type)  # a prompt's count like a model's
        if kind is EventType.REGISTERED_MODEL_RENAMED:
            seqs[change.model] = seqs.pop(change.data["previous_name"], 0)
        if kind is EventType.REGISTERED_MODEL_CREATED:
            seqs[change.model] = 0
        created = change.data.get("creation_timestamp") if change.version is None else None
        if created is None:
            model = current.models.get(change.model) or previous.models[change.model]
            created = model.creation_timestamp
        seq = seqs.get(change.model, 0) + 1
        seqs[change.model] = seq
        events.append(Event(
            id=event_id(change, epoch=epoch, model_creation_timestamp=created, sequence=seq),
            type=change.type.value,
            model=change.model,
            time=now,
            source=source,
            data={**_context(change, previous, current), **change.data, "tracking_uri": source},
            version=change.version,
        ))
    for name in list(seqs):
        if name not in current.models:
            del seqs[name]
    return events, seqs


def _context(change: Change, previous: Snapshot, current: Snapshot) -> dict[str, object]:
    """State a subscriber's ``when`` conditions can test: the version's (or model's) current
    tags, and the aliases pointing at the version."""
    model = current.models.get(change.model) or previous.models.get(change.model)
    if model is None:
        return {}
    if change.version is None:
        return {"tags": dict(model.tags)}
    version = model.versions.get(change.version)
    if version is None:
        old = previous.models.get(change.model)
        model = old or model
        version = old.versions.get(change.version) if old else None
    if version is None:
        return {}
    aliases = sorted(a for a, v in model.aliases.items() if v == change.version)
    return {"tags": dict(version.tags), "aliases": aliases}


__all__ = ["stamp"]
