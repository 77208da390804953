"""Restarts lose nothing, and event ids never repeat — on the embedded broker and on an
external one, with the hub as a real subprocess:

1. start, change the registry, add a runtime subscription, stop;
2. change the registry while the hub is down, start again → each of those changes is
   printed exactly once (once per matching subscription), nothing old is printed again,
   and the runtime subscription is still there;
3. lose the detector's checkpoint on purpose (the state directory, or a new state topic),
   start again, and repeat changes that map to the same place in the model's history as
   earlier ones → every event a receiver gets has a webhook-id it never saw before.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.hub_process import (
    EVENT_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    HubProcess,
    clean_env,
    console_event,
)
from tests.support.receiver import SECRET, Receiver, running_receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ADMIN_TOKEN = "restart-" + uuid.uuid4().hex


def _write_config(path: Path, receiver: Receiver, kafka: dict[str, str]) -> None:
    config = {
        "kafka": kafka,
        "detector": {"poll_interval_s": 0.3},
        "admin": {"port": 0, "token": ADMIN_TOKEN},
        "delivery": {"allowed_networks": ["127.0.0.0/8"], "retry_schedule_s": [0.2]},
        "subscriptions": [
            {"name": "console", "handler": "console"},
            {"name": "hook", "handler": "webhook", "url": f"{receiver.url}/ok",
             "secret": SECRET},
        ],
    }
    path.write_text(yaml.safe_dump(config))


async def _ready(hub: HubProcess) -> str:
    line = await asyncio.to_thread(
        hub.wait_line, "stdout", lambda ln: ln.startswith("registry-hub ready"),
        "the ready line", STARTUP_TIMEOUT_S)
    match = re.search(r"admin (http://\S+)", line)
    assert match, line
    return match.group(1)


async def _printed(hub: HubProcess, predicate: Callable[[str], bool], what: str) -> None:
    await asyncio.to_thread(hub.wait_line, "stdout", predicate, what, EVENT_TIMEOUT_S)


async def _api(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    def call() -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    return await asyncio.to_thread(call)


@pytest.mark.parametrize("broker", ["embedded", "external"])
async def test_restart_loses_nothing_and_ids_never_repeat(
    broker: str, tmp_path: Path, start_hub: Callable[..., HubProcess], request: Any,
) -> None:
    from mlflow.tracking import MlflowClient

    kafka = {"bootstrap_servers": "embedded"}
    if broker == "external":
        kafka = {"bootstrap_servers": request.getfixturevalue("kafka_bootstrap"),
                 "topic": f"restart-{uuid.uuid4().hex[:8]}"}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    iris, wine, sentinel = (f"{n}-{uuid.uuid4().hex[:6]}" for n in ("iris", "wine", "sentinel"))
    env = clean_env(MLFLOW_TRACKING_URI=uri)

    async with running_receiver() as receiver:
        config = tmp_path / "hub.yaml"
        _write_config(config, receiver, kafka)
        args = ["run", "--config", str(config)]

        # 1. a first run: two changes, and a runtime subscription
        hub = start_hub(args, tmp_path, env)
        admin = await _ready(hub)
        client.create_registered_model(iris)
        await _printed(hub, console_event("registered_model.created", iris), iris)
        client.set_registered_model_tag(iris, "team", "ml")
        await _printed(hub, console_event("registered_model_tag.set", iris), "team=ml")
        created = await _api("POST", f"{admin}/api/subscriptions", {
            "name": "audit", "handler": "console", "events": ["registered_model_tag.*"]})
        assert created["name"] == "audit", created
        await receiver.wait_for(2, "/ok")
        assert hub.terminate() == 0, hub.dump()

        # 2. changes while the hub is down are printed once each; nothing old again
        client.create_registered_model(wine)
        client.set_registered_model_tag(iris, "owner", "bob")
        hub = start_hub(args, tmp_path, env)
        admin = await _ready(hub)
        client.create_registered_model(sentinel)
        await _printed(hub, console_event("registered_model.created", sentinel), sentinel)
        await receiver.wait_for(5, "/ok")
        events = [line.split()[1:3] for line in hub.lines("stdout")
                  if not line.startswith("registry-hub ready")]
        assert sorted(events) == sorted([
            ["registered_model.created", wine],
            ["registered_model_tag.set", iris],  # console
            ["registered_model_tag.set", iris],  # audit, the runtime subscription
            ["registered_model.created", sentinel],
        ]), hub.dump()
        listed = await _api("GET", f"{admin}/api/subscriptions")
        subs = {s["name"]: s for s in listed["subscriptions"]}
        assert subs["audit"]["source"] == "runtime", subs
        assert hub.terminate() == 0, hub.dump()

        # 3. the checkpoint is lost: a new baseline, then changes that take the places in
        # iris's history that "created" and "team=ml" took before
        if broker == "embedded":
            shutil.rmtree(tmp_path / ".registry-hub")
        else:
            env = env | {"HUB_DETECTOR__STATE_TOPIC": f"{kafka['topic']}.state-2"}
        hub = start_hub(args, tmp_path, env)
        await _ready(hub)
        client.delete_registered_model_tag(iris, "team")
        await _printed(hub, console_event("registered_model_tag.deleted", iris), "team removed")
        client.set_registered_model_tag(iris, "team", "ml")
        await receiver.wait_for(7, "/ok")
        hits = receiver.delivered("/ok")
        assert all(hit.verified for hit in hits)
        ids = [hit.headers["webhook-id"] for hit in hits]
        assert len(set(ids)) == len(ids), f"an event id was used twice: {ids}"
        assert [h.body["type"] for h in hits[-2:]] == [
            "registered_model_tag.deleted", "registered_model_tag.set"]
        assert hub.terminate() == 0, hub.dump()
