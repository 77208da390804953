"""``registry-hub mlflow-webhook`` against a real ``mlflow server``: ``install`` (re-runnable,
a generated secret printed once), ``list``, and ``test``, whose signed delivery (checked
against an independent implementation of MLflow's scheme) the hub's ingest route accepts;
a wrong secret fails the test, an unreachable MLflow is a clear error."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hub.app import Hub, Roles
from hub.broker.embedded import free_port
from hub.errors import HubError
from hub.ingest.mlflow_webhook import WEBHOOK_EVENTS, add_mlflow_webhook_parser, run_mlflow_webhook
from hub.ingest.push import add_ingest_routes
from tests.support.ingest import sign
from tests.support.ingest_hub import SECRET, config_for, serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def cli(*argv: str) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="registry-hub", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    add_mlflow_webhook_parser(sub, common)
    return parser.parse_args(["mlflow-webhook", *argv])


@dataclass
class Tapped:
    headers: dict[str, str]
    body: bytes
    status: int
    answer: dict[str, Any]


def tap_routes(app: web.Application, ingest_path: str, taps: list[Tapped]) -> None:
    """``POST /tap``: record the raw delivery, forward it unchanged to the real ingest route
    over the wire, and answer what the ingest answered."""

    async def tap(request: web.Request) -> web.Response:
        body = await request.read()
        target = f"http://127.0.0.1:{request.url.port}{ingest_path}"
        forwarded = {k: v for k, v in request.headers.items()
                     if k.lower().startswith("x-mlflow-") or k.lower() == "content-type"}
        async with aiohttp.ClientSession() as session, session.post(
                target, data=body, headers=forwarded) as resp:
            text = await resp.text()
        taps.append(Tapped(dict(request.headers), body, resp.status, json.loads(text)))
        return web.Response(status=resp.status, text=text, content_type="application/json")

    app.router.add_post("/tap", tap)


async def test_install_and_test_send_a_signed_delivery_the_ingest_accepts(
        kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = mlflow_server_factory()
    config = config_for(server.url, kafka_bootstrap, topic_name)
    taps: list[Tapped] = []
    async with Hub(config, Roles(deliver=False)) as hub:
        assert hub.detector is not None
        assert await hub.detector.poll_once() == []
        app = web.Application()
        add_ingest_routes(app, hub)
        tap_routes(app, "/ingest/mlflow", taps)
        runner, base = await serve(app)
        try:
            assert await run_mlflow_webhook(config, cli("install", "--url", f"{base}/tap")) == 0
            out = capsys.readouterr().out
            assert "webhook created" in out and "configured ingest.mlflow_secret" in out
            assert SECRET not in out
            assert await run_mlflow_webhook(config, cli("install", "--url", f"{base}/tap")) == 0
            assert "webhook updated" in capsys.readouterr().out  # re-runnable, no duplicate
            assert await run_mlflow_webhook(config, cli("list")) == 0
            listed = capsys.readouterr().out
            assert listed.count(f"{base}/tap") == 1 and "1 webhook(s)" in listed

            assert await run_mlflow_webhook(config, cli("test")) == 0
            assert "test delivery OK (HTTP 200)" in capsys.readouterr().out
            (delivery,) = taps
            sent = json.loads(delivery.body)
            assert f"{sent['entity']}.{sent['action']}" in WEBHOOK_EVENTS
            assert sent["data"]["name"] == "example_model"  # MLflow's example payload
            h = {k.lower(): v for k, v in delivery.headers.items()}
            assert h["x-mlflow-signature"] == sign(
                SECRET, h["x-mlflow-delivery-id"], h["x-mlflow-timestamp"], delivery.body)
            # the example model does not exist: nothing to publish, and no error either
            assert (delivery.status, delivery.answer) == (200, {"published": 0, "event_ids": []})

            signed = {k: v for k, v in delivery.headers.items() if k.lower().startswith("x-ml")}
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{base}/ingest/mlflow", data=delivery.body,
                                        headers=signed) as resp:
                    assert (resp.status, (await resp.json())["duplicate"]) == (200, True)
                tampered = delivery.body.replace(b"example_model", b"iris")
                async with session.post(f"{base}/ingest/mlflow", data=tampered,
                                        headers=signed) as resp:
                    assert resp.status == 401

            event = "model_version_alias.deleted"
            assert await run_mlflow_webhook(config, cli("test", "--event", event)) == 0
            assert json.loads(taps[-1].body)["entity"] == "model_version_alias"
        finally:
            await runner.cleanup()


async def test_a_generated_secret_is_printed_once_and_a_wrong_one_fails_the_test(
        mlflow_server_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = mlflow_server_factory()
    no_secret = config_for(server.url, "127.0.0.1:9", "unused", secret=None)
    port = free_port()
    url = f"http://127.0.0.1:{port}/ingest/mlflow"
    assert await run_mlflow_webhook(no_secret, cli("install", "--url", url, "--name", "hub")) == 0
    out = capsys.readouterr().out
    secret = out.split("HUB_INGEST__MLFLOW_SECRET): ", 1)[1].split()[0]
    assert len(secret) >= 32
    webhook_id = out.split("id=", 1)[1].split()[0]

    # A process without a detector, configured with the generated secret: signature checked,
    # nothing published here (202).
    hub = Hub(config_for(server.url, "127.0.0.1:9", "unused", secret=secret),
              Roles(detect=False, deliver=False))
    app = web.Application()
    add_ingest_routes(app, hub)
    runner, _ = await serve(app, port)
    try:
        assert await run_mlflow_webhook(no_secret, cli("test", "--id", webhook_id)) == 0
        assert "test delivery OK (HTTP 202)" in capsys.readouterr().out

        assert await run_mlflow_webhook(no_secret, cli(
            "install", "--url", url, "--name", "hub", "--secret", "not-the-hubs-secret")) == 0
        assert "not-the-hubs-secret" not in capsys.readouterr().out
        assert await run_mlflow_webhook(no_secret, cli("test", "--name", "hub")) == 1
        assert "test delivery FAILED (HTTP 401)" in capsys.readouterr().out
    finally:
        await runner.cleanup()


async def test_an_unreachable_mlflow_is_a_clear_error_within_seconds() -> None:
    config = config_for(f"http://127.0.0.1:{free_port()}", "127.0.0.1:9", "unused")
    started = time.monotonic()
    with pytest.raises(HubError, match=r"^MLflow at http://127\.0\.0\.1:\d+ could not list"):
        await run_mlflow_webhook(config, cli("list"))
    assert time.monotonic() - started < 30
