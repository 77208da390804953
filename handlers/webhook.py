"""The ``webhook`` handler: one signed HTTP POST per event.

Bodies and signatures come from :mod:`hub.signing` (``signature_format``: ``standard``,
``mlflow`` or ``databricks``). ``webhook-id`` is the event id, identical on every retry, so
receivers can drop duplicates; the timestamp is the time of the attempt. Redirects are not
followed (a redirect could lead past the SSRF guard). The hub owns retries: each call makes
one attempt and answers with an outcome:

==================================  ========  ===========================================
Response                            Outcome   Final?
==================================  ========  ===========================================
2xx                                 delivered yes
410 Gone                            gone      yes — the endpoint asked to stop; surfaced
429, 503                            retry     no — ``Retry-After`` (seconds or date) honoured
408, 425, 500, 502, 504, other 5xx  retry     no
timeout, connection error, TLS      retry     no
3xx (redirects are not followed)    failed    yes — configure the final URL
other 4xx (400, 401, 403, 404,      failed    yes — a request the endpoint rejects will
405, 413, 422, ...)                                 not succeed on retry
refused by the SSRF guard           failed    yes — see ``delivery.allowed_networks``
==================================  ========  ===========================================

Final outcomes other than ``delivered`` go to the dead-letter topic.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import ClassVar

import aiohttp
import structlog
from pydantic import ConfigDict, Field, HttpUrl, SecretStr, ValidationInfo, field_validator

from hub.errors import PluginError
from hub.events import Event
from hub.http import RedirectRefused, find_refusal, parse_retry_after
from hub.outcome import Outcome, Status
from hub.plugins import HandlerContext, HandlerOptions
from hub.redaction import url_origin
from hub.signing import (
    SignatureFormat,
    check_standard_secret,
    databricks_headers,
    mlflow_headers,
    standard_headers,
    webhook_body,
)

log = structlog.get_logger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
RESERVED_HEADERS = frozenset({
    "content-type", "content-length", "host", "transfer-encoding",
    "webhook-id", "webhook-timestamp", "webhook-signature",
    "x-mlflow-delivery-id", "x-mlflow-timestamp", "x-mlflow-signature",
    "x-databricks-signature",
})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SNIPPET_BYTES = 2048
_SNIPPET_CHARS = 200


class WebhookOptions(HandlerOptions):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # secrets, headers
    env_options = ("secret", "headers")

    url: HttpUrl
    signature_format: SignatureFormat = "standard"
    secret: SecretStr | list[SecretStr] | None = None
    """``standard``: a ``whsec_`` secret, or a list of them while rotating keys (one
    signature each). ``mlflow`` / ``databricks``: one plain string, used as given. May be
    ``${ENV_NAME}`` in the configuration file."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra request headers; in the configuration file, ``${ENV_NAME}`` in a value is
    replaced from the environment when the options are validated."""
    timeout_s: float = Field(10, gt=0)
    verify_tls: bool = True

    @field_validator("secret")
    @classmethod
    def _check_secret(
        cls, value: SecretStr | list[SecretStr] | None, info: ValidationInfo
    ) -> SecretStr | list[SecretStr] | None:
        secrets = [] if value is None else value if isinstance(value, list) else [value]
        if any(not s.get_secret_value() for s in secrets):
            raise ValueError("a secret is empty; leave 'secret' out to send unsigned requests")
        fmt = info.data.get("signature_format", "standard")
        if fmt == "standard":
            for index, s in enumerate(secrets):
                try:
                    check_standard_secret(s.get_secret_value())
                except ValueError as exc:
                    where = f"secret #{index + 1}: " if isinstance(value, list) else ""
                    raise ValueError(f"{where}{exc}") from None
        elif len(secrets) > 1:
            raise ValueError(f"signature_format {fmt!r} takes one secret; several secrets "
                             "(key rotation) need signature_format 'standard'")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the handler and cannot be "
                                 "overridden")
            if any(c in value.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"header {name!r} contains a line break or NUL character "
                                 "(check its environment variable)")
        return headers

    def secret_values(self) -> list[str]:
        if self.secret is None:
            return []
        items = self.secret if isinstance(self.secret, list) else [self.secret]
        return [s.get_secret_value() for s in items]


@functools.lru_cache(maxsize=64)
def _phrase(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def classify(status: int, headers: Mapping[str, str], *, now: datetime,
             latency_s: float | None = None) -> Outcome:
    """The outcome of a response status (see the module table). Pure: ``now`` is only
    needed to turn a ``Retry-After`` HTTP-date into seconds."""
    text = _phrase(status)
    if 200 <= status < 300:
        return Outcome.delivered(text, http_status=status, latency_s=latency_s)
    if status == 410:
        return Outcome.gone(f"{text}: the endpoint asked to stop receiving deliveries",
                            http_status=status, latency_s=latency_s)
    if status in RETRY_AFTER_STATUSES:
        after = parse_retry_after(headers.get("Retry-After"), now)
        return Outcome.retry(text, http_status=status, retry_after_s=after,
                             latency_s=latency_s)
    if status in RETRY_STATUSES or 500 <= status < 600:
        return Outcome.retry(text, http_status=status, latency_s=latency_s)
    if 300 <= status < 400:
        return Outcome.failed(f"{text}: redirects are not followed; configure the final URL",
                              http_status=status, latency_s=latency_s)
    return Outcome.failed(text, http_status=status, latency_s=latency_s)


def _snippet(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text[:_SNIPPET_CHARS] + ("…" if len(text) > _SNIPPET_CHARS else "")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookHandler:
    Options: ClassVar[type[WebhookOptions]] = WebhookOptions

    def __init__(self, *, name: str, options: WebhookOptions, context: HandlerContext) -> None:
        if context.http_session is None:
            raise PluginError("the webhook handler needs HandlerContext.http_session")
        self.name = name
        self._options = options
        self._url = str(options.url)
        self._where = url_origin(self._url)  # credentials, path and query may be secrets
        self._secrets = options.secret_values()
        self._extra = {k: v.get_secret_value() for k, v in options.headers.items()}
        self._session = context.http_session
        self._timeout = aiohttp.ClientTimeout(total=options.timeout_s)
        self._now = _utcnow

    def request_headers(self, event: Event, body: bytes, now: datetime) -> dict[str, str]:
        fmt = self._options.signature_format
        signed: dict[str, str]
        if fmt == "mlflow":
            secret = self._secrets[0] if self._secrets else None
            signed = mlflow_headers(secret, event.id, int(now.timestamp()), body)
        elif fmt == "databricks":
            signed = databricks_headers(self._secrets[0] if self._secrets else None, body)
        else:
            signed = standard_headers(self._secrets, event.id, now, body)
        return {**self._extra, "Content-Type": "application/json", "webhook-id": event.id,
                **signed}

    async def deliver(self, event: Event) -> Outcome:
        now = self._now()
        body = webhook_body(event, self._options.signature_format, webhook_id=self.name)
        headers = self.request_headers(event, body, now)
        session: aiohttp.ClientSession = self._session(verify_tls=self._options.verify_tls)
        started = time.monotonic()
        try:
            async with session.post(self._url, data=body, headers=headers,
                                    timeout=self._timeout, allow_redirects=False) as resp:
                raw = await resp.content.read(_SNIPPET_BYTES)
                status, answer = resp.status, resp.headers
        except TimeoutError:
            return Outcome.retry(f"no response within {self._options.timeout_s:g} s",
                                 latency_s=time.monotonic() - started)
        except aiohttp.ClientError as exc:
            return self._connection_outcome(exc, time.monotonic() - started)
        outcome = classify(status, answer, now=now, latency_s=time.monotonic() - started)
        if outcome.status is not Status.DELIVERED and raw:
            outcome = replace(outcome, detail=f"{outcome.detail}: {_snippet(raw)}")
        return outcome

    def _connection_outcome(self, exc: aiohttp.ClientError, latency: float) -> Outcome:
        refusal = find_refusal(exc)
        if isinstance(refusal, RedirectRefused):  # an answer, not a refused connection
            return Outcome.failed(str(refusal), http_status=refusal.status, latency_s=latency)
        if refusal is not None:
            log.warning("webhook.refused", subscription=self.name, url=self._where,
                        address=refusal.address)
            return Outcome.failed(f"{self._where}: {refusal}", latency_s=latency)
        if isinstance(exc, aiohttp.InvalidURL):
            why = getattr(exc, "description", None) or "cannot be requested"
            return Outcome.failed(f"invalid URL {self._where}: {why}", latency_s=latency)
        return Outcome.retry(f"{type(exc).__name__}: {exc}", latency_s=latency)

    async def aclose(self) -> None:
        return None  # the session belongs to the hub

    def __repr__(self) -> str:
        return f"WebhookHandler({self.name!r}, {self._where!r})"


__all__ = [
    "WebhookHandler",
    "WebhookOptions",
    "classify",
]
