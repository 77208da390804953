"""The registry workflow every registry the hub reads must pass, as data, and its runner.

Thirteen steps, each one or two client calls followed by one detection round, with the
events that round must give, exactly and in order (``(type, version)``): create a model;
versions 1 and 2; version 1 to Staging, then Production; the alias ``champion`` on 1, moved
to 2, deleted; a version tag; a model tag; the model's and a version's descriptions; a
rename; version 1 deleted; the model deleted. Fifteen events in all.

``tests/integration/test_registry_compat.py`` asserts it step by step and ``bench/compat.py``
prints it as a table for each MLflow server and store; both run :func:`run_workflow`, so the
workflow has one definition. A step's calls go through ``call(method, *args, **kwargs)``: an
``MlflowClient`` method in this process or another release's client in a child process
(:class:`tests.support.mlflow_versions.OldClient`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Call = Callable[..., Any]
Poll = Callable[[], Awaitable[list[Any]]]
Seen = list[tuple[str, str | None]]


@dataclass(frozen=True)
class ClientCall:
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    what: str
    calls: tuple[ClientCall, ...]
    expected: tuple[tuple[str, str | None], ...]
    """The round's events as ``(type, version)``, in the order the detector emits them."""


def _call(method: str, *args: Any, **kwargs: Any) -> ClientCall:
    return ClientCall(method, args, kwargs)


def workflow(name: str) -> list[Step]:
    """The thirteen steps on a model called ``name`` (renamed ``<name>-renamed``)."""
    renamed = f"{name}-renamed"
    return [
        Step("create model", (_call("create_registered_model", name, tags={"team": "ml"},
                                    description="Iris model"),),
             (("registered_model.created", None),)),
        Step("versions 1 and 2", (_call("create_model_version", name, "s3://models/iris/1"),
                                  _call("create_model_version", name, "s3://models/iris/2")),
             (("model_version.created", "1"), ("model_version.created", "2"))),
        Step("v1 to Staging", (_call("transition_model_version_stage", name, "1", "Staging"),),
             (("model_version.stage_transitioned", "1"),)),
        Step("v1 to Production",
             (_call("transition_model_version_stage", name, "1", "Production"),),
             (("model_version.stage_transitioned", "1"),)),
        Step("alias champion on v1", (_call("set_registered_model_alias", name, "champion",
                                            "1"),),
             (("model_version_alias.created", "1"),)),
        Step("alias champion moved to v2", (_call("set_registered_model_alias", name,
                                                  "champion", "2"),),
             (("model_version_alias.created", "2"),)),
        Step("alias deleted", (_call("delete_registered_model_alias", name, "champion"),),
             (("model_version_alias.deleted", "2"),)),
        Step("version tag", (_call("set_model_version_tag", name, "2", "validated", "true"),),
             (("model_version_tag.set", "2"),)),
        Step("model tag", (_call("set_registered_model_tag", name, "owner", "alice"),),
             (("registered_model_tag.set", None),)),
        Step("descriptions", (_call("update_registered_model", name,
                                    description="Iris, v2 docs"),
                              _call("update_model_version", name, "2",
                                    description="promoted")),
             (("registered_model.updated", None), ("model_version.updated", "2"))),
        Step("rename", (_call("rename_registered_model", name, renamed),),
             (("registered_model.renamed", None),)),
        Step("v1 deleted", (_call("delete_model_version", renamed, "1"),),
             (("model_version.deleted", "1"),)),
        Step("model deleted", (_call("delete_registered_model", renamed),),
             (("registered_model.deleted", None),)),
    ]


@dataclass
class StepResult:
    step: Step
    got: Seen
    error: str | None = None
    """A client call or the detection round failed (``got`` is then what came before)."""

    @property
    def passed(self) -> bool:
        return self.error is None and tuple(self.got) == self.step.expected

    def mismatch(self) -> str:
        """``'<what>: expected [...], got [...]'`` (or the error)."""
        if self.error is not None:
            return f"{self.step.what}: {self.error}"
        return (f"{self.step.what}: expected {_show(self.step.expected)}, "
                f"got {_show(self.got)}")


@dataclass
class WorkflowResult:
    steps: list[StepResult]
    events: list[Any]
    """Every event the detection rounds returned, in order."""
    seconds: float

    @property
    def passed(self) -> int:
        return sum(1 for s in self.steps if s.passed)

    @property
    def expected_events(self) -> int:
        return sum(len(s.step.expected) for s in self.steps)

    def mismatches(self) -> list[str]:
        """One line per step that failed, then any payload that is not as the steps made it."""
        found = [s.mismatch() for s in self.steps if not s.passed]
        return found + payload_problems(self.events)

    @property
    def ok(self) -> bool:
        return self.passed == len(self.steps) and not self.mismatches()


async def run_workflow(call: Call, poll: Poll, name: str) -> WorkflowResult:
    """Every step: its calls, then one ``poll()`` (a detection round returning its events).
    A failed call or round is that step's error and the workflow goes on, so a registry that
    fails one step still shows how the others fare."""
    results: list[StepResult] = []
    seen: list[Any] = []
    started = time.perf_counter()
    for step in workflow(name):
        try:
            for c in step.calls:
                call(c.method, *c.args, **c.kwargs)
            events = await poll()
        except Exception as exc:  # a value here: the table shows it, the test asserts on it
            results.append(StepResult(step, [], f"{type(exc).__name__}: {exc}"[:500]))
            continue
        seen.extend(events)
        results.append(StepResult(step, [(e.type, e.version) for e in events]))
    return WorkflowResult(results, seen, time.perf_counter() - started)


def payload_problems(events: list[Any]) -> list[str]:
    """What the events of a whole workflow carry, checked: the stage transitions' from and
    to, the alias move's previous version, the version tag's key and value."""
    problems = []
    transitions = [(e.data.get("from_stage"), e.data.get("to_stage")) for e in events
                   if e.type == "model_version.stage_transitioned"]
    if transitions != [("None", "Staging"), ("Staging", "Production")]:
        problems.append(f"stage transitions: got {transitions}")
    moved = [(d.get("alias"), d.get("version"), d.get("previous_version"))
             for d in (e.data for e in events if e.type == "model_version_alias.created")]
    if moved != [("champion", "1", None), ("champion", "2", "1")]:
        problems.append(f"alias moves (alias, version, previous): got {moved}")
    tags = [(e.data.get("key"), e.data.get("value")) for e in events
            if e.type == "model_version_tag.set"]
    if tags != [("validated", "true")]:
        problems.append(f"version tags: got {tags}")
    return problems


def _show(events: Seen | tuple[tuple[str, str | None], ...]) -> str:
    return "[" + ", ".join(t if v is None else f"{t} v{v}" for t, v in events) + "]"
