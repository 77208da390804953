"""The full scan over an in-memory registry store: prompts merged in, versions listed model
by model, and answers that cannot be true refused (a :class:`SourceError` naming the server),
never turned into a snapshot with models missing. The real servers (MLflow 2.9 and 3.x) are
in tests/integration/test_registry_compat.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hub.config import MlflowConfig
from hub.detect.source import PROMPTS, RegistrySource, name_filter
from hub.errors import SourceError


def model(name: str, **tags: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, creation_timestamp=1, description=None, tags=tags,
                           aliases={})


def version(name: str, number: int, stage: str | None = "None") -> SimpleNamespace:
    return SimpleNamespace(name=name, version=number, creation_timestamp=2, run_id=None,
                           source="s3://m", user_id=None, status="READY", current_stage=stage,
                           description=None, tags={})


class Store:
    """Answers like MLflow 3's SQL store: prompts only when the filter asks for them; a
    ``name = '...'`` filter is required when ``needs_name`` (Unity Catalog)."""

    def __init__(self, models: list[Any], versions: list[Any], *, needs_name: bool = False,
                 model_answers: list[list[Any]] | None = None) -> None:
        self.models, self.versions, self.needs_name = models, versions, needs_name
        self.model_answers = model_answers  # successive answers to the unfiltered search
        self.queries: list[tuple[str, str | None]] = []

    def _prompt(self, name: str) -> bool:
        return any(m.name == name and m.tags.get("mlflow.prompt.is_prompt") == "true"
                   for m in self.models)

    def search_registered_models(self, filter_string: str | None, **_: Any) -> list[Any]:
        self.queries.append(("models", filter_string))
        if filter_string == PROMPTS:
            return [m for m in self.models if self._prompt(m.name)]
        if self.model_answers:
            return self.model_answers.pop(0)
        return [m for m in self.models if not self._prompt(m.name)]

    def search_model_versions(self, filter_string: str | None, **_: Any) -> list[Any]:
        self.queries.append(("versions", filter_string))
        if self.needs_name and not (filter_string or "").startswith("name = "):
            raise RuntimeError("filter 'name = ...' is required")
        found = list(self.versions)
        if filter_string and filter_string.startswith("name = "):
            name = filter_string.split(" AND ")[0][8:-1]
            found = [v for v in found if v.name == name]
        prompts = PROMPTS in (filter_string or "")
        return [v for v in found if self._prompt(v.name) == prompts]

    def get_registered_model(self, name: str) -> Any:
        return next(m for m in self.models if m.name == name)


class Source(RegistrySource):
    def __init__(self, config: MlflowConfig, store: Store) -> None:
        super().__init__(config)
        self._store = store

    @property
    def store(self) -> Any:
        return self._store


async def scan(store: Store, **config: Any) -> Any:
    cfg = MlflowConfig(tracking_uri="http://user:pw@mlflow.test:5000", **config)
    async with Source(cfg, store) as source:
        return await source.scan()


async def test_prompts_are_models_in_the_scan_with_their_tag() -> None:
    store = Store([model("iris"), model("greeting", **{"mlflow.prompt.is_prompt": "true"})],
                  [version("iris", 1), version("greeting", 1), version("greeting", 2)])
    snapshot = await scan(store)
    assert sorted(snapshot.models) == ["greeting", "iris"]
    assert sorted(snapshot.models["greeting"].versions) == ["1", "2"]
    assert snapshot.models["greeting"].tags == {"mlflow.prompt.is_prompt": "true"}


async def test_versions_without_their_model_twice_is_a_source_error_naming_the_server() -> None:
    store = Store([model("iris")], [version("iris", 1)], model_answers=[[], []])
    with pytest.raises(SourceError) as caught:
        await scan(store)
    message = str(caught.value)
    assert "@mlflow.test:5000" in message and "pw" not in message
    assert "no registered models at all" in message and "MLflow server version" in message


async def test_a_model_created_between_the_two_searches_is_read_again_at_once() -> None:
    store = Store([model("iris"), model("new")], [version("iris", 1), version("new", 1)],
                  model_answers=[[model("iris")]])
    snapshot = await scan(store)
    assert sorted(snapshot.models) == ["iris", "new"]
    assert sorted(snapshot.models["new"].versions) == ["1"]


async def test_per_model_mode_asks_each_models_versions_by_name_and_stage_none() -> None:
    store = Store([model("iris"), model("it's"),
                   model("greeting", **{"mlflow.prompt.is_prompt": "true"})],
                  [version("iris", 1, stage=None), version("it's", 3), version("greeting", 1)],
                  needs_name=True)
    snapshot = await scan(store, scan_mode="per_model")
    assert {n: sorted(m.versions) for n, m in snapshot.models.items()} == \
        {"iris": ["1"], "it's": ["3"], "greeting": ["1"]}
    assert snapshot.models["iris"].versions["1"].stage == "None"
    asked = [q for kind, q in store.queries if kind == "versions"]
    assert asked == ["name = 'iris'", 'name = "it\'s"', "name = 'greeting'",
                     f"name = 'greeting' AND {PROMPTS}"]


async def test_unity_catalog_is_scanned_per_model_without_search_filters() -> None:
    store = Store([model("main.ml.iris")], [version("main.ml.iris", 1)], needs_name=True)
    snapshot = await scan(store, registry_uri="databricks-uc")
    assert sorted(snapshot.models["main.ml.iris"].versions) == ["1"]
    assert ("models", PROMPTS) not in store.queries  # Unity Catalog takes no model filter


def test_name_filter_quotes_as_mlflow_reads_it() -> None:
    assert name_filter("iris") == "name = 'iris'"
    assert name_filter("it's") == 'name = "it\'s"'
    assert name_filter("back\\slash") == "name = 'back\\slash'"  # no escapes in MLflow
    assert name_filter("both'\"") is None


def test_registry_uri_defaults_to_the_environment_then_the_tracking_uri(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert MlflowConfig(tracking_uri="http://t").registry == "http://t"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "databricks-uc")
    config = MlflowConfig(tracking_uri="databricks")
    assert config.registry == "databricks-uc" and config.per_model_scan
    assert not MlflowConfig(tracking_uri="databricks", scan_mode="registry").per_model_scan
    assert MlflowConfig(tracking_uri="http://t", scan_mode="per_model").per_model_scan


@pytest.mark.parametrize("per_model", [False, True])
async def test_a_scan_shares_what_did_not_change_with_the_last_one(per_model: bool) -> None:
    """Unchanged models and versions come back as the last scan's objects (the detector
    holds those: no second copy of a quiet registry); what changed is new."""
    store = Store([model("iris"), model("wine")],
                  [version("iris", 1), version("iris", 2), version("wine", 1)])
    cfg = MlflowConfig(tracking_uri="http://mlflow.test:5000",
                       scan_mode="per_model" if per_model else "registry")
    async with Source(cfg, store) as source:
        first = await source.scan()
        store.versions[1] = version("iris", 2, stage="Production")
        second = await source.scan()
    assert second.models["wine"] is first.models["wine"]
    iris, before = second.models["iris"], first.models["iris"]
    assert iris is not before and iris.versions["2"].stage == "Production"
    assert iris.versions["1"] is before.versions["1"]
    assert iris.versions["2"] is not before.versions["2"]
