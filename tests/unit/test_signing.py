"""Signed webhook deliveries, pure: signatures (checked by independent implementations),
bodies, webhook options and their secrets. ``Retry-After``: test_retry_after.py; the
status table: test_webhook_status.py; the SSRF address policy: test_ssrf.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow.webhooks.delivery import _generate_hmac_signature
from mlflow.webhooks.types import ModelVersionCreatedPayload, RegisteredModelCreatedPayload
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from handlers.webhook import WebhookOptions
from hub.envrefs import CONTEXT_KEY
from hub.events import Event
from hub.redaction import url_origin
from hub.signing import (
    Reason,
    SignatureError,
    check_standard_secret,
    databricks_body,
    databricks_headers,
    mlflow_body,
    mlflow_headers,
    standard_body,
    standard_headers,
    summary,
    verify_mlflow,
    webhook_body,
)
from hub.testing import make_event

secret_keys = st.binary(min_size=1, max_size=64).map(
    lambda b: "whsec_" + base64.b64encode(b).decode()
)
msg_ids = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and s)
bodies = st.text(max_size=300).map(str.encode)
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def event(type_: str = "model_version.stage_transitioned", **data: object) -> Event:
    base: dict[str, object] = {"model_name": "iris", "version": "3", "run_id": "r1",
                               "source": "models:/m-1", "from_stage": "None",
                               "to_stage": "Production", "tags": {"validated": "true"}}
    return Event(id="e-1", type=type_, model="iris", version="3", source="mlflow://x",
                 time=datetime(2026, 5, 1, 10, 30, 15, 123000, tzinfo=UTC),
                 data=data or base)


# --- standard webhooks ----------------------------------------------------------------------


@given(secret=secret_keys, msg_id=msg_ids, body=bodies,
       skew_s=st.integers(min_value=-200, max_value=200))
def test_standard_signature_verifies_with_the_library(
    secret: str, msg_id: str, body: bytes, skew_s: int
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=skew_s)
    headers = standard_headers([secret], msg_id, at, body)
    assert headers["webhook-id"] == msg_id
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    Webhook(secret).verify(body, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers, json_parse=False)


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


@given(a=secret_keys, b=secret_keys, other=secret_keys, body=bodies)
def test_two_secrets_each_verify_alone(a: str, b: str, other: str, body: bytes) -> None:
    headers = standard_headers([a, b], "msg_1", datetime.now(UTC), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(a).verify(body, headers, json_parse=False)
    Webhook(b).verify(body, headers, json_parse=False)
    if _key(other) not in (_key(a), _key(b)):
        with pytest.raises(WebhookVerificationError):
            Webhook(other).verify(body, headers, json_parse=False)


def test_standard_timestamp_from_a_non_utc_clock_is_the_same_instant() -> None:
    at = datetime.now(timezone(timedelta(hours=2)))
    headers = standard_headers(["whsec_" + base64.b64encode(b"k" * 24).decode()], "m", at, b"{}")
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    Webhook("whsec_" + base64.b64encode(b"k" * 24).decode()).verify(b"{}", headers)


def test_standard_without_secret_is_unsigned_and_naive_time_is_refused() -> None:
    assert "webhook-signature" not in standard_headers([], "m", NOW, b"{}")
    with pytest.raises(ValueError, match="timezone-aware"):
        standard_headers([], "m", datetime(2026, 1, 1), b"{}")


@pytest.mark.parametrize("bad", ["plainSECRETvalue", "whsec_", "whsec_bad-chars_SECRET",
                                 "whsec_A"])
def test_bad_standard_secrets_are_explained_without_echoing(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        check_standard_secret(bad)
    assert "'whsec_'" in str(err.value)
    if bad != "whsec_":
        assert bad not in str(err.value)


# --- MLflow ---------------------------------------------------------------------------------


def _mlflow_reference(secret: str, delivery_id: str, timestamp: int, payload: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.{payload.decode()}".encode()
    return "v1," + base64.b64encode(
        hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


@given(secret=st.text(min_size=1, max_size=40), delivery_id=msg_ids,
       timestamp=st.integers(min_value=0, max_value=2**33), payload=bodies)
def test_mlflow_signature_matches_mlflow_itself(
    secret: str, delivery_id: str, timestamp: int, payload: bytes
) -> None:
    headers = mlflow_headers(secret, delivery_id, timestamp, payload)
    assert headers["X-MLflow-Delivery-Id"] == delivery_id
    assert headers["X-MLflow-Timestamp"] == str(timestamp)
    expected = _mlflow_reference(secret, delivery_id, timestamp, payload)
    assert headers["X-MLflow-Signature"] == expected
    assert expected == _generate_hmac_signature(secret, delivery_id, str(timestamp),
                                                payload.decode())
    verify_mlflow(secret, {k.lower(): v for k, v in headers.items()}, payload,
                  now=timestamp + 10)


def test_verify_mlflow_says_why() -> None:
    headers = mlflow_headers("s3cret", "d-1", 1000, b'{"a":1}')

    def reason(secret: str = "s3cret", headers: dict[str, str] = headers,
               payload: bytes = b'{"a":1}', now: float = 1000.0) -> Reason:
        with pytest.raises(SignatureError) as err:
            verify_mlflow(secret, headers, payload, now=now)
        return err.value.reason

    assert reason(payload=b'{"a":2}') is Reason.BAD_SIGNATURE
    assert reason(secret="other") is Reason.BAD_SIGNATURE
    assert reason(now=1000.0 + 301) is Reason.STALE_TIMESTAMP
    assert reason(now=1000.0 - 301) is Reason.STALE_TIMESTAMP
    assert reason(headers={}) is Reason.MISSING_HEADER
    assert reason(headers={**headers, "X-MLflow-Timestamp": "yesterday"}) is Reason.BAD_TIMESTAMP
    assert reason(headers={**headers, "X-MLflow-Signature": "v1,ünïcode"}) is Reason.BAD_SIGNATURE
    verify_mlflow("s3cret", headers, b'{"a":1}', now=1000.0 + 299)
    assert mlflow_headers(None, "d", 1, b"{}").keys() == {"X-MLflow-Delivery-Id",
                                                           "X-MLflow-Timestamp"}


def test_mlflow_body_uses_mlflow_field_names() -> None:
    created = json.loads(mlflow_body(event(
        "model_version.created", model_name="iris", version="3", run_id="r1",
        source="models:/m-1", tags={"a": "b"}, description="d", status="READY")))
    assert created["entity"] == "model_version" and created["action"] == "created"
    assert created["timestamp"] == "2026-05-01T10:30:15.123000Z"
    assert created["data"].keys() == ModelVersionCreatedPayload.__annotations__.keys()
    assert created["data"]["name"] == "iris" and created["data"]["tags"] == {"a": "b"}

    model = json.loads(mlflow_body(event("registered_model.created", model_name="iris")))
    assert model["data"].keys() == RegisteredModelCreatedPayload.__annotations__.keys()

    tag = json.loads(mlflow_body(event("model_version_tag.set", key="k", value="v",
                                       previous_value=None)))
    assert (tag["entity"], tag["action"]) == ("model_version_tag", "set")
    assert tag["data"] == {"name": "iris", "version": "3", "key": "k", "value": "v"}

    alias = json.loads(mlflow_body(event("model_version_alias.deleted", alias="champion")))
    assert alias["data"] == {"name": "iris", "alias": "champion"}

    other = json.loads(mlflow_body(event()))
    assert (other["entity"], other["action"]) == ("model_version", "stage_transitioned")
    assert other["data"]["to_stage"] == "Production" and other["data"]["name"] == "iris"


def test_mlflow_body_of_prompt_events_is_mlflows_prompt_payload() -> None:
    """Each prompt event MLflow also sends has exactly the fields of MLflow's payload class."""
    from mlflow.webhooks.types import EVENT_TO_PAYLOAD_CLASS

    data = {"model_name": "iris", "version": "3", "template": "Hi {{x}}", "tags": {"a": "b"},
            "description": None, "key": "k", "value": "v", "alias": "prod",
            "run_id": None, "source": "prompt-template"}
    prompts = [(e.value, a.value, cls) for (e, a), cls in EVENT_TO_PAYLOAD_CLASS.items()
               if e.value.startswith("prompt")]
    assert len(prompts) == 8
    for entity, action, cls in prompts:
        body = json.loads(mlflow_body(event(f"{entity}.{action}", **data)))
        assert (body["entity"], body["action"]) == (entity, action)
        assert body["data"].keys() == cls.__annotations__.keys(), (entity, action)
        assert body["data"]["name"] == "iris"
    created = json.loads(mlflow_body(event("prompt_version.created", **data)))
    assert created["data"]["template"] == "Hi {{x}}"


