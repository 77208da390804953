"""The full scan reads a tracking server's pages as JSON (hub/detect/rest_json.py): against a
real ``mlflow server`` holding every kind of registry object, it must give exactly the
snapshot MLflow's own store search gives — models, prompts, versions of both, stages,
statuses, descriptions, tags (empty values too), aliases, names with quotes — over many
small pages; and stores other than a tracking server keep the store's own search."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from mlflow import MlflowClient

from hub.config import MlflowConfig
from hub.detect.rest_json import JsonSearch
from hub.detect.source import RegistrySource
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.timeout(120)


def populate(client: MlflowClient, run: str) -> set[str]:
    """Models and prompts with everything the snapshot holds; their names."""
    plain, quoted, bare = f"rj-{run}-plain", f"rj-{run}-it's", f"rj-{run}-bare"
    prompt = f"rj-{run}-prompt"
    client.create_registered_model(plain, tags={"team": "ml", "empty": ""},
                                   description="the plain one")
    client.create_registered_model(quoted)
    client.create_registered_model(bare)
    for n in range(5):
        client.create_model_version(plain, f"s3://bucket/{run}/{n}", run_id=None,
                                    tags={"n": str(n), "blank": ""},
                                    description=f"version {n}" if n % 2 else None)
    client.create_model_version(quoted, "s3://bucket/q", tags={"k": "v"})
    client.transition_model_version_stage(plain, "2", "Staging")
    client.transition_model_version_stage(plain, "3", "Production")
    client.transition_model_version_stage(plain, "4", "Archived")
    client.set_registered_model_alias(plain, "champion", "3")
    client.set_registered_model_alias(plain, "challenger", "5")
    client.set_registered_model_alias(quoted, "only", "1")
    client.set_model_version_tag(plain, "1", "reviewed", "yes")
    client.register_prompt(prompt, "Summarise {{text}}", tags={"owner": "bob"})
    client.register_prompt(prompt, "Summarise in {{n}} words: {{text}}")
    client.set_prompt_alias(prompt, "production", 2)
    client.set_prompt_version_tag(prompt, 1, "checked", "")
    return {plain, quoted, bare, prompt}


async def scan(url: str, *, json: bool) -> tuple[Any, Any]:
    config = MlflowConfig(tracking_uri=url, page_size=2, request_retries=0)
    async with RegistrySource(config) as source:
        if not json:
            source._json = None  # the store's own search, as before the JSON reading
        snapshot = await source.scan()
        return snapshot, source._json


async def test_json_pages_give_the_store_search_snapshot(mlflow_server: MlflowServer) -> None:
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    names = await asyncio.to_thread(populate, client, uuid.uuid4().hex[:8])

    (by_json, reader), (by_store, _) = await asyncio.gather(
        scan(mlflow_server.url, json=True), scan(mlflow_server.url, json=False))

    assert isinstance(reader, JsonSearch), "a tracking server's pages are read as JSON"
    assert names <= set(by_json.models)
    assert by_json.models == by_store.models
    plain = by_json.models[next(n for n in names if n.endswith("-plain"))]
    assert (plain.description, plain.tags) == ("the plain one", {"team": "ml", "empty": ""})
    assert plain.aliases == {"champion": "3", "challenger": "5"}
    assert [plain.versions[v].stage for v in "12345"] == \
        ["None", "Staging", "Production", "Archived", "None"]
    assert plain.versions["1"].tags == {"n": "0", "blank": "", "reviewed": "yes"}
    assert [plain.versions[v].description for v in "12"] == [None, "version 1"]


def test_stores_other_than_a_tracking_server_keep_their_own_search(
        mlflow_server: MlflowServer) -> None:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(mlflow_server.db_uri)
    try:
        assert JsonSearch.of(store) is None
    finally:
        store.engine.dispose()
