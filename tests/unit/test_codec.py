"""The events-topic codec (``hub.codec``): what ``encode`` writes, ``decode`` reads back, and
``decode`` (a direct read of the headers) gives the same answer as the ``cloudevents`` SDK's
``from_binary`` — the same event, or a ``ValueError`` where the SDK refuses the record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.codec import SharedDecoder, decode, encode
from hub.events import Event


def sdk_decode(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Event:
    """The reference: the SDK's Kafka binding (what ``decode`` was until it was measured),
    except that a record without ``ce_id`` is refused (the SDK makes a random id up)."""
    if "ce_id" not in {name.lower() for name, _ in headers}:
        raise ValueError("no id")
    try:
        ce = kafka.from_binary(kafka.KafkaMessage(headers=dict(headers), key=key, value=value),
                               JSONFormat(), CloudEvent)
    except Exception as exc:
        raise ValueError(str(exc)) from exc
    data = ce.get_data()
    if not isinstance(data, dict):
        raise ValueError("event data is not a JSON object")
    return Event(id=ce.get_id(), type=ce.get_type(),
                 model=str(ce.get_extension("partitionkey") or data.get("model_name", "")),
                 time=ce.get_time() or datetime.now(UTC), source=ce.get_source(), data=data,
                 version=data.get("version") if isinstance(data.get("version"), str) else None)


def outcome(fn: Any, *args: Any) -> Event | str:
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except ValueError:
        return "ValueError"


text = st.text(min_size=1, max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)
events = st.builds(
    Event, id=text, type=text, model=text, version=st.none() | st.text(max_size=5),
    time=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                      timezones=st.just(UTC)),
    source=text,
    data=st.dictionaries(st.text(max_size=8), json_values, max_size=5))


@settings(max_examples=150, deadline=None)
@given(events)
def test_decode_reads_back_what_encode_wrote_as_the_sdk_does(event: Event) -> None:
    record = encode(event)
    ours = decode(record.key, record.value, record.headers)
    assert ours == sdk_decode(record.key, record.value, record.headers)
    assert (ours.id, ours.type, ours.model, ours.source, ours.data, ours.time) == (
        event.id, event.type, event.model, event.source, event.data, event.time)


BASE = [("ce_id", b"evt-1"), ("ce_source", b"http://mlflow"), ("ce_type", b"t.created"),
        ("ce_time", b"2026-11-30T01:02:03.5+01:00"), ("content-type", b"application/json"),
        ("ce_specversion", b"1.0")]
VALUE = b'{"model_name": "iris", "version": "3"}'

# what may go wrong in a record: a header left out, changed or added; the value changed
header_names = st.sampled_from(["ce_id", "ce_source", "ce_type", "ce_time", "ce_specversion",
                                "content-type", "ce_subject", "ce_dataschema", "CE_ID",
                                "ce_data", "ce_Bad-Name", "ce_ext1", "ce_partitionkey"])
header_values = st.sampled_from([b"", b"x", b"1.0", b"0.3", b"2026-11-30T01:02:03Z",
                                 b"2026-11-30T01:02:03", b"2026-11-30", b"not a time",
                                 b"text/plain", b"application/cloudevents+json",
                                 b"application/json; charset=utf-8", b"\xff"])
values = st.sampled_from([VALUE, b"", b"[1, 2]", b"null", b"{", b'"text"', b"\xff",
                          b'{"version": 3}', b"{}"])


@settings(max_examples=300, deadline=None)
@given(st.sets(st.sampled_from([name for name, _ in BASE])),
       st.lists(st.tuples(header_names, header_values), max_size=3),
       values, st.sampled_from([None, b"iris", b""]))
def test_decode_refuses_what_the_sdk_refuses(dropped: set[str],
                                             extra: list[tuple[str, bytes]], value: bytes,
                                             key: bytes | None) -> None:
    headers = [(n, v) for n, v in BASE if n not in dropped] + extra
    ours, reference = outcome(decode, key, value, headers), outcome(sdk_decode, key, value,
                                                                    headers)
    if isinstance(ours, Event) and isinstance(reference, Event) and "ce_time" not in dict(
            headers):
        # no time: both stamp "now", a few microseconds apart
        assert abs(ours.time - reference.time) < timedelta(seconds=5)
        ours = replace(ours, time=reference.time)
    assert ours == reference


@pytest.mark.parametrize("headers", [[], [("ce_id", b"1")], BASE[1:],
                                     [*BASE[:-1], ("ce_specversion", b"0.3")]])
def test_a_record_that_is_no_cloudevent_is_a_value_error(headers: list[tuple[str, bytes]]
                                                         ) -> None:
    with pytest.raises(ValueError, match="not a CloudEvent"):
        decode(b"iris", VALUE, headers)


def test_the_shared_decoder_decodes_each_record_once_for_every_lane() -> None:
    shared = SharedDecoder(size=2)
    first = shared(b"iris", VALUE, tuple(BASE))
    again = shared(b"iris", bytes(bytearray(VALUE)), list(BASE))  # other objects, same bytes
    assert again is first and shared.hits == 1
    other = shared(b"iris", b'{"model_name": "iris", "version": "4"}', tuple(BASE))
    assert other.version == "4" and shared.hits == 1
    shared(b"wine", VALUE, tuple(BASE))  # a third record: the oldest entry goes
    assert shared(b"iris", VALUE, tuple(BASE)) is not first
    for _ in range(2):  # a refused record is refused each time, never kept
        with pytest.raises(ValueError):
            shared(b"iris", b"[]", tuple(BASE))
