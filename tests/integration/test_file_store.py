"""The hub reading MLflow's file store (``file:///.../mlruns`` or a plain path): MLflow 3
refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is true, and reads a version's logged model
through the process-wide tracking URI, which by default is a new ``./mlflow.db``, created
and migrated in seconds by the first scan that sees such a version. The hub allows the file
store it was told to read and makes it MLflow's process-wide URI: changes are seen, scans
stay fast and nothing appears in the working directory. Where a user forbade the file store,
the error carries MLflow's whole message, its hint included."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub, Roles
from hub.detect.detector import Detector
from hub.errors import SourceError
from tests.support.detector import hub_config

pytestmark = pytest.mark.timeout(60)

SCAN_BOUND_S = 5.0  # measured ~0.05 s; a stray database took 3.6-16 s


def _logged_model_version(client: Any, name: str) -> str:
    """A version that records its logged model (``model_id``), as ``log_model`` makes them:
    reading it back, MLflow's file store asks the process-wide tracking URI for the model."""
    exp = client.get_experiment_by_name("train")
    exp_id = exp.experiment_id if exp else client.create_experiment("train")
    run = client.create_run(exp_id)
    model = client.create_logged_model(exp_id, source_run_id=run.info.run_id)
    version = client.create_model_version(name, source=model.artifact_location,
                                          run_id=run.info.run_id, model_id=model.model_id)
    return str(version.version)


@pytest.mark.parametrize("written", [
    "file URI", pytest.param("plain path", marks=pytest.mark.slow),  # resolve(): a unit test
])
async def test_a_file_store_registry_is_read_fast_and_leaves_no_database_behind(
        written: str, kafka_bootstrap: str, topic_name: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # the hub has to allow it itself
    store = tmp_path / "mlruns"
    cwd = tmp_path / "hub-cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    configured = store.as_uri() if written == "file URI" else "../mlruns"  # from cwd

    # MLflow keeps one store per URI in a process: the hub opens it first, as its own
    # process would; the test's client, made after, shares the hub's process settings.
    async with Hub(hub_config(configured, kafka_bootstrap, topic_name),
                   Roles(deliver=False)) as hub:
        detector = hub.detector
        assert isinstance(detector, Detector)
        scans: list[float] = []

        async def poll() -> list[tuple[str, str | None]]:
            started = time.perf_counter()
            events = await detector.poll_once()
            scans.append(time.perf_counter() - started)
            return [(e.type, e.version) for e in events]

        assert await poll() == []  # the baseline
        client = MlflowClient(tracking_uri=store.as_uri(), registry_uri=store.as_uri())
        client.create_registered_model("iris")
        assert _logged_model_version(client, "iris") == "1"
        client.set_registered_model_alias("iris", "champion", "1")
        assert await poll() == [("registered_model.created", None),
                                ("model_version.created", "1"),
                                ("model_version_alias.created", "1")]
        client.set_model_version_tag("iris", "1", "validated", "true")
        client.transition_model_version_stage("iris", "1", "Staging")
        assert sorted(await poll()) == [("model_version.stage_transitioned", "1"),
                                        ("model_version_tag.set", "1")]

    assert max(scans) < SCAN_BOUND_S, scans
    assert list(cwd.iterdir()) == [], "nothing created in the hub's working directory"


async def test_a_forbidden_file_store_is_refused_with_mlflow_s_whole_message(
        kafka_bootstrap: str, topic_name: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")  # the user said no
    monkeypatch.chdir(tmp_path)
    async with Hub(hub_config((tmp_path / "mlruns").as_uri(), kafka_bootstrap, topic_name),
                   Roles(deliver=False)) as hub:
        assert hub.detector is not None
        with pytest.raises(SourceError) as raised:
            await hub.detector.poll_once()
    message = str(raised.value)
    assert "maintenance mode" in message
    assert message.rstrip().endswith("set `MLFLOW_ALLOW_FILE_STORE=true` to opt out of this "
                                     "exception."), message
