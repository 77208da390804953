"""The webhook handler's status table, pure: which HTTP answers are delivered, retried,
final failures, or Gone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.webhook import classify
from hub.outcome import Status

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "expected"), [
    (200, Status.DELIVERED), (201, Status.DELIVERED), (202, Status.DELIVERED),
    (204, Status.DELIVERED), (299, Status.DELIVERED),
    (410, Status.GONE),
    (429, Status.RETRY), (503, Status.RETRY), (408, Status.RETRY), (425, Status.RETRY),
    (500, Status.RETRY), (502, Status.RETRY), (504, Status.RETRY), (507, Status.RETRY),
    (599, Status.RETRY),
    (301, Status.FAILED), (302, Status.FAILED), (307, Status.FAILED), (308, Status.FAILED),
    (400, Status.FAILED), (401, Status.FAILED), (403, Status.FAILED), (404, Status.FAILED),
    (405, Status.FAILED), (413, Status.FAILED), (422, Status.FAILED), (100, Status.FAILED),
    (600, Status.FAILED),
])
def test_classify(status: int, expected: Status) -> None:
    outcome = classify(status, {}, now=NOW)
    assert outcome.status is expected
    assert outcome.http_status == status
    assert outcome.final is (expected is not Status.RETRY)
