"""The ``console`` handler: one readable line per event on standard output."""

from __future__ import annotations

import sys
from typing import Any, ClassVar, TextIO

from hub.events import Event
from hub.outcome import Outcome
from hub.plugins import HandlerContext, HandlerOptions, is_test


class ConsoleOptions(HandlerOptions):
    stream: str = "stdout"  # or "stderr"


def describe(event: Event) -> str:
    """A one-line summary, e.g. ``iris  v3  stage None → Production``; a test send starts
    with ``[test]``."""
    d = event.data
    where = event.model + (f" v{event.version}" if event.version else "")
    kind = event.type.split(".", 1)[-1]
    detail = ""
    if "to_stage" in d:
        detail = f"stage {d.get('from_stage')} → {d['to_stage']}"
    elif "alias" in d:
        prev = d.get("previous_version")
        detail = f"@{d['alias']}" + (f" (was v{prev})" if prev else "")
    elif "key" in d:
        detail = f"{d['key']}={d.get('value')!r}" if "value" in d else f"{d['key']} removed"
    elif "previous_name" in d:
        detail = f"renamed from {d['previous_name']}"
    elif "status" in d and "previous_status" in d:
        detail = f"status {d['previous_status']} → {d['status']}"
    elif "description" in d and "previous_description" in d:
        detail = f"description {d['description']!r}"
    mark = "[test] " if is_test(event) else ""
    return f"{mark}{event.time:%H:%M:%S} {event.type:<36} {where:<28} {detail}".rstrip() or kind


class ConsoleHandler:
    Options: ClassVar[type[ConsoleOptions]] = ConsoleOptions

    def __init__(self, *, name: str, options: ConsoleOptions, context: HandlerContext) -> None:
        self.name = name
        self._stream: TextIO = sys.stderr if options.stream == "stderr" else sys.stdout

    async def deliver(self, event: Event) -> Outcome:
        print(describe(event), file=self._stream, flush=True)
        return Outcome.delivered()

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ConsoleHandler({self.name!r})"


__all__: list[Any] = ["ConsoleHandler", "ConsoleOptions", "describe"]
