"""Deploy requests, pure: the idempotency key, what an event asks to deploy, the payload each
target receives, and how each target's answer maps to an :class:`~hub.outcome.Outcome`.

No clock, no network: ``now`` is passed in. ``handlers.deploy`` does the I/O.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from hub.events import Event
from hub.http import redirect_detail
from hub.outcome import Outcome

SCHEMA_ID = "registry-hub.deploy-request/v1"
GITHUB_MAX_KEYS = 10
"""GitHub's limit on ``client_payload`` top-level properties and on ``workflow_dispatch``
inputs."""
GITHUB_RATE_LIMIT_WAIT_S = 60.0
"""GitHub's advice when a rate-limit answer says nothing about when to retry."""

PLACEHOLDERS: tuple[str, ...] = (
    "model", "version", "alias", "stage", "run_id", "source", "idempotency_key", "event_id",
    "type", "time", "lineage",
)
_OBJECT_VALUES = frozenset({"lineage"})
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DETAIL_CHARS = 300


def idempotency_key(subscription: str, event_id: str) -> str:
    """``rh-`` + 32 hex digits: stable for one event in one subscription, on every redelivery."""
    digest = hashlib.sha256(f"{subscription}\x00{event_id}".encode()).hexdigest()
    return f"rh-{digest[:32]}"


@dataclass(frozen=True)
class DeployRequest:
    """What one event asks a deploy target to do; the fields of ``deploy-request/v1``."""

    idempotency_key: str
    event_id: str
    event_type: str
    model: str
    version: str | None
    alias: str | None
    stage: str | None
    source: str | None
    run_id: str | None
    tracking_uri: str | None
    requested_at: str
    lineage: dict[str, Any] | None = None

    def values(self) -> dict[str, Any]:
        """Placeholder values for templates (``{type}`` is the event type)."""
        values = asdict(self)
        values["type"] = self.event_type
        values["time"] = self.requested_at
        return values


