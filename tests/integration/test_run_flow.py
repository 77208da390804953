"""The whole path in one process, in seconds, for the quick tier: a change in a sqlite
registry → the detector → the events topic → a webhook subscription → a real receiver that
verifies the signature. No ``mlflow server``: the hub reads the database as the quick start
does. The long versions: test_detector_workflow.py (every event type through a server),
test_detector_loop.py (outages, restarts), test_delivery.py (retries, dead letters)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from hub.app import Hub, Roles
from hub.config import HubConfig
from tests.support.delivery import webhook
from tests.support.receiver import running_receiver

pytestmark = pytest.mark.timeout(120)


async def test_a_registry_change_reaches_a_webhook_signed_and_once(
        kafka_bootstrap: str, topic_name: str, tmp_path: Path, _mlflow_template_db: Path
) -> None:
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copyfile(_mlflow_template_db, db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("existing")  # before the baseline: never an event
    async with running_receiver() as receiver:
        config = HubConfig(
            mlflow={"tracking_uri": uri, "scan_timeout_s": 10},
            kafka={"bootstrap_servers": kafka_bootstrap, "topic": topic_name, "partitions": 1,
                   "session_timeout_ms": 2000, "heartbeat_interval_ms": 500},
            detector={"poll_interval_s": 0.2, "leader_election": False},
            delivery={"retry_schedule_s": [0.2], "jitter": 0, "start_from": "earliest",
                      "allowed_networks": ["127.0.0.0/8"], "grace_period_s": 2},
            subscriptions=[webhook("ci", f"{receiver.url}/ok",
                                   events=["registered_model.created"])],
            admin={"enabled": False},
        )
        async with Hub(config, Roles()) as hub:
            run = asyncio.create_task(hub.run())
            try:
                assert hub.worker is not None and hub.detector is not None
                await hub.worker.wait_ready()
                await asyncio.to_thread(client.create_registered_model, "iris")
                await asyncio.to_thread(client.set_registered_model_tag, "iris", "team", "ml")
                (hit,) = await receiver.wait_for(1)
            finally:
                hub.stop()
                await asyncio.wait_for(run, 30)
    assert hit.verified, "the receiver verified the Standard Webhooks signature"
    assert hit.body["type"] == "registered_model.created"
    assert hit.body["data"]["model_name"] == "iris"
    assert len(receiver.hits) == 1  # the tag event is filtered out; nothing delivered twice
