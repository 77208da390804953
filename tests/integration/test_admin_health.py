"""The admin API's health endpoints: ``/readyz`` follows the broker, the delivery worker and
the detector (a real ``mlflow server`` stopped and started again); ``/healthz`` and
``/metrics`` answer even when the broker is unreachable."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from hub.admin.server import AdminServer
from hub.app import Hub, Roles
from hub.broker.embedded import free_port
from tests.support.admin import admin_config
from tests.support.wait import eventually

pytestmark = pytest.mark.timeout(180)


@pytest.mark.slow
async def test_readyz_follows_broker_worker_and_detector(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any) -> None:
    server = mlflow_server_factory()
    config = admin_config(
        kafka_bootstrap, topic_name, [{"name": "console", "handler": "console"}],
        mlflow={"tracking_uri": server.url, "request_retries": 0, "scan_timeout_s": 5},
        detector={"poll_interval_s": 0.2, "backoff_initial_s": 0.1, "backoff_max_s": 0.3})
    async with Hub(config) as hub, AdminServer(hub, stale_after_s=1.5,
                                               broker_check_ttl_s=0) as admin, \
            aiohttp.ClientSession() as http:

        async def ready() -> tuple[int, Any]:
            async with http.get(admin.url + "/readyz") as resp:
                return resp.status, await resp.json()

        status, body = await ready()  # started, not running yet
        assert status == 503 and set(body["failed"]) == {"detector", "worker"}
        run = asyncio.create_task(hub.run())
        try:
            await eventually(ready, lambda r: r[0] == 200)
            server.stop()
            status, body = await eventually(ready, lambda r: r[0] == 503 and r[1]["checks"][
                "detector"]["consecutive_failures"] >= 1, timeout_s=30)
            assert body["failed"] == ["detector"]
            server.start()
            await eventually(ready, lambda r: r[0] == 200, timeout_s=30)
        finally:
            hub.stop()
            await asyncio.wait_for(run, 30)


async def test_readyz_reports_an_unreachable_broker() -> None:
    config = admin_config(f"127.0.0.1:{free_port()}", "t", [])
    async with AdminServer(Hub(config, Roles(detect=False, deliver=False))) as admin, \
            aiohttp.ClientSession() as http:
        async with http.get(admin.url + "/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["failed"] == ["broker"]
        async with http.get(admin.url + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(admin.url + "/metrics") as resp:
            assert resp.status == 200 and "registry_hub_deliveries" in await resp.text()
