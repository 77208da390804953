"""A small synchronous client of the hub's admin API, with the registry-webhook calls of
Databricks-style code (``create_registered_model_webhook`` and friends)::

    hub = HubClient("http://hub:8080", token=os.environ["HUB_ADMIN_TOKEN"])
    hook = hub.create_registered_model_webhook(
        name="iris-classifier",                      # the model; None = registry-wide
        events=["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"],
        http_url_spec={"url": "https://ci.example.com/hook",
                       "authorization": "Bearer ...", "secret": "..."})
    hub.test_webhook(hook["id"])

A webhook is a runtime subscription with the ``webhook`` handler: ``models`` = [name] (or
``["*"]``), ``authorization`` → an ``Authorization`` header, ``secret`` → an
``X-Databricks-Signature`` (HMAC-SHA256 of the body, hex) unless ``signature_format`` says
otherwise, ``enable_ssl_verification`` → ``verify_tls``, ``status`` ``ACTIVE`` → enabled
(``DISABLED``/``TEST_MODE`` → disabled; the test call still works). Upper-case event names
are aliases (see :mod:`hub.event_aliases`); listings show them as catalog types.

Standard library only (``urllib``); proxies from the environment are not used.
"""

from __future__ import annotations

import fnmatch
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from hub.errors import HubError

STATUSES = ("ACTIVE", "DISABLED", "TEST_MODE")


