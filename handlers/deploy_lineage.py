"""The lineage a ``deploy`` request carries with ``include_lineage``: the model version's run,
its experiment, params and metrics, and the version tags.

:func:`fetch_lineage` reads it through a (blocking) ``MlflowClient``; :class:`LineageCache`
keeps the most recently used per (model, version), so a version's events fetch it once;
:func:`lineage_of` puts the two together for one event.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from hub.events import Event


def fetch_lineage(client: Any, model: str, version: str) -> dict[str, Any]:
    """Blocking (run through ``context.mlflow_call``): as a deploy pipeline's lineage lookup
    gathers it — the version's run, its experiment, params and metrics, the version tags."""
    mv = client.get_model_version(model, version)
    lineage: dict[str, Any] = {"run_id": mv.run_id or None, "experiment_id": None,
                               "experiment_name": None, "params": {}, "metrics": {},
                               "tags": dict(mv.tags or {})}
    if mv.run_id:
        run = client.get_run(mv.run_id)
        experiment = client.get_experiment(run.info.experiment_id)
        lineage.update(
            experiment_id=str(run.info.experiment_id), experiment_name=experiment.name,
            params=dict(run.data.params),
            # NaN/inf are not JSON
            metrics={k: v if math.isfinite(v) else None for k, v in run.data.metrics.items()},
        )
    return lineage


class LineageCache:
    """Bounded LRU of lineage per (model, version); concurrent misses fetch once and
    failures are not cached."""

    def __init__(self, max_entries: int = 512) -> None:
        self._max = max_entries
        self._values: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Event] = {}

    async def get(self, key: tuple[str, str],
                  fetch: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        while key not in self._values:
            waiting = self._inflight.get(key)
            if waiting is None:
                return await self._fetch(key, fetch)
            await waiting.wait()
        self._values.move_to_end(key)
        return self._values[key]

    async def _fetch(self, key: tuple[str, str],
                     fetch: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        done = self._inflight[key] = asyncio.Event()
        try:
            value = await fetch()
            self._values[key] = value
            while len(self._values) > self._max:
                self._values.popitem(last=False)
            return value
        finally:
            del self._inflight[key]
            done.set()


async def lineage_of(event: Event, cache: LineageCache, call: Callable[..., Awaitable[Any]],
                     timeout_s: float) -> dict[str, Any] | None:
    """``event``'s lineage, fetched through ``call`` (``HandlerContext.mlflow_call``) within
    ``timeout_s`` unless ``cache`` has it; None for an event without a version."""
    version = event.version or event.data.get("version")
    if version is None:
        return None  # a registered-model event: no version, no lineage

    async def fetch() -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            result: dict[str, Any] = await call(fetch_lineage, event.model, str(version))
            return result

    lineage = dict(await cache.get((event.model, str(version)), fetch))
    if isinstance(event.data.get("tags"), dict):  # current at the event, fresher than cache
        lineage["tags"] = dict(event.data["tags"])
    return lineage


__all__ = ["LineageCache", "fetch_lineage", "lineage_of"]
