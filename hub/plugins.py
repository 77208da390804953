"""The handler plugin API.

A handler is a class registered under the ``registry_hub.handlers`` entry-point group. It
declares a pydantic ``Options`` model for its subscription options, is built once per
subscription with ``Handler(name=..., options=..., context=...)``, and answers every event
with an :class:`~hub.outcome.Outcome`. The hub owns retries, the dead-letter topic, offsets
and ordering; a handler only makes one attempt per call. See ``docs/plugins.md``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

from hub.config import SubscriptionConfig
from hub.config_load import describe_errors
from hub.envrefs import (
    CONTEXT_KEY,
    REFUSAL,
    REFUSAL_HINT,
    expand_options,
    fields_with_references,
)
from hub.errors import ConfigError, HubError, PluginError
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
    Options: ClassVar[type[HandlerOptions]]

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
    check_plugin(name, plugin)
    return plugin


def check_plugin(name: str, plugin: Any) -> None:
    """``plugin`` (registered as ``name``) has the shape of the contract, or PluginError
    says what is missing. A class is checked for ``deliver``/``aclose`` here; a factory
    function only once it built a handler (:func:`check_handler`)."""
    where = f"handler {name!r} ({_qualname(plugin)})"
    options = getattr(plugin, "Options", None)
    if not isinstance(options, type) or not issubclass(options, HandlerOptions):
        raise PluginError(f"{where} does not declare an Options class derived from "
                          "hub.HandlerOptions; see docs/plugins.md")
    if not callable(plugin):
        raise PluginError(f"{where} is not callable; register the handler class")
    if isinstance(plugin, type):
        check_handler(name, plugin)


def check_handler(name: str, handler: Any) -> None:
    """``handler`` (a handler or its class) has ``async def deliver`` and ``async def
    aclose``, or PluginError names what is missing."""
    missing = [f"async def {method}" for method in ("deliver", "aclose")
               if not inspect.iscoroutinefunction(getattr(handler, method, None))]
    if missing:
        raise PluginError(f"handler {name!r} ({_qualname(handler)}) is not a Handler: it "
                          f"lacks {' and '.join(missing)}; see docs/plugins.md")


def _qualname(obj: Any) -> str:
    """``module.Name`` of a class or function, else of the object's class."""
    kind = obj if isinstance(obj, type) or inspect.isfunction(obj) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


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
    """One handler per subscription. ConfigError for invalid options; PluginError, naming
    the subscription and the plugin, when a constructor raises or builds something that is
    not a :class:`Handler`."""
    handlers: dict[str, Handler] = {}
    for index, sub in enumerate(subs):
        plugin, options = validate_options(sub, index)
        try:
            handler = plugin(name=sub.name, options=options, context=context)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
            raise PluginError(f"subscription {sub.name!r}: handler {sub.handler!r} could not "
                              f"be built: {reason}") from exc
        try:
            check_handler(sub.handler, handler)
        except PluginError as exc:
            raise PluginError(f"subscription {sub.name!r}: {exc}") from None
        handlers[sub.name] = handler
    return handlers
