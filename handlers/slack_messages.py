"""Slack messages for registry events: pure, no network, no clock.

:func:`build_message` turns an :class:`~hub.events.Event` into a :class:`SlackMessage`: a
plain ``text`` fallback (notifications, screen readers; never empty) and Block Kit blocks
(a header, a summary section with fields, the description and tags where there are some,
links to the MLflow UI, and a context line). Slack's limits are kept by construction: at
most 50 blocks, header text ≤ 150 characters, section text ≤ 3000, field text ≤ 2000;
longer values are cut without splitting an ``&amp;`` entity or a ``<link|label>``
(:mod:`handlers.slack_mrkdwn`).

This module holds the default message: what each event type says (the describers, for
models and their prompt twins) and the block layout. A subscription's template, when one
matches, replaces it with one section (:mod:`handlers.slack_templates`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.slack_mrkdwn import link, links, truncate
from handlers.slack_mrkdwn import short as _v  # a value in nearly every sentence below
from handlers.slack_templates import render_template, template_for
from hub.events import (
    IS_PROMPT_TAG,
    PROMPT_TEXT_TAG,
    PROMPT_TWIN,
    Event,
    EventType,
    is_prompt_event,
)
from hub.plugins import is_test

MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_TEXT = 40_000  # Slack truncates longer ``text``


@dataclass(frozen=True)
class SlackMessage:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


# --- the default message -------------------------------------------------------------------

_Describer = Callable[[Event, str, dict[str, Any]], tuple[str, str, str]]
"""(event, "*model* vN", data) -> (emoji, header title, summary sentence in mrkdwn)."""


def _was(value: object) -> str:
    return f" (was `{_v(value)}`)" if value not in (None, "") else ""


def _family(thing: str, short: str, version: str) -> dict[str, _Describer]:
    """The describers of one family: ``thing`` is what is registered ("registered model",
    "prompt"), ``short`` its short name, ``version`` what its versions are called."""
    head = thing[0].upper() + thing[1:]
    return {
        "registered_model.created": lambda e, w, d: (
            "🆕", f"New {thing}: {e.model}", f"{head} {w} was created"),
        "registered_model.updated": lambda e, w, d: (
            "✏️", f"Description updated: {e.model}", f"The description of {w} was updated"),
        "registered_model.renamed": lambda e, w, d: (
            "🔤", f"{short} renamed: {d.get('previous_name')} → {e.model}",
            f"*{_v(d.get('previous_name'))}* was renamed to {w}"),
        "registered_model.deleted": lambda e, w, d: (
            "🗑️", f"{short} deleted: {e.model}", f"{head} {w} was deleted"),
        "registered_model_tag.set": lambda e, w, d: (
            "🏷️", f"Tag set on {e.model}: {d.get('key')}",
            f"Tag `{_v(d.get('key'))}` = `{_v(d.get('value'))}` set on {w}"
            + _was(d.get("previous_value"))),
        "registered_model_tag.deleted": lambda e, w, d: (
            "🏷️", f"Tag removed from {e.model}: {d.get('key')}",
            f"Tag `{_v(d.get('key'))}` removed from {w}" + _was(d.get("previous_value"))),
        "model_version.created": lambda e, w, d: (
            "🆕", f"New {version}: {e.model} v{e.version}",
            f"{w} was registered" + (f" by {_v(d['user_id'])}" if d.get("user_id") else "")),
        "model_version.updated": lambda e, w, d: (
            "✏️", f"Description updated: {e.model} v{e.version}",
            f"The description of {w} was updated"),
        "model_version.status_changed": lambda e, w, d: (
            "✅" if d.get("status") == "READY" else "⚠️",
            f"{e.model} v{e.version}: {d.get('previous_status')} → {d.get('status')}",
            f"{w} status changed from *{_v(d.get('previous_status'))}* to "
            f"*{_v(d.get('status'))}*"),
        "model_version.stage_transitioned": lambda e, w, d: (
            "🚀" if d.get("to_stage") == "Production" else "🔀",
            f"{e.model} v{e.version}: {d.get('from_stage')} → {d.get('to_stage')}",
            f"{w} moved from *{_v(d.get('from_stage'))}* to *{_v(d.get('to_stage'))}*"),
        "model_version.deleted": lambda e, w, d: (
            "🗑️", f"{version[0].upper() + version[1:]} deleted: {e.model} v{e.version}",
            f"{w} was deleted"),
        "model_version_tag.set": lambda e, w, d: (
            "🏷️", f"{e.model} v{e.version}: tag {d.get('key')}",
            f"Tag `{_v(d.get('key'))}` = `{_v(d.get('value'))}` set on {w}"
            + _was(d.get("previous_value"))),
        "model_version_tag.deleted": lambda e, w, d: (
            "🏷️", f"{e.model} v{e.version}: tag {d.get('key')} removed",
            f"Tag `{_v(d.get('key'))}` removed from {w}" + _was(d.get("previous_value"))),
        "model_version_alias.created": lambda e, w, d: (
            "📌", f"{e.model}@{d.get('alias')} → v{e.version}",
            f"Alias `@{_v(d.get('alias'))}` now points to {w}"
            + (f" (was v{_v(d['previous_version'])})" if d.get("previous_version") else "")),
        "model_version_alias.deleted": lambda e, w, d: (
            "📌", f"{e.model}@{d.get('alias')} removed",
            f"Alias `@{_v(d.get('alias'))}` was removed from {w}"),
    }


_DESCRIBE: dict[str, _Describer] = {
    **_family("registered model", "Model", "version"),
    **{PROMPT_TWIN[EventType(t)].value: describe
       for t, describe in _family("prompt", "Prompt", "prompt version").items()},
}


def _flipped(event: Event) -> str:
    """What a change of the ``mlflow.prompt.is_prompt`` tag did, if it flipped the model."""
    d = event.data
    if d.get("key") != IS_PROMPT_TAG or event.version is not None:
        return ""
    was_prompt = str(d.get("previous_value") or "").lower() == "true"
    if is_prompt_event(event.type) and not was_prompt:
        return "it is now a prompt"
    if not is_prompt_event(event.type) and was_prompt:
        return "it is a model again, no longer a prompt"
    return ""


def _generic(event: Event, where: str, data: dict[str, Any]) -> tuple[str, str, str]:
    title = f"{event.type}: {event.model}" + (f" v{event.version}" if event.version else "")
    return "🔔", title, f"`{_v(event.type)}` on {where}"


_FIELDS: tuple[tuple[str, str], ...] = (
    ("from_stage", "From stage"), ("to_stage", "To stage"), ("stage", "Stage"),
    ("status", "Status"), ("previous_status", "Previous status"), ("alias", "Alias"),
    ("previous_version", "Previous version"), ("key", "Tag"), ("value", "Value"),
    ("previous_value", "Previous value"), ("previous_name", "Previous name"),
    ("user_id", "By"), ("run_id", "Run"), ("source", "Source"),
)


def _fields(event: Event, data: dict[str, Any], urls: dict[str, str]) -> list[str]:
    kind = "Prompt" if is_prompt_event(event.type) else "Model"
    out = [f"*{kind}*\n{link(urls['model_url'], _v(event.model))}"]
    if event.version is not None:
        out.append(f"*Version*\n{link(urls['version_url'], _v(event.version))}")
    for key, label in _FIELDS:
        value = data.get(key)
        if value in (None, ""):
            continue
        shown = _v(value)
        if key == "run_id":
            shown = link(urls["run_url"], f"`{shown}`")
        elif key == "alias":
            shown = f"@{shown}"
        out.append(truncate(f"*{label}*\n{shown}", MAX_FIELD))
    for key, label in (("aliases", "Aliases"), ("versions", "Versions")):
        items = data.get(key)
        if isinstance(items, dict):  # a deleted model's aliases: {alias: version}
            items = [f"{a} → v{v}" for a, v in items.items()]
        if isinstance(items, list) and items:
            out.append(truncate(f"*{label}*\n" + ", ".join(_v(i, 100) for i in items), MAX_FIELD))
    return out


def _section(text: str | None, fields: list[str] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section"}
    if text is not None:
        block["text"] = {"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}
    if fields:
        block["fields"] = [{"type": "mrkdwn", "text": f} for f in fields[:MAX_FIELDS]]
    return block


def default_message(event: Event, ui_url: str | None) -> SlackMessage:
    data = event.data
    urls = links(event, ui_url)
    kind = "Prompt" if is_prompt_event(event.type) else "Model"
    where = f"*{_v(event.model)}*" + (f" v{_v(event.version)}" if event.version else "")
    emoji, title, summary = _DESCRIBE.get(event.type, _generic)(event, where, data)
    if flipped := _flipped(event):
        summary = f"{summary}: {flipped}"
    mark = _test_mark(event)
    fields = _fields(event, data, urls)
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": truncate(f"{emoji} {mark}{title}", MAX_HEADER),
                  "emoji": True}},
        _section(summary, fields),
    ]
    if len(fields) > MAX_FIELDS:
        blocks.append(_section(None, fields[MAX_FIELDS:]))
    for key, label in (("description", "Description"),
                       ("previous_description", "Previous description")):
        if data.get(key):
            quoted = "\n".join(f">{line}" for line in _v(data[key], MAX_SECTION).splitlines())
            blocks.append(_section(f"*{label}*\n{quoted}"))
    if data.get("template"):  # a new prompt version: its text, as code
        blocks.append(_section(f"*Template*\n```{_v(data['template'], MAX_SECTION - 30)}```"))
    tags = data.get("tags")
    if isinstance(tags, dict):  # the template is shown above, not again among the tags
        tags = {k: v for k, v in tags.items() if k != PROMPT_TEXT_TAG}
    if isinstance(tags, dict) and tags:
        listed = " · ".join(f"`{_v(k, 100)}`: {_v(v, 200)}" for k, v in sorted(tags.items()))
        label = "Version tags" if event.version is not None else f"{kind} tags"
        blocks.append(_section(f"*{label}*\n{listed}"))
    when = f"<!date^{int(event.time.timestamp())}^{{date_short_pretty}} {{time}}|" \
        f"{event.time.isoformat()}>"  # shown in the reader's time zone
    context = [f"`{_v(event.type)}`", when, f"event {_v(event.id)}"]
    linked = [link(urls["version_url"] or urls["model_url"], "Open in MLflow")]
    if urls["run_url"]:
        linked.append(link(urls["run_url"], "Open run"))
    if urls["model_url"]:
        context = linked + context
    blocks.append({"type": "context",
                   "elements": [{"type": "mrkdwn", "text": truncate(" · ".join(context),
                                                                     MAX_FIELD)}]})
    return SlackMessage(text=truncate(f"{emoji} {mark}{summary}", MAX_TEXT),
                        blocks=blocks[:MAX_BLOCKS])


def _test_mark(event: Event) -> str:
    """``[test] `` before the header and the text of a test send (templates included)."""
    return "[test] " if is_test(event) else ""

def build_message(event: Event, *, ui_url: str | None,
                  templates: Mapping[str, str] | None) -> SlackMessage:
    template = template_for(event.type, templates)
    if template is not None:
        rendered = render_template(template, event, ui_url).strip()
        if rendered:
            rendered = _test_mark(event) + rendered
            return SlackMessage(text=truncate(rendered, MAX_TEXT),
                                blocks=[_section(rendered)])
    return default_message(event, ui_url)


__all__ = ["SlackMessage", "build_message", "default_message"]
