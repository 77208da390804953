"""The deploy handler's Kafka target with hub.testing's FakeHandlerContext: the record it
publishes (key, headers, schema-valid value, byte-identical on redelivery), a failed publish
as a retry, and the context capabilities it requires. The same target through a real
broker: tests/integration/test_deploy_kafka.py."""

from __future__ import annotations

import json

import pytest

from handlers.deploy import DeployHandler, DeployOptions
from handlers.deploy_targets import idempotency_key
from hub import BusError, HandlerContext, PluginError, Status
from hub.testing import FakeHandlerContext, make_event
from tests.support.schema import schema_errors

ALIAS = make_event("model_version_alias.created", "fraud-model", "12", id="ev-12",
                   alias="champion", run_id="r1", source="models:/m-1", aliases=["champion"])


async def test_one_record_per_event_keyed_by_model_and_identical_on_redelivery() -> None:
    async with FakeHandlerContext() as context:
        handler = DeployHandler(name="deploy-kafka", context=context,
                                options=DeployOptions(target="kafka", topic="deploy.requests"))
        assert handler.topics == ["deploy.requests"]
        outcomes = [await handler.deliver(ALIAS), await handler.deliver(ALIAS)]
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 2
    first, again = context.sent
    assert (first.topic, first.key) == ("deploy.requests", b"fraud-model")
    assert first.value == again.value  # a redelivery is byte-identical
    key = idempotency_key("deploy-kafka", ALIAS.id)
    assert dict(first.headers) == {"content-type": b"application/json",
                                   "schema": b"registry-hub.deploy-request/v1",
                                   "idempotency_key": key.encode()}
    record = json.loads(first.value or b"")
    assert schema_errors(record) == []
    assert (record["idempotency_key"], record["alias"], record["version"], record["source"],
            record["tracking_uri"]) == (key, "champion", "12", "models:/m-1",
                                        "http://mlflow.example")


async def test_a_failed_publish_is_retried() -> None:
    async with FakeHandlerContext() as context:
        context.producer.fail(BusError("broker unreachable"))
        handler = DeployHandler(name="d", options=DeployOptions(target="kafka"), context=context)
        outcome = await handler.deliver(ALIAS)
    assert outcome.status is Status.RETRY and "broker unreachable" in outcome.detail
    assert context.sent == []


async def test_prompt_events_deploy_nothing_unless_the_subscription_says_prompts() -> None:
    prompt_alias = make_event("prompt_alias.created", "summarize", "3", id="ev-p",
                              alias="champion", run_id=None, source="prompt-template")
    async with FakeHandlerContext() as context:
        models_only = DeployHandler(name="d", options=DeployOptions(target="kafka"),
                                    context=context)
        skipped = await models_only.deliver(prompt_alias)
        assert skipped.status is Status.DELIVERED and "prompts: true" in skipped.detail
        assert context.sent == []
        prompts = DeployHandler(name="p", options=DeployOptions(target="kafka", prompts=True),
                                context=context)
        assert (await prompts.deliver(prompt_alias)).status is Status.DELIVERED
    (sent,) = context.sent
    record = json.loads(sent.value or b"")
    assert schema_errors(record) == []
    assert (sent.key, record["alias"], record["version"]) == (b"summarize", "champion", "3")


def test_missing_context_capabilities_are_reported_at_construction() -> None:
    with pytest.raises(PluginError, match="kafka_send"):
        DeployHandler(name="d", options=DeployOptions(target="kafka"), context=HandlerContext())
    with pytest.raises(PluginError, match="mlflow_call"):
        DeployHandler(name="d", options=DeployOptions(target="kafka", include_lineage=True),
                      context=HandlerContext(kafka_send=_never_send))


async def _never_send(topic: str, key: bytes, value: bytes,
                      headers: list[tuple[str, bytes]]) -> None:
    raise AssertionError("not expected")
