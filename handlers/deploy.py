"""The ``deploy`` handler: start a deployment when a subscription's conditions hold.

Targets: GitHub ``repository_dispatch`` and ``workflow_dispatch``, a generic HTTP endpoint,
and a Kafka command topic (``deploy.requests``) whose records follow
``docs/deploy-request.schema.json``. Every request carries an idempotency key derived from
the subscription and the event id, so a redelivery can be told apart from a new deployment.
The hub's router applies ``events``/``models``/``when`` before :meth:`DeployHandler.deliver`
is called. Prompt events (``prompt*``: MLflow's prompt registry) deploy nothing unless the
subscription sets ``prompts: true``, so a glob such as ``*`` or ``*_alias.created`` does not
start a model deployment when a prompt alias moves; they are answered ``delivered`` with a
detail saying so. Payloads and status mapping are pure, in ``handlers.deploy_targets``; the lineage
sent with ``include_lineage`` comes from ``handlers.deploy_lineage``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar, Literal, Self
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from yarl import URL

from handlers.deploy_lineage import LineageCache, lineage_of
from handlers.deploy_targets import (
    DEFAULT_WORKFLOW_INPUTS,
    GITHUB_MAX_KEYS,
    PLACEHOLDERS,
    SCHEMA_ID,
    DeployRequest,
    deploy_request,
    dispatch_payload,
    encode,
    github_outcome,
    http_outcome,
    placeholders_in,
    record,
    render,
    workflow_payload,
)
from hub.errors import PluginError
from hub.events import Event, is_prompt_event
from hub.http import RedirectRefused, find_refusal
from hub.outcome import Outcome
from hub.plugins import HandlerContext, HandlerOptions
from hub.redaction import redact_url

log = structlog.get_logger(__name__)

NOT_FOR_PROMPTS = ("not deployed: a prompt event, and this subscription deploys models only "
                   "(set prompts: true to deploy prompts)")

Target = Literal["github_dispatch", "github_workflow", "http", "kafka"]
_GITHUB = ("github_dispatch", "github_workflow")
_REQUIRED: dict[str, tuple[str, ...]] = {
    "github_dispatch": ("repo", "token", "event_type"),
    "github_workflow": ("repo", "token", "workflow", "ref"),
    "http": ("url",),
    "kafka": (),
}
_USED_BY: dict[str, tuple[str, ...]] = {
    "repo": _GITHUB, "token": _GITHUB, "api_base_url": _GITHUB,
    "event_type": ("github_dispatch",),
    "workflow": ("github_workflow",), "ref": ("github_workflow",), "inputs": ("github_workflow",),
    "url": ("http",), "method": ("http",), "headers": ("http",), "body": ("http",),
    "topic": ("kafka",),
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_MAX_ANSWER_BYTES = 64 * 1024
_GITHUB_HEADERS = {"Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "registry-hub-deploy"}


class DeployOptions(HandlerOptions):
    env_options = ("token", "headers")  # ${VAR} in the configuration file: hub.envrefs

    target: Target
    # GitHub (github_dispatch, github_workflow)
    repo: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    token: SecretStr | None = None
    """May be ``${ENV_VAR}`` in the configuration file, resolved when validated."""
    event_type: str | None = Field(None, min_length=1, max_length=100)
    workflow: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    """Workflow file name (``deploy.yml``) or numeric id."""
    ref: str | None = Field(None, min_length=1)
    inputs: dict[str, str] | None = None
    """Default: model, version, alias, stage, run_id, source, event_id, idempotency_key (and
    lineage with ``include_lineage``) — the workflow must declare every input sent."""
    api_base_url: str = "https://api.github.com"
    # http
    url: str | None = None
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Values may use ``${ENV_VAR}`` in the configuration file, resolved when validated."""
    body: dict[str, Any] | None = None
    """JSON template; default: the deploy-request/v1 record."""
    # kafka
    topic: str = Field("deploy.requests", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    # all targets
    include_lineage: bool = False
    timeout_s: float = Field(10, gt=0)
    prompts: bool = False
    """Deploy on prompt events (``prompt.*``, ``prompt_alias.*``, ...) the subscription
    matches. Off: they are acknowledged without a request."""

    @field_validator("headers", mode="before")
    @classmethod
    def _headers_env(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        resolved = {}
        for name, raw in value.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            text = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
            if not isinstance(text, str):
                raise ValueError(f"header {name!r}: the value must be a string")
            if "\r" in text or "\n" in text:
                raise ValueError(f"header {name!r}: the value must not contain line breaks")
            resolved[name] = text
        return resolved

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_base_url", "url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"expected an http(s) URL, got {redact_url(value)!r}")
        return value.rstrip("/") if info.field_name == "api_base_url" else value

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            if len(value) > GITHUB_MAX_KEYS:
                raise ValueError(f"GitHub accepts at most {GITHUB_MAX_KEYS} inputs, "
                                 f"got {len(value)}")
            _known_placeholders(value)
            if "idempotency_key" not in placeholders_in(value):
                raise ValueError("pass {idempotency_key} in one input (e.g. idempotency_key: "
                                 "'{idempotency_key}', declared by the workflow) so it can "
                                 "tell a redelivery from a new deployment")
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _known_placeholders(value)
            try:
                encode(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"the body must be plain JSON: {exc}") from None
        return value

    @model_validator(mode="after")
    def _fits_target(self) -> Self:
        """Errors name the field: a key the target needs, or a key it would ignore."""
        errors = [
            InitErrorDetails(type=PydanticCustomError(
                "target_requires", "required when target is {target}",
                {"target": self.target}), loc=(name,), input=None)
            for name in _REQUIRED[self.target] if getattr(self, name) is None
        ] + [
            InitErrorDetails(type=PydanticCustomError(
                "target_ignores", "only used when target is {used_by}, not {target}",
                {"target": self.target, "used_by": " or ".join(_USED_BY[name])}),
                loc=(name,), input="***" if name in ("token", "headers") else getattr(self, name))
            for name in sorted(self.model_fields_set)
            if name in _USED_BY and self.target not in _USED_BY[name]
            and getattr(self, name) is not None
        ]
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def workflow_inputs(self) -> dict[str, str]:
        if self.inputs is not None:
            return dict(self.inputs)
        inputs = dict(DEFAULT_WORKFLOW_INPUTS)
        if self.include_lineage:
            inputs["lineage"] = "{lineage}"
        return inputs


def _known_placeholders(template: Any) -> None:
    unknown = placeholders_in(template) - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(PLACEHOLDERS)} (write {{{{ and }}}} for literal braces)")


