"""No handler follows a redirect (issue 9): a real receiver on 127.0.0.1 answers 3xx pointing
at a second local server, which must get nothing, and the delivery ends as a final failure
— a dead letter when it runs through a worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from handlers.deploy import DeployHandler, DeployOptions
from handlers.slack import SlackHandler, SlackOptions
from hub.events import Event
from hub.http import HttpClients
from hub.outcome import Status
from hub.plugins import HandlerContext
from tests.support.delivery import delivery_config, publish, running_worker, webhook
from tests.support.kafka_reader import read_topic

pytestmark = pytest.mark.timeout(120)

SECRET_HEADER = "deploy-secret-0123456789"


@dataclass
class Server:
    """A loopback server: ``answer_status`` 3xx with ``Location: <location_base><path>``,
    or 200; records every request it gets."""

    answer_status: int = 200
    location_base: str = ""
    url: str = ""
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests.append((request.method, request.path, dict(request.headers)))
        if 300 <= self.answer_status < 400:
            return web.Response(status=self.answer_status, text="moved",
                                headers={"Location": self.location_base + request.path})
        return web.Response(status=self.answer_status, text="ok")


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


@asynccontextmanager
async def redirect_pair(status: int = 302) -> AsyncIterator[tuple[Server, Server]]:
    """(redirector, elsewhere): the redirector points every request at ``elsewhere``."""
    async with serving(Server()) as elsewhere, serving(Server(status)) as redirector:
        redirector.location_base = elsewhere.url
        yield redirector, elsewhere


def deploy_event() -> Event:
    return Event(id="evt-1", type="model_version.stage_transitioned", model="iris",
                 version="3", time=datetime.now(UTC), source="http://mlflow",
                 data={"model_name": "iris", "version": "3", "run_id": "r1",
                       "source": "models:/m-1", "from_stage": "Staging",
                       "to_stage": "Production", "tags": {}, "aliases": []})


def deploy(name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "handler": "deploy", "timeout_s": 5, **options}


async def test_every_handler_dead_letters_a_302_and_the_other_host_gets_nothing(
        kafka_bootstrap: str, topic_name: str) -> None:
    async with redirect_pair(302) as (redirector, elsewhere):
        config = delivery_config(kafka_bootstrap, topic_name, [
            deploy("deploy-http", target="http", url=f"{redirector.url}/deploy",
                   headers={"X-Deploy-Secret": SECRET_HEADER}),
            deploy("deploy-github", target="github_dispatch", repo="acme/serving",
                   token="ghp_redirect_test_token", event_type="deploy",
                   api_base_url=redirector.url),
            deploy("deploy-workflow", target="github_workflow", repo="acme/serving",
                   token="ghp_redirect_test_token", workflow="deploy.yml", ref="main",
                   api_base_url=redirector.url),
            {"name": "slack", "handler": "slack", "webhook_url": f"{redirector.url}/slack"},
            webhook("hook", f"{redirector.url}/hook"),
        ], schedule=[0.05])
        await publish(config, [deploy_event()])
        async with running_worker(config):
            letters = await read_topic(kafka_bootstrap, config.dead_letter_topic,
                                       at_least=5, settle_s=0.3)
        attempts = await read_topic(kafka_bootstrap, config.deliveries_topic, at_least=5,
                                    settle_s=0.3)

    assert elsewhere.requests == [], "a redirect was followed"
    by_sub = {d.data["subscription"]: d.data for d in letters}
    assert sorted(by_sub) == ["deploy-github", "deploy-http", "deploy-workflow", "hook",
                              "slack"]
    assert {d["reason"] for d in by_sub.values()} == {"failed"}, "3xx is final, not retried"
    assert sorted(a.data["subscription"] for a in attempts) == sorted(by_sub), \
        "one attempt each"
    for name in ("deploy-http", "deploy-github", "deploy-workflow", "slack"):
        assert f"redirect to {elsewhere.url}/" in by_sub[name]["last_error"], name
        assert "not followed" in by_sub[name]["last_error"], name
    for name in ("deploy-http", "deploy-github", "deploy-workflow"):
        assert by_sub[name]["http_status"] == 302, name
    assert by_sub["hook"]["http_status"] == 302
    assert "ghp_redirect_test_token" not in str(letters)
    assert len(redirector.requests) == 5


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_deploy_http_never_follows_any_redirect(status: int) -> None:
    async with redirect_pair(status) as (redirector, elsewhere), \
            HttpClients(allowed_networks=["127.0.0.0/8"]) as clients:
        options = DeployOptions.model_validate({
            "target": "http", "url": f"{redirector.url}/deploy", "method": "PUT",
            "headers": {"X-Deploy-Secret": SECRET_HEADER}})
        handler = DeployHandler(name="d", options=options,
                                context=HandlerContext(http_session=clients.session))
        outcome = await handler.deliver(deploy_event())
    assert (outcome.status, outcome.http_status) == (Status.FAILED, status)
    assert outcome.detail.startswith(f"redirect to {elsewhere.url}/deploy not followed")
    assert elsewhere.requests == []
    assert [(m, p) for m, p, _ in redirector.requests] == [("PUT", "/deploy")]


async def test_github_workflow_307_is_final_and_the_token_stays_home() -> None:
    async with redirect_pair(307) as (redirector, elsewhere), \
            HttpClients(allowed_networks=["127.0.0.0/8"]) as clients:
        options = DeployOptions.model_validate({
            "target": "github_workflow", "repo": "acme/serving", "token": "ghp_secret_1234",
            "workflow": "deploy.yml", "ref": "main", "api_base_url": redirector.url})
        handler = DeployHandler(name="d", options=options,
                                context=HandlerContext(http_session=clients.session))
        outcome = await handler.deliver(deploy_event())
    assert (outcome.status, outcome.http_status) == (Status.FAILED, 307)
    assert f"redirect to {elsewhere.url}/repos/acme/serving/actions/workflows/" \
        in outcome.detail
    assert elsewhere.requests == []


async def test_slack_sdk_calls_do_not_follow_redirects_either() -> None:
    """slack-sdk takes no allow_redirects: the session itself refuses."""
    async with redirect_pair(302) as (redirector, elsewhere), \
            HttpClients(allowed_networks=["127.0.0.0/8"]) as clients:
        context = HandlerContext(http_session=clients.session)
        hook = SlackHandler(name="s", context=context, options=SlackOptions.model_validate(
            {"webhook_url": f"{redirector.url}/services/T/B/x"}))
        bot = SlackHandler(name="b", context=context, options=SlackOptions.model_validate(
            {"token": "xoxb-test", "channel": "#models",
             "api_base_url": f"{redirector.url}/api/"}))
        outcomes = [await hook.deliver(deploy_event()), await bot.deliver(deploy_event())]
    assert [o.status for o in outcomes] == [Status.FAILED, Status.FAILED]
    assert all(f"redirect to {elsewhere.url}/" in o.detail for o in outcomes)
    assert elsewhere.requests == []
