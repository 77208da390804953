"""Regenerates the generated sections of README.md from the code itself, so they cannot
drift: the configuration reference (from the pydantic models and their docstrings) and the
event catalog (every example payload is what the real diff and stamp code publish).

    python docs/reference.py          # rewrite README.md in place
    python docs/reference.py --check  # exit 1 if README.md is out of date (a test runs this)
"""

from __future__ import annotations

import itertools
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hub.config import HubConfig, Section
from hub.detect.diff import diff
from hub.detect.snapshot import ModelState, Snapshot, VersionState
from hub.detect.stamp import stamp
from hub.events import IS_PROMPT_TAG, PROMPT_TEXT_TAG, EventType

README = Path(__file__).parents[1] / "README.md"
SECTIONS = ("catalog", "config")

MEANING = {
    EventType.REGISTERED_MODEL_CREATED: "a model was registered",
    EventType.REGISTERED_MODEL_UPDATED: "the model's description changed",
    EventType.REGISTERED_MODEL_RENAMED: "the model was renamed (see the note on renames)",
    EventType.REGISTERED_MODEL_DELETED: "the model was deleted, with its versions and aliases",
    EventType.REGISTERED_MODEL_TAG_SET: "a model tag was set or changed",
    EventType.REGISTERED_MODEL_TAG_DELETED: "a model tag was removed",
    EventType.MODEL_VERSION_CREATED: "a version was registered",
    EventType.MODEL_VERSION_UPDATED: "a version's description changed",
    EventType.MODEL_VERSION_STATUS_CHANGED: "registration status changed (e.g. PENDING → READY)",
    EventType.MODEL_VERSION_STAGE_TRANSITIONED: "stage transition (`from_stage` → `to_stage`)",
    EventType.MODEL_VERSION_DELETED: "a version was deleted",
    EventType.MODEL_VERSION_TAG_SET: "a version tag was set or changed",
    EventType.MODEL_VERSION_TAG_DELETED: "a version tag was removed",
    EventType.MODEL_VERSION_ALIAS_CREATED: "an alias was set or moved (`previous_version`)",
    EventType.MODEL_VERSION_ALIAS_DELETED: "an alias was removed",
    EventType.PROMPT_CREATED: "a prompt was registered",
    EventType.PROMPT_UPDATED: "the prompt's description changed",
    EventType.PROMPT_RENAMED: "the prompt was renamed",
    EventType.PROMPT_DELETED: "the prompt was deleted, with its versions and aliases",
    EventType.PROMPT_TAG_SET: "a prompt tag was set or changed (`mlflow.prompt.is_prompt`: a "
                              "model became a prompt)",
    EventType.PROMPT_TAG_DELETED: "a prompt tag was removed",
    EventType.PROMPT_VERSION_CREATED: "a prompt version was registered (`template`)",
    EventType.PROMPT_VERSION_UPDATED: "a prompt version's description changed",
    EventType.PROMPT_VERSION_STATUS_CHANGED: "a prompt version's registration status changed "
                                             "(MLflow's prompt API never does this)",
    EventType.PROMPT_VERSION_STAGE_TRANSITIONED: "a prompt version changed stage (only "
                                                 "through the model API)",
    EventType.PROMPT_VERSION_DELETED: "a prompt version was deleted",
    EventType.PROMPT_VERSION_TAG_SET: "a prompt version tag was set or changed",
    EventType.PROMPT_VERSION_TAG_DELETED: "a prompt version tag was removed",
    EventType.PROMPT_ALIAS_CREATED: "a prompt alias was set or moved (`previous_version`)",
    EventType.PROMPT_ALIAS_DELETED: "a prompt alias was removed",
}


def _version(stage: str = "None", tags: dict[str, str] | None = None,
             description: str | None = None, status: str = "READY",
             prompt: bool = False) -> VersionState:
    if prompt:  # as MLflow's register_prompt writes it
        tags = {IS_PROMPT_TAG: "true", PROMPT_TEXT_TAG: "Summarise in {{n}} words: {{text}}",
                **(tags or {})}
        return VersionState("1", 1795860100000, None, "prompt-template", "alice", status,
                            stage, description, tags)
    return VersionState("1", 1795860100000, "9f1c0ffee", "s3://models/iris/1", "alice",
                        status, stage, description, tags or {})


