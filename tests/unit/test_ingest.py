"""``POST /ingest/mlflow``: what a push does, on a real aiohttp server on 127.0.0.1.

The unit under test is the request handling, so the hub behind it is a stub whose detector
records ``pushed`` calls (``tests/support/ingest.py``); the real detector behind real
MLflow pushes is in ``tests/integration/test_ingest.py``. Here: which pushes refresh a model
and what is answered, unknown and malformed pushes, replayed deliveries, a process without a
detector or without its registry. Signatures are in test_ingest_auth.py, body limits and
HTTP framing in test_ingest_limits.py, fuzzing in test_ingest_fuzz.py.
"""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from hub.errors import SourceError
from hub.ingest.push import DeliveryIds, MalformedPush, parse_push
from tests.support.ingest import FakeDetector, Ingest, make_hub, push, serve, signed_headers

# --- status table ---------------------------------------------------------------------------


@pytest.mark.parametrize(("entity", "action"), [
    ("registered_model", "created"), ("model_version", "created"),
    ("model_version_tag", "set"), ("model_version_tag", "deleted"),
    ("model_version_alias", "created"), ("model_version_alias", "deleted"),
    ("prompt", "created"), ("prompt_version", "created"), ("prompt_tag", "set"),
    ("prompt_tag", "deleted"), ("prompt_version_tag", "set"), ("prompt_version_tag", "deleted"),
    ("prompt_alias", "created"), ("prompt_alias", "deleted")])
async def test_registry_event_refreshes_the_model_and_reports_what_was_published(
        ingest: Ingest, entity: str, action: str) -> None:
    status, body = await ingest.post(push(entity, action, name="iris", version="2"))
    assert (status, body) == (200, {"published": 1, "event_ids": ["ev-1"]})
    assert ingest.calls == ["iris"]


async def test_mlflow_example_payload_shapes_are_accepted(ingest: Ingest) -> None:
    from mlflow.webhooks.types import EVENT_TO_PAYLOAD_CLASS

    registry = [(e.value, a.value, cls.example())  # type: ignore[union-attr]
                for (e, a), cls in
                EVENT_TO_PAYLOAD_CLASS.items() if not e.value.startswith("budget")]
    assert len(registry) == 14
    for n, (entity, action, example) in enumerate(registry):
        body = json.dumps({"entity": entity, "action": action,
                           "timestamp": "2027-01-15T08:00:00+00:00", "data": example}).encode()
        status, _ = await ingest.post(body, signed_headers(body, delivery_id=f"d-{n}"))
        assert status == 200, (entity, action)
    assert ingest.calls == ["example_model"] * 6 + ["example_prompt"] * 8


@pytest.mark.parametrize(("entity", "action"), [
    ("prompt", "deleted"), ("prompt_version", "updated"), ("budget_policy", "exceeded"),
    ("registered_model", "deleted"), ("something", "new")])
async def test_unknown_event_is_accepted_ignored_and_logged(
        ingest: Ingest, entity: str, action: str) -> None:
    with capture_logs() as logs:
        status, body = await ingest.post(push(entity, action, name="p"))
    assert status == 202 and body["published"] == 0
    assert ingest.calls == []
    ignored = [e for e in logs if e["event"] == "ingest.ignored"]
    assert [e["mlflow_event"] for e in ignored] == [f"{entity}.{action}"]


@pytest.mark.parametrize("body", [
    b"", b"not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"', b"null",
    b'{"entity": "model_version", "action": "created"}',
    b'{"entity": "model_version", "data": {"name": "m"}}',
    b'{"action": "created", "data": {"name": "m"}}',
    b'{"entity": 1, "action": "created", "data": {"name": "m"}}',
    b'{"entity": "model_version", "action": "created", "data": []}',
    b'{"entity": "model_version", "action": "created", "data": {}}',
    b'{"entity": "model_version", "action": "created", "data": {"name": 7}}',
    b'{"entity": "model_version", "action": "created", "data": {"name": ""}}',
    b"[" * 1000, b'{"n": ' + b"9" * 900 + b"}",
], ids=lambda b: repr(b[:40]))
async def test_malformed_body_is_400(ingest: Ingest, body: bytes) -> None:
    status, answer = await ingest.post(body)
    assert status == 400 and "error" in answer
    assert ingest.calls == []


async def test_a_replayed_delivery_is_answered_without_publishing_again(ingest: Ingest) -> None:
    body = push()
    headers = signed_headers(body, delivery_id="same")
    first = await ingest.post(body, headers)
    second = await ingest.post(body, headers)
    assert first == (200, {"published": 1, "event_ids": ["ev-1"]})
    assert second == (200, {"published": 0, "event_ids": [], "duplicate": True})
    assert ingest.calls == ["iris"]
    other = await ingest.post(body, signed_headers(body, delivery_id="another"))
    assert other[0] == 200 and "duplicate" not in other[1]


def test_remembered_delivery_ids_are_bounded_least_recently_used_first() -> None:
    seen = DeliveryIds(capacity=2)
    assert seen.claim("a") and seen.claim("b")
    assert not seen.claim("a")  # a is now the most recent
    assert seen.claim("c")  # evicts b
    assert len(seen) == 2
    assert not seen.claim("a") and not seen.claim("c")
    assert seen.claim("b")


async def test_no_detector_in_this_process_is_202() -> None:
    hub = make_hub()
    hub.detector = None
    server = await serve(hub)
    try:
        body = push()
        resp = await server.client.post("/ingest/mlflow", data=body, headers=signed_headers(body))
        assert resp.status == 202
        assert "poll" in (await resp.json())["deferred"]
    finally:
        await server.client.close()


async def test_registry_unreachable_is_202_and_logged() -> None:
    server = await serve(make_hub(detector=FakeDetector(error=SourceError("mlflow down"))))
    try:
        with capture_logs() as logs:
            status, body = await server.post(push())
        assert status == 202 and body["published"] == 0
        assert server.calls == ["iris"]
        assert [e["reason"] for e in logs if e["event"] == "ingest.deferred"] == [
            "registry_unreachable"]
    finally:
        await server.client.close()


def test_parse_push_reads_only_entity_action_and_name() -> None:
    parsed = parse_push(push("model_version_alias", "deleted", name="m", alias="a"))
    assert (parsed.event, parsed.name, parsed.registry) == ("model_version_alias.deleted", "m",
                                                            True)
    prompt = parse_push(push("prompt_alias", "created", name="p", alias="a", version="1"))
    assert (prompt.event, prompt.name, prompt.registry) == ("prompt_alias.created", "p", True)
    unknown = parse_push(b'{"entity": "budget_policy", "action": "exceeded", '
                         b'"data": {"name": 1}}')
    assert not unknown.registry and unknown.name is None
    with pytest.raises(MalformedPush):
        parse_push(b'{"entity": "registered_model", "action": "created", "data": {}}')


# --- the ingest URL the CLI registers by default ------------------------------------------


def test_default_ingest_url_follows_the_admin_address() -> None:
    import socket

    from hub.config import AdminConfig
    from hub.ingest.mlflow_webhook import default_ingest_url

    assert default_ingest_url(AdminConfig(host="hub.internal", port=8080)) == (
        "http://hub.internal:8080/ingest/mlflow")
    assert default_ingest_url(AdminConfig(host="::1", port=9000)) == (
        "http://[::1]:9000/ingest/mlflow")
    wildcard = default_ingest_url(AdminConfig(host="0.0.0.0", port=8080))
    assert wildcard == f"http://{socket.getfqdn()}:8080/ingest/mlflow"
