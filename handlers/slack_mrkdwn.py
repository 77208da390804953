"""Slack mrkdwn text, pure: escaping, cutting to a limit without breaking the markup, and
links to the MLflow UI.

Shared by the default messages (:mod:`handlers.slack_messages`) and the subscription
templates (:mod:`handlers.slack_templates`). :func:`truncate` never splits an ``&amp;``
entity or a ``<link|label>``, so a cut value is still valid mrkdwn.
"""

from __future__ import annotations

from urllib.parse import quote

from hub.events import Event, is_prompt_event

MAX_VALUE = 300  # one data value inside a sentence or a field


def escape(value: object) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, ending with ``…``, never inside an
    ``&amp;``-style entity or a ``<url|label>`` link."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…" if limit > 0 else ""

def short(value: object, limit: int = MAX_VALUE) -> str:
    """A data value for mrkdwn: escaped and short."""
    return escape(truncate(str(value), limit))


def links(event: Event, ui_url: str | None) -> dict[str, str]:
    """MLflow UI links for the event (empty strings without a UI URL)."""
    out = {"model_url": "", "version_url": "", "run_url": ""}
    if not ui_url:
        return out
    base = ui_url.rstrip("/")
    model = quote(event.model, safe="")
    if is_prompt_event(event.type):  # the prompt's page lists its versions
        out["model_url"] = f"{base}/#/prompts/{model}"
        if event.version is not None:
            out["version_url"] = out["model_url"]
    else:
        out["model_url"] = f"{base}/#/models/{model}"
    if event.version is not None and not out["version_url"]:
        out["version_url"] = f"{out['model_url']}/versions/{quote(str(event.version), safe='')}"
    run_id = event.data.get("run_id")
    if run_id:  # MLflow's UI route ``/runs/:runUuid`` needs no experiment id
        out["run_url"] = f"{base}/#/runs/{quote(str(run_id), safe='')}"
    return out

def link(url: str, label: str) -> str:
    return f"<{url}|{label}>" if url else label


__all__ = ["MAX_VALUE", "escape", "link", "links", "short", "truncate"]
