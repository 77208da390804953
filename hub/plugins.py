"""The handler plugin API.

A handler is a class registered under the ``registry_hub.handlers`` entry-point group. It
declares a pydantic ``Options`` model for its subscription options, is built once per
subscription with ``Handler(name=..., options=..., context=...)``, and answers every event
with an :class:`~hub.outcome.Outcome`. The hub owns retries, the dead-letter topic, offsets
and ordering; a handler only makes one attempt per call. See ``docs/plugins.md``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

from hub.config import SubscriptionConfig, describe_errors
from hub.envrefs import (
    CONTEXT_KEY,
    REFUSAL,
    REFUSAL_HINT,
    expand_options,
    fields_with_references,
)
from hub.errors import ConfigError, PluginError
from hub.events import Event
from hub.outcome import Outcome

ENTRY_POINT_GROUP = "registry_hub.handlers"
TEST_FLAG = "test"
"""``event.data[TEST_FLAG] is True`` on the sample event of ``POST
/api/subscriptions/{name}/test``; registry events never carry the key."""


def is_test(event: Event) -> bool:
    """A test send, not a registry change: handlers mark what they show with it."""
    return event.data.get(TEST_FLAG) is True


class HandlerOptions(BaseModel):
    """Base for a plugin's options: unknown keys are errors, like everywhere in the config.

    ``env_options`` names the options that may hold ``${VAR}`` references (in a string, the
    strings of a list, the values of a mapping): they are expanded before any other check,
    from the variables :func:`validate_options` passes in the validation context, i.e. for
    subscriptions of the configuration file only (see :mod:`hub.envrefs`). Validated without
    that context (``Options.model_validate(data)``), a reference is an error.
    """

    model_config = ConfigDict(extra="forbid")
    env_options: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _expand_environment(cls, data: Any, info: ValidationInfo) -> Any:
        return expand_options(data, cls.env_options, info.context, title=cls.__name__)


@dataclass
class HandlerContext:
    """What the hub lends a handler. Attributes a runtime does not provide stay ``None``."""

    tracking_uri: str = ""
    ui_url: str | None = None
    http_session: Callable[..., Any] | None = None
    """``http_session(verify_tls=True)`` → a shared, SSRF-guarded ``aiohttp.ClientSession``."""
    kafka_send: Callable[[str, bytes, bytes, list[tuple[str, bytes]]], Awaitable[None]] | None \
        = None
    """``await kafka_send(topic, key, value, headers)``: acked publish on the hub's producer."""
    mlflow_call: Callable[..., Awaitable[Any]] | None = None
    """``await mlflow_call(fn, *args)`` runs a blocking ``MlflowClient`` call off the loop;
    ``fn`` receives the client as first argument."""
    extras: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Handler(Protocol):
    async def deliver(self, event: Event) -> Outcome: ...

    async def aclose(self) -> None: ...


class HandlerPlugin(Protocol):
    Options: ClassVar[type[BaseModel]]

    def __call__(self, *, name: str, options: Any, context: HandlerContext) -> Handler: ...


def available_handlers() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(name: str) -> HandlerPlugin:
    eps = available_handlers()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise PluginError(f"unknown handler {name!r}; known handlers: {known}")
    try:
        plugin = eps[name].load()
    except Exception as exc:
        raise PluginError(f"handler {name!r} failed to import: {exc!r}") from exc
    if not isinstance(getattr(plugin, "Options", None), type) or not issubclass(
        plugin.Options, BaseModel
    ):
        raise PluginError(f"handler {name!r} does not declare a pydantic Options model")
    return plugin


def option_context(sub: SubscriptionConfig) -> dict[str, Any]:
    """The validation context of ``sub``'s options: the environment variables it may use."""
    return {CONTEXT_KEY: sub.environment}


def validate_options(sub: SubscriptionConfig, index: int) -> tuple[HandlerPlugin, BaseModel]:
    """Load the subscription's plugin and validate its options; errors name all three.

    A subscription that does not come from the configuration (a runtime one) may not
    reference the environment in any option: refused here, for every path that builds a
    handler (the API, the subscriptions topic, a test send).
    """
    where = f"subscriptions.{index}"
    if sub.environment is None and (fields := fields_with_references(sub.options)):
        error = ConfigError(
            f"subscription {sub.name!r}: " + "; ".join(f"{f}: {REFUSAL}" for f in fields),
            hint=REFUSAL_HINT)
        error.field = f"{where}.{fields[0]}"
        raise error
    try:
        plugin = load_plugin(sub.handler)
    except PluginError as exc:
        error = ConfigError(f"subscription {sub.name!r}: {exc}", field=f"{where}.handler")
        raise error from None
    try:
        options = plugin.Options.model_validate(sub.options, context=option_context(sub))
    except ValidationError as exc:
        known = ", ".join(sorted(plugin.Options.model_fields)) or "none"
        lines, first = describe_errors(exc, where, hints={
            "extra_forbidden": f"unknown option for handler {sub.handler!r}; "
                               f"its options are: {known}",
        })
        error = ConfigError(
            f"subscription {sub.name!r} (handler {sub.handler!r}) has invalid options:\n"
            + "\n".join(lines))
        error.field = first
        raise error from None
    return plugin, options


def build_handlers(subs: list[SubscriptionConfig], context: HandlerContext
                   ) -> dict[str, Handler]:
    handlers: dict[str, Handler] = {}
    for index, sub in enumerate(subs):
        plugin, options = validate_options(sub, index)
        handlers[sub.name] = plugin(name=sub.name, options=options, context=context)
    return handlers
