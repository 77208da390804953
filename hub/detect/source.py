"""Reads the whole registry into a :class:`Snapshot` through ``MlflowClient``.

A scan is all-or-nothing: any page error, timeout or unreachable server raises
:class:`SourceError`, so the detector never diffs against a partial view (a partial view
would look like deletions). ``MlflowClient`` is synchronous; it runs on one dedicated
thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from hub.config import MlflowConfig
from hub.detect.snapshot import ModelState, Snapshot, VersionState
from hub.errors import SourceError
from hub.redaction import redact_url

log = structlog.get_logger(__name__)
T = TypeVar("T")


class RegistrySource:
    """Scans an MLflow registry: ``async with RegistrySource(cfg) as s: await s.scan()``."""

    def __init__(self, config: MlflowConfig) -> None:
        self._config = config
        self._executor: ThreadPoolExecutor | None = None
        self._client: Any = None

    async def __aenter__(self) -> RegistrySource:
        # MLflow's REST client reads these per request; keep a failing server from stalling a
        # scan for minutes behind its default retry policy, unless the user chose otherwise.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self._config.request_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(self._config.scan_timeout_s)))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-scan")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient  # heavy import, only when first needed

            from hub.detect.registry_uri import prepare  # drivers, file store, global URIs
            tracking, registry = prepare(self._config.tracking_uri)
            self._client = MlflowClient(tracking_uri=tracking, registry_uri=registry)
        return self._client

    async def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
        """Run a blocking MLflow call on the scan thread; failures become SourceError."""
        if self._executor is None:
            raise RuntimeError("RegistrySource used outside 'async with'")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, lambda: fn(*args))
        try:
            return await asyncio.wait_for(future, timeout_s or self._config.scan_timeout_s)
        except TimeoutError as exc:
            raise SourceError(
                f"MLflow at {redact_url(self._config.tracking_uri)} did not answer within "
                f"{self._config.scan_timeout_s}s; raise mlflow.scan_timeout_s if it is just slow"
            ) from exc
        except SourceError:
            raise
        except Exception as exc:  # any MLflow/requests/sqlalchemy failure: the scan is void
            raise SourceError(
                f"reading the registry at {redact_url(self._config.tracking_uri)} failed: "
                f"{type(exc).__name__}: {exc}"  # whole: MLflow's hint comes last
            ) from exc

    async def scan(self) -> Snapshot:
        started = time.perf_counter()
        snapshot = await self.call(self._scan_sync)
        log.debug("detector.scan", models=len(snapshot),
                  duration_s=round(time.perf_counter() - started, 3))
        return snapshot

    def _scan_sync(self) -> Snapshot:
        client = self.client
        models = list(_pages(lambda token: client.search_registered_models(
            max_results=self._config.page_size, page_token=token)))
        versions = list(_pages(lambda token: client.search_model_versions(
            max_results=self._config.page_size * 10, page_token=token)))
        return build_snapshot(models, versions)


    async def scan_model(self, name: str) -> ModelState | None:
        """One model and its versions, or ``None`` if it does not exist (any more)."""
        return await self.call(self._scan_model_sync, name)

    def _scan_model_sync(self, name: str) -> ModelState | None:
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        quoted = "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
        versions = list(_pages(lambda token: client.search_model_versions(
            filter_string=f"name = {quoted}", max_results=self._config.page_size * 10,
            page_token=token)))
        return build_snapshot([model], versions).models.get(name)


def _pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def build_snapshot(models: list[Any], versions: list[Any]) -> Snapshot:
    """Assemble MLflow entities into a snapshot.

    Models and versions come from two queries, so a version may belong to a model created
    after the model query: it is left for the next scan, which sees both. Aliases come from
    the registered model (``search_model_versions`` returns none); an alias pointing at a
    version the scan did not see is dropped the same way.
    """
    by_model: dict[str, dict[str, VersionState]] = {}
    for mv in versions:
        v = VersionState(
            version=str(mv.version),
            creation_timestamp=int(mv.creation_timestamp or 0),
            run_id=mv.run_id or None,
            source=mv.source or None,
            user_id=mv.user_id or None,
            status=str(mv.status or "READY"),
            stage=str(mv.current_stage or "None"),
            description=mv.description or None,
            tags=dict(mv.tags or {}),
        )
        by_model.setdefault(mv.name, {})[v.version] = v
    states = []
    for rm in models:
        vs = by_model.get(rm.name, {})
        aliases = {alias: version for alias, version in _aliases(rm.aliases) if version in vs}
        states.append(ModelState(
            name=rm.name,
            creation_timestamp=int(rm.creation_timestamp or 0),
            description=rm.description or None,
            tags=dict(rm.tags or {}),
            aliases=aliases,
            versions=vs,
        ))
    return Snapshot.of(states)


def _aliases(raw: Any) -> list[tuple[str, str]]:
    """``RegisteredModel.aliases`` is a dict ``{alias: version}`` in MLflow 3; older clients
    returned ``RegisteredModelAlias`` objects."""
    if isinstance(raw, dict):
        return [(str(alias), str(version)) for alias, version in raw.items()]
    return [(str(a.alias), str(a.version)) for a in raw or []]
