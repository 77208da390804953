"""``POST /ingest/mlflow`` under Hypothesis: no request, well-formed or raw bytes on the
socket, gets a 5xx or an answer showing the secret."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.ingest import LIMIT, NOW, SECRET, Ingest, raw_status, sign

ALLOWED = {200, 202, 400, 401, 403, 413}

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
