"""The Slack handler against a local stand-in for Slack's Web API and incoming webhooks.

The fake checks what Slack checks (bearer token, JSON shape, Block Kit limits, known
channels and thread ts) and records each request with its receive time. Requests go through
the hub's real SSRF-guarded session (``HttpClients`` opened for 127.0.0.0/8).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from handlers.slack import SlackHandler, SlackOptions
from hub.events import Event
from hub.http import HttpClients
from hub.outcome import Outcome, Status
from hub.plugins import HandlerContext

TOKEN = "xoxb-test-token"
CHANNELS = {"#models": "C0MODELS", "#other": "C0OTHER", "#archived": "C0ARCH"}
HOOK_PATH = "/services/T000/B000/"


@dataclass
class Seen:
    at: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeSlack:
    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    scripted: deque[web.Response] = field(default_factory=deque)
    threads: set[tuple[str, str]] = field(default_factory=set)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def posts(self, channel: str | None = None) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("chat.postMessage")
                and (channel is None or r.body.get("channel") in (channel, CHANNELS[channel]))]

    def script_429(self, retry_after: str) -> None:
        self.scripted.append(web.json_response({"ok": False, "error": "ratelimited"},
                                               status=429, headers={"Retry-After": retry_after}))

    async def post_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Seen(time.monotonic(), request.path, dict(request.headers), body))
        if self.scripted:
            return self.scripted.popleft()
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if request.content_type != "application/json":
            return web.json_response({"ok": False, "error": "invalid_form_data"})
        if problem := block_kit_problem(body):
            return web.json_response({"ok": False, "error": problem})
        channel = CHANNELS.get(body["channel"], body["channel"])
        if channel not in CHANNELS.values():
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if channel == "C0ARCH":
            return web.json_response({"ok": False, "error": "channel_is_archived"})
        if "thread_ts" in body and (channel, body["thread_ts"]) not in self.threads:
            return web.json_response({"ok": False, "error": "thread_not_found"})
        ts = f"1700000000.{next(self._ts):06d}"
        self.threads.add((channel, ts))
        return web.json_response({"ok": True, "channel": channel, "ts": ts,
                                  "message": {"text": body["text"]}})

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Seen(time.monotonic(), request.path, dict(request.headers), body))
        if self.scripted:
            return self.scripted.popleft()
        if problem := block_kit_problem(body):
            return web.Response(status=400, text=problem)
        answers = {"ok": (200, "ok"), "missing": (404, "channel_not_found"),
                   "disabled": (404, "no_service"), "archived": (410, "channel_is_archived"),
                   "forbidden": (403, "action_prohibited"), "broken": (500, "rollup_error")}
        status, text = answers.get(request.match_info["key"], (404, "no_service"))
        return web.Response(status=status, text=text)

    async def slow(self, request: web.Request) -> web.Response:
        await self.hold.wait()
        return web.json_response({"ok": True, "ts": "1.0"})


def block_kit_problem(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        return "no_text"
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        text = block.get("text", {}).get("text", "")
        if block.get("type") == "header" and not 0 < len(text) <= 150:
            return "invalid_blocks"
        if block.get("type") == "section" and len(text) > 3000:
            return "invalid_blocks"
    return None


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    app = web.Application()
    app.router.add_post("/api/chat.postMessage", fake.post_message)
    app.router.add_post(HOOK_PATH + "{key}", fake.webhook)
    app.router.add_post("/slow/chat.postMessage", fake.slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        fake.hold.set()
        await runner.cleanup()


@pytest.fixture
async def context() -> AsyncIterator[HandlerContext]:
    async with HttpClients(allowed_networks=["127.0.0.0/8"]) as clients:
        yield HandlerContext(ui_url="http://mlflow.example", http_session=clients.session)


def bot(slack: FakeSlack, context: HandlerContext, name: str = "slack", clock: Any = None,
        **options: Any) -> SlackHandler:
    opts = SlackOptions.model_validate({"token": TOKEN, "channel": "#models",
                                        "api_base_url": f"{slack.url}/api/",
                                        "min_interval_s": 0, **options})
    extra = {"clock": clock, "sleep": clock.sleep} if clock is not None else {}
    return SlackHandler(name=name, options=opts, context=context, **extra)


def hook(slack: FakeSlack, context: HandlerContext, key: str, **options: Any) -> SlackHandler:
    opts = SlackOptions.model_validate({"webhook_url": f"{slack.url}{HOOK_PATH}{key}",
                                        "min_interval_s": 0, **options})
    return SlackHandler(name="hook", options=opts, context=context)


_ids = itertools.count()


def event(type_: str, version: str | None = "1", model: str = "iris",
          **data: Any) -> Event:
    payload = {"model_name": model, "run_id": "r1", "source": "runs:/r1/m", "tags": {},
               **({"version": version} if version else {}), **data}
    return Event(id=f"ev-{next(_ids)}", type=type_, model=model, time=datetime.now(UTC),
                 source="mlflow:test", data=payload, version=version)


def stage(version: str, from_stage: str, to_stage: str) -> Event:
    return event("model_version.stage_transitioned", version, from_stage=from_stage,
                 to_stage=to_stage)


async def test_bot_message_is_delivered_with_auth_and_block_kit(
        slack: FakeSlack, context: HandlerContext) -> None:
    handler = bot(slack, context)
    outcome = await handler.deliver(event("model_version.created", "1", user_id="alice",
                                          status="READY", stage="None"))
    assert outcome.status is Status.DELIVERED, outcome
    assert outcome.latency_s is not None
    [seen] = slack.posts()
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.body["channel"] == "#models"
    assert "iris" in seen.body["text"] and "alice" in seen.body["text"]
    assert 1 <= len(seen.body["blocks"]) <= 50
    assert seen.body["blocks"][0]["type"] == "header"
    assert "http://mlflow.example/#/models/iris/versions/1" in str(seen.body["blocks"])
    assert seen.body["unfurl_links"] is False and "thread_ts" not in seen.body
    assert TOKEN not in repr(handler)


async def test_template_from_config_is_what_slack_receives(
        slack: FakeSlack, context: HandlerContext) -> None:
    handler = bot(slack, context, templates={"model_version.*": "{model} v{version}: "
                                                                 "{from_stage} → {to_stage}"})
    assert (await handler.deliver(stage("4", "Staging", "Production"))).status \
        is Status.DELIVERED
    [seen] = slack.posts()
    assert seen.body["text"] == "iris v4: Staging → Production"
    assert seen.body["blocks"] == [{"type": "section", "text": {
        "type": "mrkdwn", "text": "iris v4: Staging → Production"}}]


async def test_429_retries_after_retry_after_and_blocks_the_channel(
        slack: FakeSlack, context: HandlerContext) -> None:
    clock = FakeClock()
    handler = bot(slack, context, clock=clock)
    slack.script_429("7")
    outcome = await handler.deliver(stage("1", "None", "Staging"))
    assert (outcome.status, outcome.retry_after_s, outcome.http_status) == \
        (Status.RETRY, 7.0, 429)
    # queued deliveries to the blocked channel give up without calling Slack
    blocked = await handler.deliver(stage("2", "None", "Staging"))
    assert blocked.status is Status.RETRY
    assert blocked.retry_after_s == pytest.approx(7.0)
    assert len(slack.posts()) == 1
    clock.now += 7.0
    assert (await handler.deliver(stage("2", "None", "Staging"))).status is Status.DELIVERED
    assert len(slack.posts()) == 2


async def test_webhook_429_and_5xx_are_retried(slack: FakeSlack,
                                              context: HandlerContext) -> None:
    slack.scripted.append(web.Response(status=429, text="rate_limited",
                                       headers={"Retry-After": "3"}))
    outcome = await hook(slack, context, "ok").deliver(event("registered_model.created", None))
    assert (outcome.status, outcome.retry_after_s) == (Status.RETRY, 3.0)
    broken = await hook(slack, context, "broken").deliver(event("registered_model.created",
                                                                None))
    assert (broken.status, broken.http_status) == (Status.RETRY, 500)


@pytest.mark.parametrize(("options", "error"), [
    ({"channel": "#nope"}, "channel_not_found"),
    ({"token": "xoxb-wrong"}, "invalid_auth"),
    ({"channel": "#archived"}, "channel_is_archived"),
])
async def test_final_api_errors_fail_and_are_logged(
        slack: FakeSlack, context: HandlerContext, options: dict[str, Any], error: str) -> None:
    handler = bot(slack, context, **options)
    with capture_logs() as logs:
        outcome = await handler.deliver(stage("1", "None", "Staging"))
    assert outcome.status is Status.FAILED and outcome.final
    assert error in outcome.detail
    [line] = [e for e in logs if e["event"] == "slack.final_error"]
    assert line["subscription"] == "slack" and error in line["error"]
    assert "xoxb" not in str(logs)


@pytest.mark.parametrize(("key", "status", "http", "error"), [
    ("missing", Status.FAILED, 404, "channel_not_found"),
    ("disabled", Status.FAILED, 404, "no_service"),
    ("forbidden", Status.FAILED, 403, "action_prohibited"),
    ("archived", Status.GONE, 410, "channel_is_archived"),
])
async def test_final_webhook_errors(slack: FakeSlack, context: HandlerContext, key: str,
                                    status: Status, http: int, error: str) -> None:
    handler = hook(slack, context, key)
    with capture_logs() as logs:
        outcome = await handler.deliver(stage("1", "None", "Staging"))
    assert (outcome.status, outcome.http_status) == (status, http)
    assert error in outcome.detail and outcome.final
    [line] = [e for e in logs if e["event"] == "slack.final_error"]
    assert error in line["error"] and HOOK_PATH + key not in str(line)


async def test_webhook_message_is_delivered(slack: FakeSlack, context: HandlerContext) -> None:
    handler = hook(slack, context, "ok")
    assert (await handler.deliver(stage("1", "None", "Staging"))).status is Status.DELIVERED
    assert (await handler.deliver(stage("1", "Staging", "Production"))).status \
        is Status.DELIVERED
    first, second = slack.requests
    assert first.path == HOOK_PATH + "ok" and "Authorization" not in first.headers
    assert "Staging" in first.body["text"] and 1 <= len(first.body["blocks"]) <= 50
    assert "thread_ts" not in second.body  # incoming webhooks cannot thread
    assert HOOK_PATH not in repr(handler)


async def test_events_for_one_version_share_a_thread(slack: FakeSlack,
                                                     context: HandlerContext) -> None:
    handler = bot(slack, context)
    sequence = [
        event("model_version.created", "1"),
        stage("1", "None", "Staging"),
        event("model_version.created", "2"),
        stage("1", "Staging", "Production"),
        event("model_version_alias.created", "2", alias="challenger", previous_version=None),
        event("registered_model_tag.set", None, key="team", value="ml"),
    ]
    for ev in sequence:
        assert (await handler.deliver(ev)).status is Status.DELIVERED
    v1, v1_staging, v2, v1_prod, v2_alias, model_tag = (s.body for s in slack.posts())
    root1 = f"1700000000.{1:06d}"
    root2 = f"1700000000.{3:06d}"
    assert "thread_ts" not in v1 and "thread_ts" not in v2
    assert v1_staging["thread_ts"] == v1_prod["thread_ts"] == root1
    assert v1_staging["channel"] == "C0MODELS"  # replies go to the channel id Slack returned
    assert v2_alias["thread_ts"] == root2
    assert "thread_ts" not in model_tag  # model-level events are not threaded
    assert "reply_broadcast" not in v1_prod


async def test_threading_can_be_turned_off_and_replies_broadcast(
        slack: FakeSlack, context: HandlerContext) -> None:
    off = bot(slack, context, name="off", thread_by_version=False)
    loud = bot(slack, context, name="loud", channel="#other", reply_broadcast=True)
    for handler in (off, loud):
        await handler.deliver(event("model_version.created", "7"))
        await handler.deliver(stage("7", "None", "Staging"))
    assert "thread_ts" not in slack.posts("#models")[1].body
    reply = slack.posts("#other")[1].body
    assert reply["thread_ts"] and reply["reply_broadcast"] is True


async def test_a_lost_thread_is_forgotten_and_the_retry_posts_top_level(
        slack: FakeSlack, context: HandlerContext) -> None:
    handler = bot(slack, context)
    await handler.deliver(event("model_version.created", "1"))
    slack.threads.clear()  # the root message was deleted in Slack
    with capture_logs() as logs:
        outcome = await handler.deliver(stage("1", "None", "Staging"))
    assert outcome.status is Status.RETRY and "thread_not_found" in outcome.detail
    assert [e["event"] for e in logs] == ["slack.thread_reset"]
    assert (await handler.deliver(stage("1", "None", "Staging"))).status is Status.DELIVERED
    assert "thread_ts" not in slack.posts()[-1].body


async def test_pacing_per_channel(slack: FakeSlack, context: HandlerContext) -> None:
    models = bot(slack, context, name="models", min_interval_s=0.2)
    other = bot(slack, context, name="other", channel="#other", min_interval_s=0.2)
    outcomes = await asyncio.gather(
        *(models.deliver(stage(str(v), "None", "Staging")) for v in (1, 2, 3)),
        other.deliver(stage("9", "None", "Staging")),
    )
    assert all(o.status is Status.DELIVERED for o in outcomes), outcomes
    times = [s.at for s in slack.posts("#models")]
    texts = [s.body["text"] for s in slack.posts("#models")]
    assert all(f"* v{v} moved" in t for v, t in zip((1, 2, 3), texts, strict=True)), texts
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # each request starts 0.2 s after the previous one was answered: arrivals are ≥ 0.2 s apart
    assert all(gap >= 0.2 for gap in gaps), gaps
    [other_at] = [s.at for s in slack.posts("#other")]
    assert other_at < times[1], "a second channel must not wait behind the first"


async def test_subscriptions_posting_to_one_channel_share_its_pace(
        slack: FakeSlack, context: HandlerContext) -> None:
    first = bot(slack, context, name="first", min_interval_s=0.2)
    second = bot(slack, context, name="second", min_interval_s=0.2)
    await asyncio.gather(first.deliver(stage("1", "None", "Staging")),
                         second.deliver(stage("2", "None", "Staging")))
    a, b = (s.at for s in slack.posts("#models"))
    assert b - a >= 0.2


async def test_timeouts_and_connection_errors_are_retried(
        slack: FakeSlack, context: HandlerContext) -> None:
    slow = bot(slack, context, api_base_url=f"{slack.url}/slow/", timeout_s=0.2)
    outcome = await slow.deliver(stage("1", "None", "Staging"))
    assert outcome.status is Status.RETRY and "no answer within 0.2 s" in outcome.detail
    closed_port = bot(slack, context, api_base_url="http://127.0.0.1:9/api/")
    refused = await closed_port.deliver(stage("1", "None", "Staging"))
    assert refused.status is Status.RETRY and "ClientConnectorError" in refused.detail


async def test_ssrf_guard_refusal_is_final(slack: FakeSlack) -> None:
    async with HttpClients() as clients:  # loopback not allowed
        context = HandlerContext(http_session=clients.session)
        outcome: Outcome = await bot(slack, context).deliver(stage("1", "None", "Staging"))
    assert outcome.status is Status.FAILED and "allowed_networks" in outcome.detail
    assert slack.requests == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
