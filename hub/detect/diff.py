"""The pure heart of detection: ``diff(previous, current) -> list[Change]`` and its inverse.

Rules (documented in the README's event catalog):

* Models are visited in name order; each model's changes are contiguous and causal:
  renamed → created → description → tags → versions created (ascending) → version changes
  (status, stage, description, tags; transitions *to* ``Archived`` last, as MLflow archives
  them *because* another version was promoted) → aliases deleted → aliases set or moved →
  versions deleted → model deleted.
* A model that disappears while a new one with the same ``creation_timestamp`` appears was
  renamed. If that is ambiguous (several models created in the same millisecond) it is
  reported as ``registered_model.deleted`` + ``registered_model.created``.
* A model or version whose immutable identity changed (deleted and re-created between two
  polls) is reported as deleted + created.
* Deleting a model emits one ``registered_model.deleted`` listing the versions and aliases
  it took with it.
* A prompt (a model tagged ``mlflow.prompt.is_prompt=true``) gets the prompt twin of each
  event (``hub.events.PROMPT_TWIN``). A model's events are in the family of what it is *now*;
  only a deletion is in the family of what it was. So a model that becomes a prompt is
  reported as ``prompt_tag.set`` (``key: mlflow.prompt.is_prompt``), one that stops being
  one as ``registered_model_tag.deleted`` (or ``.set``), never as deleted + created.

``apply(snapshot, changes)`` replays changes onto a snapshot; ``apply(a, diff(a, b)) == b``
is the property the tests hold this module to.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from hub.detect.snapshot import ModelState, Snapshot, VersionState, version_sort_key
from hub.events import (
    MODEL_TWIN,
    PROMPT_TEXT_TAG,
    PROMPT_TWIN,
    Change,
    EventType,
    is_prompt,
)

ARCHIVED = "Archived"


def diff(previous: Snapshot, current: Snapshot) -> list[Change]:
    renames = _renames(previous, current)  # new name -> old name
    old_names = set(renames.values())
    changes: list[Change] = []
    for name in sorted(set(previous.models) | set(current.models)):
        if name in old_names:
            continue  # reported under its new name
        old = previous.models.get(renames.get(name, name))
        changes.extend(_model_changes(old, current.models.get(name)))
    return changes


def _renames(previous: Snapshot, current: Snapshot) -> dict[str, str]:
    gone = [m for n, m in previous.models.items() if n not in current.models]
    new = [m for n, m in current.models.items() if n not in previous.models]
    gone_ts = Counter(m.creation_timestamp for m in gone)
    new_ts = Counter(m.creation_timestamp for m in new)
    by_ts = {m.creation_timestamp: m.name for m in gone if gone_ts[m.creation_timestamp] == 1}
    return {
        m.name: by_ts[m.creation_timestamp]
        for m in new
        if new_ts[m.creation_timestamp] == 1 and m.creation_timestamp in by_ts
    }


def _model_changes(old: ModelState | None, new: ModelState | None) -> list[Change]:
    if new is None:
        return [] if old is None else _as_kind(old, [_model_deleted(old)])
    if old == new:  # the common case, and nothing to build for it
        return []
    if old is not None and old.creation_timestamp == new.creation_timestamp:
        return _as_kind(new, _kept_model_changes(old, new))
    created = _as_kind(new, [_model_created(new), *_body_changes(_empty_like(new), new)])
    if old is None:
        return created
    return [*_as_kind(old, [_model_deleted(old)]), *created]  # deleted and re-created


def _as_kind(model: ModelState, changes: list[Change]) -> list[Change]:
    """``changes`` in the family of what ``model`` is: a prompt's are the prompt twins, and
    a new prompt version also carries its ``template``."""
    if not is_prompt(model.tags):
        return changes
    out = []
    for c in changes:
        data = c.data
        if c.type is EventType.MODEL_VERSION_CREATED:
            data = {**data, "template": data["tags"].get(PROMPT_TEXT_TAG)}
        out.append(replace(c, type=PROMPT_TWIN[c.type], data=data))
    return out


def _kept_model_changes(old: ModelState, new: ModelState) -> list[Change]:
    changes: list[Change] = []
    if old.name != new.name:
        changes.append(
            Change(EventType.REGISTERED_MODEL_RENAMED, new.name,
                   {"model_name": new.name, "previous_name": old.name})
        )
    if old.description != new.description:
        changes.append(
            Change(EventType.REGISTERED_MODEL_UPDATED, new.name, {
                "model_name": new.name,
                "description": new.description,
                "previous_description": old.description,
            })
        )
    changes.extend(_tag_changes(new.name, None, old.tags, new.tags, {}))
    changes.extend(_body_changes(old.renamed(new.name), new))
    return changes


def _empty_like(model: ModelState) -> ModelState:
    return ModelState(name=model.name, creation_timestamp=model.creation_timestamp,
                      description=model.description, tags=dict(model.tags))


def _model_created(model: ModelState) -> Change:
    return Change(EventType.REGISTERED_MODEL_CREATED, model.name, {
        "model_name": model.name,
        "creation_timestamp": model.creation_timestamp,
        "description": model.description,
        "tags": dict(model.tags),
    })


def _model_deleted(model: ModelState) -> Change:
    return Change(EventType.REGISTERED_MODEL_DELETED, model.name, {
        "model_name": model.name,
        "creation_timestamp": model.creation_timestamp,
        "versions": [v.version for v in model.sorted_versions()],
        "aliases": dict(model.aliases),
    })


def _lineage(model: str, v: VersionState) -> dict[str, Any]:
    return {"model_name": model, "version": v.version, "run_id": v.run_id, "source": v.source}


def _body_changes(old: ModelState, new: ModelState) -> list[Change]:
    """Version and alias changes of one model whose name and identity did not change."""
    name = new.name
    changes: list[Change] = []
    gone: list[VersionState] = []
    created: list[VersionState] = []
    kept: list[tuple[VersionState, VersionState]] = []
    aliases_before = dict(old.aliases)
    for key in sorted(set(old.versions) | set(new.versions), key=version_sort_key):
        before, after = old.versions.get(key), new.versions.get(key)
        if before is None:
            created.append(after)  # type: ignore[arg-type]
        elif after is None:
            gone.append(before)
        elif before.identity() == after.identity():
            kept.append((before, after))
        else:  # deleted and re-created: the old one (and its aliases) go first
            for alias in sorted(a for a, v in old.aliases.items() if v == key):
                changes.append(_alias_change(EventType.MODEL_VERSION_ALIAS_DELETED, name, alias,
                                             key, None, old))
                del aliases_before[alias]
            changes.append(_version_deleted(name, before))
            created.append(after)

    changes.extend(_version_created(name, v) for v in created)
    # MLflow archives other versions *because* one was promoted: report the promotion first.
    kept.sort(key=lambda p: (p[0].stage != ARCHIVED == p[1].stage, version_sort_key(p[1].version)))
    for before, after in kept:
        changes.extend(_version_changes(name, before, after))
    for alias in sorted(aliases_before):
        if alias not in new.aliases:
            changes.append(_alias_change(EventType.MODEL_VERSION_ALIAS_DELETED, name, alias,
                                         aliases_before[alias], None, old))
    for alias in sorted(new.aliases):
        target, previous = new.aliases[alias], aliases_before.get(alias)
        if target != previous:
            changes.append(_alias_change(EventType.MODEL_VERSION_ALIAS_CREATED, name, alias,
                                         target, previous, new))
    changes.extend(_version_deleted(name, v) for v in gone)
    return changes


def _version_created(model: str, v: VersionState) -> Change:
    return Change(EventType.MODEL_VERSION_CREATED, model, {
        **_lineage(model, v),
        "creation_timestamp": v.creation_timestamp,
        "user_id": v.user_id,
        "status": v.status,
        "stage": v.stage,
        "description": v.description,
        "tags": dict(v.tags),
    }, v.version)


def _version_deleted(model: str, v: VersionState) -> Change:
    return Change(EventType.MODEL_VERSION_DELETED, model,
                  {**_lineage(model, v), "stage": v.stage, "status": v.status}, v.version)


def _alias_change(kind: EventType, model: str, alias: str, version: str,
                  previous: str | None, state: ModelState) -> Change:
    v = state.versions.get(version)
    data = {
        "model_name": model,
        "alias": alias,
        "version": version,
        "run_id": v.run_id if v else None,
        "source": v.source if v else None,
    }
    if kind is EventType.MODEL_VERSION_ALIAS_CREATED:
        data["previous_version"] = previous
    return Change(kind, model, data, version)


def _version_changes(model: str, before: VersionState, after: VersionState) -> list[Change]:
    if before == after:
        return []
    base = _lineage(model, after)
    out: list[Change] = []
    if before.status != after.status:
        out.append(Change(EventType.MODEL_VERSION_STATUS_CHANGED, model,
                          {**base, "status": after.status, "previous_status": before.status},
                          after.version))
    if before.stage != after.stage:
        out.append(Change(EventType.MODEL_VERSION_STAGE_TRANSITIONED, model,
                          {**base, "from_stage": before.stage, "to_stage": after.stage},
                          after.version))
    if before.description != after.description:
        out.append(Change(EventType.MODEL_VERSION_UPDATED, model, {
            **base,
            "description": after.description,
            "previous_description": before.description,
        }, after.version))
    out.extend(_tag_changes(model, after.version, before.tags, after.tags, base))
    return out


def _tag_changes(model: str, version: str | None, old: dict[str, str], new: dict[str, str],
                 base: dict[str, Any]) -> list[Change]:
    tag_set, tag_deleted = (
        (EventType.MODEL_VERSION_TAG_SET, EventType.MODEL_VERSION_TAG_DELETED)
        if version is not None
        else (EventType.REGISTERED_MODEL_TAG_SET, EventType.REGISTERED_MODEL_TAG_DELETED)
    )
    base = base or {"model_name": model}
    out = [
        Change(tag_set, model, {**base, "key": k, "value": new[k], "previous_value": old.get(k)},
               version)
        for k in sorted(new)
        if old.get(k) != new[k]
    ]
    out.extend(
        Change(tag_deleted, model, {**base, "key": k, "previous_value": old[k]}, version)
        for k in sorted(old)
        if k not in new
    )
    return out


# --- the inverse: replay changes onto a snapshot ------------------------------------------


def apply(snapshot: Snapshot, changes: list[Change]) -> Snapshot:
    models = dict(snapshot.models)
    for change in changes:
        _apply_one(models, change)
    return Snapshot(models)


def _apply_one(models: dict[str, ModelState], change: Change) -> None:
    c = replace(change, type=MODEL_TWIN.get(change.type, change.type))  # one shape, two names
    d, t = c.data, c.type
    if t is EventType.REGISTERED_MODEL_CREATED:
        models[c.model] = ModelState(c.model, d["creation_timestamp"], d["description"],
                                     dict(d["tags"]))
        return
    if t is EventType.REGISTERED_MODEL_DELETED:
        del models[c.model]
        return
    if t is EventType.REGISTERED_MODEL_RENAMED:
        models[c.model] = models.pop(d["previous_name"]).renamed(c.model)
        return
    m = models[c.model]
    if t is EventType.REGISTERED_MODEL_UPDATED:
        m = replace(m, description=d["description"])
    elif t is EventType.REGISTERED_MODEL_TAG_SET:
        m = replace(m, tags={**m.tags, d["key"]: d["value"]})
    elif t is EventType.REGISTERED_MODEL_TAG_DELETED:
        m = replace(m, tags={k: v for k, v in m.tags.items() if k != d["key"]})
    elif t is EventType.MODEL_VERSION_ALIAS_CREATED:
        m = replace(m, aliases={**m.aliases, d["alias"]: d["version"]})
    elif t is EventType.MODEL_VERSION_ALIAS_DELETED:
        m = replace(m, aliases={k: v for k, v in m.aliases.items() if k != d["alias"]})
    elif t is EventType.MODEL_VERSION_DELETED:
        m = replace(m, versions={k: v for k, v in m.versions.items() if k != c.version})
    else:
        assert c.version is not None
        m = replace(m, versions={**m.versions, c.version: _apply_version(m, c)})
    models[c.model] = m


def _apply_version(m: ModelState, c: Change) -> VersionState:
    d, t = c.data, c.type
    assert c.version is not None
    if t is EventType.MODEL_VERSION_CREATED:
        return VersionState(
            version=c.version, creation_timestamp=d["creation_timestamp"], run_id=d["run_id"],
            source=d["source"], user_id=d["user_id"], status=d["status"], stage=d["stage"],
            description=d["description"], tags=dict(d["tags"]),
        )
    v = m.versions[c.version]
    if t is EventType.MODEL_VERSION_STATUS_CHANGED:
        return replace(v, status=d["status"])
    if t is EventType.MODEL_VERSION_STAGE_TRANSITIONED:
        return replace(v, stage=d["to_stage"])
    if t is EventType.MODEL_VERSION_UPDATED:
        return replace(v, description=d["description"])
    if t is EventType.MODEL_VERSION_TAG_SET:
        return replace(v, tags={**v.tags, d["key"]: d["value"]})
    if t is EventType.MODEL_VERSION_TAG_DELETED:
        return replace(v, tags={k: x for k, x in v.tags.items() if k != d["key"]})
    raise ValueError(f"cannot apply {t}")
