"""The ``slack`` handler: Block Kit messages through an incoming webhook or a bot token.

Configure either ``webhook_url`` (an incoming webhook) or ``token`` + ``channel`` (a bot
token and ``chat.postMessage``); ``api_base_url`` points the bot client elsewhere (tests).
Messages come from :mod:`handlers.slack_messages`; ``templates`` override them per event
type (:mod:`handlers.slack_templates`). Requests go through the hub's SSRF-guarded session;
proxies from the environment are not used. slack-sdk's own retries are off: the hub owns
retries, each call is one attempt.

**Pacing.** Per channel (per webhook URL), shared by all subscriptions of the process
posting to it: one request at a time, each starting ``min_interval_s`` (default 1 s) after
the previous one finished, so Slack sees arrivals at least that far apart. Deliveries queue
in arrival order (none are dropped); the queue is bounded by the hub's in-flight limit.
After a 429 the channel is blocked for ``Retry-After``: queued deliveries then return
``retry`` with the time left instead of waiting. The pacer and the thread map below live in
:mod:`handlers.slack_pacing`.

**Threads** (bot token, ``thread_by_version``): the first message for a model version starts
a thread; later events for that version reply in it (created → Staging → Production), with
``reply_broadcast`` optionally echoing replies to the channel. Model-level events are not
threaded; incoming webhooks cannot thread (Slack returns no message ``ts``). The map of
threads is an in-memory LRU (``max_threads`` versions) per worker process: after a restart,
or once a version is evicted, its next event starts a new thread.

=====================================================  ========  ==========================
Slack answer                                           Outcome   Why
=====================================================  ========  ==========================
HTTP 200 ``ok: true`` / webhook ``ok``                 delivered
HTTP 429, ``ratelimited``                              retry     ``Retry-After`` honoured
HTTP 5xx, 408, ``internal_error``, ``fatal_error``,    retry     transient
``service_unavailable``, ``request_timeout``,
``rollup_error``; timeouts, connection errors
``thread_not_found`` & co.                             retry     thread forgotten; the next
                                                                 attempt posts top-level
HTTP 410 (webhook: channel archived / removed)         gone      final, dead-lettered
``channel_not_found``, ``invalid_auth``,               failed    final: needs a person
``not_authed``, ``account_inactive``,                            (token, channel, app)
``token_revoked``, ``token_expired``,
``channel_is_archived``, ``is_archived``,
``not_in_channel``, ``missing_scope``,
``no_service``, ``invalid_token``,
``action_prohibited``, ... ; HTTP 403, 404
``invalid_blocks``, ``invalid_payload``, ``no_text``,  failed    final: our payload is
``msg_too_long``, ``invalid_arguments``, ...                     wrong; retrying won't help
other 4xx, other ``ok: false`` errors                  failed    final
refused by the SSRF guard                              failed    see allowed_networks
=====================================================  ========  ==========================

Every final non-delivery is logged as ``slack.final_error`` (subscription, error) and the
hub dead-letters the event.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import aiohttp
import structlog
from pydantic import Field, SecretStr, field_validator, model_validator
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from yarl import URL

from handlers.slack_messages import SlackMessage, build_message
from handlers.slack_pacing import ChannelPacer, ThreadMap
from handlers.slack_templates import validate_templates
from hub.errors import PluginError
from hub.events import Event
from hub.http import find_refusal, parse_retry_after
from hub.outcome import Outcome, Status
from hub.plugins import HandlerContext, HandlerOptions
from hub.redaction import redact_url, url_origin

log = structlog.get_logger(__name__)

PACERS_KEY = "handlers.slack.pacers"
"""``HandlerContext.extras`` key of the per-channel pacers shared by all Slack handlers."""

FINAL_ERRORS = frozenset({
    # the token, app or channel needs a person's attention
    "channel_not_found", "invalid_auth", "not_authed", "account_inactive", "token_revoked",
    "token_expired", "channel_is_archived", "is_archived", "not_in_channel", "missing_scope",
    "no_permission", "restricted_action", "access_denied", "ekm_access_denied",
    "org_login_required", "team_access_not_granted", "team_disabled", "not_allowed_token_type",
    "posting_to_general_channel_denied", "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel", "restricted_action_non_threadable_channel",
    # incoming webhooks
    "no_service", "no_service_id", "no_team", "no_active_hooks", "invalid_token",
    "action_prohibited", "user_not_found",
    # our payload is wrong: the same request will fail again
    "invalid_blocks", "invalid_blocks_format", "invalid_payload", "invalid_arguments",
    "invalid_arg_name", "invalid_array_arg", "invalid_charset", "invalid_form_data",
    "invalid_json", "json_not_object", "invalid_post_type", "no_text", "msg_too_long",
    "msg_blocks_too_long", "too_many_attachments", "invalid_attachments",
    "invalid_metadata_format", "invalid_metadata_schema", "metadata_too_large",
})
RATE_LIMIT_ERRORS = frozenset({"ratelimited", "rate_limited"})
TRANSIENT_ERRORS = frozenset({
    "internal_error", "fatal_error", "service_unavailable", "request_timeout",
    "team_added_to_org", "rollup_error",
})
THREAD_ERRORS = frozenset({"thread_not_found", "invalid_thread_ts", "cannot_reply_to_message"})
RETRY_STATUSES = frozenset({408, 425, 429})


class SlackOptions(HandlerOptions):
    env_options = ("webhook_url", "token")  # ${VAR} in the configuration file: hub.envrefs

    webhook_url: SecretStr | None = None
    """An incoming-webhook URL (a secret: whoever has it can post). May be ``${ENV_VAR}``
    in the configuration file."""
    token: SecretStr | None = None
    """A bot token (``xoxb-...``) with ``chat:write``; needs ``channel``. May be
    ``${ENV_VAR}`` in the configuration file."""
    channel: str | None = None
    """Channel name (``#models``) or id (``C0123456789``) the bot posts to."""
    api_base_url: str = "https://slack.com/api/"
    templates: dict[str, str] = Field(default_factory=dict)
    """``{event type or glob: format string}`` replacing the default message."""
    thread_by_version: bool = True
    reply_broadcast: bool = False
    """Also show threaded replies in the channel."""
    max_threads: int = Field(10_000, ge=1)
    min_interval_s: float = Field(1.0, ge=0)
    timeout_s: float = Field(10, gt=0)
    verify_tls: bool = True

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            url = URL(value.get_secret_value())
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError("webhook_url must be an http(s) URL such as "
                                 "https://hooks.slack.com/services/T.../B.../...")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"api_base_url must be an http(s) URL, got {redact_url(value)!r}")
        return value if value.endswith("/") else value + "/"

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        validate_templates(value)
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        bot = self.token is not None or self.channel is not None
        if self.webhook_url is not None and bot:
            raise ValueError("set either webhook_url or token + channel, not both")
        if self.webhook_url is None and not bot:
            raise ValueError("set webhook_url (incoming webhook) or token + channel (bot)")
        if bot and (self.token is None or not self.token.get_secret_value().strip()):
            raise ValueError("token is required with channel (a bot token, xoxb-...)")
        if bot and not (self.channel or "").strip():
            raise ValueError("channel is required with token (e.g. '#models' or a channel id)")
        return self


