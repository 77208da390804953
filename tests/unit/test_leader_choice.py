"""Who holds the detector's partition 0 (``hub.elect.claim.choose_leader``): a pure choice over
the members' claims. The election on a real broker: tests/integration/test_scale_out_leaders.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hub.elect.claim import Claim, choose_leader

members = st.text(alphabet="abcdefgh0123456789-", min_size=1, max_size=6)
times = st.integers(min_value=0, max_value=2**40)
claims = st.builds(Claim, started_ms=times, acquired_ms=st.one_of(st.just(0), times))
groups = st.dictionaries(members, claims, min_size=1, max_size=8)


def test_the_last_holder_keeps_it_else_the_oldest_process_gets_it() -> None:
    fresh = {"b": Claim(started_ms=20), "a": Claim(started_ms=30), "c": Claim(started_ms=20)}
    assert choose_leader(fresh) == "b"  # oldest, then member id
    holder = fresh | {"z": Claim(started_ms=99, acquired_ms=5)}
    assert choose_leader(holder) == "z"  # a standby joining does not take it away
    returning = holder | {"old": Claim(started_ms=1, acquired_ms=4)}
    assert choose_leader(returning) == "z"  # a frozen ex-leader coming back does not either


def test_an_unreadable_claim_is_last_in_line() -> None:
    assert Claim.decode(b"garbage") == Claim(started_ms=2**62)
    assert Claim.decode(None) == Claim(started_ms=2**62)
    assert choose_leader({"x": Claim.decode(b"garbage"), "y": Claim(started_ms=10**15)}) == "y"


def test_nobody_to_choose_from_is_an_error() -> None:
    with pytest.raises(ValueError, match="no members"):
        choose_leader({})


@given(claims)
def test_a_claim_survives_the_group_protocol(claim: Claim) -> None:
    assert Claim.decode(claim.encode()) == claim


@given(groups)
def test_the_choice_follows_the_rule(group: dict[str, Claim]) -> None:
    leader = choose_leader(group)
    holders = {m: c for m, c in group.items() if c.acquired_ms > 0}
    if holders:
        latest = max(c.acquired_ms for c in holders.values())
        assert group[leader].acquired_ms == latest
        assert leader == max(m for m, c in holders.items() if c.acquired_ms == latest)
    else:
        oldest = min(c.started_ms for c in group.values())
        assert group[leader].started_ms == oldest
        assert leader == min(m for m, c in group.items() if c.started_ms == oldest)


@given(groups, st.randoms(use_true_random=False))
def test_every_member_computes_the_same_leader(group: dict[str, Claim],
                                               rnd: random.Random) -> None:
    """The group leader runs the assignor; whoever it is, and in whatever order the members
    are listed, the result is the same."""
    items = list(group.items())
    rnd.shuffle(items)
    assert choose_leader(dict(items)) == choose_leader(group)


@given(groups, members, times)
def test_a_standby_joining_never_moves_a_held_leadership(group: dict[str, Claim], newcomer: str,
                                                         started: int) -> None:
    assume(newcomer not in group and any(c.acquired_ms > 0 for c in group.values()))
    before = choose_leader(group)
    assert choose_leader({**group, newcomer: Claim(started_ms=started)}) == before
