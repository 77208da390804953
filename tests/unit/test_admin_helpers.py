"""Pure parts of the admin API: secret masking, echoing masked secrets back, merge patch,
body parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.admin_bodies import ApiError, mask, merge_patch, parse_object, unmask, view
from hub.config import SubscriptionConfig

SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy0xMjM0NTY3ODkw"


def test_view_masks_every_secret_and_keeps_the_rest() -> None:
    sub = SubscriptionConfig(name="hook", handler="webhook",
                             url="https://user:pw-123@example.com/hook?x=1",
                             secret=[SECRET, SECRET],
                             headers={"Authorization": "Bearer tok-123", "X-Team": "ml"})
    shown = view(sub, "runtime", "d")
    text = json.dumps(shown)
    for secret in (SECRET, "tok-123", "pw-123", "user:"):
        assert secret not in text
    assert shown["secret"] == ["***", "***"]
    assert shown["headers"] == {"Authorization": "***", "X-Team": "***"}
    assert shown["url"].startswith("https://example.com/hook")
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
