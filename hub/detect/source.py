"""Reads the whole registry into a :class:`Snapshot` through MLflow's registry store.

A scan is all-or-nothing: any page error, timeout or unreachable server raises
:class:`SourceError`, so the detector never diffs against a partial view (a partial view
would look like deletions). MLflow's client is synchronous; it runs on one dedicated
thread, off the event loop; one model's re-read (a push) runs on a small pool of its own, so
it never queues behind a full scan, and asks for the model and its versions at once.

Why the store under ``MlflowClient`` and not the client's own search methods: the MLflow 3
client adds ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every model search, which MLflow
servers up to 2.20 answer with nothing (the hub saw an empty registry and said it was ready),
and its ``get_registered_model`` refuses prompts. The store is what the client calls
underneath, for REST, SQL, file and Unity Catalog registries alike, with the same
authentication; asked with no filter, it leaves old servers nothing to misread.

Prompts are models too (tagged ``mlflow.prompt.is_prompt``): MLflow 3 stores leave them out
of an unfiltered search, so the scan asks for them separately and merges the two answers; a
model that becomes a prompt stays in the snapshot and is never seen as deleted. Unity Catalog
takes no search filters (and keeps prompts apart): its scan is the unfiltered one.

An answer that cannot be true (versions of a model the model search did not return, still so
when read again at once) is a :class:`SourceError` naming the server and what to check, never
a quiet snapshot with models missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import structlog

from hub.config import MlflowConfig
from hub.detect.registry_uri import open_client
from hub.detect.rest_json import JsonSearch, model_of_json, version_of_json
from hub.detect.snapshot import ModelState, Snapshot, Version, VersionState
from hub.errors import SourceError
from hub.redaction import redact_url

log = structlog.get_logger(__name__)
T = TypeVar("T")

READ_THREADS = 4
"""Threads for one-model re-reads (pushes): two per re-read, so two pushes at once."""
PROMPT_TAG = "mlflow.prompt.is_prompt"
PROMPTS = f"tags.`{PROMPT_TAG}` = 'true'"
"""The search filter MLflow 3 stores need to include prompts (servers up to 2.20 honour it
as a plain tag filter)."""
R = TypeVar("R")


class RegistrySource:
    """Scans an MLflow registry: ``async with RegistrySource(cfg) as s: await s.scan()``."""

    def __init__(self, config: MlflowConfig) -> None:
        self._config = config
        self._executor: ThreadPoolExecutor | None = None
        self._reads: ThreadPoolExecutor | None = None  # one model's re-reads (pushes)
        self._read_store: Any = None
        self._client: Any = None
        self._where = redact_url(config.registry)
        self._last = Snapshot()  # the last scan (see _scan_sync)
        self._json: JsonSearch | bool | None = False  # False: not looked at yet
        self._prompt_filters = not config.registry.startswith(("databricks-uc", "uc:"))

    async def __aenter__(self) -> RegistrySource:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-scan")
        self._reads = ThreadPoolExecutor(max_workers=READ_THREADS,
                                         thread_name_prefix="mlflow-read")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._reads is not None:
            self._reads.shutdown(wait=False, cancel_futures=True)
            self._reads = None

    @property
    def client(self) -> Any:
        """``MlflowClient`` on the configured tracking server and registry."""
        if self._client is None:  # drivers, file store, process-wide URIs, HTTP retries
            self._client = open_client(self._config)
        return self._client

    @property
    def store(self) -> Any:
        """The registry store the client calls (REST, SQL, file or Unity Catalog)."""
        return self.client._get_registry_client().store

    async def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
        """Run a blocking MLflow call on the scan thread; failures become SourceError."""
        return await self._run(self._executor, fn, *args, timeout_s=timeout_s)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`call`, on the re-read pool (beside a running scan)."""
        return await self._run(self._reads, fn, *args)

    async def _run(self, executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any,
                   timeout_s: float | None = None) -> T:
        if executor is None:
            raise RuntimeError("RegistrySource used outside 'async with'")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, lambda: fn(*args))
        try:
            return await asyncio.wait_for(future, timeout_s or self._config.scan_timeout_s)
        except TimeoutError as exc:
            raise SourceError(
                f"MLflow at {self._where} did not answer within "
                f"{self._config.scan_timeout_s}s; raise mlflow.scan_timeout_s if it is just slow"
            ) from exc
        except SourceError:
            raise
        except Exception as exc:  # any MLflow/requests/sqlalchemy failure: the scan is void
            raise SourceError(f"reading the registry at {self._where} failed: "
                              f"{describe(exc)}") from exc

    async def scan(self) -> Snapshot:
        started = time.perf_counter()
        snapshot = await self.call(self._scan_sync)
        log.debug("detector.scan", models=len(snapshot),
                  duration_s=round(time.perf_counter() - started, 3))
        return snapshot

    def _scan_sync(self) -> Snapshot:
        """Every page is turned into snapshot values as it arrives, so MLflow's entities for
        one page at a time are alive, not the registry's (100 MB at 100,000 versions); and a
        version or model as the last scan had it is that scan's object again (the detector
        holds those), so a scan of an unchanged registry adds next to nothing to memory.
        A tracking server's pages are read as JSON (:mod:`hub.detect.rest_json`)."""
        if self._json is False:
            self._json = JsonSearch.of(self.store)
        store = self._json or self.store
        if self._config.per_model_scan:
            models = self._models(store)
            versions = [v for m in models for v in self._versions(store, m)]
        else:
            models, versions = self._models(store), self._all_versions(store)
            if missing := orphans(models, versions):
                # a model created between the two searches shows up in a second reading
                models, versions = self._models(store), self._all_versions(store)
                if missing := orphans(models, versions):
                    raise SourceError(impossible_answer(self._where, models, missing))
        last = self._last.models
        snapshot = build_snapshot(models, versions)
        self._last = Snapshot({n: last[n] if last.get(n) == m else m
                               for n, m in snapshot.models.items()})
        return self._last

    def _known(self, version: Version) -> Version:
        """``version``, or the last scan's equal object."""
        name, state = version
        model = self._last.models.get(name)
        known = model.versions.get(state.version) if model is not None else None
        return (name, known) if known == state else version

    def _models(self, store: Any) -> list[ModelState]:
        convert, _ = _readers(store)
        found = self._merged(lambda query, token: store.search_registered_models(
            filter_string=query, max_results=self._config.page_size, page_token=token),
            convert, lambda m: (m.name, ""))
        return list(found.values())

    def _all_versions(self, store: Any) -> list[Version]:
        _, convert = _readers(store)
        found = self._merged(lambda query, token: store.search_model_versions(
            filter_string=query, max_results=self._config.page_size * 10, page_token=token),
            lambda mv: self._known(convert(mv)), lambda v: (v[0], v[1].version))
        return list(found.values())

    def _merged(self, search: Callable[[str | None, str | None], Any],
                convert: Callable[[Any], R], key: Callable[[R], tuple[str, str]]
                ) -> dict[tuple[str, str], R]:
        """Everything ``search`` finds unfiltered, plus the prompts (once each), converted
        page by page."""
        found = {key(r): r for r in map(convert, _pages(lambda token: search(None, token)))}
        if self._prompt_filters:
            for record in map(convert, _pages(lambda token: search(PROMPTS, token))):
                found.setdefault(key(record), record)
        return found

    def _versions(self, store: Any, model: ModelState) -> list[Version]:
        """One model's versions (prompt versions too, for a prompt)."""
        by_name = name_filter(model.name)
        if by_name is None:  # both kinds of quote in the name: pick it out of all versions
            return [v for v in self._all_versions(store) if v[0] == model.name]
        queries = [by_name]
        if self._prompt_filters and _prompt_tagged(model.tags):
            queries.append(f"{by_name} AND {PROMPTS}")
        _, convert = _readers(store)
        found: dict[str, Version] = {}
        for query in queries:
            for v in (self._known(convert(mv)) for mv in self._version_pages(store, query)):
                found.setdefault(v[1].version, v)
        return list(found.values())

    def _version_pages(self, store: Any, query: str) -> Iterator[Any]:
        return _pages(lambda token: store.search_model_versions(
            filter_string=query, max_results=self._config.page_size * 10, page_token=token))

    async def scan_model(self, name: str) -> ModelState | None:
        """One model and its versions, or ``None`` if it does not exist (any more).

        The model and its versions are asked for at once, on two threads (a prompt's prompt
        versions after, once the model says it is one): one round trip, not two."""
        if self._read_store is None:  # opening the client may load drivers: not on the loop
            self._read_store = await self._read(lambda: self.store)
        store = self._read_store
        model, versions = await asyncio.gather(
            self._read(self._model_sync, store, name),
            self._read(self._named_versions_sync, store, name, False))
        if model is None:
            return None
        if self._prompt_filters and _prompt_tagged(model.tags):
            more = await self._read(self._named_versions_sync, store, name, True)
            versions = list({v[1].version: v for v in [*more, *versions]}.values())
        return build_snapshot([model], versions).models.get(name)

    @staticmethod
    def _model_sync(store: Any, name: str) -> ModelState | None:
        from mlflow.exceptions import MlflowException

        try:
            return model_of(store.get_registered_model(name))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _named_versions_sync(self, store: Any, name: str, prompts: bool) -> list[Version]:
        """``name``'s versions (with ``prompts``, its prompt versions)."""
        by_name = name_filter(name)
        if by_name is None:  # both kinds of quote in the name: pick it out of all versions
            return [] if prompts else [v for v in self._all_versions(store) if v[0] == name]
        query = f"{by_name} AND {PROMPTS}" if prompts else by_name
        return list(map(version_of, self._version_pages(store, query)))