# --- pure decisions ------------------------------------------------------------------------


def classify(status: int | None, error: str, retry_after_s: float | None = None) -> Outcome:
    """The outcome of one Slack answer (see the module table). ``error`` is the Web API's
    ``error`` field or the incoming webhook's plain-text body ("" when it said ok). Pure."""
    code = f"HTTP {status}" if status is not None else "no HTTP status"
    detail = f"slack: {error or 'no error'} ({code})"
    ok = status is not None and 200 <= status < 300 and error in ("", "ok")
    if ok:
        return Outcome.delivered(http_status=status)
    if status == 429 or error in RATE_LIMIT_ERRORS:
        return Outcome.retry(detail, http_status=status, retry_after_s=retry_after_s)
    if error in THREAD_ERRORS:
        return Outcome.retry(detail, http_status=status)
    if status == 410:
        return Outcome.gone(detail, http_status=status)
    if error in FINAL_ERRORS:
        return Outcome.failed(detail, http_status=status)
    if error in TRANSIENT_ERRORS or status in RETRY_STATUSES or (status or 0) >= 500:
        return Outcome.retry(detail, http_status=status, retry_after_s=retry_after_s)
    return Outcome.failed(detail, http_status=status)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _sdk_logger() -> logging.Logger:
    """slack-sdk logs request URLs (a webhook URL is a secret) whenever its logger's own
    level is DEBUG or unset; give it one that is not."""
    logger = logging.getLogger("handlers.slack.sdk")
    if logger.level in (logging.NOTSET, logging.DEBUG):
        logger.setLevel(logging.INFO)
    return logger


