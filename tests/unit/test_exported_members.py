"""The public surface is deliberate: adding or removing a name must be a conscious change."""

from __future__ import annotations

from importlib.metadata import entry_points

import hub


def test_hub_exports() -> None:
    assert sorted(hub.__all__) == sorted([
        "EVENT_TYPES", "BusError", "Change", "ConfigError", "Event", "EventType", "Handler",
        "HandlerContext", "HandlerOptions", "HubConfig", "HubError", "ModelState", "Outcome",
        "PluginError", "Snapshot", "SourceError", "Status", "SubscriptionConfig",
        "VersionState", "apply", "diff", "load_config",
    ])
    for name in hub.__all__:
        assert getattr(hub, name) is not None


def test_builtin_handlers_are_entry_points() -> None:
    names = {ep.name for ep in entry_points(group="registry_hub.handlers")}
    assert {"console", "webhook", "slack", "deploy"} <= names
