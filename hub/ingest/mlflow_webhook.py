"""``registry-hub mlflow-webhook install|test|list``: point an MLflow server's own webhook at
the hub's ``/ingest/mlflow`` (the push path), check it, see what is registered.

``install`` is re-runnable: a webhook with the same name is updated (URL, events, secret)
instead of duplicated. The secret is, in order: ``--secret``, the configured
``ingest.mlflow_secret``, or a generated one, printed once to put into the hub's
configuration. ``MlflowClient`` is synchronous and runs off the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from hub.config import AdminConfig, HubConfig
from hub.detect.registry_uri import open_client
from hub.errors import HubError
from hub.ingest.push import INGEST_PATH, REGISTRY_EVENTS
from hub.redaction import redact_url

DEFAULT_NAME = "registry-hub"
WEBHOOK_EVENTS: tuple[str, ...] = tuple(sorted(f"{e}.{a}" for e, a in REGISTRY_EVENTS))
T = TypeVar("T")


def default_ingest_url(admin: AdminConfig) -> str:
    """The ingest URL from ``admin.host``/``admin.port``; a wildcard bind address is replaced
    by this machine's name (pass ``--url`` when MLflow reaches the hub by another name)."""
    host = admin.host
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{admin.port}{INGEST_PATH}"


def add_mlflow_webhook_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("mlflow-webhook", parents=[common],
                       help="register/test the MLflow webhook that pushes to /ingest/mlflow")
    actions = p.add_subparsers(dest="webhook_action", required=True, metavar="ACTION")
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--tracking-uri", help="MLflow server whose registry keeps the "
                                               "webhook (default: mlflow.registry_uri, else "
                                               "mlflow.tracking_uri)")
    install = actions.add_parser(
        "install", parents=[common, shared],
        help="create (or update, by name) the webhook for the registry's model and prompt "
             "events")
    install.add_argument("--url", help="the hub's ingest URL as MLflow reaches it "
                                       "(default: from admin.host/admin.port)")
    install.add_argument("--secret", help="HMAC secret (default: ingest.mlflow_secret, "
                                          "else a generated one, printed once)")
    install.add_argument("--name", default=DEFAULT_NAME, help=f"default: {DEFAULT_NAME}")
    test = actions.add_parser("test", parents=[common, shared],
                              help="ask MLflow to send a test delivery; exit 1 if it failed")
    which = test.add_mutually_exclusive_group()
    which.add_argument("--id", dest="webhook_id", help="webhook id")
    which.add_argument("--name", default=DEFAULT_NAME, help=f"webhook name (default: "
                                                            f"{DEFAULT_NAME})")
    test.add_argument("--event", choices=WEBHOOK_EVENTS,
                      help="event to simulate (default: the webhook's first)")
    actions.add_parser("list", parents=[common, shared], help="webhooks on the MLflow server")


async def run_mlflow_webhook(config: HubConfig, args: argparse.Namespace) -> int:
    return await asyncio.to_thread(_run, config, args)


def _run(config: HubConfig, args: argparse.Namespace) -> int:
    # webhooks belong to the registry: the one given, else the one the hub watches
    uri = args.tracking_uri or config.mlflow.registry
    client = open_client(config.mlflow, tracking_uri=args.tracking_uri, registry_uri=uri)
    action: Callable[[Any, HubConfig, argparse.Namespace, str], int] = {
        "install": _install, "test": _test, "list": _list}[args.webhook_action]
    return action(client, config, args, redact_url(uri))


def _call(where: str, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        hint = ""
        if "private" in exc.message.lower() or "scheme" in exc.message.lower():
            hint = (" (for an internal or http:// hub URL, start the MLflow server with "
                    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true and/or "
                    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https)")
        raise HubError(f"MLflow at {where} could not {what}: {exc.message[:500]}{hint}"
                       ) from exc
    except Exception as exc:  # anything else from the client (requests, sqlalchemy)
        raise HubError(f"MLflow at {where} could not {what}: {type(exc).__name__}: "
                       f"{str(exc)[:300]}; check --tracking-uri (or mlflow.registry_uri, "
                       f"mlflow.tracking_uri)") from exc


def _webhooks(client: Any, where: str) -> list[Any]:
    found: list[Any] = []
    token: str | None = None
    while True:
        page = _call(where, "list webhooks", client.list_webhooks, max_results=100,
                     page_token=token)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def _install(client: Any, config: HubConfig, args: argparse.Namespace, where: str) -> int:
    url = args.url or default_ingest_url(config.admin)
    generated = False
    if args.secret:
        secret = args.secret
    elif config.ingest.mlflow_secret is not None:
        secret = config.ingest.mlflow_secret.get_secret_value()
    else:
        secret, generated = secrets.token_urlsafe(32), True
    existing = [w for w in _webhooks(client, where) if w.name == args.name]
    if existing:
        hook = _call(where, "update the webhook", client.update_webhook, existing[0].webhook_id,
                     url=url, events=list(WEBHOOK_EVENTS), secret=secret, status="ACTIVE")
        verb = "updated"
    else:
        hook = _call(where, "create the webhook", client.create_webhook, args.name, url,
                     events=list(WEBHOOK_EVENTS), secret=secret,
                     description="Registry Hub push path (/ingest/mlflow)")
        verb = "created"
    print(f"webhook {verb} on {where}: id={hook.webhook_id} name={hook.name} url={hook.url}")
    print(f"events: {', '.join(WEBHOOK_EVENTS)}")
    if generated:
        print("generated secret (shown once; set it on the hub as ingest.mlflow_secret, "
              f"e.g. HUB_INGEST__MLFLOW_SECRET): {secret}")
    elif not args.secret:
        print("signed with the configured ingest.mlflow_secret")
    print(f"check it with: registry-hub mlflow-webhook test --id {hook.webhook_id}")
    return 0


def _test(client: Any, config: HubConfig, args: argparse.Namespace, where: str) -> int:
    webhook_id = args.webhook_id
    if webhook_id is None:
        named = [w for w in _webhooks(client, where) if w.name == args.name]
        if not named:
            raise HubError(f"no webhook named {args.name!r} on {where}; create it with "
                           "`registry-hub mlflow-webhook install`, or pass --id")
        webhook_id = named[0].webhook_id
    result = _call(where, "test the webhook", client.test_webhook, webhook_id, args.event)
    body = (result.response_body or "").strip()[:300]
    status = f"HTTP {result.response_status}" if result.response_status is not None else "no answer"
    if result.success:
        print(f"test delivery OK ({status}): {body}")
        return 0
    detail = result.error_message or body
    print(f"test delivery FAILED ({status}): {detail}")
    return 1


def _list(client: Any, config: HubConfig, args: argparse.Namespace, where: str) -> int:
    hooks = _webhooks(client, where)
    for w in hooks:
        events = ",".join(sorted(str(e) for e in w.events))
        status = getattr(w.status, "value", w.status)
        print(f"{w.webhook_id}  {w.name}  {status}  {w.url}  {events}")
    print(f"{len(hooks)} webhook(s) on {where}")
    return 0


__all__ = ["WEBHOOK_EVENTS", "add_mlflow_webhook_parser", "default_ingest_url",
           "run_mlflow_webhook"]
