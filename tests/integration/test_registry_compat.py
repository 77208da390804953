"""The hub's detector against registries other than the installed MLflow's own server: a real
MLflow 2.9 server (from a cached venv, see tests/support/mlflow_versions.py) driven by its own
2.9 client, and the current server read in the per-model scan mode (Unity Catalog's). Each
step of the registry workflow is followed by one detection round; the events are the
catalog's, exactly.

Before reading the store directly, MLflow 2.9 (and every server up to 2.20) gave the hub an
empty registry: the MLflow 3 client's model search carries a prompt filter those servers
answer with nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub, Roles
from hub.detect.detector import Detector
from tests.support.detector import hub_config
from tests.support.mlflow_versions import OldClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

Call = Callable[..., Any]


@pytest.fixture
async def detector_for(kafka_bootstrap: str, topic_name: str
                       ) -> AsyncIterator[Callable[..., Any]]:
    hubs: list[Hub] = []

    async def start(url: str, **mlflow: Any) -> Detector:
        config = hub_config(url, kafka_bootstrap, topic_name)
        config.mlflow = config.mlflow.model_copy(update=mlflow)
        hub = Hub(config, Roles(deliver=False))
        await hub.__aenter__()
        hubs.append(hub)
        assert hub.detector is not None
        assert await hub.detector.poll_once() == []  # the baseline
        return hub.detector

    yield start
    for hub in hubs:
        await hub.aclose()


async def run_workflow(call: Call, detector: Detector, name: str) -> list[Any]:
    """Create, version, stage, alias, tag, describe, rename and delete; each step's events."""
    seen: list[Any] = []

    async def step(expected: list[tuple[str, str | None]]) -> None:
        events = await detector.poll_once()
        assert [(e.type, e.version) for e in events] == expected
        seen.extend(events)

    call("create_registered_model", name, tags={"team": "ml"}, description="Iris model")
    await step([("registered_model.created", None)])
    call("create_model_version", name, "s3://models/iris/1")
    call("create_model_version", name, "s3://models/iris/2")
    await step([("model_version.created", "1"), ("model_version.created", "2")])
    call("transition_model_version_stage", name, "1", "Staging")
    await step([("model_version.stage_transitioned", "1")])
    call("transition_model_version_stage", name, "1", "Production")
    await step([("model_version.stage_transitioned", "1")])
    call("set_registered_model_alias", name, "champion", "1")
    await step([("model_version_alias.created", "1")])
    call("set_registered_model_alias", name, "champion", "2")
    await step([("model_version_alias.created", "2")])
    call("delete_registered_model_alias", name, "champion")
    await step([("model_version_alias.deleted", "2")])
    call("set_model_version_tag", name, "2", "validated", "true")
    await step([("model_version_tag.set", "2")])
    call("set_registered_model_tag", name, "owner", "alice")
    await step([("registered_model_tag.set", None)])
    call("update_registered_model", name, description="Iris, v2 docs")
    call("update_model_version", name, "2", description="promoted")
    await step([("registered_model.updated", None), ("model_version.updated", "2")])
    call("rename_registered_model", name, f"{name}-renamed")
    await step([("registered_model.renamed", None)])
    call("delete_model_version", f"{name}-renamed", "1")
    await step([("model_version.deleted", "1")])
    call("delete_registered_model", f"{name}-renamed")
    await step([("registered_model.deleted", None)])
    return seen


def check_payloads(events: list[Any]) -> None:
    transitions = [(e.data["from_stage"], e.data["to_stage"]) for e in events
                   if e.type == "model_version.stage_transitioned"]
    assert transitions == [("None", "Staging"), ("Staging", "Production")]
    moved = [e.data for e in events if e.type == "model_version_alias.created"]
    assert [(d["alias"], d["version"], d.get("previous_version")) for d in moved] == \
        [("champion", "1", None), ("champion", "2", "1")]
    tag = next(e.data for e in events if e.type == "model_version_tag.set")
    assert (tag["key"], tag["value"]) == ("validated", "true")


async def test_mlflow_2_9_server_with_its_own_client(
        old_mlflow_python: Path, mlflow_server_factory: Any, detector_for: Any) -> None:
    server = mlflow_server_factory(python=old_mlflow_python)
    detector = await detector_for(server.url)
    with OldClient(old_mlflow_python, server.url) as call:
        events = await run_workflow(call, detector, "iris-classifier")
    check_payloads(events)
    assert len(events) == 15


async def test_per_model_scan_mode_on_the_current_server(
        mlflow_server_factory: Any, detector_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.store.model_registry.rest_store import RestStore
    from mlflow.tracking import MlflowClient

    asked: list[str | None] = []  # a spy: the real search still answers
    search = RestStore.search_model_versions

    def spy(self: Any, filter_string: str | None = None, *args: Any, **kwargs: Any) -> Any:
        asked.append(filter_string)
        return search(self, filter_string, *args, **kwargs)

    monkeypatch.setattr(RestStore, "search_model_versions", spy)
    server = mlflow_server_factory()
    detector = await detector_for(server.url, scan_mode="per_model")
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)

    def call(method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(client, method)(*args, **kwargs)

    events = await run_workflow(call, detector, "it's-iris")  # a quote in the name filter
    check_payloads(events)
    assert asked and all(q and q.startswith("name = ") for q in asked)

    # a model that becomes a prompt is still there: never reported as deleted
    call("create_registered_model", "greeting")
    call("create_model_version", "greeting", "s3://models/greeting/1")
    await detector.poll_once()
    call("set_registered_model_tag", "greeting", "mlflow.prompt.is_prompt", "true")
    flipped = await detector.poll_once()
    assert not [e.type for e in flipped if e.type.endswith(".deleted")]
    assert detector.state is not None
    assert sorted(detector.state.snapshot.models["greeting"].versions) == ["1"]
