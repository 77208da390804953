"""A small registry simulator for property tests: random operations, polled at random
points, so several operations can merge into one observed change, values toggle, and models
are renamed, deleted and re-created under the same name, and become prompts and models again."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from hub.detect.snapshot import ModelState, Snapshot, VersionState
from hub.events import IS_PROMPT_TAG

NAMES = ["alpha", "beta", "gamma"]
OPERATIONS = ["create", "delete", "rename", "untag", "describe", "version", "unversion", "alias",
              "stage", "prompt",
              *["tag"] * 4]  # tag changes are the common case (and the reported one)
VALUES = ["a", "b", "c"]


def operate(models: dict[str, ModelState], op: str, name: str, value: str, clock: int) -> None:
    """Apply one registry operation as MLflow would (a no-op where MLflow would refuse)."""
    m = models.get(name)
    if op == "create":
        if m is None:
            models[name] = ModelState(name, clock)
        return
    if m is None:
        return
    latest = max(m.versions, key=int, default=None)
    if op == "delete":
        del models[name]
    elif op == "rename":
        target = NAMES[(NAMES.index(name) + (1 if value == "a" else 2)) % len(NAMES)]
        if target not in models:
            del models[name]
            models[target] = m.renamed(target)
    elif op == "tag":
        models[name] = replace(m, tags={**m.tags, "k": value})
    elif op == "prompt":  # "a": it becomes a prompt; else it is a model (again)
        tags = {k: v for k, v in m.tags.items() if k != IS_PROMPT_TAG}
        models[name] = replace(m, tags={**tags, IS_PROMPT_TAG: "true"} if value == "a" else tags)
    elif op == "untag":
        models[name] = replace(m, tags={k: v for k, v in m.tags.items() if k != "k"})
    elif op == "describe":
        models[name] = replace(m, description=value)
    elif op == "version":
        number = str(int(latest or 0) + 1)
        version = VersionState(number, clock, run_id=f"run-{clock}", source=f"s3://m/{clock}")
        models[name] = replace(m, versions={**m.versions, number: version})
    elif latest is None:
        return
    elif op == "unversion":  # MLflow may hand the number out again: a re-created version
        models[name] = replace(
            m, versions={k: v for k, v in m.versions.items() if k != latest},
            aliases={a: v for a, v in m.aliases.items() if v != latest})
    elif op == "alias":
        target = latest if value == "a" else min(m.versions, key=int)
        models[name] = replace(m, aliases={**m.aliases, "champion": target})
    elif op == "stage":
        stage = "Staging" if value == "a" else "Production"
        versions = {**m.versions, latest: replace(m.versions[latest], stage=stage)}
        models[name] = replace(m, versions=versions)


@st.composite
def histories(draw: st.DrawFn) -> list[Snapshot]:
    """The snapshots a poller took, starting with two models. A clock gives every model and
    version a creation timestamp of its own, as MLflow's millisecond clock does."""
    steps = draw(st.lists(st.tuples(st.sampled_from(OPERATIONS), st.sampled_from(NAMES),
                                    st.sampled_from(VALUES), st.booleans()),
                          min_size=4, max_size=30))
    models = {name: ModelState(name, clock) for clock, name in enumerate(NAMES[:2])}
    history = [Snapshot(dict(models))]
    for clock, (op, name, value, poll) in enumerate(steps, start=len(models)):
        operate(models, op, name, value, clock)
        if poll:
            history.append(Snapshot(dict(models)))
    history.append(Snapshot(dict(models)))
    return history
