"""The public surface is deliberate: adding or removing a name must be a conscious change.

``hub`` (users and plugin authors) and ``hub.testing`` (plugin tests) export exactly the
names below, each the very object of the module that defines it, and the plugin guide
imports nothing else."""

from __future__ import annotations

import ast
import importlib
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import hub
import hub.testing

ROOT = Path(__file__).parents[2]

HUB = {
    "EVENT_TYPES": "hub.events", "Change": "hub.events", "Event": "hub.events",
    "EventType": "hub.events",
    "BusError": "hub.errors", "ConfigError": "hub.errors", "HubError": "hub.errors",
    "PluginError": "hub.errors", "SourceError": "hub.errors",
    "Handler": "hub.plugins", "HandlerContext": "hub.plugins", "HandlerOptions": "hub.plugins",
    "is_test": "hub.plugins",
    "HubConfig": "hub.config", "SubscriptionConfig": "hub.config", "load_config": "hub.config_load",
    "ModelState": "hub.detect.snapshot", "Snapshot": "hub.detect.snapshot",
    "VersionState": "hub.detect.snapshot",
    "Outcome": "hub.outcome", "Status": "hub.outcome",
    "apply": "hub.detect.diff", "diff": "hub.detect.diff",
}
TESTING = ["FakeHandlerContext", "FakeProducer", "MemoryCheckpoint", "MemorySink", "SentRecord",
           "StaticScanner", "make_event"]
PUBLIC = {"hub": hub, "hub.testing": hub.testing}


def test_hub_exports_exactly_these_names_from_their_modules() -> None:
    assert sorted(hub.__all__) == sorted(HUB)
    for name, home in HUB.items():
        defined = getattr(importlib.import_module(home), name)
        assert getattr(hub, name) is defined, f"hub.{name} is not {home}.{name}"
        if hasattr(defined, "__module__") and not isinstance(defined, tuple):
            assert defined.__module__ == home, f"{name} is defined in {defined.__module__}"


def test_hub_testing_exports_exactly_its_own_names() -> None:
    assert sorted(hub.testing.__all__) == sorted(TESTING)
    for name in TESTING:
        assert getattr(hub.testing, name).__module__ == "hub.testing", name


def test_star_import_gives_the_exported_names_only() -> None:
    for module_name, module in PUBLIC.items():
        namespace: dict[str, object] = {}
        exec(f"from {module_name} import *", namespace)
        assert sorted(n for n in namespace if n != "__builtins__") == sorted(module.__all__)


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", markdown, re.S)


def imports_of(code: str) -> list[tuple[str, str | None]]:
    """``(module, name)`` for every import in ``code`` (``name`` None for ``import m``)."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return found


def test_the_plugin_guide_imports_only_exported_names() -> None:
    blocks = python_blocks((ROOT / "docs" / "plugins.md").read_text())
    assert len(blocks) >= 2
    ours = [(m, n) for block in blocks for m, n in imports_of(block)
            if m.split(".")[0] in ("hub", "handlers")]
    assert ours, "the guide's examples import the hub"
    for module, name in ours:
        assert module in PUBLIC, f"docs/plugins.md imports {module}: not the public surface"
        assert name in PUBLIC[module].__all__, f"docs/plugins.md imports {module}.{name}"


@pytest.mark.parametrize("code", [
    "from hub.events import Event",
    "import hub.plugins",
    "from hub import Event, is_tested",
])
def test_the_import_check_catches_internal_imports(code: str) -> None:
    assert any(m not in PUBLIC or n not in PUBLIC[m].__all__ for m, n in imports_of(code))


def test_builtin_handlers_are_entry_points() -> None:
    names = {ep.name for ep in entry_points(group="registry_hub.handlers")}
    assert {"console", "webhook", "slack", "deploy"} <= names
