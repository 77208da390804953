"""The admin API's subscriptions on a real hub: a delivery worker on the session broker, a
real receiver, runtime subscriptions through ``hub.admin.client`` (create, list, update,
test, delete; what a delivery, the attempt log and the metrics then show), read-only
configured subscriptions and what their 409 says, the compacted subscription topic, and
test sends marked as such. Dead letters and replay are in test_admin_dead_letters.py,
health in test_admin_health.py, the fuzz of every body in test_admin_fuzz.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs
from yarl import URL

from hub.admin.client import HubClient, HubClientError
from hub.admin.server import AdminServer
from hub.admin.store import SubscriptionStore, store_topic
from hub.app import Hub, Roles
from hub.broker.embedded import free_port
from hub.config_load import load_config
from tests.support.admin import (
    ADMIN_TOKEN,
    Api,
    admin_config,
    console_subscription,
    running_hub,
    transition,
)
from tests.support.delivery import publish, webhook
from tests.support.receiver import SECRET, Receiver
from tests.support.wait import eventually

pytestmark = pytest.mark.timeout(180)

HOOK_TOKEN = "hook-token-" + uuid.uuid4().hex
SECRETS = (ADMIN_TOKEN, HOOK_TOKEN, SECRET)


@pytest.mark.slow
async def test_runtime_webhook_lifecycle_through_the_client(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    config = admin_config(kafka_bootstrap, topic_name,
                          [webhook("from-config", f"{receiver.url}/ok/config")])
    async with running_hub(config) as (hub, store, admin), aiohttp.ClientSession() as http:
        assert hub.worker is not None
        api = Api(http, admin.url)
        client = HubClient(admin.url, token=ADMIN_TOKEN)

        # open endpoints, guarded /api
        assert await api("GET", "/healthz", token=None) == (200, {"status": "ok"})
        assert (await api("GET", "/api/subscriptions", token=None))[0] == 401
        assert (await api("GET", "/api/subscriptions", token="wrong"))[0] == 401
        assert (await api("GET", "/api/unknown", token=None))[0] == 401
        async with http.get(URL(admin.url + "/%61pi/subscriptions", encoded=True)) as resp:
            assert resp.status == 401
        with pytest.raises(HubClientError) as denied:
            await asyncio.to_thread(HubClient(admin.url).list_webhooks)
        assert denied.value.status == 401

        # create (a Databricks-style call) → delivered, filtered by the alias' stage condition
        hook = await api.client(
            client, client.create_registered_model_webhook, name="iris",
            events=["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"],
            http_url_spec={"url": f"{receiver.url}/ok/runtime", "secret": SECRET,
                           "authorization": f"Bearer {HOOK_TOKEN}"},
            description="promotions", signature_format="standard")
        name = hook["id"]
        assert (hook["model_name"], hook["events"], hook["when"], hook["source"]) == (
            "iris", ["model_version.stage_transitioned"], {"to_stage": "Production"}, "runtime")
        assert hook["http_url_spec"]["secret"] == "***"
        await asyncio.wait_for(hub.worker.lanes[name].assigned.wait(), 30)
        await publish(config, [transition(1, "Staging"), transition(2, "Production"),
                               transition(3, "Production", model="wine")])
        (hit,) = await receiver.wait_for(1, "/ok/runtime")
        assert hit.verified and hit.headers["webhook-id"] == "evt-2"
        assert hit.headers["Authorization"] == f"Bearer {HOOK_TOKEN}"

        # list: config + runtime, by model
        assert name in [h["id"] for h in await api.client(client, client.list_webhooks, "iris")]
        wine = [h["id"] for h in await api.client(client, client.list_webhooks, "wine")]
        assert wine == ["from-config"]
        status, listed = await api("GET", "/api/subscriptions")
        assert status == 200
        assert {s["name"]: s["source"] for s in listed["subscriptions"]} == {
            "from-config": "config", name: "runtime"}
        assert all(s["secret"] == "***" for s in listed["subscriptions"])

        # update: any stage now; the staging event after it is delivered
        updated = await api.client(client, client.update_webhook, name,
                                   events=["MODEL_VERSION_TRANSITIONED_STAGE"])
        assert (updated["when"], updated["description"]) == ({}, "promotions")
        await publish(config, [transition(4, "Staging")])
        hits = await receiver.wait_for(2, "/ok/runtime")
        assert [h.headers["webhook-id"] for h in hits] == ["evt-2", "evt-4"]

        # echoing a masked secret back keeps it: the test delivery still verifies
        status, patched = await api("PATCH", f"/api/subscriptions/{name}",
                                    {"secret": "***", "description": "any stage"})
        assert status == 200 and patched["description"] == "any stage"
        result = await api.client(client, client.test_webhook, name)
        assert (result["status"], result["http_status"]) == ("delivered", 200)
        test_hit = (await receiver.wait_for(3, "/ok/runtime"))[-1]
        assert test_hit.headers["webhook-id"] == result["event_id"]
        assert result["event_id"].startswith("test-") and test_hit.verified
        assert test_hit.body["type"] == "model_version.stage_transitioned"
        assert test_hit.body["data"]["model_name"] == "iris"
        assert test_hit.headers["Authorization"] == f"Bearer {HOOK_TOKEN}"

        # config-file subscriptions are read-only; bad input is 400/422 naming the field
        assert (await api("PATCH", "/api/subscriptions/from-config", {"enabled": False}))[0] \
            == 409
        assert (await api("DELETE", "/api/subscriptions/from-config"))[0] == 409
        assert (await api("POST", "/api/subscriptions",
                          {"name": "from-config", "handler": "console"}))[0] == 409
        assert (await api("POST", "/api/subscriptions", {"name": name, "handler": "console"}))[
            0] == 409
        status, error = await api("POST", "/api/subscriptions",
                                  {"name": "bad", "handler": "webhook", "url": "not a url"})
        assert (status, error["field"]) == (422, "url")
        status, error = await api("POST", "/api/subscriptions",
                                  {"name": "bad", "handler": "console",
                                   "events": ["COMMENT_CREATED"]})
        assert (status, error["field"]) == (422, "events")
        assert "Databricks" in error["error"]
        assert (await api("POST", "/api/subscriptions", raw=b"{not json"))[0] == 400
        assert (await api("POST", "/api/subscriptions", raw=b"[]"))[0] == 400
        assert (await api("GET", "/api/subscriptions/nope"))[0] == 404
        assert (await api("PUT", f"/api/subscriptions/{name}",
                          {"name": "other", "handler": "console"}))[0] == 422

        # deliveries: newest first, filtered
        async def deliveries() -> list[dict[str, Any]]:
            status, body = await api("GET", f"/api/deliveries?subscription={name}")
            assert status == 200
            return list(body["deliveries"])

        found = await eventually(deliveries, lambda d: len(d) >= 2)
        assert [d["event_id"] for d in found] == ["evt-4", "evt-2"]
        assert {d["status"] for d in found} == {"delivered"}
        status, body = await api("GET", f"/api/deliveries?subscription={name}&status=retry")
        assert (status, body) == (200, {"deliveries": []})
        status, body = await api("GET", "/api/deliveries?event_id=evt-2")
        assert sorted(d["subscription"] for d in body["deliveries"]) == ["from-config", name]
        status, body = await api("GET", "/api/deliveries?limit=1")  # last record per partition
        assert status == 200 and 1 <= len(body["deliveries"]) <= 3
        assert (await api("GET", "/api/deliveries?limit=0"))[0] == 400
        assert (await api("GET", "/api/deliveries?status=lost"))[0] == 400

        # metrics (open)
        async with http.get(admin.url + "/metrics") as resp:
            metrics = await resp.text()
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
        assert (f'registry_hub_deliveries_total{{outcome="delivered",subscription="{name}"}} '
                "2.0") in metrics

        # delete
        await api.client(client, client.delete_webhook, name)
        with pytest.raises(HubClientError) as gone:
            await asyncio.to_thread(client.get_subscription, name)
        assert gone.value.status == 404
        assert name not in hub.worker.lanes and name not in store.subscriptions
        assert (await api("DELETE", f"/api/subscriptions/{name}"))[0] == 404

    for body in api.bodies:
        for secret in SECRETS:
            assert secret not in body


async def test_config_file_names_win_over_runtime_records(
        kafka_bootstrap: str, topic_name: str) -> None:
    config = admin_config(kafka_bootstrap, topic_name,
                          [{"name": "from-config", "handler": "console"}])
    async with SubscriptionStore(config, kafka_bootstrap) as store:
        await store.put(console_subscription("runtime-one"))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        value = json.dumps({"format": 1, "subscription": {"name": "from-config",
                                                          "handler": "console"}}).encode()
        await producer.send_and_wait(store_topic(config), key=b"from-config", value=value)
    finally:
        await producer.stop()
    with capture_logs() as logs:
        async with SubscriptionStore(config, kafka_bootstrap) as restarted:
            assert sorted(restarted.subscriptions) == ["runtime-one"]
    assert any(e["event"] == "substore.name_taken_by_config" for e in logs)


async def test_a_test_send_is_marked_and_a_real_event_is_not(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = admin_config(kafka_bootstrap, topic_name, [
        {"name": "shown", "handler": "console", "models": ["iris"]},
        webhook("hook", f"{receiver.url}/ok/hook", models=["iris"])])
    async with running_hub(config) as (_, _, admin), aiohttp.ClientSession() as http:
        api = Api(http, admin.url)
        for name in ("shown", "hook"):
            status, result = await api("POST", f"/api/subscriptions/{name}/test")
            assert (status, result["status"]) == (200, "delivered"), result
        await publish(config, [transition(1, "Production")])
        test_hit, real_hit = await receiver.wait_for(2, "/ok/hook")
        printed: list[str] = []

        async def console_lines() -> list[str]:
            printed.extend(line for line in capsys.readouterr().out.splitlines()
                           if CONSOLE_LINE.match(line))  # structlog's default also prints
            return printed

        test_line, real_line = await eventually(console_lines, lambda ls: len(ls) >= 2)
    assert test_hit.verified and test_hit.body["data"]["test"] is True
    assert real_hit.headers["webhook-id"] == "evt-1" and "test" not in real_hit.body["data"]
    assert test_line.startswith("[test] ") and "iris v1" in test_line
    assert not real_line.startswith("[test]") and "iris v1" in real_line


CONSOLE_LINE = re.compile(r"^(\[test\] )?\d\d:\d\d:\d\d model_version\.stage_transitioned ")


@pytest.mark.parametrize("file_yaml", [None, "kafka:\n  topic: t\n",
                                       "subscriptions:\n  - {name: console, handler: console}\n"],
                         ids=["no-file", "file-without-subscriptions", "file-with-subscriptions"])
async def test_read_only_subscriptions_say_where_to_change_them(
        file_yaml: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick start's console subscription is the built-in default, not the file's: the
    409 says so and how to replace it; a file's subscription names the file."""
    for name in [k for k in os.environ if k.upper().startswith("HUB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HUB_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("HUB_ADMIN__PORT", "0")
    monkeypatch.setenv("HUB_ADMIN__TOKEN", ADMIN_TOKEN)
    path = None
    if file_yaml is not None:
        path = tmp_path / "hub.yaml"
        path.write_text(file_yaml, encoding="utf-8")
    config = load_config(path)
    async with AdminServer(Hub(config, Roles(detect=False, deliver=False))) as admin, \
            aiohttp.ClientSession() as http:
        api = Api(http, admin.url)
        status, listed = await api("GET", "/api/subscriptions")
        assert status == 200 and [s["name"] for s in listed["subscriptions"]] == ["console"]
        status, deleted = await api("DELETE", "/api/subscriptions/console")
        status_patch, patched = await api("PATCH", "/api/subscriptions/console",
                                          {"enabled": False})
    assert (status, status_patch) == (409, 409) and deleted == patched
    error = deleted["error"]
    if file_yaml is None:
        assert "built-in default" in error and "without a configuration file" in error
        assert "--config FILE" in error
    if file_yaml is not None and "subscriptions" not in file_yaml:
        assert "built-in default" in error and f"{path} has no `subscriptions:` list" in error
        assert "add a `subscriptions:` list to that file" in error
    if file_yaml is None or "subscriptions" not in file_yaml:
        assert "replaces the built-in console subscription" in error
    else:
        assert "built-in" not in error
        assert f"comes from the configuration file {path}" in error
