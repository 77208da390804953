"""What the registry looked like at one moment: models, versions, tags, aliases.

Snapshots are plain frozen values, built by ``hub.detect.source`` from a full scan and compared by
``hub.detect.diff``. Only what a subscriber can observe as a change is kept (no
``last_updated_timestamp``: MLflow does not bump it for most changes anyway).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any


def version_sort_key(version: str) -> tuple[int, str]:
    """Order version numbers numerically ("2" before "10"), tolerating odd strings."""
    return (int(version), "") if version.isdigit() else (1 << 62, version)


@dataclass(frozen=True, slots=True)
class VersionState:
    version: str
    creation_timestamp: int
    run_id: str | None = None
    source: str | None = None
    user_id: str | None = None
    status: str = "READY"
    stage: str = "None"
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def identity(self) -> tuple[Any, ...]:
        """Fields MLflow never changes on a version; a difference means delete + re-create."""
        return (self.creation_timestamp, self.run_id, self.source, self.user_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "creation_timestamp": self.creation_timestamp,
            "run_id": self.run_id,
            "source": self.source,
            "user_id": self.user_id,
            "status": self.status,
            "stage": self.stage,
            "description": self.description,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VersionState:
        return cls(**{**raw, "tags": dict(raw.get("tags") or {})})

    @classmethod
    def reported(cls, *, version: Any, creation_timestamp: Any, run_id: Any, source: Any,
                 user_id: Any, status: Any, stage: Any, description: Any,
                 tags: Iterable[tuple[str, str]]) -> VersionState:
        """A version as a registry reports it (MLflow's entity or its REST JSON), in the one
        form both readings give: empty means ``None``, no status READY, no stage "None". The
        strings every version repeats (status, stage, tag keys) are interned: one copy each,
        not 100,000."""
        return cls(
            version=str(version),
            creation_timestamp=int(creation_timestamp or 0),
            run_id=run_id or None,
            source=source or None,
            user_id=user_id or None,
            status=sys.intern(str(status or "READY")),
            stage=sys.intern(str(stage or "None")),
            description=description or None,
            tags={sys.intern(k): v for k, v in tags},
        )


Version = tuple[str, VersionState]
"""A version as a scan reads it, before it is put in its model: (model name, state)."""


@dataclass(frozen=True, slots=True)
class ModelState:
    name: str
    creation_timestamp: int
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version
    versions: dict[str, VersionState] = field(default_factory=dict)

    @classmethod
    def reported(cls, *, name: str, creation_timestamp: Any, description: Any,
                 tags: Iterable[tuple[str, str]], aliases: Iterable[tuple[str, str]]
                 ) -> ModelState:
        """A model without its versions as a registry reports it, in the one form both
        readings give (see :meth:`VersionState.reported`); every alias it lists."""
        return cls(
            name=name,
            creation_timestamp=int(creation_timestamp or 0),
            description=description or None,
            tags={sys.intern(k): v for k, v in tags},
            aliases=dict(aliases),
        )

    def renamed(self, name: str) -> ModelState:
        return replace(self, name=name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "creation_timestamp": self.creation_timestamp,
            "description": self.description,
            "tags": dict(self.tags),
            "aliases": dict(self.aliases),
            "versions": [v.to_dict() for v in self.sorted_versions()],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelState:
        versions = [VersionState.from_dict(v) for v in raw.get("versions") or []]
        return cls(
            name=raw["name"],
            creation_timestamp=raw["creation_timestamp"],
            description=raw.get("description"),
            tags=dict(raw.get("tags") or {}),
            aliases=dict(raw.get("aliases") or {}),
            versions={v.version: v for v in versions},
        )

    def sorted_versions(self) -> list[VersionState]:
        return [self.versions[k] for k in sorted(self.versions, key=version_sort_key)]


@dataclass(frozen=True, slots=True)
class Snapshot:
    models: dict[str, ModelState] = field(default_factory=dict)

    @classmethod
    def of(cls, models: list[ModelState]) -> Snapshot:
        return cls({m.name: m for m in models})

    def __len__(self) -> int:
        return len(self.models)
