"""The tree drawn in ``hub.errors``'s docstring is the real one: every exception class
defined in ``hub`` and ``handlers``, each under its real base, in its real module."""

from __future__ import annotations

import builtins
import importlib
import pkgutil
import re

import handlers
import hub
import hub.errors

NODE = re.compile(r"^(?P<indent>[│ ]*)(?:[├└]── )?(?P<name>[\w.]+)(?:\s{2,}(?P<module>"
                  r"(?:hub|handlers)(?:\.\w+)+))?(?:\s{2,}.*)?$")


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of ``hub`` or ``handlers``, by name."""
    found: dict[str, type[BaseException]] = {}
    for package in (hub, handlers):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.endswith(".__main__"):
                continue  # runs the CLI
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, BaseException) \
                        and value.__module__ == module.__name__:
                    assert value.__name__ not in found, f"two exceptions named {value.__name__}"
                    found[value.__name__] = value
    return found


def drawn_tree() -> dict[str, tuple[str, str | None]]:
    """``{class: (parent as drawn, module as drawn)}`` from the docstring's ``::`` block."""
    doc = hub.errors.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    drawn: dict[str, tuple[str, str | None]] = {}
    stack: list[str] = []
    for raw in block.splitlines():
        line = raw[4:]  # the literal block's indentation
        box = next((i for i, c in enumerate(line) if c in "├└"), None)
        if box is None and not re.match(r"[\w.]+(\s{2,}|$)", line):
            continue  # a blank line, prose, or a description carried on to the next line
        match = NODE.match(line)
        assert match, f"cannot read the tree line {line!r}"
        depth = 0 if box is None else box // 4 + 1
        del stack[depth:]
        if depth:
            drawn[match["name"]] = (stack[-1], match["module"])
        elif match["module"]:
            drawn[match["name"]] = ("Exception", match["module"])
        stack.append(match["name"])
    return drawn


def resolve(drawn: str, found: dict[str, type[BaseException]]) -> object:
    """The class a parent's drawn name stands for: one of ours, a builtin, or
    ``package.Name``."""
    if drawn in found:
        return found[drawn]
    if "." not in drawn:
        return getattr(builtins, drawn)
    package, name = drawn.rsplit(".", 1)
    return getattr(importlib.import_module(package), name)


def test_every_exception_is_drawn_under_its_real_base_and_module() -> None:
    found, drawn = defined_exceptions(), drawn_tree()
    assert sorted(drawn) == sorted(found), "draw every exception class in hub.errors' docstring"
    for name, cls in found.items():
        parent, module = drawn[name]
        assert module == cls.__module__, f"{name} is defined in {cls.__module__}"
        assert resolve(parent, found) is cls.__bases__[0], \
            f"{name} derives from {cls.__bases__[0]}, not {parent}"


def test_the_reader_sees_the_tree() -> None:
    drawn = drawn_tree()
    assert drawn["ConfigError"] == ("HubError", "hub.errors")
    assert drawn["SsrfRefused"] == ("OSError", "hub.http")
    assert drawn["RedirectRefused"] == ("aiohttp.ClientError", "hub.http")
    assert drawn["TemplateError"] == ("ValueError", "handlers.slack_templates")
    assert drawn["HubError"] == ("Exception", "hub.errors")
