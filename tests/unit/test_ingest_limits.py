"""``POST /ingest/mlflow`` on the wire: a body over the limit is 413 (announced, streamed,
or decompressed), broken HTTP framing is 400, and undecodable header bytes do not crash the
route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.ingest import LIMIT, NOW, Ingest, push, raw_status, signed_headers


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