def name_filter(name: str) -> str | None:
    """``name = '...'`` for MLflow's search filter, or ``None`` for a name it cannot express.

    MLflow takes what is between the quotes literally (no escapes: a backslash is itself), so
    a name with ``'`` goes in double quotes; a name with both kinds of quote cannot be asked.
    """
    if "'" not in name:
        return f"name = '{name}'"
    if '"' not in name:
        return f'name = "{name}"'
    return None


_CREDENTIALS = ("check the credentials the hub uses (MLFLOW_TRACKING_TOKEN, or "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD); ")
_ADVICE = {
    "ENDPOINT_NOT_FOUND": "is this an MLflow tracking server with its model registry? ",
    "PERMISSION_DENIED": _CREDENTIALS,
    "UNAUTHENTICATED": _CREDENTIALS,
}


def describe(exc: BaseException) -> str:
    """A registry failure in words: MLflow's whole message, so its own hint comes last."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return f"{exc.error_code}: {_ADVICE.get(exc.error_code, '')}{exc.message}"
    return f"{type(exc).__name__}: {exc}"


def orphans(models: list[ModelState], versions: list[Version]) -> list[str]:
    """Names of models that have versions in ``versions`` but are not in ``models``."""
    known = {m.name for m in models}
    return sorted({name for name, _ in versions} - known)


def impossible_answer(where: str, models: list[Any], missing: list[str]) -> str:
    shown = ", ".join(repr(n) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
    found = (f"no registered models at all while versions of {len(missing)} exist"
             if not models else f"versions of {len(missing)} model(s) it did not list ({shown})")
    return (f"the registry at {where} answered the model search with {found}, twice in a "
            f"row: its model search is not answering what was asked. Check the MLflow server "
            f"version and its logs, and that the hub's credentials may read every model; "
            f"nothing is emitted from such an answer")


def _pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _tags(entity: Any) -> dict[str, str]:
    """All tags: MLflow 3's ``RegisteredModel.tags`` hides ``mlflow.prompt.is_prompt``,
    which tells a prompt from a model."""
    raw = getattr(entity, "_tags", None)
    return dict(raw if isinstance(raw, dict) else entity.tags or {})


def _prompt_tagged(tags: dict[str, str]) -> bool:
    return str(tags.get(PROMPT_TAG, "")).lower() == "true"


def version_of(mv: Any) -> Version:
    """An MLflow ``ModelVersion`` as (its model's name, its state)."""
    return (mv.name, VersionState.reported(
        version=mv.version, creation_timestamp=mv.creation_timestamp, run_id=mv.run_id,
        source=mv.source, user_id=mv.user_id, status=mv.status,
        stage=getattr(mv, "current_stage", None), description=mv.description,
        tags=_tags(mv).items()))


def model_of(rm: Any) -> ModelState:
    """An MLflow ``RegisteredModel`` as a state without versions, and with every alias it
    lists (:func:`build_snapshot` keeps those whose version it has)."""
    return ModelState.reported(
        name=rm.name, creation_timestamp=rm.creation_timestamp, description=rm.description,
        tags=_tags(rm).items(), aliases=_aliases(rm.aliases))


def _readers(store: Any) -> tuple[Callable[[Any], ModelState], Callable[[Any], Version]]:
    """How ``store``'s search results become snapshot values: read as JSON
    (:class:`JsonSearch`), or from MLflow's entities."""
    if isinstance(store, JsonSearch):
        return model_of_json, version_of_json
    return model_of, version_of


def build_snapshot(models: list[ModelState], versions: list[Version]) -> Snapshot:
    """Put versions into their models.

    Models and versions come from two queries, so a version may belong to a model created
    after the model query: it is left for the next scan, which sees both. Aliases come from
    the registered model (``search_model_versions`` returns none); an alias pointing at a
    version the scan did not see is dropped the same way. A registry without stages (Unity
    Catalog) gives every version the stage ``"None"``.
    """
    by_model: dict[str, dict[str, VersionState]] = {}
    for name, v in versions:
        by_model.setdefault(name, {})[v.version] = v
    states = []
    for model in models:
        vs = by_model.get(model.name, {})
        aliases = {alias: version for alias, version in model.aliases.items() if version in vs}
        states.append(replace(model, versions=vs, aliases=aliases))
    return Snapshot.of(states)


def _aliases(raw: Any) -> list[tuple[str, str]]:
    """``RegisteredModel.aliases`` is a dict ``{alias: version}`` in MLflow 3; older clients
    returned ``RegisteredModelAlias`` objects."""
    if isinstance(raw, dict):
        return [(str(alias), str(version)) for alias, version in raw.items()]
    return [(str(a.alias), str(a.version)) for a in raw or []]
