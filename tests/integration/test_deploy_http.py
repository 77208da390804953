"""The deploy handler's generic HTTP target on the wire, against a local receiver: the
rendered body and headers, the deploy-request record by default, answers mapped to outcomes,
and unreachable, slow, refused and vanished endpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from handlers.deploy import DeployHandler, DeployOptions
from handlers.deploy_targets import idempotency_key
from hub.envrefs import CONTEXT_KEY
from hub.http import HttpClients
from hub.outcome import Status
from hub.plugins import HandlerContext
from tests.support.deploy import alias_event, serve, stage_event
from tests.support.schema import schema_errors

# --- network failures -----------------------------------------------------------------------

async def test_unreachable_slow_and_refused_endpoints(http_clients: HttpClients) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=502, text="bad gateway")

    def http(url: str, clients: HttpClients = http_clients) -> DeployHandler:
        options = DeployOptions.model_validate({"target": "http", "url": url, "timeout_s": 0.3})
        return DeployHandler(name="d", options=options,
                             context=HandlerContext(http_session=clients.session))

    app = web.Application()
    app.router.add_post("/slow", slow)
    app.router.add_post("/broken", broken)
    async with serve(app) as base:
        timed_out = await http(f"{base}/slow").deliver(stage_event())
        release.set()
        assert timed_out.status is Status.RETRY and "0.3 s" in timed_out.detail
        broken_outcome = await http(f"{base}/broken").deliver(stage_event())
        assert (broken_outcome.status, broken_outcome.http_status) == (Status.RETRY, 502)
        async with HttpClients() as guarded:  # no allowed networks: loopback is refused
            refused = await http(f"{base}/broken", guarded).deliver(stage_event())
        assert refused.status is Status.FAILED and "allowed_networks" in refused.detail
    closed = await http(f"{base}/broken").deliver(stage_event())  # the server is gone
    assert closed.status is Status.RETRY and closed.http_status is None


# --- generic HTTP ---------------------------------------------------------------------------

@dataclass
class Receiver:
    calls: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    answer: Callable[[], web.Response] = lambda: web.Response(status=202)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, dict(request.headers), await request.read()))
        return self.answer()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/deploy", rec.handle)
    async with serve(app) as url:
        yield rec, f"{url}/deploy"


async def test_http_target_renders_the_body_and_sends_a_stable_idempotency_key(
        receiver: tuple[Receiver, str], http_clients: HttpClients) -> None:
    rec, url = receiver
    environment = {CONTEXT_KEY: {"DEPLOY_API_TOKEN": "s3cr3t-deploy"}}
    options = DeployOptions.model_validate({
        "target": "http", "url": url, "method": "PUT",
        "headers": {"Authorization": "Bearer ${DEPLOY_API_TOKEN}"},
        "body": {"service": "{model}", "image": "registry/{model}:{version}",
                 "meta": {"stage": "{stage}", "alias": "{alias}", "why": "{type}",
                          "key": "{idempotency_key}", "event": "{event_id}"},
                 "replicas": 2}}, context=environment)
    handler = DeployHandler(name="deploy-http", options=options,
                            context=HandlerContext(http_session=http_clients.session))
    event = stage_event(event_id="ev-7")
    assert (await handler.deliver(event)).status is Status.DELIVERED
    assert (await handler.deliver(event)).status is Status.DELIVERED
    [(method, headers, body), (_, headers_again, body_again)] = rec.calls
    key = idempotency_key("deploy-http", "ev-7")
    assert method == "PUT"
    assert headers["Idempotency-Key"] == key == headers_again["Idempotency-Key"]
    assert headers["Authorization"] == "Bearer s3cr3t-deploy"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "service": "iris", "image": "registry/iris:3", "replicas": 2,
        "meta": {"stage": "Production", "alias": "", "why": "model_version.stage_transitioned",
                 "key": key, "event": "ev-7"}}
    assert body_again == body


async def test_http_default_body_is_the_deploy_request_record(
        receiver: tuple[Receiver, str], http_clients: HttpClients) -> None:
    rec, url = receiver
    options = DeployOptions.model_validate({"target": "http", "url": url})
    handler = DeployHandler(name="d", options=options,
                            context=HandlerContext(http_session=http_clients.session))
    assert (await handler.deliver(alias_event("iris", "4"))).status is Status.DELIVERED
    [(method, _, body)] = rec.calls
    record = json.loads(body)
    assert method == "POST" and schema_errors(record) == []
    assert (record["model"], record["version"], record["alias"]) == ("iris", "4", "champion")


@pytest.mark.parametrize(
    ("answer", "status", "retry_after"),
    [
        (lambda: web.Response(status=410, text="unsubscribed"), Status.GONE, None),
        (lambda: web.Response(status=429, headers={"Retry-After": "3"}), Status.RETRY, 3.0),
        (lambda: web.Response(status=503, headers={"Retry-After": "9"}), Status.RETRY, 9.0),
        (lambda: web.Response(status=400, text="bad image"), Status.FAILED, None),
    ],
)
async def test_http_answers_map_to_outcomes(
        receiver: tuple[Receiver, str], http_clients: HttpClients,
        answer: Callable[[], web.Response], status: Status, retry_after: float | None) -> None:
    rec, url = receiver
    rec.answer = answer
    options = DeployOptions.model_validate({"target": "http", "url": url})
    handler = DeployHandler(name="d", options=options,
                            context=HandlerContext(http_session=http_clients.session))
    outcome = await handler.deliver(stage_event())
    assert (outcome.status, outcome.retry_after_s) == (status, retry_after)
    assert len(rec.calls) == 1