def _model(name: str = "iris", description: str = "Iris classifier",
           tags: dict[str, str] | None = None, aliases: dict[str, str] | None = None,
           version: VersionState | None = None, prompt: bool = False) -> Snapshot:
    versions = {"1": version} if version else {}
    tags = {"team": "ml"} if tags is None else tags
    return Snapshot.of([ModelState(name, 1795860000000, description,
                                   {IS_PROMPT_TAG: "true", **tags} if prompt else tags,
                                   aliases or {}, versions)])


def story(prompt: bool = False) -> list[Snapshot]:
    """A registry's life that produces every event type of one family once."""
    name, v2 = ("summarize", "Ticket summary v2") if prompt else ("iris", "Iris classifier v2")
    renamed = f"{name}-prod"

    def model(**kw: Any) -> Snapshot:
        return _model(**{"name": name, "prompt": prompt,
                         "description": "Ticket summary" if prompt else "Iris classifier",
                         **kw})

    def version(stage: str = "None", tags: dict[str, str] | None = None,
                description: str | None = None, status: str = "READY") -> VersionState:
        return _version(stage, tags, description, status, prompt)

    prod = version("Production")
    return [
        Snapshot(),
        model(),
        model(version=version(status="PENDING_REGISTRATION")),
        model(version=version()),
        model(version=prod),
        model(aliases={"champion": "1"}, version=prod),
        model(aliases={"champion": "1"}, version=version("Production", {"validated": "true"})),
        model(aliases={"champion": "1"}, version=version("Production", {}, "tuned C=0.5")),
        model(description=v2, tags={"team": "ml", "owner": "bob"},
              version=version("Production", {}, "tuned C=0.5")),
        model(description=v2, tags={"owner": "bob"},
              version=version("Production", {}, "tuned C=0.5")),
        model(description=v2, tags={"owner": "bob"}),
        model(name=renamed, description=v2, tags={"owner": "bob"}),
        Snapshot(),
    ]


def render_catalog() -> str:
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    examples: dict[str, dict[str, object]] = {}
    sequences: dict[str, int] = {}
    for before, after in [*itertools.pairwise(story()), *itertools.pairwise(story(True))]:
        events, sequences = stamp(diff(before, after), before, after, sequences,
                                  epoch="catalog", source="http://mlflow:5000", now=now)
        for event in events:
            examples.setdefault(event.type, {"subject": event.subject, "data": event.data})
    lines = ["| type | meaning |", "| --- | --- |"]
    lines += [f"| `{t.value}` | {MEANING[t]} |" for t in EventType]
    for t in EventType:
        example = examples[t.value]
        lines += ["", f"#### `{t.value}`", "", f"subject `{example['subject']}`", "",
                  "```json", json.dumps(example["data"], indent=2), "```"]
    return "\n".join(lines)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return ""
    else:
        value = field.default
    if value is None:
        return "—"
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def render_config() -> str:
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for section, field in HubConfig.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, Section):
            for key, sub in model.model_fields.items():
                doc = " ".join((sub.description or "").split())
                lines.append(f"| `{section}.{key}` | {_default(sub)} | {doc} |")
        elif section != "subscriptions":
            doc = " ".join((field.description or "").split())
            lines.append(f"| `{section}` | {_default(field)} | {doc} |")
    lines.append("| `subscriptions` | one `console` subscription | see *Subscriptions* |")
    return "\n".join(lines)


RENDER = {"catalog": render_catalog, "config": render_config}


def main() -> int:
    text = original = README.read_text(encoding="utf-8")
    for name in SECTIONS:
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{RENDER[name]()}\n{end}{tail}"
    if "--check" in sys.argv:
        if text != original:
            print("README.md generated sections are out of date: run python docs/reference.py")
            return 1
        return 0
    README.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
