"""The Slack handler's pure decisions: options validation (exactly one destination, secrets
hidden) and Slack's answers → outcomes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from handlers.slack import SlackOptions, classify
from hub.outcome import Status

# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "says"), [
    ({}, "set webhook_url .* or token \\+ channel"),
    ({"webhook_url": "https://hooks.slack.com/services/T/B/X", "token": "xoxb-1",
      "channel": "#c"}, "not both"),
    ({"token": "xoxb-1"}, "channel is required with token"),
    ({"channel": "#c"}, "token is required with channel"),
    ({"webhook_url": "ftp://x/y"}, "webhook_url must be an http"),
    ({"token": "xoxb-1", "channel": "#c", "api_base_url": "nope"}, "api_base_url"),
    ({"token": "xoxb-1", "channel": "#c", "colour": "red"}, "Extra inputs"),
])
def test_options_need_exactly_one_destination(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        SlackOptions.model_validate(options)


def test_options_accept_each_destination_and_hide_secrets() -> None:
    hook = SlackOptions.model_validate({"webhook_url": "https://hooks.slack.com/services/T/B/X"})
    bot = SlackOptions.model_validate({"token": "xoxb-secret", "channel": "#models",
                                       "api_base_url": "http://127.0.0.1:1/api"})
    assert bot.api_base_url == "http://127.0.0.1:1/api/"
    assert "xoxb-secret" not in repr(bot) and "/T/B/X" not in repr(hook)


# --- answers → outcomes --------------------------------------------------------------------


@pytest.mark.parametrize(("status", "error", "expected"), [
    (200, "", Status.DELIVERED),
    (204, "", Status.DELIVERED),
    (429, "ratelimited", Status.RETRY),
    (200, "ratelimited", Status.RETRY),
    (500, "", Status.RETRY),
    (503, "service_unavailable", Status.RETRY),
    (500, "rollup_error", Status.RETRY),
    (200, "internal_error", Status.RETRY),
    (408, "", Status.RETRY),
    (200, "thread_not_found", Status.RETRY),
    (410, "channel_is_archived", Status.GONE),
    (200, "channel_not_found", Status.FAILED),
    (200, "invalid_auth", Status.FAILED),
    (200, "not_authed", Status.FAILED),
    (200, "account_inactive", Status.FAILED),
    (200, "token_revoked", Status.FAILED),
    (200, "channel_is_archived", Status.FAILED),
    (200, "is_archived", Status.FAILED),
    (200, "not_in_channel", Status.FAILED),
    (200, "invalid_blocks", Status.FAILED),
    (400, "invalid_payload", Status.FAILED),
    (404, "channel_not_found", Status.FAILED),
    (404, "no_service", Status.FAILED),
    (403, "invalid_token", Status.FAILED),
    (403, "action_prohibited", Status.FAILED),
    (400, "something_new", Status.FAILED),
    (200, "something_new", Status.FAILED),
])
def test_classify(status: int, error: str, expected: Status) -> None:
    outcome = classify(status, error, retry_after_s=None)
    assert outcome.status is expected
    assert outcome.http_status == status
    if expected is not Status.DELIVERED:
        assert error in outcome.detail


def test_classify_keeps_retry_after() -> None:
    assert classify(429, "ratelimited", 7.0).retry_after_s == 7.0
    assert classify(200, "ok", None).status is Status.DELIVERED
