"""Events on the wire: CloudEvents 1.0 in Kafka *binary* content mode.

Attributes travel as ``ce_*`` headers (``ce_id``, ``ce_source``, ``ce_type``, ``ce_subject``,
``ce_time``, ``ce_partitionkey``), the value is the JSON data, the key is the model name —
so one model's events stay on one partition, in order. Encoding and decoding use the
``cloudevents`` SDK's Kafka binding; this module only maps to and from :class:`Event`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from hub.events import Event

_FORMAT = JSONFormat()
CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class KafkaRecord:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def encode(event: Event) -> KafkaRecord:
    attributes: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": event.time,
        "datacontenttype": CONTENT_TYPE,
        "partitionkey": event.model,
    }
    message = kafka.to_binary(CloudEvent(attributes=attributes, data=event.data), _FORMAT)
    key = message.key if isinstance(message.key, bytes) else str(message.key).encode()
    return KafkaRecord(key=key, value=message.value, headers=list(message.headers.items()))


def decode(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | tuple[Any, ...]
           ) -> Event:
    """Parse a record from the events topic. Raises ``ValueError`` on a malformed record."""
    try:
        message = kafka.KafkaMessage(headers=dict(headers), key=key, value=value)
        ce = kafka.from_binary(message, _FORMAT, CloudEvent)
    except Exception as exc:
        raise ValueError(f"not a CloudEvent in binary mode: {exc}") from exc
    data = ce.get_data()
    if not isinstance(data, dict):
        raise ValueError("event data is not a JSON object")
    time = ce.get_time() or datetime.now(UTC)
    return Event(
        id=ce.get_id(),
        type=ce.get_type(),
        model=str(ce.get_extension("partitionkey") or data.get("model_name", "")),
        time=time,
        source=ce.get_source(),
        data=data,
        version=data.get("version") if isinstance(data.get("version"), str) else None,
    )
