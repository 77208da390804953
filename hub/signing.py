"""Webhook bodies and signatures, in the three formats a subscription can choose. Pure.

* ``standard`` — Standard Webhooks: body ``{"type", "timestamp", "data"}``; headers
  ``webhook-id``, ``webhook-timestamp`` (unix seconds) and ``webhook-signature`` (``v1,<b64>``,
  one per ``whsec_`` secret, space-separated, for key rotation), signed with the
  ``standardwebhooks`` library.
* ``mlflow`` — MLflow 3's own webhooks: body ``{"entity", "action", "timestamp", "data"}``
  with MLflow's field names (``name``, ``version``, ...); headers ``X-MLflow-Delivery-Id``,
  ``X-MLflow-Timestamp``, ``X-MLflow-Signature: v1,<b64 HMAC-SHA256 of
  "{delivery_id}.{timestamp}.{payload}">`` keyed by the secret as given.
* ``databricks`` — Databricks registry webhooks: body with ``event``, ``webhook_id``,
  ``event_timestamp`` (ms), ``model_name``, ``version``, ``to_stage``, ``from_stage``,
  ``tags``, ``text``; header ``X-Databricks-Signature``: hex HMAC-SHA256 of the body.

No function here reads a clock: timestamps are arguments.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from standardwebhooks.webhooks import Webhook

from hub.errors import HubError
from hub.events import MODEL_TWIN, Event, EventType, is_prompt_event
from hub.plugins import is_test

SignatureFormat = Literal["standard", "mlflow", "databricks"]
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")

MLFLOW_DELIVERY_ID = "X-MLflow-Delivery-Id"
MLFLOW_TIMESTAMP = "X-MLflow-Timestamp"
MLFLOW_SIGNATURE = "X-MLflow-Signature"
DATABRICKS_SIGNATURE = "X-Databricks-Signature"


# --- standard webhooks --------------------------------------------------------------------


def standard_headers(
    secrets: Sequence[str], msg_id: str, timestamp: datetime, body: bytes
) -> dict[str, str]:
    """Standard Webhooks headers; one ``v1,`` signature per ``whsec_`` secret (rotation).

    With no secret, ``webhook-signature`` is omitted. ``timestamp`` must be timezone-aware.
    """
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    utc = timestamp.astimezone(UTC)  # the library reads the wall clock as UTC
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(utc.timestamp()))}
    text = body.decode("utf-8")
    if secrets:
        headers["webhook-signature"] = " ".join(
            _signer(secret).sign(msg_id, utc, text) for secret in secrets
        )
    return headers


@functools.lru_cache(maxsize=256)
def _signer(secret: str) -> Webhook:
    """The library's signer for ``secret``, made once (it decodes the key); it keeps no
    state between signatures."""
    return Webhook(secret)


def check_standard_secret(secret: str) -> None:
    """Raise ``ValueError`` (never echoing the secret) unless it is a usable ``whsec_`` key."""
    if not secret.startswith("whsec_"):
        raise ValueError(
            "a standard-webhooks secret must be 'whsec_' followed by base64; generate one with: "
            "python -c \"import base64,os; "
            "print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
        )
    encoded = secret.removeprefix("whsec_")
    if not _BASE64.fullmatch(encoded):
        raise ValueError("the part after 'whsec_' is not base64 (A-Z a-z 0-9 + /, '=' padding)")
    try:
        Webhook(secret)  # decodes as receivers using the standardwebhooks library will
    except Exception:
        raise ValueError("the part after 'whsec_' does not decode as base64") from None


# --- MLflow ---------------------------------------------------------------------------------


class Reason(StrEnum):
    MISSING_HEADER = "missing_header"
    BAD_TIMESTAMP = "bad_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    BAD_SIGNATURE = "bad_signature"


class SignatureError(HubError):
    """A signed request did not verify; ``reason`` says why (for a 400 vs 401 answer)."""

    def __init__(self, reason: Reason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def mlflow_signature(secret: str, delivery_id: str, timestamp: int, payload: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def mlflow_headers(secret: str | None, delivery_id: str, timestamp: int, payload: bytes
                   ) -> dict[str, str]:
    """MLflow's webhook headers; without a secret MLflow sends no signature, nor do we."""
    headers = {MLFLOW_DELIVERY_ID: delivery_id, MLFLOW_TIMESTAMP: str(timestamp)}
    if secret:
        headers[MLFLOW_SIGNATURE] = mlflow_signature(secret, delivery_id, timestamp, payload)
    return headers