@dataclass(frozen=True)
class _Answer:
    status: int | None
    error: str
    retry_after: str | None = None
    ts: str | None = None
    channel: str | None = None
    messages: str = ""


class SlackHandler:
    Options: ClassVar[type[SlackOptions]] = SlackOptions

    def __init__(self, *, name: str, options: SlackOptions, context: HandlerContext,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if context.http_session is None:
            raise PluginError("the slack handler needs HandlerContext.http_session")
        self.name = name
        self._options = options
        self._ui_url = context.ui_url
        self._session_factory = context.http_session
        self._clock = clock
        self._sleep = sleep
        self._threads = ThreadMap(options.max_threads)
        self._web: AsyncWebClient | None = None
        self._hook: AsyncWebhookClient | None = None
        if options.webhook_url is not None:
            hook = options.webhook_url.get_secret_value()
            self._where = url_origin(hook) + "/…"  # the path is the secret
            key = _digest("webhook", options.webhook_url.get_secret_value())
        else:
            assert options.token is not None and options.channel is not None
            self._where = f"{options.api_base_url} {options.channel}"
            key = _digest("api", options.api_base_url, options.token.get_secret_value(),
                          options.channel)
        pacers: dict[str, ChannelPacer] = context.extras.setdefault(PACERS_KEY, {})
        self._pacer = pacers.setdefault(key, ChannelPacer(clock=clock, sleep=sleep))

    @property
    def threads(self) -> ThreadMap:
        return self._threads

    async def deliver(self, event: Event) -> Outcome:
        message = build_message(event, ui_url=self._ui_url, templates=self._options.templates)
        async with self._pacer.turn(self._options.min_interval_s) as blocked:
            if blocked > 0:
                return Outcome.retry("slack: channel rate-limited (waiting for Retry-After)",
                                     retry_after_s=blocked)
            return await self._send(event, message)

    async def _send(self, event: Event, message: SlackMessage) -> Outcome:
        session: aiohttp.ClientSession = self._session_factory(
            verify_tls=self._options.verify_tls)
        if session.closed:  # slack-sdk would silently open an unguarded session of its own
            return Outcome.retry("slack: the hub's HTTP session is closed (shutting down)")
        thread_key = (event.model, event.version) if event.version is not None else None
        thread = self._thread_for(thread_key)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._options.timeout_s):
                if self._options.webhook_url is not None:
                    answer = await self._post_webhook(session, message)
                else:
                    answer = await self._post_api(session, message, thread)
        except TimeoutError:
            return Outcome.retry(f"slack: no answer within {self._options.timeout_s:g} s",
                                 latency_s=time.monotonic() - started)
        except aiohttp.ClientError as exc:
            return self._final(event, self._connection_outcome(exc),
                               time.monotonic() - started)
        except SlackClientError as exc:  # SlackRequestError & co.: a request we built wrong
            outcome = Outcome.failed(f"slack-sdk refused the request: {type(exc).__name__}")
            return self._final(event, outcome, time.monotonic() - started)
        latency = time.monotonic() - started
        outcome = classify(answer.status, answer.error,
                           parse_retry_after(answer.retry_after, datetime.now(UTC)))
        if answer.messages:
            outcome = replace(outcome, detail=f"{outcome.detail}: {answer.messages}")
        if outcome.status is Status.DELIVERED:
            if thread_key is not None and thread is None and answer.ts:
                self._remember(thread_key, answer.channel or self._options.channel, answer.ts)
        elif answer.error in THREAD_ERRORS and thread_key is not None:
            self._threads.forget(thread_key)
            log.warning("slack.thread_reset", subscription=self.name, error=answer.error,
                        model=event.model, version=event.version)
        if outcome.status is Status.RETRY and outcome.retry_after_s:
            self._pacer.block(outcome.retry_after_s)
        return self._final(event, outcome, latency)

    def _thread_for(self, key: tuple[str, str] | None) -> tuple[str, str] | None:
        if key is None or self._options.webhook_url is not None \
                or not self._options.thread_by_version:
            return None
        return self._threads.get(key)

    def _remember(self, key: tuple[str, str], channel: str | None, ts: str) -> None:
        if self._options.thread_by_version and channel:
            self._threads.put(key, (channel, ts))

    async def _post_webhook(self, session: aiohttp.ClientSession,
                            message: SlackMessage) -> _Answer:
        if self._hook is None:
            assert self._options.webhook_url is not None
            self._hook = AsyncWebhookClient(
                self._options.webhook_url.get_secret_value(), session=session,
                timeout=int(self._options.timeout_s) + 1, retry_handlers=[],
                logger=_sdk_logger())
            self._hook.proxy = None  # the hub's session decides; env proxies are not used
        resp = await self._hook.send(text=message.text, blocks=message.blocks,
                                     unfurl_links=False, unfurl_media=False)
        ok = 200 <= resp.status_code < 300  # the body says "ok"; other bodies are errors
        return _Answer(resp.status_code, "" if ok else (resp.body or "").strip()[:100],
                       resp.headers.get("Retry-After"))

    async def _post_api(self, session: aiohttp.ClientSession, message: SlackMessage,
                        thread: tuple[str, str] | None) -> _Answer:
        if self._web is None:
            assert self._options.token is not None
            self._web = AsyncWebClient(
                token=self._options.token.get_secret_value(),
                base_url=self._options.api_base_url, session=session,
                timeout=int(self._options.timeout_s) + 1, retry_handlers=[],
                logger=_sdk_logger())
            self._web.proxy = None
        extra: dict[str, Any] = {}
        channel = self._options.channel or ""
        if thread is not None:
            channel, extra["thread_ts"] = thread
            if self._options.reply_broadcast:
                extra["reply_broadcast"] = True
        try:
            resp = await self._web.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks,
                unfurl_links=False, unfurl_media=False, **extra)
        except SlackApiError as exc:
            return _api_error(exc)
        return _Answer(resp.status_code, "", ts=resp.get("ts"), channel=resp.get("channel"))

    def _connection_outcome(self, exc: aiohttp.ClientError) -> Outcome:
        refusal = find_refusal(exc)
        if refusal is not None:
            log.warning("slack.refused", subscription=self.name, address=refusal.address)
            return Outcome.failed(f"slack: {refusal}")
        if isinstance(exc, aiohttp.InvalidURL):
            return Outcome.failed(f"slack: invalid URL for {self._where}")
        return Outcome.retry(f"slack: {type(exc).__name__} talking to {self._where}")

    def _final(self, event: Event, outcome: Outcome, latency: float) -> Outcome:
        if outcome.final and outcome.status is not Status.DELIVERED:
            log.error("slack.final_error", subscription=self.name, error=outcome.detail,
                      status=str(outcome.status), http_status=outcome.http_status,
                      event_id=event.id, event_type=event.type, destination=self._where)
        return replace(outcome, latency_s=latency)

    async def aclose(self) -> None:
        self._web = self._hook = None  # the session belongs to the hub

    def __repr__(self) -> str:
        return f"SlackHandler({self.name!r}, {self._where!r})"


def _api_error(exc: SlackApiError) -> _Answer:
    """What a failed ``chat.postMessage`` said. ``exc.response`` is a ``SlackResponse`` or,
    for an unparseable body, aiohttp's response."""
    resp = exc.response
    status = getattr(resp, "status_code", None) or getattr(resp, "status", None)
    data = getattr(resp, "data", None)
    headers: Mapping[str, str] = getattr(resp, "headers", None) or {}
    error, messages = "", ""
    if isinstance(data, Mapping):
        error = str(data.get("error") or "")
        meta = data.get("response_metadata")
        if isinstance(meta, Mapping) and isinstance(meta.get("messages"), list):
            messages = "; ".join(str(m) for m in meta["messages"])[:300]
    elif isinstance(data, str):
        error = data.strip()[:100]
    return _Answer(status if isinstance(status, int) else None, error,
                   headers.get("Retry-After"), messages=messages)


__all__ = ["SlackHandler", "SlackOptions", "classify"]