def test_summary_says_prompt_for_prompt_events() -> None:
    ev = event("prompt_alias.created", alias="prod", version="3")
    assert summary(ev) == "Prompt 'iris' version 3: alias 'prod' created."


# --- Databricks and the standard body --------------------------------------------------------


@given(secret=st.text(min_size=1, max_size=40), body=st.binary(max_size=300))
def test_databricks_signature_is_hex_hmac_of_the_body(secret: str, body: bytes) -> None:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert databricks_headers(secret, body) == {"X-Databricks-Signature": expected}
    assert databricks_headers(None, body) == {}


def test_databricks_body_fields() -> None:
    body = json.loads(databricks_body(event(), "sub-1"))
    assert body == {
        "event": "MODEL_VERSION_TRANSITIONED_STAGE", "webhook_id": "sub-1",
        "event_timestamp": 1777631415123, "model_name": "iris", "version": "3",
        "to_stage": "Production", "from_stage": "None",
        "tags": [{"key": "validated", "value": "true"}],
        "text": "Registered model 'iris' version 3 transitioned from None to Production.",
    }
    tag = json.loads(databricks_body(event("model_version_tag.set", key="k", value="v"), "s"))
    assert tag["event"] == "MODEL_VERSION_TAG_SET"
    assert tag["tags"] == [{"key": "k", "value": "v"}]
    alias = json.loads(databricks_body(event("model_version_alias.created", alias="champ"), "s"))
    assert alias["event"] == "MODEL_VERSION_ALIAS_CREATED"
    assert "champ" in alias["text"]