def deploy_request(subscription: str, event: Event, lineage: dict[str, Any] | None = None
                   ) -> DeployRequest:
    """``requested_at`` is the event's time, so a redelivery builds a byte-identical record."""
    d = event.data
    version = event.version if event.version is not None else d.get("version")
    return DeployRequest(
        idempotency_key=idempotency_key(subscription, event.id),
        event_id=event.id,
        event_type=event.type,
        model=event.model,
        version=_text_or_none(version),
        alias=_text_or_none(d.get("alias")),
        stage=_text_or_none(d.get("to_stage", d.get("stage"))),
        source=_text_or_none(d.get("source")),
        run_id=_text_or_none(d.get("run_id")),
        tracking_uri=_text_or_none(d.get("tracking_uri")),
        requested_at=event.time.isoformat(),
        lineage=lineage,
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def record(request: DeployRequest) -> dict[str, Any]:
    """The ``deploy-request/v1`` record (``docs/deploy-request.schema.json``): the Kafka value
    and the default ``http`` body. ``lineage`` is present only when fetched."""
    body: dict[str, Any] = {"schema": SCHEMA_ID, **asdict(request)}
    if request.lineage is None:
        del body["lineage"]
    return body


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


# --- templates ------------------------------------------------------------------------------

def placeholders_in(template: Any) -> set[str]:
    """Every ``{name}`` a template uses (in string values, at any depth)."""
    if isinstance(template, Mapping):
        return set().union(*(placeholders_in(v) for v in template.values()))
    if isinstance(template, list):
        return set().union(*(placeholders_in(v) for v in template))
    if isinstance(template, str):
        return {m.group(1) for m in _TOKEN.finditer(template) if m.group(1)}
    return set()


def render(template: Any, values: Mapping[str, Any]) -> Any:
    """Fill ``{name}`` placeholders in the string values of a JSON template. Never raises.

    A string that is exactly one placeholder takes the value itself (``"{lineage}"`` becomes
    an object, or null when absent); inside longer text a value is inserted as text (objects
    as JSON), a missing or unknown one as nothing. ``{{`` and ``}}`` are literal braces.
    """
    if isinstance(template, Mapping):
        return {k: render(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values) for v in template]
    if not isinstance(template, str):
        return template
    whole = _TOKEN.fullmatch(template)
    if whole and whole.group(1) in _OBJECT_VALUES:
        return values.get(whole.group(1))
    return render_text(template, values)


def render_text(template: str, values: Mapping[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)[0]
        return _as_text(values.get(name))

    return _TOKEN.sub(one, template)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# --- GitHub ---------------------------------------------------------------------------------

DEFAULT_WORKFLOW_INPUTS: dict[str, str] = {
    name: "{" + name + "}"
    for name in ("model", "version", "alias", "stage", "run_id", "source", "event_id",
                 "idempotency_key")
}


def dispatch_payload(event_type: str, request: DeployRequest) -> dict[str, Any]:
    """``POST /repos/{repo}/dispatches``: lineage nests under one key, so ≤ 10 keys."""
    client_payload: dict[str, Any] = {
        "model": request.model,
        "version": request.version,
        "alias": request.alias,
        "stage": request.stage,
        "run_id": request.run_id,
        "source": request.source,
        "event_type": request.event_type,
        "event_id": request.event_id,
        "idempotency_key": request.idempotency_key,
    }
    if request.lineage is not None:
        client_payload["lineage"] = request.lineage
    _check_github_limit("client_payload", client_payload)
    return {"event_type": event_type, "client_payload": client_payload}


def workflow_payload(ref: str, inputs: Mapping[str, str], request: DeployRequest
                     ) -> dict[str, Any]:
    """``POST /repos/{repo}/actions/workflows/{workflow}/dispatches``: string inputs only."""
    values = request.values()
    rendered = {name: render_text(template, values) for name, template in inputs.items()}
    _check_github_limit("inputs", rendered)
    return {"ref": ref, "inputs": rendered}


def _check_github_limit(what: str, payload: Mapping[str, Any]) -> None:
    if len(payload) > GITHUB_MAX_KEYS:
        raise ValueError(f"GitHub accepts at most {GITHUB_MAX_KEYS} {what} keys, "
                         f"got {len(payload)}")


def github_outcome(status: int, headers: Mapping[str, str], body: str, *, now: float
                   ) -> Outcome:
    """Map GitHub's answer: 2xx delivered; rate limits (429, or 403 with
    ``x-ratelimit-remaining: 0`` / ``Retry-After`` / a rate-limit message) and 5xx retry;
    401/403/404/422 and other 4xx are final, with GitHub's message; so is a 3xx (redirects
    are never followed)."""
    h = {k.lower(): v for k, v in headers.items()}
    message = github_message(body)
    if 200 <= status < 300:
        return Outcome.delivered(f"GitHub accepted the dispatch ({status})", http_status=status)
    limited = status == 429 or (status == 403 and (
        h.get("x-ratelimit-remaining") == "0" or "retry-after" in h
        or "rate limit" in message.lower()))
    if limited:
        wait = parse_retry_after(h.get("retry-after"), now)
        if wait is None and h.get("x-ratelimit-remaining") == "0":
            wait = _until_epoch(h.get("x-ratelimit-reset"), now)
        return Outcome.retry(f"GitHub rate limit ({status}): {message}", http_status=status,
                             retry_after_s=GITHUB_RATE_LIMIT_WAIT_S if wait is None else wait)
    if status >= 500 or status == 408:
        return Outcome.retry(f"GitHub answered {status}: {message}", http_status=status,
                             retry_after_s=parse_retry_after(h.get("retry-after"), now))
    if 300 <= status < 400:
        return Outcome.failed(f"GitHub: {redirect_detail(status, h.get('location'))} "
                              f"(GitHub said: {message})", http_status=status)
    hint = _GITHUB_HINTS.get(status, "")
    return Outcome.failed(f"GitHub answered {status}: {message}" + (f" ({hint})" if hint else ""),
                          http_status=status)


_GITHUB_HINTS = {
    401: "the token is invalid or expired",
    403: "the token lacks permission: repository_dispatch needs contents write, "
         "workflow_dispatch needs actions write",
    404: "no such repository or workflow, or the token cannot see it",
    422: "GitHub rejected the request: for workflow_dispatch the ref must exist and the inputs "
         "must match the workflow's declared inputs",
}


def github_message(body: str) -> str:
    """GitHub's ``message`` (and ``errors``) from an error body, else the body's start."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "message" in parsed:
        text = str(parsed["message"])
        if parsed.get("errors"):
            text += f" {json.dumps(parsed['errors'], separators=(',', ':'))}"
    else:
        text = body.strip()
    return text[:_DETAIL_CHARS] or "(empty body)"


# --- generic HTTP ---------------------------------------------------------------------------

def http_outcome(status: int, headers: Mapping[str, str], body: str, *, now: float) -> Outcome:
    """2xx delivered; 410 gone; 408, 429 and 5xx retry (``Retry-After`` honoured); any other
    status is final, a 3xx saying where it pointed (redirects are never followed)."""
    h = {k.lower(): v for k, v in headers.items()}
    snippet = body.strip()[:_DETAIL_CHARS]
    said = f"receiver answered {status}" + (f": {snippet}" if snippet else "")
    if 200 <= status < 300:
        return Outcome.delivered(f"receiver accepted ({status})", http_status=status)
    if status == 410:
        return Outcome.gone(said, http_status=status)
    if status in (408, 429) or status >= 500:
        return Outcome.retry(said, http_status=status,
                             retry_after_s=parse_retry_after(h.get("retry-after"), now))
    if 300 <= status < 400:
        return Outcome.failed(redirect_detail(status, h.get("location"))
                              + (f" (receiver said: {snippet})" if snippet else ""),
                              http_status=status)
    return Outcome.failed(said, http_status=status)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _until_epoch(value: str | None, now: float) -> float | None:
    try:
        reset = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return max(0.0, reset - now) if math.isfinite(reset) else None


__all__ = [
    "DEFAULT_WORKFLOW_INPUTS",
    "GITHUB_MAX_KEYS",
    "PLACEHOLDERS",
    "SCHEMA_ID",
    "DeployRequest",
    "deploy_request",
    "dispatch_payload",
    "encode",
    "github_message",
    "github_outcome",
    "http_outcome",
    "idempotency_key",
    "parse_retry_after",
    "placeholders_in",
    "record",
    "render",
    "render_text",
    "workflow_payload",
]
