"""Which subscriptions an event goes to: event-type globs, model-name globs, and ``when``
conditions on the payload.

``when`` is a mapping of payload keys to expected values, all of which must hold:

* a scalar matches the payload value compared as text (``{to_stage: Production}``);
* a list matches if any element does (``{alias: [champion, prod]}``);
* a mapping matches a nested mapping key by key (``{tags: {validated: "true"}}``); this is
  how an approval gate on a version tag is written: version events carry the version's
  current ``tags``.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from hub.config import SubscriptionConfig
from hub.events import Event


def matches(sub: SubscriptionConfig, event: Event) -> bool:
    return (
        sub.enabled
        and _any_glob(event.type, sub.events)
        and _any_glob(event.model, sub.models)
        and (not sub.when or condition_holds(sub.when, event.data))
    )


def _any_glob(name: str, patterns: list[str]) -> bool:
    # checked at least once per delivery: "*" (the default) needs no pattern matching
    for pattern in patterns:
        if pattern == "*" or fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def condition_holds(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and condition_holds(value, actual[key])
            for key, value in expected.items()
        )
    if isinstance(expected, list):
        return any(condition_holds(option, actual) for option in expected)
    if actual is None or isinstance(actual, dict | list):
        return expected is None and actual is None
    return _text(expected) == _text(actual)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def route(subs: list[SubscriptionConfig], event: Event) -> list[SubscriptionConfig]:
    return [s for s in subs if matches(s, event)]