def test_standard_body_has_exactly_type_timestamp_data() -> None:
    ev = event()
    body = json.loads(standard_body(ev))
    assert body == {"type": ev.type, "timestamp": "2026-05-01T10:30:15.123000Z", "data": ev.data}
    assert webhook_body(ev, "standard") == standard_body(ev)
    assert webhook_body(ev, "mlflow") == mlflow_body(ev)
    assert webhook_body(ev, "databricks", webhook_id="w") == databricks_body(ev, "w")


# --- webhook options --------------------------------------------------------------------------

KEY = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()


def test_options_accept_one_or_several_whsec_secrets() -> None:
    one = WebhookOptions.model_validate({"url": "https://example.com/h", "secret": KEY})
    two = WebhookOptions.model_validate({"url": "https://example.com/h", "secret": [KEY, KEY]})
    assert one.secret_values() == [KEY] and two.secret_values() == [KEY, KEY]
    assert KEY not in repr(one) and KEY not in repr(two)
    assert one.timeout_s == 10 and one.verify_tls and one.signature_format == "standard"


@pytest.mark.parametrize(("options", "message"), [
    ({"secret": "plainSECRET"}, "whsec_"),
    ({"secret": ""}, "empty"),
    ({"secret": ["plainSECRET", "x"], "signature_format": "mlflow"}, "one secret"),
    ({"headers": {"webhook-signature": "x"}}, "cannot be overridden"),
    ({"headers": {"Bad Header": "x"}}, "not a valid HTTP header name"),
    ({"url": "ftp://example.com"}, "URL"),
    ({"timeout_s": 0}, "greater than 0"),
    ({"method": "GET"}, "Extra inputs"),
])
def test_options_errors_are_clear(options: dict[str, object], message: str) -> None:
    data: dict[str, object] = {"url": "https://example.com/h", **options}
    with pytest.raises(ValidationError) as err:
        WebhookOptions.model_validate(data)
    assert message in str(err.value)
    assert "plainSECRET" not in str(err.value)


def test_plain_secret_is_fine_for_mlflow_and_databricks() -> None:
    for fmt in ("mlflow", "databricks"):
        opts = WebhookOptions.model_validate(
            {"url": "https://example.com/h", "secret": "plain", "signature_format": fmt})
        assert opts.secret_values() == ["plain"]


def test_secret_and_headers_resolve_the_environment_of_the_configuration() -> None:
    data = {"url": "https://example.com/h", "secret": ["${KEY_A}", KEY],
            "headers": {"Authorization": "Bearer ${TOKEN}", "X-Static": "v"}}
    opts = WebhookOptions.model_validate(
        data, context={CONTEXT_KEY: {"TOKEN": "t0k", "KEY_A": KEY}})
    assert opts.secret_values() == [KEY, KEY]
    assert {k: v.get_secret_value() for k, v in opts.headers.items()} == {
        "Authorization": "Bearer t0k", "X-Static": "v"}
    with pytest.raises(ValidationError, match="line break"):
        WebhookOptions.model_validate(data, context={
            CONTEXT_KEY: {"TOKEN": "a\r\nX-Evil: 1", "KEY_A": KEY}})
    with pytest.raises(ValidationError) as err:
        WebhookOptions.model_validate(data, context={CONTEXT_KEY: {"TOKEN": "t0k"}})
    assert [e["loc"] for e in err.value.errors()] == [("secret", 0)]


def test_url_origin_drops_credentials_path_and_query() -> None:
    assert url_origin("https://u:p@h.example/T0/B1/s3cr3t?token=abc#f") == "https://h.example"
    assert url_origin("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080"


def test_verify_mlflow_refuses_absurd_headers_without_crashing() -> None:
    from hub.signing import SignatureError, verify_mlflow

    cases = [
        ({"X-MLflow-Delivery-Id": "d", "X-MLflow-Timestamp": "9" * 5000,
          "X-MLflow-Signature": "v1,x"}, "bad_timestamp"),
        ({"X-MLflow-Delivery-Id": "d", "X-MLflow-Timestamp": "100",
          "X-MLflow-Signature": "v1,\udcff"}, "bad_signature"),
    ]
    for headers, reason in cases:
        try:
            verify_mlflow("secret", headers, b"{}", now=100)
        except SignatureError as exc:
            assert exc.reason == reason
        else:
            raise AssertionError("must be refused")


def test_a_body_is_rendered_once_per_event_and_format() -> None:
    event = make_event(to_stage="Production")
    body = webhook_body(event, "standard")
    assert webhook_body(event, "standard") is body  # a second subscription: no new render
    assert webhook_body(event, "mlflow") == mlflow_body(event)
    assert webhook_body(event, "databricks", webhook_id="a") == databricks_body(event, "a")
    assert webhook_body(event, "databricks", webhook_id="b") == databricks_body(event, "b")
    changed = replace(event, data={**event.data, "to_stage": "Archived"})
    assert changed != event and b"Archived" in webhook_body(changed, "standard")
    assert webhook_body(event, "standard") is body and b"Archived" not in body
