"""Subscription templates for Slack messages: validation, lookup by event type, rendering.

Templates (``templates: {event type or glob: format string}`` in a subscription) replace the
default message's text and blocks with one section (:func:`handlers.slack_messages.build_message`).
They are ``str.format`` strings over the event data plus ``type``, ``model``, ``version``,
``id``, ``time``, ``subject``, ``version_url``, ``model_url`` and ``run_url``; nested values
are reached with ``[key]`` (``{tags[team]}``). Missing keys render as empty text and
rendering never raises; :func:`validate_templates` rejects malformed templates up front.
"""

from __future__ import annotations

import _string  # the stdlib parser behind str.format's field names
import fnmatch
import string
from collections.abc import Mapping
from typing import Any

from handlers.slack_mrkdwn import escape, links
from hub.events import EVENT_TYPES, Event


class TemplateError(ValueError):
    """A message template is malformed; the message names the template."""


class _SafeFormatter(string.Formatter):
    """``str.format`` where a missing key, a bad index or a bad format spec renders as text
    instead of raising, and every substituted value is mrkdwn-escaped."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        first, rest = _string.formatter_field_name_split(field_name)
        obj: Any = kwargs.get(first) if isinstance(first, str) else None
        for is_attr, key in rest:
            if is_attr:
                obj = None
            elif isinstance(obj, Mapping):
                obj = obj.get(key, obj.get(str(key)))
            elif isinstance(obj, list | tuple) and isinstance(key, int) and -len(obj) <= key \
                    < len(obj):
                obj = obj[key]
            else:
                obj = None
        return ("" if obj is None else obj), str(first)

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            text = format(value, format_spec)
        except (ValueError, TypeError):
            text = str(value)
        return escape(text)


_FORMATTER = _SafeFormatter()


def _template_fields(template: str) -> list[tuple[str, str | None]]:
    """Every (field name, conversion) in ``template``, including fields nested in specs."""
    out: list[tuple[str, str | None]] = []
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is not None:
            out.append((name, conversion))
            if spec:
                out.extend(_template_fields(spec))
    return out


def validate_templates(templates: Mapping[str, str]) -> None:
    """Raise :class:`TemplateError` naming the first malformed template."""
    for key, template in templates.items():
        where = f"template {key!r}"
        if not any(fnmatch.fnmatchcase(t, key) for t in EVENT_TYPES):
            raise TemplateError(f"{where}: matches no event type; known types: "
                                f"{', '.join(EVENT_TYPES)}")
        if not isinstance(template, str) or not template.strip():
            raise TemplateError(f"{where}: must be a non-empty string")
        try:
            fields = _template_fields(template)
        except ValueError as exc:
            raise TemplateError(f"{where} is not a valid format string: {exc} "
                                "(write {{ and }} for literal braces)") from None
        for name, conversion in fields:
            first, rest = _string.formatter_field_name_split(name)
            if not isinstance(first, str) or not first:
                raise TemplateError(f"{where}: positional field {{{name}}} is not allowed; "
                                    "name a key, e.g. {model} or {to_stage}")
            if any(is_attr for is_attr, _ in rest):
                raise TemplateError(f"{where}: attribute access in {{{name}}} is not "
                                    "allowed; use [key] for nested values, e.g. {tags[team]}")
            if conversion not in (None, "r", "s", "a"):
                raise TemplateError(f"{where}: unknown conversion !{conversion} in "
                                    f"{{{name}}}")


def template_for(event_type: str, templates: Mapping[str, str] | None) -> str | None:
    """The template for ``event_type``: an exact key first, then the first matching glob."""
    if not templates:
        return None
    if event_type in templates:
        return templates[event_type]
    return next((t for k, t in templates.items() if fnmatch.fnmatchcase(event_type, k)), None)


def template_values(event: Event, ui_url: str | None) -> dict[str, Any]:
    version = event.version if event.version is not None else event.data.get("version")
    return {
        **event.data,
        "type": event.type, "model": event.model, "version": version, "id": event.id,
        "time": event.time.isoformat(), "subject": event.subject, **links(event, ui_url),
    }


def render_template(template: str, event: Event, ui_url: str | None) -> str:
    """Render; never raises (a template that cannot be parsed renders as empty text)."""
    try:
        return _FORMATTER.vformat(template, (), template_values(event, ui_url))
    except (ValueError, IndexError, KeyError):
        return ""


__all__ = ["TemplateError", "render_template", "template_for", "template_values",
           "validate_templates"]