class HubClientError(HubError):
    """The hub answered with an error (``status``, the API's message and ``field``), or
    could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status = status
        self.field = field
        super().__init__(f"{status}: {message}" + (f" (field {field})" if field else ""))


class HubClient:
    def __init__(self, base_url: str, token: str | None = None, *,
                 timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # --- subscriptions ------------------------------------------------------------------

    def list_subscriptions(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/subscriptions")["subscriptions"])

    def get_subscription(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/subscriptions/{_q(name)}"))

    def create_subscription(self, subscription: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/api/subscriptions", dict(subscription)))

    def update_subscription(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch: given keys replace, ``None`` removes, ``"***"`` keeps a secret."""
        return dict(self._call("PATCH", f"/api/subscriptions/{_q(name)}", dict(patch)))

    def delete_subscription(self, name: str) -> None:
        self._call("DELETE", f"/api/subscriptions/{_q(name)}")

    def test_subscription(self, name: str) -> dict[str, Any]:
        """Send a sample ``model_version.stage_transitioned`` event through the real handler
        once; returns ``status``, ``http_status``, ``detail``, ``latency_ms``, ``event_id``."""
        return dict(self._call("POST", f"/api/subscriptions/{_q(name)}/test"))

    def deliveries(self, *, subscription: str | None = None, status: str | None = None,
                   event_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = {"subscription": subscription, "status": status, "event_id": event_id,
                 "limit": limit}
        return list(self._call("GET", "/api/deliveries", query=query)["deliveries"])

    def dead_letters(self, *, subscription: str | None = None,
                     event_id: str | None = None) -> list[dict[str, Any]]:
        query = {"subscription": subscription, "event_id": event_id}
        return list(self._call("GET", "/api/dead-letters", query=query)["dead_letters"])

    def replay_dead_letters(self, *, subscription: str | None = None,
                            event_id: str | None = None) -> int:
        body = {k: v for k, v in (("subscription", subscription), ("event_id", event_id)) if v}
        return int(self._call("POST", "/api/dead-letters/replay", body)["enqueued"])

    # --- registry webhooks (Databricks-style calls) ----------------------------------------

    def create_registered_model_webhook(
            self, name: str | None = None, events: list[str] | None = None,
            http_url_spec: Any = None, description: str | None = None,
            status: str = "ACTIVE", *, model_name: str | None = None, job_spec: Any = None,
            signature_format: str = "databricks", webhook_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a webhook on model ``name`` (or ``model_name``); ``None`` = every model.
        Returns the webhook with its ``id`` (the subscription's name)."""
        if name and model_name and name != model_name:
            raise ValueError("give the model as name= or model_name=, not both")
        model = name or model_name
        if job_spec is not None:
            raise ValueError("job webhooks (job_spec) are not supported; use a subscription "
                             "with the 'deploy' handler")
        if http_url_spec is None:
            raise ValueError("http_url_spec with at least a 'url' is required")
        if not events:
            raise ValueError("events must name at least one event")
        body: dict[str, Any] = {
            "name": webhook_id or f"webhook-{uuid.uuid4().hex[:16]}",
            "handler": "webhook", "events": list(events),
            "models": [model] if model else ["*"],
            "enabled": _enabled(status), "signature_format": signature_format,
            **_url_spec(http_url_spec, partial=False),
        }
        if description is not None:
            body["description"] = description
        return as_webhook(self.create_subscription(body))

    def list_webhooks(self, model_name: str | None = None) -> list[dict[str, Any]]:
        """Webhook subscriptions (config and runtime), those reaching ``model_name`` if
        given."""
        hooks = [s for s in self.list_subscriptions() if s.get("handler") == "webhook"]
        if model_name is not None:
            hooks = [s for s in hooks
                     if any(fnmatch.fnmatchcase(model_name, p) for p in s.get("models", []))]
        return [as_webhook(s) for s in hooks]

    def update_webhook(self, id: str, events: list[str] | None = None,
                       http_url_spec: Any = None, description: str | None = None,
                       status: str | None = None) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        if events is not None:
            patch["events"] = list(events)
            patch["when"] = None  # conditions came from the previous aliases
        if http_url_spec is not None:
            patch.update(_url_spec(http_url_spec, partial=True))
        if description is not None:
            patch["description"] = description
        if status is not None:
            patch["enabled"] = _enabled(status)
        return as_webhook(self.update_subscription(id, patch))

    def delete_webhook(self, id: str) -> None:
        self.delete_subscription(id)

    def test_webhook(self, id: str) -> dict[str, Any]:
        return self.test_subscription(id)

    # --- transport ----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              query: Mapping[str, Any] | None = None) -> Any:
        url = self.base_url + path
        if query:
            given = {k: str(v) for k, v in query.items() if v is not None}
            url += "?" + urllib.parse.urlencode(given) if given else ""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None or method in ("POST", "PUT", "PATCH"):
            data = json.dumps(body or {}).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                error = json.loads(raw)
            except ValueError:
                error = {"error": raw.decode("utf-8", errors="replace")[:200] or exc.reason}
            raise HubClientError(exc.code, str(error.get("error")), error.get("field")) \
                from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HubClientError(0, f"cannot reach {self.base_url}: {reason}") from None
        return json.loads(raw) if raw else None


def as_webhook(sub: Mapping[str, Any]) -> dict[str, Any]:
    """A subscription as a registry webhook (``id``, ``model_name``, ``events``,
    ``http_url_spec``...); the subscription itself under ``subscription``."""
    models = list(sub.get("models") or ["*"])
    headers = sub.get("headers") or {}
    return {
        "id": sub["name"],
        "model_name": models[0] if len(models) == 1 and models[0] != "*" else None,
        "events": sub.get("events"),
        "when": sub.get("when"),
        "status": "ACTIVE" if sub.get("enabled", True) else "DISABLED",
        "description": sub.get("description"),
        "http_url_spec": {
            "url": sub.get("url"),
            "enable_ssl_verification": sub.get("verify_tls", True),
            "authorization": headers.get("Authorization"),  # masked by the hub
            "secret": sub.get("secret"),  # masked by the hub
        },
        "source": sub.get("source"),
        "subscription": dict(sub),
    }


def _url_spec(spec: Any, *, partial: bool) -> dict[str, Any]:
    """``http_url_spec`` (a mapping or an object with attributes) → webhook options."""
    def get(key: str) -> Any:
        return spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)

    options: dict[str, Any] = {}
    if get("url") is not None:
        options["url"] = get("url")
    elif not partial:
        raise ValueError("http_url_spec needs a 'url'")
    if get("secret"):
        options["secret"] = get("secret")
    if get("authorization"):
        options["headers"] = {"Authorization": get("authorization")}
    if get("enable_ssl_verification") is not None:
        options["verify_tls"] = bool(get("enable_ssl_verification"))
    return options


def _enabled(status: str) -> bool:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return status == "ACTIVE"


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


__all__ = ["HubClient", "HubClientError", "as_webhook"]