# --- the handler ----------------------------------------------------------------------------

class DeployHandler:
    Options: ClassVar[type[DeployOptions]] = DeployOptions

    def __init__(self, *, name: str, options: DeployOptions, context: HandlerContext) -> None:
        self.name = name
        self._options = options
        self._context = context
        needs = {"http_session": options.target != "kafka",
                 "kafka_send": options.target == "kafka",
                 "mlflow_call": options.include_lineage}
        for attr, needed in needs.items():
            if needed and getattr(context, attr) is None:
                raise PluginError(f"subscription {name!r}: the deploy handler (target "
                                  f"{options.target}) needs HandlerContext.{attr}")
        self._lineage = LineageCache()
        self._secrets = [s.get_secret_value() for s in
                         [*options.headers.values(), *([options.token] if options.token else [])]]

    @property
    def topics(self) -> list[str]:
        """Kafka topics this handler writes; the worker creates them at start-up."""
        return [self._options.topic] if self._options.target == "kafka" else []

    async def deliver(self, event: Event) -> Outcome:
        if is_prompt_event(event.type) and not self._options.prompts:
            return Outcome.delivered(NOT_FOR_PROMPTS)
        started = time.monotonic()
        lineage: dict[str, Any] | None = None
        if self._options.include_lineage:
            try:
                lineage = await self._lineage_of(event)
            except Exception as exc:
                return self._timed(Outcome.retry(
                    f"lineage of {event.model} v{event.version} could not be fetched: "
                    f"{self._redact(repr(exc))}"), started)
        request = deploy_request(self.name, event, lineage)
        target = self._options.target
        if target == "kafka":
            outcome = await self._publish(request)
        elif target == "http":
            outcome = await self._http(request)
        else:
            outcome = await self._github(request)
        log.debug("deploy.request", subscription=self.name, target=target,
                  event_id=event.id, idempotency_key=request.idempotency_key,
                  status=outcome.status.value)
        return self._timed(outcome, started)

    async def aclose(self) -> None:
        return None

    async def _lineage_of(self, event: Event) -> dict[str, Any] | None:
        call = self._context.mlflow_call
        assert call is not None  # checked in __init__: include_lineage needs it
        return await lineage_of(event, self._lineage, call, self._options.timeout_s)

    async def _publish(self, request: DeployRequest) -> Outcome:
        o = self._options
        assert self._context.kafka_send is not None
        headers = [("content-type", b"application/json"), ("schema", SCHEMA_ID.encode()),
                   ("idempotency_key", request.idempotency_key.encode())]
        try:
            async with asyncio.timeout(o.timeout_s):
                await self._context.kafka_send(o.topic, request.model.encode(),
                                               encode(record(request)), headers)
        except TimeoutError:
            return Outcome.retry(f"publishing to {o.topic} took longer than {o.timeout_s} s")
        except Exception as exc:
            return Outcome.retry(f"publishing to {o.topic} failed: {exc!r}")
        return Outcome.delivered(f"published to {o.topic}")

    async def _http(self, request: DeployRequest) -> Outcome:
        o = self._options
        assert o.url is not None
        body = record(request) if o.body is None else render(o.body, request.values())
        headers = {"Content-Type": "application/json",
                   **{k: v.get_secret_value() for k, v in o.headers.items()},
                   "Idempotency-Key": request.idempotency_key}
        return await self._send(o.method, o.url, encode(body), headers, http_outcome)

    async def _github(self, request: DeployRequest) -> Outcome:
        o = self._options
        assert o.repo is not None and o.token is not None
        base = f"{o.api_base_url}/repos/{o.repo}"
        if o.target == "github_dispatch":
            assert o.event_type is not None
            url, payload = f"{base}/dispatches", dispatch_payload(o.event_type, request)
        else:
            assert o.workflow is not None and o.ref is not None
            url = f"{base}/actions/workflows/{quote(o.workflow, safe='')}/dispatches"
            payload = workflow_payload(o.ref, o.workflow_inputs(), request)
        headers = {**_GITHUB_HEADERS, "Content-Type": "application/json",
                   "Authorization": f"Bearer {o.token.get_secret_value()}"}
        return await self._send("POST", url, encode(payload), headers, github_outcome)

    async def _send(self, method: str, url: str, body: bytes, headers: dict[str, str],
                    classify: Callable[..., Outcome]) -> Outcome:
        assert self._context.http_session is not None
        session: aiohttp.ClientSession = self._context.http_session()
        timeout = aiohttp.ClientTimeout(total=self._options.timeout_s)
        try:
            async with session.request(method, url, data=body, headers=headers,
                                       timeout=timeout) as resp:
                answer = await resp.content.read(_MAX_ANSWER_BYTES)
                outcome = classify(resp.status, resp.headers,
                                   answer.decode("utf-8", "replace"), now=time.time())
        except TimeoutError:
            return Outcome.retry(f"no answer within {self._options.timeout_s} s")
        except aiohttp.ClientError as exc:
            refusal = find_refusal(exc)  # SSRF guard, or a redirect: the session never follows
            if isinstance(refusal, RedirectRefused):
                return Outcome.failed(self._redact(str(refusal)), http_status=refusal.status)
            if refusal is not None:
                return Outcome.failed(str(refusal))
            return Outcome.retry(f"request failed: {self._redact(repr(exc))}")
        return replace(outcome, detail=self._redact(outcome.detail))

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    @staticmethod
    def _timed(outcome: Outcome, started: float) -> Outcome:
        return replace(outcome, latency_s=time.monotonic() - started)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"DeployHandler({self.name!r}, target={self._options.target!r})"


__all__ = ["DeployHandler", "DeployOptions"]
