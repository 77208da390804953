"""Pure parts of the admin API: secret masking, echoing masked secrets back, merge patch,
body parsing, the test-send sample event."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.console import describe
from handlers.deploy_targets import deploy_request, record
from handlers.slack_messages import build_message
from hub.admin.bodies import ApiError, mask, merge_patch, parse_object, sample_event, unmask, view
from hub.config import SubscriptionConfig
from hub.plugins import TEST_FLAG, is_test
from hub.signing import webhook_body
from tests.support.schema import schema_errors

SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy0xMjM0NTY3ODkw"


def test_view_masks_every_secret_and_keeps_the_rest() -> None:
    sub = SubscriptionConfig(name="hook", handler="webhook",
                             url="https://user:pw-123@example.com/hook?x=1&token=t-9#f",
                             secret=[SECRET, SECRET],
                             headers={"Authorization": "Bearer tok-123", "X-Team": "ml"})
    shown = view(sub, "runtime", "d")
    text = json.dumps(shown)
    for secret in (SECRET, "tok-123", "pw-123", "user:", "t-9"):
        assert secret not in text
    assert shown["secret"] == ["***", "***"]
    assert shown["headers"] == {"Authorization": "***", "X-Team": "***"}
    assert shown["url"] == "https://***@example.com/hook?x=***&token=***#***"
    assert (shown["source"], shown["description"], shown["timeout_s"]) == ("runtime", "d", 10)


def test_view_masks_by_key_when_the_handler_is_unknown() -> None:
    sub = SubscriptionConfig(name="x", handler="no-such-handler", api_token="t-1",
                             nested={"password": "p-1", "ok": 1})
    shown = view(sub, "config")
    assert shown["api_token"] == "***" and shown["nested"] == {"password": "***", "ok": 1}


def test_unmask_puts_stored_secrets_back() -> None:
    stored = {"secret": SECRET, "headers": {"Authorization": "Bearer t"}, "url": "http://a"}
    sent = {"secret": "***", "headers": {"Authorization": "***", "X-New": "v"}, "url": "http://b"}
    assert unmask(sent, stored) == {"secret": SECRET, "url": "http://b",
                                    "headers": {"Authorization": "Bearer t", "X-New": "v"}}
    assert unmask({"secret": "***"}, {}) == {"secret": "***"}  # nothing to keep: stays


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert merge_patch(target, {"c": ["x"]}) == {"a": "b", "c": ["x"]}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c,
                                                                        max_size=3)))
def test_masking_never_shows_a_value_under_a_secret_key(value: object) -> None:
    shown = json.dumps(mask({"secret": value, "headers": {"h": value}}))
    if isinstance(value, str) and len(value) > 3:
        assert json.dumps(value) not in shown


@pytest.mark.parametrize("raw", [b"", b"[1]", b"nope", b"NaN", b"[" * 100_000, b"\xff\xfe",
                                 b'"text"'])
def test_parse_object_refuses_anything_but_an_object(raw: bytes) -> None:
    with pytest.raises(ApiError) as info:
        parse_object(raw)
    assert info.value.status == 400
    assert parse_object(b" ", empty={}) == {}


def test_a_test_send_is_marked_wherever_it_shows_and_a_real_event_is_not() -> None:
    sample = sample_event(SubscriptionConfig(name="s", handler="console", models=["iris"]),
                          "http://mlflow")
    real = replace(sample, id="evt-1", data={k: v for k, v in sample.data.items()
                                             if k != TEST_FLAG})
    assert is_test(sample) and sample.data[TEST_FLAG] is True and not is_test(real)

    assert describe(sample).startswith("[test] ") and describe(sample)[7:] == describe(real)
    for fmt in ("standard", "mlflow"):
        assert json.loads(webhook_body(sample, fmt))["data"][TEST_FLAG] is True
        assert TEST_FLAG not in json.loads(webhook_body(real, fmt))["data"]
    databricks = json.loads(webhook_body(sample, "databricks", webhook_id="s"))
    assert databricks["text"] == "[test] " + json.loads(
        webhook_body(real, "databricks", webhook_id="s"))["text"]
    slack, plain = build_message(sample, ui_url=None, templates={}), build_message(
        real, ui_url=None, templates={})
    assert slack.text == plain.text.replace(" ", " [test] ", 1)
    assert slack.blocks[0]["text"]["text"] == plain.blocks[0]["text"]["text"].replace(
        " ", " [test] ", 1)
    templated = build_message(sample, ui_url=None, templates={"*": "{model} v{version}"})
    assert templated.text == "[test] iris v1"
    # still a valid deploy request (the id says test-...; the v1 schema has no test field)
    request = record(deploy_request("s", sample))
    assert request["event_id"].startswith("test-")
    assert schema_errors(request) == []
