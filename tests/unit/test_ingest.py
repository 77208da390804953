"""``POST /ingest/mlflow``: the HTTP validation, on a real aiohttp server on 127.0.0.1.

The unit under test is the request handling (limits, signatures, parsing, status codes), so
the hub behind it is a stub whose detector records ``refresh_model`` calls; the real detector
behind real MLflow pushes is in ``tests/integration/test_ingest.py``. Requests are signed by
an independent implementation of MLflow's scheme.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hub.config import HubConfig
from hub.errors import SourceError
from hub.events import Event
from hub.ingest.push import DeliveryIds, MalformedPush, add_ingest_routes, parse_push

SECRET = "ingest-unit-secret-3f9a"
NOW = 1_800_000_000
LIMIT = 1024
ALLOWED = {200, 202, 400, 401, 403, 413}


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
    error: Exception | None = None

    async def refresh_model(self, name: str) -> list[Event]:
        self.calls.append(name)
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


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    server = await serve(make_hub())
    yield server
    await server.client.close()


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


@pytest.mark.parametrize(("change", "reason"), [
    ({"X-MLflow-Signature": None}, "missing_header"),
    ({"X-MLflow-Delivery-Id": None}, "missing_header"),
    ({"X-MLflow-Timestamp": None}, "missing_header"),
    ({"X-MLflow-Signature": "v1,AAAA"}, "bad_signature"),
    ({"X-MLflow-Signature": "v1,ünïcode"}, "bad_signature"),
    ({"X-MLflow-Delivery-Id": "d-ü"}, "bad_signature"),
    ({"X-MLflow-Timestamp": "soon"}, "bad_timestamp"),
    ({"X-MLflow-Timestamp": "-5"}, "bad_timestamp"),
    ({"X-MLflow-Timestamp": "9" * 4500}, "bad_timestamp"),
    ({"X-MLflow-Timestamp": str(NOW - 301)}, "stale_timestamp"),
    ({"X-MLflow-Timestamp": str(NOW + 301)}, "stale_timestamp"),
], ids=str)
async def test_bad_signature_headers_are_401_with_a_short_reason(
        ingest: Ingest, change: dict[str, str | None], reason: str) -> None:
    body = push()
    headers = signed_headers(body)
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    status, answer = await ingest.post(body, headers)
    assert (status, answer) == (401, {"error": "unauthorized", "reason": reason})
    assert ingest.calls == []


async def test_stale_but_correctly_signed_timestamps_are_refused_both_ways(
        ingest: Ingest) -> None:
    body = push()
    for offset, expected in ((-300, 200), (300, 200), (-301, 401), (301, 401)):
        headers = signed_headers(body, delivery_id=f"d{offset}", timestamp=NOW + offset)
        status, _ = await ingest.post(body, headers)
        assert status == expected, offset
    assert ingest.calls == ["iris", "iris"]


async def test_wrong_secret_and_tampered_body_are_401(ingest: Ingest) -> None:
    body = push()
    status, _ = await ingest.post(body, signed_headers(body, secret="other-secret"))
    assert status == 401
    status, _ = await ingest.post(push(name="evil"), signed_headers(body))
    assert status == 401
    assert ingest.calls == []


async def test_without_a_configured_secret_nothing_is_accepted() -> None:
    server = await serve(make_hub(secret=None))
    try:
        body = push()
        for headers in (signed_headers(body), {}):
            resp = await server.client.post("/ingest/mlflow", data=body, headers=headers)
            answer = await resp.json()
            assert resp.status == 403
            assert "ingest.mlflow_secret" in answer["error"]
        assert server.calls == []
    finally:
        await server.client.close()


async def test_body_over_the_limit_is_413_by_content_length(ingest: Ingest) -> None:
    body = push(name="x" * LIMIT)
    status, _ = await ingest.post(body)
    assert status == 413
    assert ingest.calls == []


async def test_body_over_the_limit_is_413_while_streaming(ingest: Ingest) -> None:
    """Chunked: no Content-Length, the limit is enforced while reading."""
    body = push(name="x" * LIMIT)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 100):
            yield body[i:i + 100]

    resp = await ingest.client.post("/ingest/mlflow", data=chunks(),
                                    headers=signed_headers(body))
    assert resp.status == 413
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert ingest.calls == []


async def test_a_huge_announced_body_is_refused_before_it_is_sent(ingest: Ingest) -> None:
    """Content-Length is checked first: the answer comes without waiting for the body."""
    reader, writer = await asyncio.open_connection(ingest.client.host, ingest.client.port)
    try:
        writer.write(b"POST /ingest/mlflow HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.split()[1] == b"413"
    finally:
        writer.close()


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


@pytest.mark.parametrize("raw", [
    b"POST /ingest/mlflow HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
    b"Content-Length: 5\r\n\r\nabcde",
    b"POST /ingest/mlflow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nabc\r\n0\r\n\r\n",
    b"POST /ingest/mlflow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\n\r\nabcde",
], ids=["bad-gzip", "bad-chunk", "two-lengths"])
async def test_broken_http_framing_is_400(ingest: Ingest, raw: bytes) -> None:
    assert await raw_status(ingest, raw) == 400


async def test_a_compression_bomb_stops_at_the_limit(ingest: Ingest) -> None:
    import gzip

    inner = push(name="x" * 100_000)
    bomb = gzip.compress(inner)
    assert len(bomb) < LIMIT < len(inner)
    headers = {**signed_headers(inner), "Content-Encoding": "gzip"}
    resp = await ingest.client.post("/ingest/mlflow", data=bomb, headers=headers)
    assert resp.status == 413
    small = push()
    headers = {**signed_headers(small), "Content-Encoding": "gzip"}
    resp = await ingest.client.post("/ingest/mlflow", data=gzip.compress(small), headers=headers)
    assert resp.status == 200  # signed over the decoded body, as MLflow would


async def test_undecodable_header_bytes_are_401(ingest: Ingest) -> None:
    """Non-UTF-8 header bytes reach the handler as surrogates; they must not crash it."""
    body = push()
    headers = signed_headers(body)
    reader, writer = await asyncio.open_connection(ingest.client.host, ingest.client.port)
    try:
        writer.write(b"POST /ingest/mlflow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"X-MLflow-Delivery-Id: d-\xff\xfe\r\n"
                     + f"X-MLflow-Timestamp: {NOW}\r\n".encode()
                     + b"X-MLflow-Signature: v1,\xc3\x28\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.split()[1] in (b"400", b"401")
    finally:
        writer.close()
    assert headers and ingest.calls == []


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


# --- fuzz -----------------------------------------------------------------------------------

ENTITIES = ["registered_model", "model_version", "model_version_tag", "model_version_alias",
            "prompt", "prompt_version", "prompt_alias", "budget_policy"]
ACTIONS = ["created", "set", "deleted", "exceeded", "updated"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
payloads = st.fixed_dictionaries({}, optional={
    "entity": st.sampled_from(ENTITIES) | json_values,
    "action": st.sampled_from(ACTIONS) | json_values,
    "timestamp": json_values,
    "data": st.fixed_dictionaries({}, optional={"name": st.text(max_size=30) | json_values,
                                                "version": json_values}) | json_values,
})
bodies = st.one_of(
    st.binary(max_size=LIMIT + 200),
    json_values.map(lambda v: json.dumps(v).encode()),
    payloads.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.integers(990, LIMIT + 10).map(lambda n: b"[" * n),  # nesting past the recursion limit
)
header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=60)
timestamps = st.one_of(
    st.integers(NOW - 400, NOW + 400).map(str),
    st.just(str(NOW)),
    st.integers(-10**30, 10**30).map(str),
    st.integers(4000, 4600).map(lambda n: "9" * n),
    header_text,
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """Bodies with headers that are: validly signed (so the parser is reached), signed over
    odd header values, forged, or absent."""
    body = draw(bodies)
    mode = draw(st.sampled_from(["signed", "signed", "odd", "forged", "bare"]))
    if mode == "bare":
        return body, {}
    if mode == "signed":
        delivery_id = draw(st.uuids()).hex
        timestamp = str(draw(st.integers(NOW - 300, NOW + 300)))
    else:
        delivery_id, timestamp = draw(header_text), draw(timestamps)
    signature = (draw(header_text) if mode == "forged"
                 else sign(SECRET, delivery_id, timestamp, body))
    headers = {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": timestamp,
               "X-MLflow-Signature": signature}
    return body, {k: v for k, v in headers.items() if v.strip() == v}  # as the client sends


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests())
async def test_no_input_gets_a_5xx(ingest: Ingest, request: tuple[bytes, dict[str, str]]
                                   ) -> None:
    body, headers = request
    resp = await ingest.client.post("/ingest/mlflow", data=body, headers=headers)
    text = await resp.text()
    assert resp.status in ALLOWED, (resp.status, text)
    assert SECRET not in text


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


header_lines = st.lists(st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b),
                        max_size=6)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=header_lines, framing=st.sampled_from([b"", b"Transfer-Encoding: chunked",
                                                    b"Content-Encoding: gzip",
                                                    b"Content-Encoding: deflate"]),
       body=st.binary(max_size=300))
async def test_no_raw_request_gets_a_5xx(ingest: Ingest, lines: list[bytes], framing: bytes,
                                         body: bytes) -> None:
    """Raw bytes on the socket: arbitrary header lines, framings and bodies."""
    head = [b"POST /ingest/mlflow HTTP/1.1", b"Host: x", b"Connection: close", *lines]
    if framing:
        head.append(framing)
    if framing == b"Transfer-Encoding: chunked":
        body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    else:
        head.append(b"Content-Length: %d" % len(body))
    status = await raw_status(ingest, b"\r\n".join(head) + b"\r\n\r\n" + body)
    assert status is None or status < 500, status
