"""``POST /ingest/mlflow`` refuses what is not signed with the configured secret: missing,
malformed, forged or stale signature headers are 401 with a short reason, a wrong secret or
a tampered body too, and without a configured secret nothing is accepted (403). Requests are
signed by an independent implementation of MLflow's scheme (``tests/support/ingest.py``)."""

from __future__ import annotations

import pytest

from tests.support.ingest import NOW, Ingest, make_hub, push, serve, signed_headers


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
