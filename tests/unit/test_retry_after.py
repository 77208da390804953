"""``Retry-After``, pure: seconds or an HTTP date, read against an injected clock; honoured
where the answer is a retry that may carry one (429, 503). What the retry schedule does with
it: test_retry_schedule.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.webhook import classify
from hub.http import parse_retry_after

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=10**7))
def test_retry_after_seconds_and_dates(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW) == seconds
    date = format_datetime(NOW + timedelta(seconds=seconds), usegmt=True)
    assert parse_retry_after(date, NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "inf", "Mon, 99 Foo 2026"])
def test_retry_after_unusable(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_date_in_the_past_is_zero() -> None:
    past = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(past, NOW) == 0


def test_classify_honours_retry_after_on_429_and_503_only() -> None:
    assert classify(429, {"Retry-After": "7"}, now=NOW).retry_after_s == 7
    date = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert classify(503, {"Retry-After": date}, now=NOW).retry_after_s == 90
    assert classify(500, {"Retry-After": "7"}, now=NOW).retry_after_s is None
    assert "redirect" in classify(302, {}, now=NOW).detail
    assert "410" in classify(410, {}, now=NOW).detail
