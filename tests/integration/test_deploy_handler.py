"""The deploy handler on the wire: a local GitHub REST API stand-in, a local HTTP receiver,
the session's real Kafka broker, and a real MLflow server for lineage."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from mlflow.tracking import MlflowClient

from handlers.deploy import DeployHandler, DeployOptions
from handlers.deploy_targets import idempotency_key
from hub.envrefs import CONTEXT_KEY
from hub.events import Event
from hub.http import HttpClients
from hub.outcome import Status
from hub.plugins import HandlerContext
from hub.testing import FakeHandlerContext
from tests.support.mlflow_server import MlflowServer
from tests.support.schema import schema_errors

TOKEN = "ghp_test_token_0123456789"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def stage_event(model: str = "iris", version: str = "3", event_id: str | None = None,
                **data: Any) -> Event:
    return Event(
        id=event_id or str(uuid.uuid4()), type="model_version.stage_transitioned", model=model,
        time=T0, source="mlflow://registry", version=version,
        data={"model_name": model, "version": version, "run_id": "r1",
              "source": "models:/m-1", "from_stage": "Staging", "to_stage": "Production",
              "tags": {"validated": "true"}, "aliases": [],
              "tracking_uri": "http://mlflow.example", **data})


def alias_event(model: str, version: str, alias: str = "champion", **data: Any) -> Event:
    return Event(
        id=str(uuid.uuid4()), type="model_version_alias.created", model=model, time=T0,
        source="mlflow://registry", version=version,
        data={"model_name": model, "alias": alias, "version": version, "previous_version": None,
              "run_id": "r1", "source": "models:/m-1", "aliases": [alias],
              "tracking_uri": "http://mlflow.example", **data})


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def http_clients() -> AsyncIterator[HttpClients]:
    async with HttpClients(allowed_networks=["127.0.0.0/8"]) as clients:
        yield clients


# --- a GitHub REST API stand-in -------------------------------------------------------------

@dataclass
class FakeGitHub:
    """Checks what GitHub checks for the two dispatch endpoints; records accepted calls."""

    repo: str = "acme/serving"
    workflows: dict[str, set[str]] = field(default_factory=lambda: {"deploy.yml": {
        "model", "version", "alias", "stage", "run_id", "source", "event_id",
        "idempotency_key", "lineage"}})
    refs: set[str] = field(default_factory=lambda: {"main"})
    rate_limited: bool = False
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/repos/{owner}/{name}/dispatches", self.repository_dispatch)
        app.router.add_post("/repos/{owner}/{name}/actions/workflows/{workflow}/dispatches",
                            self.workflow_dispatch)
        return app

    @staticmethod
    def error(status: int, message: str, **headers: str) -> web.Response:
        return web.json_response({"message": message, "documentation_url": "https://docs"},
                                 status=status, headers=headers)

    async def _checked(self, request: web.Request) -> web.Response | dict[str, Any]:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.error(401, "Bad credentials")
        if (request.headers.get("Accept") != "application/vnd.github+json"
                or request.headers.get("X-GitHub-Api-Version") != "2022-11-28"
                or not request.headers.get("User-Agent")):
            return self.error(400, "missing GitHub API headers")
        if self.rate_limited:
            return self.error(403, "API rate limit exceeded for installation",
                              **{"x-ratelimit-remaining": "0", "Retry-After": "42",
                                 "x-ratelimit-reset": "9999999999"})
        if f"{request.match_info['owner']}/{request.match_info['name']}" != self.repo:
            return self.error(404, "Not Found")
        try:
            body = await request.json()
        except ValueError:
            return self.error(400, "Problems parsing JSON")
        return body if isinstance(body, dict) else self.error(400, "Problems parsing JSON")

    async def repository_dispatch(self, request: web.Request) -> web.Response:
        body = await self._checked(request)
        if isinstance(body, web.Response):
            return body
        event_type, payload = body.get("event_type"), body.get("client_payload", {})
        if set(body) - {"event_type", "client_payload"} or not isinstance(event_type, str) \
                or not 0 < len(event_type) <= 100:
            return self.error(422, "Invalid request. event_type is invalid.")
        if not isinstance(payload, dict) or len(payload) > 10:
            return self.error(422, "Invalid request. No more than 10 properties are allowed; "
                                   f"{len(payload)} were supplied.")
        self.accepted.append((request.path, body))
        return web.Response(status=204)

    async def workflow_dispatch(self, request: web.Request) -> web.Response:
        body = await self._checked(request)
        if isinstance(body, web.Response):
            return body
        declared = self.workflows.get(request.match_info["workflow"])
        if declared is None:
            return self.error(404, "Not Found")
        inputs = body.get("inputs", {})
        if body.get("ref") not in self.refs:
            return self.error(422, f"No ref found for: {body.get('ref')}")
        if not isinstance(inputs, dict) or len(inputs) > 10 or not all(
                isinstance(v, str) for v in inputs.values()):
            return self.error(422, "inputs: at most 10 string values")
        unexpected = sorted(set(inputs) - declared)
        if unexpected:
            return self.error(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        self.accepted.append((request.path, body))
        return web.Response(status=204)


@pytest.fixture
async def github() -> AsyncIterator[tuple[FakeGitHub, str]]:
    fake = FakeGitHub()
    async with serve(fake.app()) as url:
        yield fake, url


def github_handler(url: str, clients: HttpClients, name: str = "deploy-prod",
                   context: HandlerContext | None = None, **options: Any) -> DeployHandler:
    opts = DeployOptions.model_validate({"target": "github_dispatch", "repo": "acme/serving",
                                         "token": TOKEN, "event_type": "deploy-model",
                                         "api_base_url": url, **options})
    return DeployHandler(name=name, options=opts,
                         context=context or HandlerContext(http_session=clients.session))


async def test_repository_dispatch_sends_the_checked_payload_and_the_same_key_on_redelivery(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    handler = github_handler(url, http_clients)
    event = stage_event(event_id="ev-42")
    first, again = await handler.deliver(event), await handler.deliver(event)
    assert (first.status, first.http_status) == (Status.DELIVERED, 204)
    assert first.latency_s is not None and again.status is Status.DELIVERED
    [(path, body), (_, body_again)] = fake.accepted
    assert path == "/repos/acme/serving/dispatches"
    assert body["event_type"] == "deploy-model"
    assert body["client_payload"] == {
        "model": "iris", "version": "3", "alias": None, "stage": "Production", "run_id": "r1",
        "source": "models:/m-1", "event_type": "model_version.stage_transitioned",
        "event_id": "ev-42", "idempotency_key": idempotency_key("deploy-prod", "ev-42")}
    assert body_again == body


async def test_workflow_dispatch_sends_ref_and_declared_string_inputs(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    handler = github_handler(url, http_clients, target="github_workflow", event_type=None,
                             workflow="deploy.yml", ref="main")
    event = alias_event("iris", "4")
    outcome = await handler.deliver(event)
    assert outcome.status is Status.DELIVERED, outcome.detail
    [(path, body)] = fake.accepted
    assert path == "/repos/acme/serving/actions/workflows/deploy.yml/dispatches"
    assert body["ref"] == "main"
    assert body["inputs"]["alias"] == "champion" and body["inputs"]["version"] == "4"
    assert body["inputs"]["idempotency_key"] == idempotency_key("deploy-prod", event.id)


async def test_github_422_is_final_with_githubs_message(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    fake.workflows["deploy.yml"] = {"model", "version"}
    handler = github_handler(url, http_clients, target="github_workflow", event_type=None,
                             workflow="deploy.yml", ref="main")
    outcome = await handler.deliver(stage_event())
    assert (outcome.status, outcome.http_status) == (Status.FAILED, 422)
    assert "Unexpected inputs provided" in outcome.detail and "idempotency_key" in outcome.detail
    assert fake.accepted == []
    missing_ref = github_handler(url, http_clients, target="github_workflow", event_type=None,
                                 workflow="deploy.yml", ref="release",
                                 inputs={"model": "{model}", "version": "{idempotency_key}"})
    outcome = await missing_ref.deliver(stage_event())
    assert outcome.status is Status.FAILED and "No ref found for: release" in outcome.detail


async def test_github_rate_limit_is_retried_after_retry_after(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    fake.rate_limited = True
    outcome = await github_handler(url, http_clients).deliver(stage_event())
    assert (outcome.status, outcome.http_status, outcome.retry_after_s) == (
        Status.RETRY, 403, 42.0)
    assert "rate limit" in outcome.detail
    fake.rate_limited = False
    assert (await github_handler(url, http_clients).deliver(stage_event())).status \
        is Status.DELIVERED


async def test_github_auth_and_missing_repo_are_final_and_never_show_the_token(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    bad = await github_handler(url, http_clients, token="ghp_wrong_token").deliver(stage_event())
    assert (bad.status, bad.http_status) == (Status.FAILED, 401)
    assert "Bad credentials" in bad.detail and "ghp_wrong_token" not in bad.detail
    missing = await github_handler(url, http_clients, repo="acme/other").deliver(stage_event())
    assert (missing.status, missing.http_status) == (Status.FAILED, 404)
    assert TOKEN not in missing.detail and fake.accepted == []


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


# --- Kafka ----------------------------------------------------------------------------------

async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()


async def test_kafka_target_publishes_schema_valid_records_keyed_by_model(
        kafka_bootstrap: str, topic_name: str) -> None:
    await create_topic(kafka_bootstrap, topic_name)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                enable_idempotence=False)
    await producer.start()

    async def kafka_send(topic: str, key: bytes, value: bytes,
                         headers: list[tuple[str, bytes]]) -> None:
        await producer.send_and_wait(topic, key=key, value=value, headers=headers)

    try:
        options = DeployOptions.model_validate({"target": "kafka", "topic": topic_name})
        handler = DeployHandler(name="deploy-kafka", options=options,
                                context=HandlerContext(kafka_send=kafka_send))
        event = alias_event("fraud-model", "12")
        outcomes = [await handler.deliver(event), await handler.deliver(event)]
    finally:
        await producer.stop()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 2

    consumer = AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_bootstrap,
                                group_id=f"check-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=2000, heartbeat_interval_ms=500)
    await consumer.start()
    try:
        received: list[Any] = []
        async with asyncio.timeout(30):
            while len(received) < 2:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received.extend(records)
    finally:
        await consumer.stop()

    key = idempotency_key("deploy-kafka", event.id)
    first, second = received
    assert first.key == b"fraud-model" and first.partition == second.partition
    assert first.value == second.value  # a redelivery is byte-identical
    assert dict(first.headers) == {"content-type": b"application/json",
                                   "schema": b"registry-hub.deploy-request/v1",
                                   "idempotency_key": key.encode()}
    record = json.loads(first.value)
    assert schema_errors(record) == []
    assert record == {
        "schema": "registry-hub.deploy-request/v1", "idempotency_key": key,
        "event_id": event.id, "event_type": "model_version_alias.created",
        "model": "fraud-model", "version": "12", "alias": "champion", "stage": None,
        "source": "models:/m-1", "run_id": "r1", "tracking_uri": "http://mlflow.example",
        "requested_at": "2025-03-01T12:00:00+00:00"}


# --- lineage against a real MLflow server ---------------------------------------------------

@pytest.fixture
def registered_version(mlflow_client: MlflowClient) -> tuple[str, str, str]:
    """A model version from a run with params and metrics; returns (model, version, exp)."""
    experiment = f"deploy-exp-{uuid.uuid4().hex[:8]}"
    experiment_id = mlflow_client.create_experiment(experiment)
    run = mlflow_client.create_run(experiment_id)
    mlflow_client.log_param(run.info.run_id, "C", "0.5")
    mlflow_client.log_metric(run.info.run_id, "accuracy", 0.93)
    mlflow_client.set_terminated(run.info.run_id)
    model = f"churn-{uuid.uuid4().hex[:8]}"
    mlflow_client.create_registered_model(model)
    mv = mlflow_client.create_model_version(model, f"{run.info.artifact_uri}/model",
                                            run_id=run.info.run_id, tags={"validated": "true"})
    return model, str(mv.version), experiment


@pytest.mark.slow
async def test_lineage_rides_in_the_client_payload_and_is_fetched_once_per_version(
        github: tuple[FakeGitHub, str], http_clients: HttpClients,
        mlflow_server: MlflowServer, mlflow_client: MlflowClient,
        registered_version: tuple[str, str, str]) -> None:
    fake, url = github
    model, version, experiment = registered_version
    async with FakeHandlerContext(mlflow_client=mlflow_client) as context:
        handler = github_handler(url, http_clients, context=context, include_lineage=True)
        together = await asyncio.gather(handler.deliver(stage_event(model, version)),
                                        handler.deliver(stage_event(model, version)))
        later = await handler.deliver(alias_event(model, version, tags={"validated": "true",
                                                                         "owner": "ml"}))
    assert [o.status for o in [*together, later]] == [Status.DELIVERED] * 3, later.detail
    assert len(context.mlflow_calls) == 1  # concurrent misses, a later hit: one fetch

    payloads = [body["client_payload"] for _, body in fake.accepted]
    assert all(len(p) <= 10 for p in payloads)
    lineage = payloads[0]["lineage"]
    assert lineage["experiment_name"] == experiment
    assert lineage["params"] == {"C": "0.5"}
    assert lineage["metrics"] == {"accuracy": 0.93}
    assert lineage["run_id"] == mlflow_client.get_model_version(model, version).run_id
    assert lineage["tags"] == {"validated": "true"}
    assert payloads[2]["lineage"]["tags"] == {"validated": "true", "owner": "ml"}  # the event's


@pytest.mark.slow
async def test_a_lineage_fetch_failure_is_retried_not_deployed_without_it(
        github: tuple[FakeGitHub, str], http_clients: HttpClients,
        mlflow_server: MlflowServer, mlflow_client: MlflowClient) -> None:
    fake, url = github
    async with FakeHandlerContext(mlflow_client=mlflow_client) as context:
        handler = github_handler(url, http_clients, context=context, include_lineage=True)
        missing = stage_event(f"absent-{uuid.uuid4().hex[:8]}", "1")
        outcomes = [await handler.deliver(missing), await handler.deliver(missing)]
    assert [o.status for o in outcomes] == [Status.RETRY, Status.RETRY]
    assert "lineage" in outcomes[0].detail
    assert len(context.mlflow_calls) == 2  # failures are not cached
    assert fake.accepted == []


@pytest.mark.slow
async def test_kafka_records_carry_lineage_that_validates(
        mlflow_server: MlflowServer, mlflow_client: MlflowClient,
        registered_version: tuple[str, str, str]) -> None:
    model, version, experiment = registered_version
    async with FakeHandlerContext(mlflow_client=mlflow_client) as context:
        handler = DeployHandler(
            name="d", options=DeployOptions(target="kafka", include_lineage=True),
            context=context)
        assert (await handler.deliver(stage_event(model, version))).status is Status.DELIVERED
    record = json.loads(context.sent[0].value or b"")
    assert schema_errors(record) == []
    assert record["lineage"]["experiment_name"] == experiment
