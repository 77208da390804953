"""Building blocks of the deploy handler's integration tests: stage-transition and alias
events, an aiohttp app served on 127.0.0.1, and a GitHub REST API stand-in that checks what
GitHub checks for the two dispatch endpoints, with a handler pointed at it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from handlers.deploy import DeployHandler, DeployOptions
from hub.events import Event
from hub.http import HttpClients
from hub.plugins import HandlerContext

TOKEN = "ghp_test_token_0123456789"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def stage_event(model: str = "iris", version: str = "3", event_id: str | None = None,
                **data: Any) -> Event:
    return Event(
        id=event_id or str(uuid.uuid4()), type="model_version.stage_transitioned", model=model,
        time=T0, source="mlflow://registry", version=version,
        data={"model_name": model, "version": version, "run_id": "r1",
              "source": "models:/m-1", "from_stage": "Staging", "to_stage": "Production",
              "tags": {"validated": "true"}, "aliases": [],
              "tracking_uri": "http://mlflow.example", **data})


def alias_event(model: str, version: str, alias: str = "champion", **data: Any) -> Event:
    return Event(
        id=str(uuid.uuid4()), type="model_version_alias.created", model=model, time=T0,
        source="mlflow://registry", version=version,
        data={"model_name": model, "alias": alias, "version": version, "previous_version": None,
              "run_id": "r1", "source": "models:/m-1", "aliases": [alias],
              "tracking_uri": "http://mlflow.example", **data})


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --- a GitHub REST API stand-in -------------------------------------------------------------

@dataclass
class FakeGitHub:
    """Checks what GitHub checks for the two dispatch endpoints; records accepted calls."""

    repo: str = "acme/serving"
    workflows: dict[str, set[str]] = field(default_factory=lambda: {"deploy.yml": {
        "model", "version", "alias", "stage", "run_id", "source", "event_id",
        "idempotency_key", "lineage"}})
    refs: set[str] = field(default_factory=lambda: {"main"})
    rate_limited: bool = False
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/repos/{owner}/{name}/dispatches", self.repository_dispatch)
        app.router.add_post("/repos/{owner}/{name}/actions/workflows/{workflow}/dispatches",
                            self.workflow_dispatch)
        return app

    @staticmethod
    def error(status: int, message: str, **headers: str) -> web.Response:
        return web.json_response({"message": message, "documentation_url": "https://docs"},
                                 status=status, headers=headers)

    async def _checked(self, request: web.Request) -> web.Response | dict[str, Any]:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.error(401, "Bad credentials")
        if (request.headers.get("Accept") != "application/vnd.github+json"
                or request.headers.get("X-GitHub-Api-Version") != "2022-11-28"
                or not request.headers.get("User-Agent")):
            return self.error(400, "missing GitHub API headers")
        if self.rate_limited:
            return self.error(403, "API rate limit exceeded for installation",
                              **{"x-ratelimit-remaining": "0", "Retry-After": "42",
                                 "x-ratelimit-reset": "9999999999"})
        if f"{request.match_info['owner']}/{request.match_info['name']}" != self.repo:
            return self.error(404, "Not Found")
        try:
            body = await request.json()
        except ValueError:
            return self.error(400, "Problems parsing JSON")
        return body if isinstance(body, dict) else self.error(400, "Problems parsing JSON")

    async def repository_dispatch(self, request: web.Request) -> web.Response:
        body = await self._checked(request)
        if isinstance(body, web.Response):
            return body
        event_type, payload = body.get("event_type"), body.get("client_payload", {})
        if set(body) - {"event_type", "client_payload"} or not isinstance(event_type, str) \
                or not 0 < len(event_type) <= 100:
            return self.error(422, "Invalid request. event_type is invalid.")
        if not isinstance(payload, dict) or len(payload) > 10:
            return self.error(422, "Invalid request. No more than 10 properties are allowed; "
                                   f"{len(payload)} were supplied.")
        self.accepted.append((request.path, body))
        return web.Response(status=204)

    async def workflow_dispatch(self, request: web.Request) -> web.Response:
        body = await self._checked(request)
        if isinstance(body, web.Response):
            return body
        declared = self.workflows.get(request.match_info["workflow"])
        if declared is None:
            return self.error(404, "Not Found")
        inputs = body.get("inputs", {})
        if body.get("ref") not in self.refs:
            return self.error(422, f"No ref found for: {body.get('ref')}")
        if not isinstance(inputs, dict) or len(inputs) > 10 or not all(
                isinstance(v, str) for v in inputs.values()):
            return self.error(422, "inputs: at most 10 string values")
        unexpected = sorted(set(inputs) - declared)
        if unexpected:
            return self.error(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        self.accepted.append((request.path, body))
        return web.Response(status=204)


def github_handler(url: str, clients: HttpClients, name: str = "deploy-prod",
                   context: HandlerContext | None = None, **options: Any) -> DeployHandler:
    opts = DeployOptions.model_validate({"target": "github_dispatch", "repo": "acme/serving",
                                         "token": TOKEN, "event_type": "deploy-model",
                                         "api_base_url": url, **options})
    return DeployHandler(name=name, options=opts,
                         context=context or HandlerContext(http_session=clients.session))
