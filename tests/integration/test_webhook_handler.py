"""The webhook handler against a real aiohttp receiver on 127.0.0.1, through the real
SSRF-guarded ``HttpClients``. Signatures are checked with independent implementations:
the ``standardwebhooks`` library, and MLflow's / Databricks' schemes recomputed here."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from structlog.testing import capture_logs

from handlers.webhook import WebhookHandler, WebhookOptions
from hub.envrefs import CONTEXT_KEY
from hub.events import Event
from hub.http import HttpClients
from hub.outcome import Outcome, Status
from hub.plugins import HandlerContext
from hub.signing import verify_mlflow

KEY_A = "whsec_" + base64.b64encode(b"secret-key-a-0123456789abcdef").decode()
KEY_B = "whsec_" + base64.b64encode(b"secret-key-b-0123456789abcdef").decode()
KEY_C = "whsec_" + base64.b64encode(b"secret-key-c-0123456789abcdef").decode()
LOOPBACK = ["127.0.0.0/8"]


@dataclass
class Received:
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class Receiver:
    """Records every request. Routes: ``/ok``; ``/signed`` (401 unless the Standard
    Webhooks signature verifies with ``verify_secret``); ``/status/<code>[?retry_after=]``;
    ``/flaky`` (500 for the first ``fail_first`` requests, then 200); ``/hang`` (waits on
    ``release``, set at teardown); ``/redirect`` (302 to ``/ok``)."""

    base: str = ""
    verify_secret: str = KEY_A
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.path, request.headers, body))
        self.arrived.set()
        path = request.path
        if path == "/signed":
            try:
                Webhook(self.verify_secret).verify(body, dict(request.headers))
            except WebhookVerificationError as exc:
                return web.Response(status=401, text=str(exc))
        elif path == "/flaky":
            if len([r for r in self.requests if r.path == "/flaky"]) <= self.fail_first:
                return web.Response(status=500)
        elif path == "/hang":
            await self.release.wait()
        elif path == "/redirect":
            raise web.HTTPFound("/ok")
        elif match := re.fullmatch(r"/status/(\d+)", path):
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            return web.Response(status=int(match.group(1)), headers=headers,
                                text=request.query.get("text", ""))
        return web.Response(status=200, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rec.base = f"http://127.0.0.1:{server.port}"
    try:
        yield rec
    finally:
        rec.release.set()
        await server.close()


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    async with HttpClients(allowed_networks=LOOPBACK) as owned:
        yield owned


def make_handler(clients: HttpClients, name: str = "sub-1",
                 environment: dict[str, str] | None = None, **options: Any) -> WebhookHandler:
    opts = WebhookOptions.model_validate(options, context={CONTEXT_KEY: environment})
    return WebhookHandler(name=name, options=opts,
                          context=HandlerContext(http_session=clients.session))


def make_event(event_id: str = "evt-1") -> Event:
    return Event(
        id=event_id, type="model_version.stage_transitioned", model="iris", version="3",
        time=datetime(2026, 5, 1, 10, 30, tzinfo=UTC), source="http://mlflow:5000",
        data={"model_name": "iris", "version": "3", "run_id": "r1", "source": "models:/m-1",
              "from_stage": "Staging", "to_stage": "Production", "tags": {"validated": "true"},
              "aliases": ["champion"], "tracking_uri": "http://mlflow:5000"},
    )


async def deliver(handler: WebhookHandler, event: Event | None = None) -> Outcome:
    return await asyncio.wait_for(handler.deliver(event or make_event()), timeout=10)


# --- delivered and signed -------------------------------------------------------------------


async def test_delivered_with_a_standard_signature(receiver: Receiver, clients: HttpClients
                                                   ) -> None:
    handler = make_handler(clients, url=f"{receiver.base}/signed", secret=KEY_A)
    outcome = await deliver(handler)
    assert outcome.status is Status.DELIVERED, outcome.detail
    assert outcome.http_status == 200
    assert outcome.latency_s is not None and outcome.latency_s > 0
    [req] = receiver.requests
    assert req.headers["webhook-id"] == "evt-1"
    assert req.headers["Content-Type"] == "application/json"
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 60
    payload = Webhook(KEY_A).verify(req.body, dict(req.headers))
    assert payload == {"type": "model_version.stage_transitioned",
                       "timestamp": "2026-05-01T10:30:00Z", "data": make_event().data}


async def test_receiver_rejects_a_wrong_secret_as_final_failure(
    receiver: Receiver, clients: HttpClients
) -> None:
    handler = make_handler(clients, url=f"{receiver.base}/signed", secret=KEY_C)
    outcome = await deliver(handler)
    assert (outcome.status, outcome.http_status) == (Status.FAILED, 401)
    assert "No matching signature" in outcome.detail  # the response body, in short
    assert KEY_C not in outcome.detail


async def test_key_rotation_each_secret_verifies_alone(receiver: Receiver,
                                                       clients: HttpClients) -> None:
    handler = make_handler(clients, url=f"{receiver.base}/ok", secret=[KEY_A, KEY_B])
    assert (await deliver(handler)).status is Status.DELIVERED
    [req] = receiver.requests
    headers = dict(req.headers)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(KEY_A).verify(req.body, headers)
    Webhook(KEY_B).verify(req.body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(KEY_C).verify(req.body, headers)


async def test_same_webhook_id_on_every_attempt(receiver: Receiver, clients: HttpClients
                                                ) -> None:
    receiver.fail_first = 1
    handler = make_handler(clients, url=f"{receiver.base}/flaky", secret=KEY_A)
    first, second = await deliver(handler), await deliver(handler)
    assert (first.status, second.status) == (Status.RETRY, Status.DELIVERED)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids == ["evt-1", "evt-1"]
    for req in receiver.requests:
        Webhook(KEY_A).verify(req.body, dict(req.headers))
    assert receiver.requests[0].body == receiver.requests[1].body


async def test_mlflow_format(receiver: Receiver, clients: HttpClients) -> None:
    handler = make_handler(clients, url=f"{receiver.base}/ok", secret="mlflow-secret",
                           signature_format="mlflow")
    assert (await deliver(handler)).status is Status.DELIVERED
    [req] = receiver.requests
    delivery_id = req.headers["X-MLflow-Delivery-Id"]
    timestamp = req.headers["X-MLflow-Timestamp"]
    signed = f"{delivery_id}.{timestamp}.{req.body.decode()}".encode()
    digest = hmac.new(b"mlflow-secret", signed, hashlib.sha256).digest()
    assert req.headers["X-MLflow-Signature"] == "v1," + base64.b64encode(digest).decode()
    assert delivery_id == "evt-1"
    assert "webhook-signature" not in req.headers
    verify_mlflow("mlflow-secret", req.headers, req.body, now=time.time())
    body = json.loads(req.body)
    assert body.keys() == {"entity", "action", "timestamp", "data"}
    assert (body["entity"], body["action"]) == ("model_version", "stage_transitioned")
    assert body["data"]["name"] == "iris" and body["data"]["to_stage"] == "Production"


async def test_databricks_format(receiver: Receiver, clients: HttpClients) -> None:
    handler = make_handler(clients, name="dbx", url=f"{receiver.base}/ok",
                           secret="dbx-secret", signature_format="databricks")
    assert (await deliver(handler)).status is Status.DELIVERED
    [req] = receiver.requests
    expected = hmac.new(b"dbx-secret", req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Databricks-Signature"] == expected
    body = json.loads(req.body)
    assert body["event"] == "MODEL_VERSION_TRANSITIONED_STAGE"
    assert (body["model_name"], body["version"]) == ("iris", "3")
    assert (body["from_stage"], body["to_stage"]) == ("Staging", "Production")
    assert body["webhook_id"] == "dbx"
    assert body["event_timestamp"] == int(make_event().time.timestamp() * 1000)
    assert "Production" in body["text"]


async def test_extra_headers_from_the_environment(
    receiver: Receiver, clients: HttpClients
) -> None:
    """``${VAR}`` in a header of the configuration file is resolved from the variables the
    configuration layer passes in; a runtime subscription (no environment) is refused."""
    headers = {"Authorization": "Bearer ${HUB_TEST_WEBHOOK_TOKEN}", "X-Team": "ml-platform"}
    handler = make_handler(clients, url=f"{receiver.base}/ok", headers=headers,
                           environment={"HUB_TEST_WEBHOOK_TOKEN": "t0ken-value"})
    assert "t0ken-value" not in repr(handler) + repr(handler._options)
    assert (await deliver(handler)).status is Status.DELIVERED
    [req] = receiver.requests
    assert req.headers["Authorization"] == "Bearer t0ken-value"
    assert req.headers["X-Team"] == "ml-platform"

    for environment, why in (({}, "HUB_TEST_WEBHOOK_TOKEN (from ${HUB_TEST_WEBHOOK_TOKEN}) "
                                  "is not set"),
                             ({"HUB_TEST_WEBHOOK_TOKEN": ""}, "is empty"),
                             (None, "only allowed in the configuration file")):
        with pytest.raises(ValidationError) as info:
            make_handler(clients, url=f"{receiver.base}/ok", headers=headers,
                         environment=environment)
        [error] = info.value.errors()
        assert error["loc"] == ("headers", "Authorization") and why in error["msg"]


# --- statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status", "http_status"), [
    ("/status/500", Status.RETRY, 500),
    ("/status/502", Status.RETRY, 502),
    ("/status/408", Status.RETRY, 408),
    ("/status/410", Status.GONE, 410),
    ("/status/404", Status.FAILED, 404),
    ("/status/422?text=field+%27x%27+missing", Status.FAILED, 422),
])
async def test_status_outcomes(receiver: Receiver, clients: HttpClients, path: str,
                               status: Status, http_status: int) -> None:
    outcome = await deliver(make_handler(clients, url=receiver.base + path))
    assert (outcome.status, outcome.http_status) == (status, http_status)
    assert outcome.final is (status is not Status.RETRY)
    assert len(receiver.requests) == 1
    if http_status == 422:
        assert "field 'x' missing" in outcome.detail


async def test_429_retry_after_is_passed_on(receiver: Receiver, clients: HttpClients) -> None:
    outcome = await deliver(make_handler(clients, url=f"{receiver.base}/status/429"
                                                      "?retry_after=7"))
    assert (outcome.status, outcome.http_status, outcome.retry_after_s) == (
        Status.RETRY, 429, 7)


async def test_redirects_are_not_followed(receiver: Receiver, clients: HttpClients) -> None:
    outcome = await deliver(make_handler(clients, url=f"{receiver.base}/redirect"))
    assert (outcome.status, outcome.http_status) == (Status.FAILED, 302)
    assert [r.path for r in receiver.requests] == ["/redirect"]


async def test_timeout_is_a_quick_retry(receiver: Receiver, clients: HttpClients) -> None:
    handler = make_handler(clients, url=f"{receiver.base}/hang", timeout_s=0.2)
    started = time.monotonic()
    outcome = await deliver(handler)
    assert outcome.status is Status.RETRY
    assert "0.2 s" in outcome.detail
    assert time.monotonic() - started < 3
    assert [r.path for r in receiver.requests] == ["/hang"]


async def test_connection_refused_is_a_retry(clients: HttpClients) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        outcome = await deliver(make_handler(clients, url=f"http://127.0.0.1:{port}/"))
    assert outcome.status is Status.RETRY
    assert outcome.http_status is None and outcome.latency_s is not None


# --- SSRF guard -----------------------------------------------------------------------------


async def test_ssrf_guard_refuses_ip_literals_by_default(receiver: Receiver) -> None:
    async with HttpClients() as default:
        handler = make_handler(default, url=f"{receiver.base}/hook/s3cr3t?token=abc",
                               secret=KEY_A)
        with capture_logs() as logs:
            outcome = await deliver(handler)
    assert outcome.status is Status.FAILED and outcome.final
    assert "127.0.0.1" in outcome.detail
    assert "delivery.allowed_networks" in outcome.detail
    assert "token=abc" not in outcome.detail and "s3cr3t" not in outcome.detail
    assert receiver.requests == []
    [entry] = [e for e in logs if e["event"] == "webhook.refused"]
    assert entry["address"] == "127.0.0.1" and entry["subscription"] == "sub-1"
    assert KEY_A not in json.dumps(logs, default=str)


async def test_ssrf_guard_refuses_names_resolving_to_loopback(receiver: Receiver) -> None:
    url = receiver.base.replace("127.0.0.1", "localhost") + "/ok"  # /etc/hosts: 127.0.0.1
    async with HttpClients() as default:
        refused = await deliver(make_handler(default, url=url))
    assert refused.status is Status.FAILED
    assert "localhost resolves to" in refused.detail
    assert receiver.requests == []
    async with HttpClients(allowed_networks=LOOPBACK) as opened:
        delivered = await deliver(make_handler(opened, url=url))
    assert delivered.status is Status.DELIVERED
    assert len(receiver.requests) == 1


async def test_allowed_networks_must_contain_the_address(receiver: Receiver) -> None:
    async with HttpClients(allowed_networks=["127.0.0.2/32", "10.0.0.0/8"]) as narrow:
        outcome = await deliver(make_handler(narrow, url=f"{receiver.base}/ok"))
    assert outcome.status is Status.FAILED
    assert receiver.requests == []


async def test_ipv4_mapped_ipv6_literal_is_refused(receiver: Receiver) -> None:
    url = receiver.base.replace("127.0.0.1", "[::ffff:127.0.0.1]") + "/ok"
    async with HttpClients() as default:
        outcome = await deliver(make_handler(default, url=url))
    assert outcome.status is Status.FAILED
    assert "delivery.allowed_networks" in outcome.detail
    assert receiver.requests == []


# --- HttpClients ----------------------------------------------------------------------------


async def test_http_clients_cache_sessions_and_close_once() -> None:
    clients = HttpClients(allowed_networks=LOOPBACK)
    verified, unverified = clients.session(), clients.session(verify_tls=False)
    assert verified is clients.session(True) and unverified is clients.session(False)
    assert verified is not unverified
    await clients.aclose()
    await clients.aclose()
    assert verified.closed and unverified.closed
    with pytest.raises(RuntimeError, match="closed"):
        clients.session()
