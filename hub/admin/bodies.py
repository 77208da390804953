"""The admin API's bodies, pure: parsing and validating what comes in, masking what goes out.

A subscription is shown with its effective handler options, masked by
:func:`hub.redaction.mask`: ``SecretStr`` fields, options named like secrets and every
header value as ``"***"``, URLs with their credentials and query values hidden. A client
that sends back what it read (``"***"``, a redacted URL) in a PUT/PATCH keeps the stored
value (:func:`~hub.redaction.unmask`). PATCH is an RFC 7386 JSON merge patch. A subscription
made here is a runtime one: ``${VAR}`` in any option is refused (see :mod:`hub.envrefs`).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from hub.config import SubscriptionConfig
from hub.errors import ConfigError, PluginError
from hub.events import Event, EventType
from hub.plugins import TEST_FLAG, load_plugin, option_context, validate_options
from hub.redaction import MASK, mask, unmask


class ApiError(Exception):
    """Answered as ``{"error": message, "field": field}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, ``null`` deletes a key."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def sample_event(sub: SubscriptionConfig, source: str) -> Event:
    """A realistic stage transition for ``POST /api/subscriptions/{name}/test``, marked as a
    test (``data.test: true``, see :func:`hub.plugins.is_test`) so no receiver mistakes it
    for a real one."""
    model = next((m for m in sub.models if not any(c in m for c in "*?[")), "example-model")
    run_id = uuid.uuid4().hex
    return Event(
        id=f"test-{uuid.uuid4()}", type=EventType.MODEL_VERSION_STAGE_TRANSITIONED.value,
        model=model, version="1", time=datetime.now(UTC), source=source,
        data={"model_name": model, "version": "1", "run_id": run_id,
              "source": f"runs:/{run_id}/model", "from_stage": "Staging",
              "to_stage": "Production", "tags": {}, "aliases": [], "tracking_uri": source,
              TEST_FLAG: True})


def view(sub: SubscriptionConfig, source: str, description: str | None = None) -> dict[str, Any]:
    """A subscription as the API shows it: its keys, effective options, secrets masked."""
    options: Any = sub.options
    try:
        options = load_plugin(sub.handler).Options.model_validate(
            options, context=option_context(sub)).model_dump(mode="json")
    except (PluginError, ValidationError):
        pass  # shown as given, masked by key name
    core = sub.model_dump(mode="json", include={"name", "handler", "events", "models", "when",
                                                "enabled"})
    shown = {**mask(options), **core, "source": source}
    if description is not None:
        shown["description"] = description
    return shown


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_object(raw: bytes, *, empty: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request body as a JSON object, or an ``ApiError(400)``."""
    if not raw.strip():
        if empty is not None:
            return empty
        raise ApiError(400, "the request body must be a JSON object")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {type(data).__name__}")
    return data


def validate_subscription(body: dict[str, Any]) -> SubscriptionConfig:
    """Validated exactly like the config file: the subscription, then its handler options."""
    try:
        sub = SubscriptionConfig.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        lines = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: "
                 f"{e['msg'].removeprefix('Value error, ')}" for e in errors]
        field = ".".join(str(p) for p in errors[0]["loc"]) if errors else None
        raise ApiError(422, "; ".join(lines), field or None) from None
    try:
        validate_options(sub, 0)
    except ConfigError as exc:
        raise ApiError(422, str(exc).replace("subscriptions.0.", ""),
                       (exc.field or "").removeprefix("subscriptions.0.") or None) from None
    return sub


def description_of(body: dict[str, Any], default: str | None = None) -> str | None:
    """Pop the metadata keys a client may send beside the subscription's own keys."""
    body.pop("source", None)  # echoed by GET; not part of the subscription
    if "description" not in body:
        return default
    description = body.pop("description")
    if description is not None and not isinstance(description, str):
        raise ApiError(422, "description must be a string", "description")
    return description


__all__ = ["MASK", "ApiError", "description_of", "mask", "merge_patch", "parse_object",
           "sample_event", "unmask", "validate_subscription", "view"]