def verify_mlflow(
    secret: str,
    headers: Mapping[str, str],
    payload: bytes,
    *,
    now: float,
    tolerance_s: float = 300,
) -> None:
    """Verify an MLflow-signed request; raise :class:`SignatureError` saying why not.

    ``headers`` is matched case-insensitively; ``now`` is unix seconds.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    names = (MLFLOW_DELIVERY_ID, MLFLOW_TIMESTAMP, MLFLOW_SIGNATURE)
    missing = [n for n in names if not lower.get(n.lower())]
    if missing:
        raise SignatureError(Reason.MISSING_HEADER, f"missing header(s): {', '.join(missing)}")
    delivery_id = lower[MLFLOW_DELIVERY_ID.lower()]
    raw_timestamp = lower[MLFLOW_TIMESTAMP.lower()].strip()
    try:
        if not raw_timestamp.isascii() or len(raw_timestamp) > 20:
            raise ValueError(raw_timestamp)
        timestamp = int(raw_timestamp)
    except ValueError:
        raise SignatureError(Reason.BAD_TIMESTAMP,
                             f"{MLFLOW_TIMESTAMP} is not unix seconds") from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            Reason.STALE_TIMESTAMP,
            f"{MLFLOW_TIMESTAMP} is {now - timestamp:+.0f} s from now "
            f"(tolerance {tolerance_s:g} s): replayed, or clocks out of sync",
        )
    expected = mlflow_signature(secret, delivery_id, timestamp, payload)
    offered = lower[MLFLOW_SIGNATURE.lower()].split()
    if not any(hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogateescape"))
               for sig in offered):
        raise SignatureError(Reason.BAD_SIGNATURE,
                             f"{MLFLOW_SIGNATURE} does not match the payload and secret")


# --- Databricks -----------------------------------------------------------------------------


def databricks_headers(secret: str | None, body: bytes) -> dict[str, str]:
    if not secret:
        return {}
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return {DATABRICKS_SIGNATURE: digest}


# --- bodies ---------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
"""``json.dumps`` with arguments builds an encoder per call: one, made once."""


def _dump(obj: dict[str, Any]) -> bytes:
    return _ENCODER.encode(obj).encode()


def standard_body(event: Event) -> bytes:
    return _dump({"type": event.type, "timestamp": _iso(event.time), "data": event.data})


def _mlflow_data(event: Event) -> dict[str, Any]:
    """Our data under MLflow's payload field names (``mlflow.webhooks.types``) for the
    fourteen events MLflow also emits (six about models, eight about prompts); other events
    pass through, with ``name``/``version`` added."""
    d = event.data
    version = event.version if event.version is not None else d.get("version")
    prompt = is_prompt_event(event.type)  # same change, MLflow's prompt payload
    match MODEL_TWIN.get(event.type, event.type):  # type: ignore[call-overload]
        case EventType.REGISTERED_MODEL_CREATED:
            return {"name": event.model, "tags": d.get("tags") or {},
                    "description": d.get("description")}
        case EventType.MODEL_VERSION_CREATED if prompt:
            return {"name": event.model, "version": version, "template": d.get("template"),
                    "tags": d.get("tags") or {}, "description": d.get("description") or None}
        case EventType.MODEL_VERSION_CREATED:
            return {"name": event.model, "version": version, "source": d.get("source"),
                    "run_id": d.get("run_id") or None, "tags": d.get("tags") or {},
                    "description": d.get("description") or None}
        case EventType.REGISTERED_MODEL_TAG_SET if prompt:
            return {"name": event.model, "key": d.get("key"), "value": d.get("value")}
        case EventType.REGISTERED_MODEL_TAG_DELETED if prompt:
            return {"name": event.model, "key": d.get("key")}
        case EventType.MODEL_VERSION_TAG_SET:
            return {"name": event.model, "version": version, "key": d.get("key"),
                    "value": d.get("value")}
        case EventType.MODEL_VERSION_TAG_DELETED:
            return {"name": event.model, "version": version, "key": d.get("key")}
        case EventType.MODEL_VERSION_ALIAS_CREATED:
            return {"name": event.model, "alias": d.get("alias"), "version": version}
        case EventType.MODEL_VERSION_ALIAS_DELETED:
            return {"name": event.model, "alias": d.get("alias")}
    extra: dict[str, Any] = {"name": event.model}
    if version is not None:
        extra["version"] = version
    return {**extra, **d}


def mlflow_body(event: Event) -> bytes:
    entity, _, action = event.type.partition(".")
    return _dump({"entity": entity, "action": action, "timestamp": _iso(event.time),
                  "data": _mlflow_data(event)})


DATABRICKS_EVENTS: dict[str, str] = {
    EventType.MODEL_VERSION_CREATED: "MODEL_VERSION_CREATED",
    EventType.MODEL_VERSION_STAGE_TRANSITIONED: "MODEL_VERSION_TRANSITIONED_STAGE",
    EventType.REGISTERED_MODEL_CREATED: "REGISTERED_MODEL_CREATED",
    EventType.MODEL_VERSION_TAG_SET: "MODEL_VERSION_TAG_SET",
}
"""Our types with a Databricks registry-webhook equivalent. Every stage transition maps to
the generic ``MODEL_VERSION_TRANSITIONED_STAGE`` (``to_stage`` says where); other types keep
their own name, upper-cased with ``.`` → ``_`` (e.g. ``MODEL_VERSION_ALIAS_CREATED``)."""


def databricks_event_name(event_type: str) -> str:
    return DATABRICKS_EVENTS.get(event_type) or event_type.upper().replace(".", "_")


def summary(event: Event) -> str:
    """A one-sentence human summary, Databricks ``text`` style."""
    d = event.data
    what = f"{'Prompt' if is_prompt_event(event.type) else 'Registered model'} '{event.model}'"
    if event.version is not None:
        what += f" version {event.version}"
    entity, _, action = event.type.partition(".")
    if "to_stage" in d:
        return f"{what} transitioned from {d.get('from_stage')} to {d['to_stage']}."
    if entity.endswith("_alias"):
        return f"{what}: alias '{d.get('alias')}' {action}."
    if entity.endswith("_tag"):
        if action == "set":
            return f"{what}: tag '{d.get('key')}' set to '{d.get('value')}'."
        return f"{what}: tag '{d.get('key')}' deleted."
    if "previous_name" in d:
        return f"{what} renamed from '{d['previous_name']}'."
    return f"{what} {action.replace('_', ' ')}."


def databricks_body(event: Event, webhook_id: str) -> bytes:
    d = event.data
    body: dict[str, Any] = {
        "event": databricks_event_name(event.type),
        "webhook_id": webhook_id,
        "event_timestamp": int(event.time.timestamp() * 1000),
        "model_name": event.model,
    }
    version = event.version if event.version is not None else d.get("version")
    if version is not None:
        body["version"] = str(version)
    for key in ("to_stage", "from_stage"):
        if key in d:
            body[key] = d[key]
    if event.type.endswith("_tag.set"):
        body["tags"] = [{"key": d.get("key"), "value": d.get("value")}]
    elif isinstance(d.get("tags"), dict):
        body["tags"] = [{"key": k, "value": v} for k, v in d["tags"].items()]
    # Databricks' format has no field for a test send: its text says so
    body["text"] = ("[test] " if is_test(event) else "") + summary(event)
    return _dump(body)


_RENDERED = "_rendered_bodies"


def webhook_body(event: Event, fmt: SignatureFormat, *, webhook_id: str = "") -> bytes:
    """The request body for ``fmt``; ``webhook_id`` (the subscription) is used by
    ``databricks`` only.

    Rendered once per event and format: the body is kept on the event object, which the
    lanes of a worker share (:class:`hub.codec.SharedDecoder`), so every subscription of the
    same format (and retries made from the same object) sends the same bytes without
    rendering them again. Events are immutable — a changed copy (``dataclasses.replace``)
    is a new object with nothing kept — and handlers treat ``event.data`` as read-only."""
    key = (fmt, webhook_id) if fmt == "databricks" else fmt
    # not a dataclass field: equality, repr and replace() never see it
    rendered: dict[object, bytes] = event.__dict__.setdefault(_RENDERED, {})
    body = rendered.get(key)
    if body is None:
        if fmt == "mlflow":
            body = mlflow_body(event)
        elif fmt == "databricks":
            body = databricks_body(event, webhook_id)
        else:
            body = standard_body(event)
        rendered[key] = body
    return body


__all__ = [
    "DATABRICKS_EVENTS",
    "DATABRICKS_SIGNATURE",
    "MLFLOW_DELIVERY_ID",
    "MLFLOW_SIGNATURE",
    "MLFLOW_TIMESTAMP",
    "Reason",
    "SignatureError",
    "SignatureFormat",
    "check_standard_secret",
    "databricks_body",
    "databricks_event_name",
    "databricks_headers",
    "mlflow_body",
    "mlflow_headers",
    "mlflow_signature",
    "standard_body",
    "standard_headers",
    "summary",
    "verify_mlflow",
    "webhook_body",
]
