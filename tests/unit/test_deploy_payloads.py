"""Deploy payloads, pure: idempotency keys, templates, GitHub's limits, the deploy-request/v1
record against its JSON Schema, status mapping, and option validation naming the field."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from handlers.deploy import DeployOptions
from handlers.deploy_targets import (
    DEFAULT_WORKFLOW_INPUTS,
    GITHUB_MAX_KEYS,
    DeployRequest,
    deploy_request,
    dispatch_payload,
    encode,
    github_outcome,
    http_outcome,
    idempotency_key,
    parse_retry_after,
    record,
    render,
    workflow_payload,
)
from hub.envrefs import CONTEXT_KEY
from hub.events import Event
from hub.outcome import Status
from tests.support.schema import load_schema, schema_errors

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LINEAGE = {"run_id": "r1", "experiment_id": "7", "experiment_name": "iris-exp",
           "params": {"C": "0.1"}, "metrics": {"acc": 0.97, "bad": None},
           "tags": {"validated": "true"}}


def stage_event(**data: Any) -> Event:
    base = {"model_name": "iris", "version": "3", "run_id": "r1", "source": "models:/m-1",
            "from_stage": "Staging", "to_stage": "Production", "tags": {"validated": "true"},
            "aliases": [], "tracking_uri": "http://mlflow:5000"}
    return Event(id="ev-1", type="model_version.stage_transitioned", model="iris", time=T0,
                 source="mlflow://registry", data={**base, **data}, version="3")


def alias_event() -> Event:
    return Event(id="ev-2", type="model_version_alias.created", model="iris", time=T0,
                 source="mlflow://registry", version="4",
                 data={"model_name": "iris", "alias": "champion", "version": "4",
                       "previous_version": "3", "run_id": "r4", "source": "runs:/r4/model",
                       "tags": {}, "aliases": ["champion"], "tracking_uri": "sqlite:///m.db"})


# --- idempotency key -----------------------------------------------------------------------

@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64))
def test_idempotency_key_is_stable_and_well_formed(subscription: str, event_id: str) -> None:
    key = idempotency_key(subscription, event_id)
    assert key == idempotency_key(subscription, event_id)
    assert re.fullmatch(r"rh-[0-9a-f]{32}", key)


def test_idempotency_key_differs_per_event_and_per_subscription() -> None:
    keys = {idempotency_key("deploy-prod", "ev-1"), idempotency_key("deploy-prod", "ev-2"),
            idempotency_key("deploy-stg", "ev-1"), idempotency_key("deploy-prodev-1", "")}
    assert len(keys) == 4


def test_a_redelivered_event_builds_a_byte_identical_request() -> None:
    first = encode(record(deploy_request("deploy-prod", stage_event(), LINEAGE)))
    again = encode(record(deploy_request("deploy-prod", stage_event(), dict(LINEAGE))))
    assert first == again
    assert json.loads(first)["idempotency_key"] == idempotency_key("deploy-prod", "ev-1")


# --- the request and its record ---------------------------------------------------------------

def test_request_fields_come_from_the_event() -> None:
    stage = deploy_request("s", stage_event())
    assert (stage.model, stage.version, stage.stage, stage.alias) == ("iris", "3", "Production",
                                                                      None)
    assert (stage.run_id, stage.source, stage.tracking_uri) == ("r1", "models:/m-1",
                                                                "http://mlflow:5000")
    assert stage.requested_at == "2025-03-01T12:00:00+00:00"
    alias = deploy_request("s", alias_event())
    assert (alias.version, alias.alias, alias.stage, alias.run_id) == ("4", "champion", None,
                                                                      "r4")
    model_event = Event(id="ev-3", type="registered_model.created", model="iris", time=T0,
                        source="x", data={"model_name": "iris", "tags": {}})
    bare = deploy_request("s", model_event)
    assert (bare.version, bare.run_id, bare.source, bare.tracking_uri) == (None,) * 4


@pytest.mark.parametrize("lineage", [None, LINEAGE])
def test_records_validate_against_the_published_schema(lineage: dict[str, Any] | None) -> None:
    schema = load_schema()
    for event in (stage_event(), alias_event()):
        body = json.loads(encode(record(deploy_request("deploy-prod", event, lineage))))
        assert schema_errors(body, schema) == []
        assert body["schema"] == "registry-hub.deploy-request/v1"
        assert ("lineage" in body) is (lineage is not None)


def test_the_schema_check_rejects_a_wrong_record() -> None:
    schema = load_schema()
    body = record(deploy_request("s", stage_event()))
    assert schema_errors({**body, "extra": 1}, schema)
    assert schema_errors({**body, "idempotency_key": "abc"}, schema)
    assert schema_errors({k: v for k, v in body.items() if k != "model"}, schema)
    assert schema_errors({**body, "version": 3}, schema)
    assert schema_errors({**body, "requested_at": "2025-03-01 12:00"}, schema)  # not RFC 3339
    assert schema_errors({**body, "requested_at": "2025-13-01T12:00:00Z"}, schema)


# --- GitHub payloads ------------------------------------------------------------------------

def test_client_payload_keeps_lineage_under_one_key_within_githubs_limit() -> None:
    lineage = {**LINEAGE, **{f"extra{i}": i for i in range(20)}}
    payload = dispatch_payload("deploy-model", deploy_request("s", stage_event(), lineage))
    assert payload["event_type"] == "deploy-model"
    client_payload = payload["client_payload"]
    assert len(client_payload) <= GITHUB_MAX_KEYS
    assert set(client_payload) == {"model", "version", "alias", "stage", "run_id", "source",
                                   "event_type", "event_id", "idempotency_key", "lineage"}
    assert client_payload["lineage"] == lineage
    assert client_payload["idempotency_key"] == idempotency_key("s", "ev-1")
    without = dispatch_payload("d", deploy_request("s", stage_event()))["client_payload"]
    assert "lineage" not in without and len(without) == 9


def test_workflow_inputs_are_strings_within_githubs_limit() -> None:
    inputs = {**DEFAULT_WORKFLOW_INPUTS, "lineage": "{lineage}"}
    payload = workflow_payload("main", inputs, deploy_request("s", alias_event(), LINEAGE))
    assert payload["ref"] == "main"
    rendered = payload["inputs"]
    assert len(rendered) <= GITHUB_MAX_KEYS
    assert all(isinstance(v, str) for v in rendered.values())
    assert rendered["alias"] == "champion" and rendered["stage"] == ""
    assert rendered["idempotency_key"] == idempotency_key("s", "ev-2")
    assert json.loads(rendered["lineage"]) == LINEAGE


def test_more_than_ten_inputs_is_refused() -> None:
    eleven = {f"i{n}": "{model}" for n in range(11)}
    with pytest.raises(ValueError, match="at most 10 inputs"):
        workflow_payload("main", eleven, deploy_request("s", stage_event()))


# --- templates ------------------------------------------------------------------------------

def test_render_fills_placeholders_at_any_depth_and_keeps_other_values() -> None:
    request = deploy_request("s", alias_event(), LINEAGE)
    template = {"ref": "deploy/{model}@{alias}", "n": 3, "flag": True, "none": None,
                "list": ["{version}", {"k": "{event_id}-{type}"}],
                "lineage": "{lineage}", "text": "lineage={lineage}",
                "missing": "[{stage}]", "unknown": "<{nope}>", "braces": "{{model}} {{",
                "key": "{idempotency_key}", "at": "{time}"}
    out = render(template, request.values())
    assert out == {"ref": "deploy/iris@champion", "n": 3, "flag": True, "none": None,
                   "list": ["4", {"k": "ev-2-model_version_alias.created"}],
                   "lineage": LINEAGE, "text": "lineage=" + json.dumps(LINEAGE,
                                                                       separators=(",", ":")),
                   "missing": "[]", "unknown": "<>", "braces": "{model} {",
                   "key": idempotency_key("s", "ev-2"), "at": "2025-03-01T12:00:00+00:00"}
    assert render({"lineage": "{lineage}"}, deploy_request("s", alias_event()).values()) == {
        "lineage": None}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="{}abc_ $\\model"),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@given(json_values, st.dictionaries(st.sampled_from(["model", "alias", "x"]),
                                    st.none() | st.text(max_size=5) | st.integers()))
def test_render_never_raises_and_keeps_the_shape(template: Any, values: dict[str, Any]) -> None:
    out = render(template, values)
    if isinstance(template, dict):
        assert isinstance(out, dict) and set(out) == set(template)
    elif isinstance(template, list):
        assert isinstance(out, list) and len(out) == len(template)
    json.dumps(out)


# --- status mapping -------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected", "retry_after"),
    [
        (204, {}, "", Status.DELIVERED, None),
        (200, {}, "{}", Status.DELIVERED, None),
        (401, {}, '{"message":"Bad credentials"}', Status.FAILED, None),
        (403, {"x-ratelimit-remaining": "4999"}, '{"message":"Resource not accessible by '
         'personal access token"}', Status.FAILED, None),
        (404, {}, '{"message":"Not Found"}', Status.FAILED, None),
        (422, {}, '{"message":"Unexpected inputs provided: [\\"x\\"]"}', Status.FAILED, None),
        (403, {"X-RateLimit-Remaining": "0", "Retry-After": "30"}, "{}", Status.RETRY, 30.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 90)},
         '{"message":"API rate limit exceeded"}', Status.RETRY, 90.0),
        (403, {}, '{"message":"You have exceeded a secondary rate limit"}', Status.RETRY, 60.0),
        (429, {}, "", Status.RETRY, 60.0),
        (429, {"Retry-After": "5"}, "", Status.RETRY, 5.0),
        (500, {}, "boom", Status.RETRY, None),
        (502, {}, "<html>bad gateway</html>", Status.RETRY, None),
        (400, {}, '{"message":"Problems parsing JSON"}', Status.FAILED, None),
        (301, {"Location": "https://api.github.com/repositories/1/dispatches"},
         '{"message":"Moved Permanently"}', Status.FAILED, None),
        (307, {}, '{"message":"Temporary Redirect"}', Status.FAILED, None),
    ],
)
def test_github_status_mapping(status: int, headers: dict[str, str], body: str,
                               expected: Status, retry_after: float | None) -> None:
    outcome = github_outcome(status, headers, body, now=NOW)
    assert outcome.status is expected
    assert outcome.http_status == status
    assert outcome.retry_after_s == retry_after
    if expected is not Status.DELIVERED and body.startswith('{"message"'):
        assert json.loads(body)["message"][:20] in outcome.detail


def test_github_failure_detail_explains_what_to_check() -> None:
    detail = github_outcome(422, {}, '{"message":"No ref found for: nope","errors":["x"]}',
                            now=NOW).detail
    assert "No ref found for: nope" in detail and '["x"]' in detail and "ref must exist" in detail
    assert "token" in github_outcome(401, {}, '{"message":"Bad credentials"}', now=NOW).detail


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (200, {}, Status.DELIVERED, None),
        (202, {}, Status.DELIVERED, None),
        (410, {}, Status.GONE, None),
        (429, {"Retry-After": "7"}, Status.RETRY, 7.0),
        (503, {"retry-after": "Tue, 14 Nov 2023 22:14:20 GMT"}, Status.RETRY, 60.0),
        (503, {}, Status.RETRY, None),
        (500, {}, Status.RETRY, None),
        (408, {}, Status.RETRY, None),
        (400, {}, Status.FAILED, None),
        (404, {}, Status.FAILED, None),
        (409, {"Retry-After": "3"}, Status.FAILED, None),
        (301, {}, Status.FAILED, None),
        (302, {"Location": "http://elsewhere.example/hook"}, Status.FAILED, None),
        (308, {"location": "/v2/hook"}, Status.FAILED, None),
    ],
)
def test_http_status_mapping(status: int, headers: dict[str, str], expected: Status,
                             retry_after: float | None) -> None:
    outcome = http_outcome(status, headers, "answer text", now=NOW)
    assert (outcome.status, outcome.http_status, outcome.retry_after_s) == (
        expected, status, retry_after)
    if expected is not Status.DELIVERED:
        assert "answer text" in outcome.detail


@pytest.mark.parametrize("outcome_of", [http_outcome, github_outcome])
def test_a_3xx_answer_is_final_and_says_where_it_pointed(outcome_of: Any) -> None:
    outcome = outcome_of(302, {"Location": "http://elsewhere.example/hook"}, "", now=NOW)
    assert (outcome.status, outcome.http_status) == (Status.FAILED, 302)
    assert "redirect to http://elsewhere.example/hook not followed" in outcome.detail
    missing = outcome_of(303, {}, "", now=NOW).detail
    assert "redirect to (no Location header) not followed" in missing


def test_retry_after_parsing() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 1.5 ", NOW) == 1.5
    assert parse_retry_after("-4", NOW) == 0.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", NOW) == 0.0  # in the past
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("inf", NOW) is None


# --- options ----------------------------------------------------------------------------------

def errors_of(**options: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        DeployOptions.model_validate(options)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


GH = {"repo": "acme/serving", "token": "ghp_secret"}


def test_each_target_names_the_fields_it_needs() -> None:
    assert errors_of(target="github_dispatch", **GH) == [
        ("event_type", "required when target is github_dispatch")]
    assert errors_of(target="github_workflow", **GH) == [
        ("workflow", "required when target is github_workflow"),
        ("ref", "required when target is github_workflow")]
    assert errors_of(target="github_dispatch", event_type="deploy") == [
        ("repo", "required when target is github_dispatch"),
        ("token", "required when target is github_dispatch")]
    assert errors_of(target="http") == [("url", "required when target is http")]
    assert DeployOptions.model_validate({"target": "kafka"}).topic == "deploy.requests"


def test_keys_another_target_uses_are_errors() -> None:
    assert errors_of(target="kafka", url="https://x.example", event_type="d") == [
        ("event_type", "only used when target is github_dispatch, not kafka"),
        ("url", "only used when target is http, not kafka")]
    assert errors_of(target="http", url="https://x.example", topic="t") == [
        ("topic", "only used when target is kafka, not http")]


def test_field_level_checks() -> None:
    [(field, msg)] = errors_of(target="github_dispatch", repo="no-slash", token="t",
                               event_type="d")
    assert field == "repo"
    [(field, msg)] = errors_of(target="github_dispatch", **GH, event_type="x" * 101)
    assert field == "event_type"
    [(field, msg)] = errors_of(target="http", url="ftp://x.example/")
    assert field == "url" and "http(s) URL" in msg
    [(field, msg)] = errors_of(target="http", url="https://x.example", body={"v": "{modle}"})
    assert field == "body" and "modle" in msg and "model" in msg
    [(field, msg)] = errors_of(target="http", url="https://x.example", body={"v": float("nan")})
    assert field == "body" and "JSON" in msg
    [(field, msg)] = errors_of(target="github_workflow", **GH, workflow="deploy.yml",
                               ref="main", inputs={f"i{n}": "{idempotency_key}"
                                                   for n in range(11)})
    assert field == "inputs" and "at most 10" in msg
    [(field, msg)] = errors_of(target="github_workflow", **GH, workflow="deploy.yml",
                               ref="main", inputs={"model": "{model}"})
    assert field == "inputs" and "{idempotency_key}" in msg
    [(field, msg)] = errors_of(target="github_workflow", **GH, workflow="deploy.yml",
                               ref="main", inputs={"key": True})
    assert field == "inputs.key"


def test_defaults_and_workflow_inputs() -> None:
    options = DeployOptions.model_validate(
        {"target": "github_workflow", **GH, "workflow": "deploy.yml", "ref": "main",
         "api_base_url": "https://ghe.example/api/v3/"})
    assert options.api_base_url == "https://ghe.example/api/v3"
    assert options.workflow_inputs() == DEFAULT_WORKFLOW_INPUTS
    assert options.timeout_s == 10 and options.include_lineage is False
    with_lineage = options.model_copy(update={"include_lineage": True})
    assert with_lineage.workflow_inputs() == {**DEFAULT_WORKFLOW_INPUTS, "lineage": "{lineage}"}
    assert len(with_lineage.workflow_inputs()) <= GITHUB_MAX_KEYS
    http = DeployOptions.model_validate({"target": "http", "url": "https://x.example/hook/",
                                         "method": "put"})
    assert (http.url, http.method) == ("https://x.example/hook/", "PUT")


def test_env_references_resolve_when_validated_and_stay_secret() -> None:
    environment = {CONTEXT_KEY: {"DEPLOY_TOKEN": "s3cr3t-value", "GH_TOKEN": "ghp_from_env"}}
    options = DeployOptions.model_validate(
        {"target": "http", "url": "https://x.example",
         "headers": {"Authorization": "Bearer ${DEPLOY_TOKEN}", "X-Team": "ml"}},
        context=environment)
    assert options.headers["Authorization"].get_secret_value() == "Bearer s3cr3t-value"
    assert options.headers["X-Team"].get_secret_value() == "ml"
    assert "s3cr3t" not in repr(options) and "s3cr3t" not in str(options.model_dump())
    gh = DeployOptions.model_validate({"target": "github_dispatch", "repo": "a/b",
                                       "token": "${GH_TOKEN}", "event_type": "d"},
                                      context=environment)
    assert gh.token is not None and gh.token.get_secret_value() == "ghp_from_env"

    [(field, msg)] = errors_of(target="http", url="https://x.example",
                               headers={"Authorization": "Bearer ${DEPLOY_TOKEN}"})
    assert field == "headers.Authorization"
    assert "only allowed in the configuration file" in msg  # validated without environment
    [(field, msg)] = errors_of(target="http", url="https://x.example",
                               headers={"X-A": "a\r\nX-Injected: 1"})
    assert field == "headers" and "line breaks" in msg


def test_request_dataclass_is_the_schema_minus_its_name() -> None:
    props = set(load_schema()["properties"])
    assert props == {"schema", *DeployRequest.__dataclass_fields__}
