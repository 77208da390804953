"""The deploy handler's lineage against a real MLflow server: it rides in GitHub's client
payload and in Kafka records (schema-valid), is fetched once per version, and a failed fetch
is retried, never deployed without it."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from mlflow.tracking import MlflowClient

from handlers.deploy import DeployHandler, DeployOptions
from hub.http import HttpClients
from hub.outcome import Status
from hub.testing import FakeHandlerContext
from tests.support.deploy import FakeGitHub, alias_event, github_handler, stage_event
from tests.support.mlflow_server import MlflowServer
from tests.support.schema import schema_errors


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
