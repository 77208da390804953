"""The admin API under Hypothesis: bad input to every endpoint that takes a body (and to the
attempt log's ``limit``) never yields a 5xx, an error answer always says what is wrong, and
no answer shows a subscription's secret."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.admin.server import AdminServer
from hub.admin.store import SubscriptionStore
from hub.app import Hub
from tests.support.admin import ADMIN_TOKEN, admin_config, console_subscription
from tests.support.receiver import SECRET

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def fuzz_url(kafka_bootstrap: str) -> Iterator[str]:
    """An admin server with a subscription store on the session broker, on its own event
    loop in a thread, so Hypothesis can drive it with plain blocking requests."""
    config = admin_config(kafka_bootstrap, f"test-fuzz-{uuid.uuid4().hex[:12]}",
                          [{"name": "from-config", "handler": "console"}])
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stack = AsyncExitStack()

    async def start() -> str:
        store = await stack.enter_async_context(SubscriptionStore(config, kafka_bootstrap))
        await store.put(console_subscription("fz"))
        admin = await stack.enter_async_context(AdminServer(Hub(config), store=store))
        return admin.url

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=20)
json_values = st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(
    st.text(max_size=12), c, max_size=4), max_leaves=15)
names = st.sampled_from(["fz", "from-config", "new-one", "x" * 70, "", "a b"]) | st.text(
    max_size=12)
sub_like = st.fixed_dictionaries({}, optional={
    "name": names,
    "handler": st.sampled_from(["console", "webhook", "slack", "deploy", "nope"]) | json_values,
    "events": st.lists(st.sampled_from(["*", "model_version.*", "MODEL_VERSION_CREATED",
                                        "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
                                        "COMMENT_CREATED", "bogus"]), max_size=3) | json_values,
    "models": st.lists(st.text(max_size=8), max_size=2) | json_values,
    "when": json_values, "enabled": json_values, "description": json_values,
    "source": json_values, "url": st.sampled_from(["http://127.0.0.1:9/x", "ftp://x", "***"])
    | json_values,
    "secret": st.sampled_from([SECRET, "***", "whsec_", ""]) | json_values,
    "headers": json_values, "timeout_s": json_values, "stream": json_values,
    "subscription": json_values, "event_id": json_values,
})
near_valid = st.builds(
    lambda name, extra: {"name": name, "handler": "console", **extra},
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    st.dictionaries(st.sampled_from(["events", "models", "when", "enabled", "stream",
                                     "description", "source"]), json_values, max_size=2))
bodies = st.one_of(
    st.binary(max_size=64),
    near_valid.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    sub_like.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"NaN", b"[" * 50_000, b'{"a":' * 5000, b"\xff\xfe{}", b"{}"]),
)
targets = st.sampled_from([
    ("POST", "/api/subscriptions"), ("PUT", "/api/subscriptions/fz"),
    ("PATCH", "/api/subscriptions/fz"), ("PUT", "/api/subscriptions/from-config"),
    ("POST", "/api/subscriptions/fz/test"), ("POST", "/api/dead-letters/replay"),
]) | names.map(
    lambda n: ("POST", "/api/subscriptions/" + urllib.parse.quote(n, safe="") + "/test"))


@pytest.mark.slow
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=targets, body=bodies, limit=st.text(max_size=6))
def test_fuzz_bodies_never_yield_a_server_error(fuzz_url: str, target: tuple[str, str],
                                                body: bytes, limit: str) -> None:
    method, path = target
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for request in (
        urllib.request.Request(fuzz_url + path, data=body, method=method, headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}),
        urllib.request.Request(
            fuzz_url + "/api/deliveries?" + urllib.parse.urlencode({"limit": limit}),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
    ):
        try:
            with opener.open(request, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        assert status < 500, (method, path, body[:200], status, raw[:300])
        if status >= 400:
            assert "error" in json.loads(raw)
        assert SECRET.encode() not in raw
