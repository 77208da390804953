"""Building blocks of the ingest route's unit tests (``POST /ingest/mlflow``): MLflow's
signing scheme, implemented independently of the hub's; signed pushes; a stub hub whose
detector records ``pushed`` calls; the route served by aiohttp on 127.0.0.1; and raw
requests on the socket."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub.config import HubConfig
from hub.detect.facts import Fact
from hub.events import Event
from hub.ingest.push import add_ingest_routes

SECRET = "ingest-unit-secret-3f9a"
NOW = 1_800_000_000
LIMIT = 1024


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()
                                    ).decode()


def signed_headers(body: bytes, *, delivery_id: str = "d-1", timestamp: int = NOW,
                   secret: str = SECRET) -> dict[str, str]:
    return {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": str(timestamp),
            "X-MLflow-Signature": sign(secret, delivery_id, str(timestamp), body),
            "Content-Type": "application/json"}


def push(entity: str = "model_version", action: str = "created", **data: Any) -> bytes:
    return json.dumps({"entity": entity, "action": action,
                       "timestamp": "2027-01-15T08:00:00+00:00",
                       "data": data or {"name": "iris", "version": "1"}}).encode()


@dataclass
class FakeDetector:
    calls: list[str] = field(default_factory=list)
    facts: list[Fact | None] = field(default_factory=list)
    error: Exception | None = None

    async def pushed(self, name: str, fact: Fact | None = None) -> list[Event]:
        self.calls.append(name)
        self.facts.append(fact)
        if self.error is not None:
            raise self.error
        return [Event(id=f"ev-{len(self.calls)}", type="model_version.created", model=name,
                      time=datetime(2027, 1, 15, tzinfo=UTC), source="http://mlflow",
                      version="1")]


@dataclass
class StubHub:
    config: HubConfig
    detector: FakeDetector | None


def make_hub(secret: str | None = SECRET, detector: FakeDetector | None = None) -> StubHub:
    ingest: dict[str, Any] = {"max_body_bytes": LIMIT, "tolerance_s": 300}
    if secret is not None:
        ingest["mlflow_secret"] = secret
    config = HubConfig(ingest=ingest, subscriptions=[])
    return StubHub(config, detector if detector is not None else FakeDetector())


@dataclass
class Ingest:
    client: TestClient[web.Request, web.Application]
    hub: StubHub

    @property
    def calls(self) -> list[str]:
        assert self.hub.detector is not None
        return self.hub.detector.calls

    async def post(self, body: bytes, headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post("/ingest/mlflow", data=body,
                                      headers=signed_headers(body) if headers is None else headers)
        text = await resp.text()
        assert SECRET not in text
        return resp.status, json.loads(text) if text else {}


async def serve(hub: StubHub) -> Ingest:
    app = web.Application()
    add_ingest_routes(app, hub, clock=lambda: float(NOW))
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    return Ingest(client, hub)


async def raw_status(ingest: Ingest, raw: bytes) -> int | None:
    """Send ``raw`` bytes as a request; the answer's status, or None if the server closed
    the connection without one."""
    reader, writer = await asyncio.open_connection(ingest.client.host, ingest.client.port)
    try:
        writer.write(raw)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    return int(line.split()[1]) if line else None
