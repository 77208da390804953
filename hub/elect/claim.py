"""Who holds the detector's partition 0: a pure choice over what the members claim.

Each member of the election group sends a :class:`Claim` (when its process started, when it last
acquired the leadership) as its group metadata; the group leader's :class:`KeepLeaderAssignor`
gives every partition of the coordination topic to :func:`choose_leader`'s pick. The election
itself (membership, lease, fencing) is :mod:`hub.elect.election`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


@dataclass(frozen=True)
class Claim:
    """What a member tells the group when it joins: when its process started, and when it
    last acquired the leadership (0: never)."""

    started_ms: int
    acquired_ms: int = 0

    def encode(self) -> bytes:
        return json.dumps({"v": 1, "started_ms": self.started_ms,
                           "acquired_ms": self.acquired_ms}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Claim:
        try:
            data = json.loads(raw or b"")
            return cls(int(data["started_ms"]), int(data.get("acquired_ms", 0)))
        except (ValueError, KeyError, TypeError):
            return cls(started_ms=2**62)  # unreadable: last in line


def choose_leader(claims: Mapping[str, Claim]) -> str:
    """The member that should hold partition 0: the most recent holder if it is still in the
    group (no bounce when a standby joins or an old leader comes back), else the oldest
    process; ties broken by member id."""
    if not claims:
        raise ValueError("no members to choose from")
    holders = [m for m, c in claims.items() if c.acquired_ms > 0]
    if holders:
        return max(holders, key=lambda m: (claims[m].acquired_ms, m))
    return min(claims, key=lambda m: (claims[m].started_ms, m))


class KeepLeaderAssignor(AbstractPartitionAssignor):
    """Assigns every partition of the coordination topic to :func:`choose_leader`'s pick.

    An instance (not the class) carries this member's claim, so several elections in one
    process do not share state."""

    name = "registry-hub-leader"
    version = 0

    def __init__(self, claim: Claim) -> None:
        self.claim = claim

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, list(topics), self.claim.encode())

    def assign(self, cluster: Any,
               members: Mapping[str, ConsumerProtocolMemberMetadata]
               ) -> dict[str, ConsumerProtocolMemberAssignment]:
        leader = choose_leader({m: Claim.decode(md.user_data) for m, md in members.items()})
        topics = sorted({t for md in members.values() for t in md.subscription})
        owned = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
        return {
            member: ConsumerProtocolMemberAssignment(
                self.version, owned if member == leader else [], b"")
            for member in members
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        return None
