"""An example handler plugin, packaged on its own: appends each event to a JSON Lines file.

This is the whole contract: an ``Options`` model, a constructor taking ``name``, ``options``
and ``context``, ``async deliver(event) -> Outcome`` and ``async aclose()``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from hub import Event, HandlerContext, HandlerOptions, Outcome


class JsonlOptions(HandlerOptions):
    path: Path
    fail_first: int = Field(0, ge=0)  # answer "retry" this many times first (to show retries)


class JsonlHandler:
    Options: ClassVar[type[JsonlOptions]] = JsonlOptions

    def __init__(self, *, name: str, options: JsonlOptions, context: HandlerContext) -> None:
        self.name = name
        self._options = options
        self._failures_left = options.fail_first

    async def deliver(self, event: Event) -> Outcome:
        if self._failures_left > 0:
            self._failures_left -= 1
            return Outcome.retry("example plugin: failing on purpose")
        line = {"id": event.id, "type": event.type, "model": event.model, "data": event.data,
                "subscription": self.name}
        with self._options.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
        return Outcome.delivered()

    async def aclose(self) -> None:
        return None
