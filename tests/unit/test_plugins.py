"""Loading and building handler plugins: what is not a Handler is refused by name, and a
constructor that raises is reported with its subscription and plugin."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

import hub.plugins
from hub import ConfigError, Event, HandlerContext, HandlerOptions, Outcome, PluginError
from hub.config import SubscriptionConfig
from hub.plugins import ENTRY_POINT_GROUP, build_handlers, check_plugin, validate_options


class GoodOptions(HandlerOptions):
    colour: str = "blue"


class Good:
    Options: ClassVar[type[GoodOptions]] = GoodOptions

    def __init__(self, *, name: str, options: GoodOptions, context: HandlerContext) -> None:
        self.name, self.options = name, options

    async def deliver(self, event: Event) -> Outcome:
        return Outcome.delivered()

    async def aclose(self) -> None:
        return None


class Exploding(Good):
    def __init__(self, *, name: str, options: GoodOptions, context: HandlerContext) -> None:
        raise KeyError("token")


class SyncDeliver(Good):
    def deliver(self, event: Event) -> Outcome:  # type: ignore[override]
        return Outcome.delivered()


class NoAclose:
    Options: ClassVar[type[GoodOptions]] = GoodOptions

    def __init__(self, **kwargs: Any) -> None:
        pass

    async def deliver(self, event: Event) -> Outcome:
        return Outcome.delivered()


class PlainOptions(BaseModel):
    colour: str = "blue"


class PlainOptionsHandler(Good):
    Options: ClassVar[type[PlainOptions]] = PlainOptions  # type: ignore[assignment]


def factory(*, name: str, options: GoodOptions, context: HandlerContext) -> object:
    return object()  # not a handler: only visible once built


factory.Options = GoodOptions  # type: ignore[attr-defined]

PLUGINS = {"good": "Good", "exploding": "Exploding", "sync-deliver": "SyncDeliver",
           "no-aclose": "NoAclose", "plain-options": "PlainOptionsHandler",
           "factory": "factory"}


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """These classes registered as entry points (real ``EntryPoint`` objects, loaded by
    import path), next to the installed handlers."""
    installed = hub.plugins.available_handlers()
    ours = {name: EntryPoint(name, f"{__name__}:{attr}", ENTRY_POINT_GROUP)
            for name, attr in PLUGINS.items()}
    monkeypatch.setattr(hub.plugins, "available_handlers", lambda: {**installed, **ours})


def sub(handler: str, name: str = "team-a", **options: Any) -> SubscriptionConfig:
    return SubscriptionConfig(name=name, handler=handler, **options)


def test_a_good_plugin_is_built_with_its_options() -> None:
    handlers = build_handlers([sub("good", colour="red")], HandlerContext())
    built = handlers["team-a"]
    assert isinstance(built, Good) and built.options.colour == "red"
    assert isinstance(built, hub.Handler)


def test_a_constructor_that_raises_is_named_with_its_subscription() -> None:
    with pytest.raises(PluginError) as caught:
        build_handlers([sub("good", name="first"), sub("exploding", name="second")],
                       HandlerContext())
    message = str(caught.value)
    assert "subscription 'second'" in message and "handler 'exploding'" in message
    assert "KeyError: 'token'" in message
    assert isinstance(caught.value.__cause__, KeyError)


def test_a_plugin_error_of_the_constructor_keeps_its_message() -> None:
    with pytest.raises(PluginError, match=r"subscription 'hook': handler 'webhook' could not "
                                          r"be built: the webhook handler needs "
                                          r"HandlerContext.http_session"):
        build_handlers([sub("webhook", name="hook", url="https://h.example/x")],
                       HandlerContext())


@pytest.mark.parametrize(("plugin", "missing"), [
    ("sync-deliver", "lacks async def deliver;"),
    ("no-aclose", "lacks async def aclose;"),
    ("plain-options", "does not declare an Options class derived from hub.HandlerOptions"),
])
def test_what_is_not_a_handler_is_refused_before_it_is_built(plugin: str, missing: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_options(sub(plugin), 3)
    assert caught.value.field == "subscriptions.3.handler"
    assert f"handler {plugin!r}" in str(caught.value) and missing in str(caught.value)
    assert f"{__name__}." in str(caught.value)  # the class, to find the code
    with pytest.raises(ConfigError):
        build_handlers([sub(plugin)], HandlerContext())


def test_a_factory_is_checked_on_what_it_builds() -> None:
    with pytest.raises(PluginError, match=r"subscription 'team-a': handler 'factory' "
                                          r"\(builtins.object\) is not a Handler: it lacks "
                                          r"async def deliver and async def aclose"):
        build_handlers([sub("factory")], HandlerContext())


def test_every_installed_handler_passes_the_checks() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        check_plugin(ep.name, ep.load())
