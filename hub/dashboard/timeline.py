"""A model's history as a picture, pure: from its events (the events topic, oldest first) to
the marks, rows and stage bands the timeline page draws as inline SVG.

One row for the model itself (created, renamed, description, tags, deleted) and one per
version (created, status, stage, description, tags, aliases, deleted). Marks are laid out
in event order, one column each, so changes made within the same second stay apart and in
order; the time is on each mark. A stage band runs on a version's row from its transition
to the version's next transition (or to the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.events import Event

LEFT, STEP, TOP, ROW = 72.0, 56.0, 24.0, 34.0
NO_STAGE = ("None", "", None)


@dataclass(frozen=True)
class Mark:
    event_id: str
    kind: str  # created, stage, alias, tag, description, status, deleted, renamed, other
    label: str
    time: str
    row: int
    column: int

    @property
    def x(self) -> float:
        return LEFT + self.column * STEP + STEP / 2

    @property
    def y(self) -> float:
        return TOP + self.row * ROW + ROW / 2


@dataclass(frozen=True)
class Band:
    row: int
    stage: str
    start: int  # first column
    end: int  # column after the last

    @property
    def x(self) -> float:
        return LEFT + self.start * STEP + STEP / 2

    @property
    def width(self) -> float:
        return (self.end - self.start) * STEP - STEP / 2

    @property
    def y(self) -> float:
        return TOP + self.row * ROW + 6


@dataclass(frozen=True)
class Timeline:
    model: str
    rows: list[str]  # "model", then "v1", "v2", ...
    marks: list[Mark]
    bands: list[Band]

    @property
    def width(self) -> float:
        return LEFT + max(len(self.marks), 1) * STEP + 16

    @property
    def height(self) -> float:
        return TOP + len(self.rows) * ROW + 8

    def row_y(self, row: int) -> float:
        return TOP + row * ROW + ROW / 2


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def describe(event: Event) -> tuple[str, str]:
    """``(kind, label)`` of one event, for a mark and its list entry."""
    entity, _, action = event.type.rpartition(".")
    d = event.data
    v = f"v{event.version}" if event.version else ""
    if entity.endswith("_alias"):
        alias = f"@{d.get('alias', '?')}"
        if action == "deleted":
            return "alias", f"{alias} removed from {v}"
        previous = d.get("previous_version")
        return "alias", (f"{alias} moved v{previous} → {v}" if previous
                         else f"{alias} set on {v}")
    if entity.endswith("_tag"):
        key = d.get("key", "?")
        if action == "deleted":
            return "tag", f"tag {key} removed"
        return "tag", f"tag {key}={d.get('value', '')}"
    if action == "stage_transitioned":
        return "stage", f"{v} {d.get('from_stage', '?')} → {d.get('to_stage', '?')}"
    if action == "status_changed":
        return "status", f"{v} {d.get('status', '?')}"
    if action == "updated":
        return "description", f"{v + ' ' if v else ''}description changed"
    if action == "renamed":
        return "renamed", f"renamed from {d.get('previous_name', '?')}"
    if action in ("created", "deleted"):
        return action, f"{v or 'model'} {action}"
    return "other", event.type


def build(model: str, events: Sequence[Event]) -> Timeline:
    """The timeline of ``model`` from its ``events``, in the order given (oldest first)."""
    versions = sorted({e.version for e in events if e.version}, key=_version_key)
    rows = ["model", *(f"v{v}" for v in versions)]
    row_of = {v: i + 1 for i, v in enumerate(versions)}
    marks: list[Mark] = []
    bands: list[Band] = []
    open_band: dict[int, tuple[str, int]] = {}  # row → (stage, start column)
    for column, event in enumerate(events):
        kind, label = describe(event)
        row = row_of.get(event.version or "", 0)
        marks.append(Mark(event.id, kind, label, event.time.isoformat(timespec="seconds"),
                          row, column))
        if row and (kind == "stage" or (kind == "deleted" and event.version)):
            if row in open_band:
                stage, start = open_band.pop(row)
                bands.append(Band(row, stage, start, column))
            to_stage = event.data.get("to_stage") if kind == "stage" else None
            if to_stage not in NO_STAGE:
                open_band[row] = (str(to_stage), column)
    for row, (stage, start) in open_band.items():
        bands.append(Band(row, stage, start, max(len(events), start + 1)))
    return Timeline(model, rows, marks, sorted(bands, key=lambda b: (b.row, b.start)))


__all__ = ["Band", "Mark", "Timeline", "build", "describe"]
