"""A runtime subscription cannot read the hub's environment: ``${VAR}`` in any option is
refused by the admin API (POST, PUT, PATCH: 422 naming the field, nothing stored), and a
record holding one that an older version wrote to the subscriptions topic is listed but
never delivered (``substore.refused``), at start-up or when it arrives later. The hub runs
on the session broker; a real receiver shows what was (not) sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from hub.admin.store import store_topic
from hub.config import HubConfig
from tests.support.admin import Api, admin_config, running_hub, transition
from tests.support.delivery import publish, webhook
from tests.support.kafka_reader import read_topic
from tests.support.receiver import Receiver
from tests.support.wait import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
ENV_SECRET = "env-secret-value-never-sent"
REFUSED = "only allowed in the configuration file"


async def _write_record(config: HubConfig, name: str, sub: dict[str, Any]) -> None:
    """A runtime record as an older version wrote it, straight to the topic."""
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(store_topic(config), key=name.encode(), partition=0,
                                     value=json.dumps({"format": 1, "subscription": sub})
                                     .encode())
    finally:
        await producer.stop()


async def test_the_api_refuses_environment_references_in_any_option(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_INGEST__MLFLOW_SECRET", ENV_SECRET)
    config = admin_config(kafka_bootstrap, topic_name, [])
    async with running_hub(config) as (hub, store, admin), aiohttp.ClientSession() as http:
        api = Api(http, admin.url)
        leak = "${HUB_INGEST__MLFLOW_SECRET}"
        for body, field in [
            (webhook("x", f"{receiver.url}/ok/x", headers={"X-Exfil": leak}),
             "headers.X-Exfil"),
            (webhook("x", f"{receiver.url}/ok/x?k={leak}"), "url"),
            ({**webhook("x", f"{receiver.url}/ok/x"), "secret": leak}, "secret"),
            ({"name": "x", "handler": "deploy", "target": "github_dispatch", "repo": "a/b",
              "event_type": "e", "api_base_url": receiver.url, "token": leak}, "token"),
            ({"name": "x", "handler": "deploy", "target": "http", "url": receiver.url,
              "body": {"meta": [leak]}}, "body.meta.0"),
            ({"name": "x", "handler": "slack", "token": leak, "channel": "#m",
              "api_base_url": f"{receiver.url}/"}, "token"),
        ]:
            status, error = await api("POST", "/api/subscriptions", body)
            assert (status, error["field"]) == (422, field), error
            assert f"{field}: environment references (${{...}}) are {REFUSED}" in \
                error["error"]

        status, _ = await api("POST", "/api/subscriptions",
                              webhook("rt", f"{receiver.url}/ok/rt"))
        assert status == 201
        for method, body in [
            ("PATCH", {"headers": {"X-Exfil": leak}}),
            ("PUT", webhook("rt", f"{receiver.url}/ok/rt", headers={"X-Exfil": leak})),
        ]:
            status, error = await api(method, "/api/subscriptions/rt", body)
            assert (status, error["field"]) == (422, "headers.X-Exfil"), (method, error)
        assert store.subscriptions["rt"].options.get("headers") is None

        assert hub.worker is not None
        await asyncio.wait_for(hub.worker.lanes["rt"].assigned.wait(), 30)
        await publish(config, [transition(1, "Production")])
        (hit,) = await receiver.wait_for(1, "/ok/rt")
        assert "X-Exfil" not in hit.headers
    records = await read_topic(kafka_bootstrap, store_topic(config), at_least=1)
    assert [r.key for r in records] == ["rt"]  # nothing refused was stored
    assert all(ENV_SECRET not in body and leak not in body for body in api.bodies)
    assert not any(h.path.startswith("/ok/x") for h in receiver.hits)


async def test_a_stored_record_referencing_the_environment_is_never_delivered(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_INGEST__MLFLOW_SECRET", ENV_SECRET)
    config = admin_config(kafka_bootstrap, topic_name,
                          [webhook("from-config", f"{receiver.url}/ok/config")])
    exfil = {"headers": {"X-Exfil": "${HUB_INGEST__MLFLOW_SECRET}"}}
    await _write_record(config, "legacy", webhook("legacy", f"{receiver.url}/ok/legacy",
                                                  **exfil))
    with capture_logs() as logs:
        async with running_hub(config) as (hub, store, admin), \
                aiohttp.ClientSession() as http:
            assert hub.worker is not None
            api = Api(http, admin.url)
            assert "legacy" in store.subscriptions and "legacy" not in hub.worker.lanes
            status, shown = await api("GET", "/api/subscriptions/legacy")
            assert status == 200 and shown["headers"] == {"X-Exfil": "***"}
            status, error = await api("POST", "/api/subscriptions/legacy/test")
            assert status == 409 and REFUSED in error["error"]
            status, ready = await api("GET", "/readyz")
            assert status == 503 and "legacy" in ready["checks"]["worker"]["detail"]

            # a running runtime subscription replaced by such a record (another, older hub
            # wrote it) stops: its lane is removed
            status, _ = await api("POST", "/api/subscriptions",
                                  webhook("later", f"{receiver.url}/ok/later"))
            assert status == 201 and "later" in hub.worker.lanes
            await _write_record(config, "later", webhook("later", f"{receiver.url}/ok/later",
                                                         **exfil))
            lanes = hub.worker.lanes
            await eventually(lambda: "later" in lanes, lambda running: not running)

            await publish(config, [transition(1, "Production")])
            await receiver.wait_for(1, "/ok/config")  # the configured one delivered

            # fixing it through the API starts it
            status, fixed = await api("PATCH", "/api/subscriptions/legacy",
                                      {"headers": {"X-Exfil": None, "X-Team": "ml"}})
            assert status == 200, fixed
            (hit,) = await receiver.wait_for(1, "/ok/legacy")
            assert hit.headers["X-Team"] == "ml" and "X-Exfil" not in hit.headers
            assert (await api("GET", "/readyz"))[0] == 503  # 'later' is still refused
            assert (await api("DELETE", "/api/subscriptions/later"))[0] == 204
            await eventually(_probe_status(api, "/readyz"), lambda status: status == 200)
    refused = [e for e in logs if e["event"] == "substore.refused"]
    assert [(e["subscription"], e["fields"]) for e in refused] == [
        ("legacy", ["headers.X-Exfil"]), ("later", ["headers.X-Exfil"])]
    assert all(REFUSED in e["reason"] for e in refused)
    assert not any(ENV_SECRET in str(h.headers) for h in receiver.hits)
    assert not any(h.path == "/ok/later" for h in receiver.hits)


def _probe_status(api: Api, path: str) -> Any:
    async def probe() -> int:
        return (await api("GET", path))[0]
    return probe
