"""The README's promise, driven as a user would: ``python -m hub run`` with no configuration
in an empty directory watches ``./mlflow.db`` through an embedded broker and prints one line
per registry change; ``python -m hub detect`` publishes CloudEvents to an external broker.
Both stop cleanly on SIGTERM (exit 0, no broker process left behind).

The hub runs as a real subprocess; its stdout (console handler) and stderr (structlog) are
read by background threads, and every wait is a condition on those lines with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.hub_process import (
    EVENT_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    HubProcess,
    clean_env,
    console_event,
    field,
    process_gone,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.slow

CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d [a-z_]+\.[a-z_]+ +\S+")


@pytest.mark.timeout(180)
def test_run_with_no_config_watches_local_sqlite_and_prints_each_change(
    tmp_path: Path, start_hub: Callable[..., HubProcess]
) -> None:
    hub = start_hub(["run"], tmp_path,
                    clean_env(HUB_DETECTOR__POLL_INTERVAL_S="0.3", HUB_ADMIN__PORT="0"))

    started = hub.log_line("embedded_broker.started", STARTUP_TIMEOUT_S)
    broker_pid = int(field(started, "pid"))
    assert "local use only" in started, started
    ready = hub.wait_line("stdout", lambda line: line.startswith("registry-hub ready"),
                          "the ready line", STARTUP_TIMEOUT_S)
    assert "watching sqlite:///mlflow.db (0 models)" in ready, ready
    assert f"kept in {tmp_path.resolve() / '.registry-hub'}" in ready, ready
    assert "1 subscription(s): console" in ready and "admin http://127.0.0.1:" in ready, ready
    hub.log_line("detector.baseline", 0)  # the ready line waits for the first scan
    settled = hub.log_line("hub.heap_settled")  # once ready: MLflow's objects out of GC pauses
    assert int(re.search(r"frozen_objects=(\d+)", settled)[1]) > 50_000, settled  # type: ignore[index]
    db = tmp_path / "mlflow.db"
    assert db.is_file(), "the hub should watch (and create) ./mlflow.db in its working directory"

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = f"iris-{uuid.uuid4().hex[:8]}"
    source = str(tmp_path / "artifacts" / "model")

    client.create_registered_model(name, tags={"team": "ml"}, description="Iris classifier")
    hub.wait_line("stdout", console_event("registered_model.created", name),
                  "registered_model.created")
    for version in ("1", "2"):
        client.create_model_version(name, source=source)
        hub.wait_line("stdout", console_event("model_version.created", name, version),
                      f"model_version.created v{version}")
    client.set_registered_model_alias(name, "champion", "1")
    hub.wait_line("stdout", console_event("model_version_alias.created", name, "1", "@champion"),
                  "model_version_alias.created")
    client.transition_model_version_stage(name, "2", "Production")
    hub.wait_line("stdout",
                  console_event("model_version.stage_transitioned", name, "2",
                                "stage None → Production"),
                  "model_version.stage_transitioned")

    code = hub.terminate()
    assert code == 0, hub.dump()
    stderr = hub.lines("stderr")
    assert any(re.search(r"\]\s+hub\.stopped", line) for line in stderr), hub.dump()
    assert process_gone(broker_pid), f"embedded broker pid {broker_pid} survived the hub"

    ready_line, *stdout = hub.lines("stdout")
    assert ready_line == ready
    assert all(CONSOLE_LINE.match(line) for line in stdout), \
        f"stdout should hold the ready line, then only event lines (logs go to stderr)\n" \
        f"{hub.dump()}"
    assert [line.split()[1] for line in stdout if line.split()[2] == name] == [
        "registered_model.created",
        "model_version.created",
        "model_version.created",
        "model_version_alias.created",
        "model_version.stage_transitioned",
    ], hub.dump()


async def read_first(bootstrap: str, topic: str, key: bytes, timeout_s: float) -> Any:
    """The first record with ``key`` on ``topic``, read from the beginning by a fresh,
    group-less consumer."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            async for record in consumer:
                if record.key == key:
                    return record
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


@pytest.mark.timeout(180)
def test_detect_publishes_cloudevents_to_an_external_broker(
    tmp_path: Path, start_hub: Callable[..., HubProcess], kafka_bootstrap: str,
    topic_name: str, mlflow_server: MlflowServer,
) -> None:
    env = clean_env(
        HUB_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
        HUB_KAFKA__TOPIC=topic_name,
        HUB_MLFLOW__TRACKING_URI=mlflow_server.url,
        HUB_DETECTOR__POLL_INTERVAL_S="0.3", HUB_ADMIN__PORT="0",
    )
    hub = start_hub(["detect"], tmp_path, env)
    hub.log_line("detector.baseline", STARTUP_TIMEOUT_S)

    from mlflow.tracking import MlflowClient

    client: MlflowClient = MlflowClient(tracking_uri=mlflow_server.url,
                                        registry_uri=mlflow_server.url)
    name = f"detect-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name, tags={"team": "ml"}, description="via detect")

    record = asyncio.run(read_first(kafka_bootstrap, topic_name, name.encode(), EVENT_TIMEOUT_S))
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["ce_type"] == "registered_model.created"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] and headers["ce_source"]
    assert headers.get("ce_partitionkey") == name, headers
    data = json.loads(record.value)
    assert data["model_name"] == name
    assert data["tags"] == {"team": "ml"}
    assert data["description"] == "via detect"
    hub.log_line("detector.published")

    code = hub.terminate()
    assert code == 0, hub.dump()
    assert any(re.search(r"\]\s+hub\.stopped", line) for line in hub.lines("stderr")), hub.dump()
    assert not any("embedded_broker" in line for line in hub.lines("stderr")), hub.dump()
    ready, *events = hub.lines("stdout")
    assert ready.startswith("registry-hub ready in ") and mlflow_server.url in ready, ready
    assert f"events → topic {topic_name} on {kafka_bootstrap}" in ready, ready
    assert "subscription" not in ready, "detect runs no delivery"
    assert events == [], "detect runs no delivery, so the console prints nothing"


@pytest.mark.timeout(180)
def test_a_hub_that_cannot_read_its_registry_says_why_instead_of_ready(
    tmp_path: Path, start_hub: Callable[..., HubProcess]
) -> None:
    from hub.broker.embedded import free_port

    registry = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    hub = start_hub(["run"], tmp_path, clean_env(
        HUB_MLFLOW__TRACKING_URI=registry, HUB_MLFLOW__REQUEST_RETRIES="0",
        HUB_ADMIN__PORT="0"))
    line = hub.wait_line("stderr", lambda ln: ln.startswith("registry-hub not ready:"),
                         "the not-ready line", STARTUP_TIMEOUT_S)
    assert f"cannot read the registry {registry}" in line, line
    assert "check mlflow.tracking_uri" in line, line
    assert not any(ln.startswith("registry-hub ready") for ln in hub.lines("stdout"))
    assert hub.terminate() == 0, hub.dump()
