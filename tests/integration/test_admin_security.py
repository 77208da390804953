"""The admin listener is closed by default and holds against hostile clients:

* no token configured → one is generated, kept (0600) and reused; every ``/api/*`` call
  without it is 401; an empty token is a configuration error, not "auth off";
* state-changing calls must be JSON (cross-site form posts: 415);
* on a loopback listener, a foreign ``Host`` (DNS rebinding) is 421;
* slow clients (slowloris headers, trickled bodies) are closed within the read deadline
  while normal requests go on; a malformed request is one log line, never a 5xx.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from hub.admin.server import AdminServer
from hub.app import Hub, Roles
from hub.broker.embedded import free_port
from hub.config import HubConfig

pytestmark = pytest.mark.timeout(120)

API_ROUTES = [
    ("GET", "/api/subscriptions"), ("POST", "/api/subscriptions"),
    ("GET", "/api/subscriptions/x"), ("PUT", "/api/subscriptions/x"),
    ("PATCH", "/api/subscriptions/x"), ("DELETE", "/api/subscriptions/x"),
    ("POST", "/api/subscriptions/x/test"), ("GET", "/api/deliveries"),
    ("GET", "/api/dead-letters"), ("POST", "/api/dead-letters/replay"), ("GET", "/api/nope"),
]


def config(tmp_path: Path, **admin: Any) -> HubConfig:
    return HubConfig(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"},
                     admin={"host": "127.0.0.1", "port": 0, **admin},
                     state_dir=tmp_path / "state", subscriptions=[])


def admin_only(cfg: HubConfig) -> AdminServer:
    return AdminServer(Hub(cfg, Roles(detect=False, deliver=False)))


async def raw(url: str, request: bytes, *, read: bool = True) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10) if read else b""
    writer.close()
    return answer


async def test_without_a_configured_token_one_is_generated_kept_and_required(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with admin_only(cfg) as admin, aiohttp.ClientSession() as http:
        token = admin.token
        assert token.origin == "generated" and token.value and token.value in token.describe()
        path = tmp_path / "state" / "admin-token"
        assert path.read_text().strip() == token.value
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert token.value not in repr(token)
        for method, route in API_ROUTES:
            for auth in (None, "Bearer wrong", f"Basic {token.value}", f"Bearer {token.value}x"):
                headers = {"Content-Type": "application/json"} | (
                    {"Authorization": auth} if auth else {})
                async with http.request(method, admin.url + route, data=b"{}",
                                        headers=headers) as resp:
                    assert resp.status == 401, (method, route, auth)
                    assert token.value not in await resp.text()
        async with http.get(admin.url + "/api/subscriptions",
                            headers={"Authorization": f"Bearer {token.value}"}) as resp:
            assert resp.status == 200
        for open_route in ("/healthz", "/metrics"):
            async with http.get(admin.url + open_route) as resp:
                assert resp.status == 200, open_route
    async with admin_only(cfg) as again:
        assert (again.token.origin, again.token.value) == ("file", token.value)
        assert token.value not in again.token.describe()


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_token_is_a_configuration_error(value: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    result = subprocess.run([sys.executable, "-m", "hub", "check-config"], cwd=tmp_path,
                            env=env | {"HUB_ADMIN__TOKEN": value}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "admin.token" in result.stderr and "empty token" in result.stderr


async def test_cross_site_form_posts_and_foreign_hosts_are_refused(tmp_path: Path) -> None:
    token = "t-" + os.urandom(8).hex()
    async with admin_only(config(tmp_path, token=token)) as admin, \
            aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {token}", "Origin": "http://evil.example"}
        for content_type in ("text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x", None):
            headers = auth | ({"Content-Type": content_type} if content_type else {})
            for method, route in [r for r in API_ROUTES if r[0] in ("POST", "PUT", "PATCH")]:
                async with http.request(method, admin.url + route, data=b'{"name": "x"}',
                                        headers=headers) as resp:
                    assert resp.status == 415, (method, route, content_type)
        for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example", "10.0.0.1"):
            for route in ("/api/subscriptions", "/healthz", "/ingest/mlflow"):
                answer = await raw(admin.url, f"GET {route} HTTP/1.1\r\nHost: {host}\r\n"
                                   f"Authorization: Bearer {token}\r\n"
                                   f"Connection: close\r\n\r\n".encode())
                assert answer.startswith(b"HTTP/1.1 421"), (host, route, answer[:80])
        for host in ("localhost", "127.0.0.1:1234", "[::1]:80", "LOCALHOST"):
            answer = await raw(admin.url, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n"
                               f"Connection: close\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 200"), (host, answer[:80])


async def test_slow_clients_are_closed_within_the_read_deadline(tmp_path: Path) -> None:
    deadline_s = 1.0
    async with admin_only(config(tmp_path, token="t", read_deadline_s=deadline_s)) as admin, \
            aiohttp.ClientSession() as http:
        host, port = admin.url.removeprefix("http://").rsplit(":", 1)
        started = time.monotonic()
        conns = [await asyncio.open_connection(host, int(port)) for _ in range(40)]
        for i, (_, writer) in enumerate(conns):
            if i % 2:  # slow headers, one byte at a time
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-a: ")
            else:  # whole headers, then a body that never comes
                writer.write(b"POST /api/subscriptions HTTP/1.1\r\nHost: localhost\r\n"
                             b"Authorization: Bearer t\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{")
            await writer.drain()

        async def trickle(writer: asyncio.StreamWriter) -> None:
            while not writer.is_closing():
                try:
                    writer.write(b"a")
                    await writer.drain()
                except ConnectionError:
                    return
                await asyncio.sleep(0.1)  # a slow client's pace, not a test wait

        trickles = [asyncio.create_task(trickle(w)) for _, w in conns]
        async with http.get(admin.url + "/healthz") as resp:  # others are still served
            assert resp.status == 200
        closed = await asyncio.wait_for(
            asyncio.gather(*(reader.read() for reader, _ in conns)), deadline_s + 5)
        elapsed = time.monotonic() - started
        for task in trickles:
            task.cancel()
        assert all(not data.startswith(b"HTTP/1.1 2") for data in closed)
        assert elapsed < deadline_s + 3, f"40 slow connections took {elapsed:.1f} s to close"


async def test_a_malformed_request_is_one_log_line_and_a_4xx(tmp_path: Path) -> None:
    async with admin_only(config(tmp_path, token="t")) as admin:
        with capture_logs() as logs:
            answers = [await raw(admin.url, junk) for junk in (
                b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
            )]
    for answer in answers:
        assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:80]
    bad = [e for e in logs if e["event"] == "listener.bad_request"]
    assert len(bad) >= 2, logs
    assert all("exc_info" not in e and "\n" not in e["error"] for e in bad)
