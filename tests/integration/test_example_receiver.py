"""``examples/receiver.py`` as a user runs it: a real process on loopback, signed requests
from the hub's own signing code, and the line it prints for each one."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest

from hub.broker.embedded import free_port
from hub.events import Event
from hub.signing import standard_body, standard_headers
from tests.support.receiver import SECRET

pytestmark = pytest.mark.timeout(60)

RECEIVER = Path(__file__).resolve().parents[2] / "examples" / "receiver.py"
OTHER_SECRET = "whsec_" + "b3RoZXItc2VjcmV0LW5vdC10aGUtcmVjZWl2ZXJzLTE="


@dataclass
class Running:
    url: str
    banner: str
    proc: asyncio.subprocess.Process

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), 10)
        assert raw, "the receiver exited"
        return raw.decode().rstrip("\n")


@pytest.fixture
async def receiver() -> AsyncIterator[Running]:
    port = free_port()
    env = {"WEBHOOK_SECRET": SECRET, "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(RECEIVER), "--port", str(port), env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
    try:
        running = Running(f"http://127.0.0.1:{port}", "", proc)
        running.banner = await running.line()  # printed once the socket listens
        yield running
    finally:
        proc.kill()
        await proc.wait()


def event(**data: object) -> Event:
    return Event(id="evt-1", type="model_version.created", model="iris", version="3",
                 time=datetime.now(UTC), source="http://mlflow",
                 data={"model_name": "iris", "version": "3", **data})


async def post(http: aiohttp.ClientSession, url: str, ev: Event, secret: str = SECRET) -> int:
    body = standard_body(ev)
    headers = standard_headers([secret], ev.id, datetime.now(UTC), body)
    async with http.post(url + "/hook", data=body,
                         headers={**headers, "Content-Type": "application/json"}) as resp:
        return resp.status


async def test_listens_on_loopback_and_says_what_it_did_with_each_request(
        receiver: Running) -> None:
    assert receiver.banner.startswith(f"receiver: listening on {receiver.url}/")
    async with aiohttp.ClientSession() as http:
        assert await post(http, receiver.url, event()) == 204
        accepted = await receiver.line()
        assert await post(http, receiver.url, event()) == 204
        repeated = await receiver.line()
        assert await post(http, receiver.url, replace(event(), id="evt-2"), OTHER_SECRET) == 401
        refused = await receiver.line()
        assert await post(http, receiver.url, replace(event(test=True), id="test-1")) == 204
        test = await receiver.line()
        async with http.post(receiver.url + "/hook", data=b"{}") as resp:
            assert resp.status == 401
        unsigned = await receiver.line()

    assert accepted.startswith("accepted ") and accepted.endswith("(signature verified)")
    assert "model_version.created iris v3 id=evt-1" in accepted and "[test]" not in accepted
    assert repeated.startswith("repeat ") and "id=evt-1" in repeated
    assert refused.startswith("refused ") and "id=evt-2" in refused
    assert "signature not verified (No matching signature found)" in refused
    assert test.startswith("accepted [test] ") and "id=test-1" in test
    assert unsigned.startswith("refused ") and "Missing required headers" in unsigned


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_receiver", RECEIVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_listen_address_is_loopback_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = _module()
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    assert (receiver.parse_args([]).host, receiver.parse_args([]).port) == ("127.0.0.1", 9000)
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert receiver.parse_args([]).host == "0.0.0.0"
    assert receiver.parse_args(["--host", "::1"]).host == "::1"
