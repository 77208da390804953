"""The hub's detector against registries other than the installed MLflow's own server: a real
MLflow 2.9 server (from a cached venv, see tests/support/mlflow_versions.py) driven by its own
2.9 client, and the current server read in the per-model scan mode (Unity Catalog's). Each
step of the registry workflow (tests/support/workflow.py, shared with bench/compat.py) is
followed by one detection round; the events are the catalog's, exactly.

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
from tests.support.workflow import run_workflow

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


async def passes_the_workflow(call: Call, detector: Detector, name: str) -> list[Any]:
    """The shared workflow (tests/support/workflow.py): every step's round gives exactly its
    events, and their payloads are right. Returns the events."""
    result = await run_workflow(call, detector.poll_once, name)
    assert result.mismatches() == []
    assert result.passed == len(result.steps) == 13
    return result.events


async def test_mlflow_2_9_server_with_its_own_client(
        old_mlflow_python: Path, mlflow_server_factory: Any, detector_for: Any) -> None:
    server = mlflow_server_factory(python=old_mlflow_python)
    detector = await detector_for(server.url)
    with OldClient(old_mlflow_python, server.url) as call:
        events = await passes_the_workflow(call, detector, "iris-classifier")
    assert len(events) == 15


async def test_per_model_scan_mode_on_the_current_server(
        mlflow_server_factory: Any, detector_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from hub.detect.rest_json import JsonSearch

    asked: list[str | None] = []  # a spy on the scan's search: the real one still answers
    search = JsonSearch.search_model_versions

    def spy(self: Any, filter_string: str | None = None, *args: Any, **kwargs: Any) -> Any:
        asked.append(filter_string)
        return search(self, filter_string, *args, **kwargs)

    monkeypatch.setattr(JsonSearch, "search_model_versions", spy)
    server = mlflow_server_factory()
    detector = await detector_for(server.url, scan_mode="per_model")
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)

    def call(method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(client, method)(*args, **kwargs)

    await passes_the_workflow(call, detector, "it's-iris")  # a quote in the filter
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
