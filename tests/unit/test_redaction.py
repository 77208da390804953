"""One redaction for every place text leaves the hub: URLs, free text, secret-looking names,
the API's masking, log lines (structlog and the standard library), configuration errors,
every ``HubError`` and every outcome detail."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

from hub import logging as hub_logging
from hub.config_load import describe_errors
from hub.errors import BusError, ConfigError
from hub.outcome import Outcome
from hub.redaction import (
    MASK,
    is_secret_key,
    mask,
    redact_event_dict,
    redact_text,
    redact_url,
    unmask,
    url_origin,
)


@pytest.mark.parametrize(("url", "shown"), [
    ("https://u:p@h.example/hook?token=abc&x=1#frag",
     "https://***@h.example/hook?token=***&x=***#***"),
    ("https://ghp_abc@github.example/repo.git", "https://***@github.example/repo.git"),
    ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
    ("https://h.example/a?sig=s1&empty=&flag", "https://h.example/a?sig=***&empty=&***"),
    ("postgresql+psycopg://hub:pw@db:5432/mlflow", "postgresql+psycopg://***@db:5432/mlflow"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("sqlite:////abs/path.db?mode=ro", "sqlite:////abs/path.db?mode=***"),
    ("embedded", "embedded"),
    ("localhost:9092", "localhost:9092"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing


secretish = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~",
                    min_size=6, max_size=20)


@given(user=secretish, password=secretish, values=st.lists(secretish, min_size=1, max_size=3),
       fragment=secretish)
def test_no_credential_query_value_or_fragment_survives(user: str, password: str,
                                                        values: list[str],
                                                        fragment: str) -> None:
    around = "https://h.example/p failed: POST , giving up ValueError('')"
    assume(all(s not in around for s in (user, password, *values, fragment)))
    query = "&".join(f"k{i}={v}" for i, v in enumerate(values))
    url = f"https://{user}:{password}@h.example/p?{query}#{fragment}"
    for text in (redact_url(url), redact_text(f"failed: POST {url}, giving up"),
                 redact_text(repr(ValueError(url)))):
        for secret in (user, password, *values, fragment):
            assert secret not in text.replace("h.example/p", "")


def test_redact_text_hides_urls_token_shapes_and_bearer_credentials() -> None:
    text = ("POST https://u:pw1@h.example/x?api_key=k1 failed; InvalidURL('http://a.example/"
            "?sig=s1') with whsec_c2VjcmV0 xoxb-123-abc ghp_abcdef github_pat_11AB_cd "
            "and Authorization: Bearer tok.en-1")
    shown = redact_text(text)
    for secret in ("pw1", "k1", "s1", "c2VjcmV0", "123-abc", "abcdef", "11AB_cd", "tok.en-1"):
        assert secret not in shown
    assert "https://***@h.example/x?api_key=***" in shown and "Bearer ***" in shown
    assert redact_text("no secrets: host:9092, sqlite:///m.db") == \
        "no secrets: host:9092, sqlite:///m.db"


def test_url_origin_is_scheme_host_and_port() -> None:
    assert url_origin("https://u:p@h.example/T0/B1/s3cr3t?token=abc#f") == "https://h.example"
    assert url_origin("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080"
    assert url_origin("http://[::1]:9/x") == "http://[::1]:9"


@pytest.mark.parametrize("name", [
    "secret", "sasl_password", "mlflow_secret", "token", "access_token", "X-Auth-Token",
    "Authorization", "api_key", "X-Api-Key", "apikey", "credentials", "private_key",
    "webhook_url", "headers", "Cookie", "key", "sig", "signature", "pwd", "auth",
    "X-Amz-Signature",
])
def test_secret_looking_names(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize("name", [
    "url", "name", "subscription", "signature_format", "idempotency_key", "event_id",
    "channel", "timeout_s", "api_base_url", "keys", "monkey", "detail", "error",
])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_key(name)


def test_mask_hides_by_name_everywhere_and_redacts_urls_in_any_string() -> None:
    shown = mask({
        "url": "https://u:p1@h.example/x?token=t1", "api_key": "k1", "enabled": True,
        "nested": {"X-Api-Key": "k2", "note": "see https://h.example/?code=c1", "n": 3},
        "headers": {"X-Team": "ml", "Unset": None}, "list": ["https://h.example/#f1"],
        "pydantic": "**********", "empty": "", "none": None,
    })
    assert shown == {
        "url": "https://***@h.example/x?token=***", "api_key": MASK, "enabled": True,
        "nested": {"X-Api-Key": MASK, "note": "see https://h.example/?code=***", "n": 3},
        "headers": {"X-Team": MASK, "Unset": None}, "list": ["https://h.example/#***"],
        "pydantic": MASK, "empty": "", "none": None,
    }


def test_unmask_keeps_what_a_client_echoed_and_takes_what_it_changed() -> None:
    stored = {"url": "https://u:p@h.example/x?token=t", "secret": "s", "n": 1}
    assert unmask(mask(stored), stored) == stored
    assert unmask({**mask(stored), "url": "https://other.example/"}, stored)["url"] == \
        "https://other.example/"
    assert unmask({"secret": "***"}, {}) == {"secret": "***"}


# --- logs -----------------------------------------------------------------------------------


def test_the_log_processor_masks_by_name_and_redacts_values() -> None:
    class Thing:
        def __str__(self) -> str:
            return "at https://u:pw2@h.example/?k=v2"

    out = redact_event_dict(None, "info", {
        "event": "delivery.attempt", "sasl_password": "pw1", "auth": True, "attempt": 2,
        "error": "POST https://h.example/x?token=t1 failed", "thing": Thing(),
        "checks": {"broker": {"token": "t3", "ok": False}}, "exc_info": True,
    })
    assert out == {
        "event": "delivery.attempt", "sasl_password": MASK, "auth": True, "attempt": 2,
        "error": "POST https://h.example/x?token=*** failed",
        "thing": "at https://***@h.example/?k=***",
        "checks": {"broker": {"token": MASK, "ok": False}}, "exc_info": True,
    }


@pytest.fixture
def configured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The CLI's logging set-up, writing to a buffer; undone afterwards."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    root = logging.getLogger()
    before = list(root.handlers), {h: list(h.filters) for h in root.handlers}
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    hub_logging.configure("DEBUG", "json")
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        for handler in root.handlers:
            if handler not in before[0]:
                root.removeHandler(handler)
            else:
                handler.filters = before[1][handler]


def test_configured_logs_redact_fields_tracebacks_and_standard_library_records(
        configured_logs: io.StringIO) -> None:
    log = structlog.get_logger("test")
    log.info("x.ok", token="t1", url="https://u:pw1@h.example/?sig=s1")
    try:
        raise ValueError("bad URL https://u:pw2@h.example/?api_key=k2")
    except ValueError:
        log.exception("x.failed")
    text = configured_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["event"] for line in lines] == ["x.ok", "x.failed"]
    assert "ValueError" in lines[1]["exception"]
    for secret in ("t1", "pw1", "s1", "pw2", "k2"):
        assert secret not in text

    record = logging.LogRecord("aiokafka", logging.ERROR, __file__, 1,
                               "connect %s failed", ("https://u:pw3@h.example/",), None)
    stdlib_filter = hub_logging.RedactingFilter()
    assert stdlib_filter.filter(record)
    assert record.getMessage() == "connect https://***@h.example/ failed"
    root_filters = [f for h in logging.getLogger().handlers for f in h.filters]
    assert any(isinstance(f, hub_logging.RedactingFilter) for f in root_filters)


# --- errors and outcomes ---------------------------------------------------------------------


def test_every_hub_error_and_outcome_is_redacted_when_made() -> None:
    error = ConfigError("cannot use https://u:pw1@h.example/?token=t1", field="x.url",
                        hint="not https://h.example/?sig=s1 either")
    assert "pw1" not in str(error) and "t1" not in str(error) and "s1" not in str(error)
    assert str(error).startswith("x.url: cannot use https://***@h.example/?token=***")
    assert "t2" not in str(BusError("kafka at https://h.example/?token=t2 refused"))
    outcome = Outcome.retry("InvalidUrlClientError('http://h.example/x?api_key=k3')")
    assert "k3" not in outcome.detail and "api_key=***" in outcome.detail


class _Options(BaseModel):
    url: str
    timeout_s: float
    password: SecretStr
    headers: dict[str, int]


def test_config_errors_echo_values_redacted_and_never_under_a_secret_name() -> None:
    with pytest.raises(ValidationError) as info:
        _Options.model_validate({"url": 1, "timeout_s": "https://u:pw1@h.example/?token=t1",
                                 "password": 5, "headers": {"X-Api-Key": "k1"}})
    lines, first = describe_errors(info.value, "subscriptions.0")
    text = "\n".join(lines)
    assert first == "subscriptions.0.url"
    assert "(got 'https://***@h.example/?token=***')" in text  # timeout_s: echoed, redacted
    for secret in ("pw1", "t1", "k1"):
        assert secret not in text
    assert "subscriptions.0.password" in text and "subscriptions.0.headers.X-Api-Key" in text
