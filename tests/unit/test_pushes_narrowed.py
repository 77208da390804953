"""``hub.detect.pushes.narrowed``: when pushes hold more models while the poll diffs, diffing
again only the models concerned gives exactly what diffing the whole registry again gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.detect.diff import diff
from hub.detect.pushes import hold_back, narrowed
from hub.detect.snapshot import Snapshot
from tests.support.histories import NAMES, histories

SUBSETS = st.sets(st.sampled_from(NAMES))


@settings(max_examples=500, deadline=None)
@given(histories(), st.data())
def test_narrowed_equals_diffing_the_whole_registry_again(history: list[Snapshot],
                                                          data: st.DataObject) -> None:
    """A poll based on ``base`` scanned ``current`` and held ``held`` models; while it
    diffed, pushes held ``newly`` more and moved the state of held models (to any state the
    history gives them, or none)."""
    index = st.integers(0, len(history) - 1)
    base, current = history[data.draw(index)], history[data.draw(index)]
    held, newly = data.draw(SUBSETS), data.draw(SUBSETS)
    newly -= held
    changes = diff(base, hold_back(base, current, held))
    models = dict(base.models)
    for name in held | newly:
        if data.draw(st.booleans()):  # a push applied: the model as some moment had it
            pushed = history[data.draw(index)].models.get(name)
            if pushed is None:
                models.pop(name, None)
            else:
                models[name] = pushed
    state = Snapshot(models)
    target = hold_back(state, current, held | newly)
    assert narrowed(state, current, changes, held | newly) == (target, diff(state, target))
