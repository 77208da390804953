"""Marker secrets through every path, looked for everywhere they must not show.

Unique random strings are fed in as secrets the way an operator or an API client would:
config-file subscription options (a webhook secret, headers with secret-looking names and a
``${VAR}`` reference, a URL with ``user:password``, ``?token=``, ``&sig=`` and a fragment, a
Slack bot token and incoming-webhook URL, deploy tokens and ``?api_key=``), a runtime
subscription created over the admin API (and attempts to read environment secrets through
``${...}`` in one, refused with 422), an old-format runtime record already in the
subscriptions topic that references the environment, the ingest secret, the Kafka SASL
password (environment) and the admin token. A real hub runs them (``python -m hub run`` at
DEBUG against the session broker, a sqlite registry) into a receiver that always answers
500, so attempts, retries and dead letters happen.

Then the markers are looked for in: every line the hub printed (logs at DEBUG), every admin
API answer (subscriptions, each subscription, deliveries, dead letters, /readyz, /metrics,
the refusals, a test send), ``check-config``'s output for bad configurations holding them,
and every record of every topic the hub wrote (events, retry, dead letters, attempts, the
detector's state). The subscriptions topic is the one place documented to hold the secrets
of runtime subscriptions, so only environment secrets are looked for there. The receiver
legitimately gets what its subscriptions send it; environment secrets that no subscription
of the configuration file sends must never reach it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hub.broker.embedded import free_port
from hub.signing import mlflow_headers
from tests.support.hub_process import STARTUP_TIMEOUT_S, HubProcess, clean_env
from tests.support.receiver import Receiver, running_receiver
from tests.support.wait import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _marker(label: str) -> str:
    return f"mk{label}{secrets.token_hex(10)}"


def _whsec(label: str) -> tuple[str, str]:
    """A Standard Webhooks secret and the marker it carries (its base64 part)."""
    raw = base64.b64encode(f"{_marker(label)}".encode()).decode()
    return f"whsec_{raw}", raw


@dataclass
class Markers:
    """Every marker, by what it is; ``env`` ones live only in the hub's environment."""

    config: dict[str, str] = field(default_factory=dict)
    runtime: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def all(self) -> dict[str, str]:
        return {**self.config, **self.runtime, **self.env}


@dataclass
class Leaks:
    found: list[str] = field(default_factory=list)

    def look(self, where: str, text: str, markers: dict[str, str]) -> None:
        for name, value in markers.items():
            if value in text:
                self.found.append(f"{name} in {where}")


class Admin:
    """The admin API with the configured bearer token; remembers every answer."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http, self.url, self.token = http, url, token
        self.answers: list[tuple[str, str]] = []

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        async with self.http.request(method, self.url + path, data=data, headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json"}) as resp:
            text = await resp.text()
        self.answers.append((f"{method} {path} → {resp.status}", text))
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


@asynccontextmanager
async def recording_receiver() -> AsyncIterator[tuple[Receiver, list[str]]]:
    """The support receiver; every request (any status) is also kept as raw text."""
    seen: list[str] = []

    async def record(request: web.Request) -> None:
        body = await request.read()
        seen.append(f"{request.method} {request.path_qs}\n{dict(request.headers)}\n"
                    f"{body.decode('utf-8', 'replace')}")

    async with running_receiver(before=record) as receiver:
        yield receiver, seen


async def _read_all(bootstrap: str, prefix: str) -> dict[str, list[str]]:
    """Every record (key, value, headers) of every topic whose name starts with ``prefix``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        topics = sorted(t for t in await consumer.topics() if t.startswith(prefix))
        tps = [TopicPartition(t, p) for t in topics
               for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        texts: dict[str, list[str]] = {t: [] for t in topics}
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, messages in batch.items():
                for m in messages:
                    texts[tp.topic].append(repr((m.key, m.value, m.headers)))
                    if m.offset + 1 >= ends[tp]:
                        pending.discard(tp)
        return texts
    finally:
        await consumer.stop()


async def _check_config(tmp_path: Path, name: str, config: dict[str, Any],
                        env: dict[str, str]) -> tuple[int, str]:
    path = tmp_path / f"bad-{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", "check-config", "--config", str(path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_marker_secrets_never_leave_through_logs_api_errors_or_topics(
        kafka_bootstrap: str, tmp_path: Path, _mlflow_template_db: Path) -> None:
    m = Markers()
    admin_token = m.env["admin_token"] = _marker("admintoken")
    ingest_secret = m.env["ingest_secret"] = _marker("ingest")
    m.env["sasl_password"] = _marker("sasl")
    m.env["env_header"] = _marker("envheader")
    m.env["env_deploy_token"] = _marker("envdeploy")
    hook_secret, m.config["webhook_secret"] = _whsec("hooksecret")
    for name in ("url_password", "url_token", "url_sig", "url_fragment", "header_api_key",
                 "header_authorization", "slack_token", "slack_webhook_path",
                 "github_token", "deploy_api_key"):
        m.config[name] = _marker(name.replace("_", ""))
    rt_secret, m.runtime["runtime_secret"] = _whsec("rtsecret")
    for name in ("runtime_url_password", "runtime_url_token", "runtime_header"):
        m.runtime[name] = _marker(name.replace("_", ""))

    topic = f"test-sweep-{uuid.uuid4().hex[:12]}"
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_mlflow_template_db, db)
    env = clean_env(
        HUB_INGEST__MLFLOW_SECRET=ingest_secret,
        HUB_KAFKA__SASL_PASSWORD=m.env["sasl_password"],
        SWEEP_HEADER_TOKEN=m.env["env_header"],
        SWEEP_DEPLOY_TOKEN=m.env["env_deploy_token"],
        HUB_ADMIN__PORT=str(admin_port := free_port()),
    )
    c = m.config
    leaks = Leaks()
    problems: list[str] = []

    async with recording_receiver() as (receiver, seen), aiohttp.ClientSession() as http:
        fail = f"{receiver.url}/status/500"
        host = receiver.url.removeprefix("http://")
        config = {
            "mlflow": {"tracking_uri": f"sqlite:///{db}"},
            "detector": {"poll_interval_s": 0.3, "leader_election": False},
            "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": topic, "partitions": 2,
                      "session_timeout_ms": 2000, "heartbeat_interval_ms": 500},
            "delivery": {"retry_schedule_s": [0.05, 0.05], "jitter": 0,
                         "allowed_networks": ["127.0.0.0/8"], "grace_period_s": 1,
                         "start_from": "earliest"},
            "admin": {"token": admin_token},
            "log_level": "DEBUG",
            "subscriptions": [
                {"name": "hook-file", "handler": "webhook",
                 "url": f"http://hookuser:{c['url_password']}@{host}/status/500/hook"
                        f"?token={c['url_token']}&sig={c['url_sig']}#{c['url_fragment']}",
                 "secret": hook_secret, "timeout_s": 5,
                 "headers": {"X-Api-Key": c["header_api_key"],
                             "X-Env-Token": "${SWEEP_HEADER_TOKEN}"}},
                {"name": "slack-hook", "handler": "slack", "min_interval_s": 0,
                 "webhook_url": f"{fail}/slackhook/T0/B0/{c['slack_webhook_path']}"},
                {"name": "slack-bot", "handler": "slack", "min_interval_s": 0,
                 "token": f"xoxb-{c['slack_token']}", "channel": "#models",
                 "api_base_url": f"{fail}/slackapi/"},
                {"name": "deploy-http", "handler": "deploy", "target": "http",
                 "url": f"{fail}/deploy?api_key={c['deploy_api_key']}",
                 "headers": {"Authorization": f"Bearer {c['header_authorization']}",
                             "X-Deploy-Token": "${SWEEP_DEPLOY_TOKEN}"}},
                {"name": "deploy-gh", "handler": "deploy", "target": "github_dispatch",
                 "repo": "acme/serving", "token": f"ghp_{c['github_token']}",
                 "event_type": "deploy", "api_base_url": f"{fail}/github"},
            ],
        }
        path = tmp_path / "hub.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")

        # check-config with bad configurations holding the markers, while the hub starts
        bad_url = f"ftp://cfguser:{c['url_password']}@h.example/x?token={c['url_token']}"
        bad_configs = {
            "deploy-url": {"subscriptions": [{"name": "d", "handler": "deploy",
                                              "target": "http", "url": bad_url}]},
            "slack-base-url": {"subscriptions": [{
                "name": "s", "handler": "slack", "token": f"xoxb-{c['slack_token']}",
                "channel": "#m", "api_base_url": bad_url}]},
            "webhook-url": {"subscriptions": [{
                "name": "w", "handler": "webhook", "url": bad_url.replace("ftp:", "htp:"),
                "secret": hook_secret, "headers": {"X-Api-Key": c["header_api_key"]}}]},
            "webhook-bad-header": {"subscriptions": [{
                "name": "w", "handler": "webhook", "url": "https://h.example/x",
                "headers": {"Bad Header": c["header_api_key"],
                            "Authorization": f"Bearer {c['header_authorization']}"}}]},
            "timeout-is-a-url": {"subscriptions": [{
                "name": "w", "handler": "webhook", "url": "https://h.example/x",
                "timeout_s": bad_url}]},
            "misspelt-secret": {"subscriptions": [{
                "name": "w", "handler": "webhook", "url": "https://h.example/x",
                "secert": hook_secret}], "admin": {"token": [admin_token]}},
            "unset-env-reference": {"subscriptions": [{
                "name": "w", "handler": "webhook", "url": "https://h.example/x",
                "headers": {"X-Token": "${SWEEP_NOT_SET}"}}]},
        }
        checks = asyncio.gather(*(_check_config(tmp_path, name, bad, env)
                                  for name, bad in bad_configs.items()))

        # an old hub wrote a runtime subscription that reads the environment
        legacy = {"name": "legacy", "handler": "webhook", "url": f"{receiver.url}/ok/legacy",
                  "headers": {"X-Exfil": "${HUB_INGEST__MLFLOW_SECRET}"}}
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(f"{topic}.subscriptions", key=b"legacy", partition=0,
                                         value=json.dumps({"format": 1,
                                                           "subscription": legacy}).encode())
        finally:
            await producer.stop()

        hub = HubProcess(["run", "--config", str(path), "--log-level", "DEBUG"], tmp_path, env)
        try:
            # the legacy record keeps the hub from being ready: it says so, naming it
            await asyncio.to_thread(
                hub.wait_line, "stderr", lambda line: line.startswith(
                    "registry-hub not ready: no lane for subscription(s) legacy"),
                "not ready because of the legacy record", STARTUP_TIMEOUT_S)
            url = f"http://127.0.0.1:{admin_port}"
            api = Admin(http, url, admin_token)
            await api("GET", "/api/subscriptions/legacy")
            await api("GET", "/readyz")
            await api("POST", "/api/subscriptions/legacy/test")
            status, _ = await api("DELETE", "/api/subscriptions/legacy")
            if status != 204:
                problems.append(f"DELETE legacy: {status}")
            await asyncio.to_thread(
                hub.wait_line, "stdout", lambda line: line.startswith("registry-hub ready"),
                "the ready line", STARTUP_TIMEOUT_S)

            # a runtime subscription with secrets of its own
            r = m.runtime
            runtime_url = (f"http://rtuser:{r['runtime_url_password']}@{host}/status/500/rt"
                           f"?token={r['runtime_url_token']}")
            status, created = await api("POST", "/api/subscriptions", {
                "name": "hook-runtime", "handler": "webhook", "url": runtime_url,
                "secret": rt_secret, "headers": {"X-Api-Key": r["runtime_header"]},
                "timeout_s": 5})
            assert status == 201, created

            # reading the environment through a runtime subscription is refused, naming the field
            refusals = {
                "webhook-header": ("POST", "/api/subscriptions", {
                    "name": "exfil", "handler": "webhook", "url": f"{receiver.url}/ok/exfil",
                    "headers": {"X-Exfil": "${HUB_INGEST__MLFLOW_SECRET}"}},
                    "headers.X-Exfil"),
                "deploy-token": ("POST", "/api/subscriptions", {
                    "name": "exfil", "handler": "deploy", "target": "github_dispatch",
                    "repo": "a/b", "event_type": "x", "api_base_url": f"{receiver.url}/ok",
                    "token": "${HUB_KAFKA__SASL_PASSWORD}"}, "token"),
                "url": ("POST", "/api/subscriptions", {
                    "name": "exfil", "handler": "webhook",
                    "url": f"{receiver.url}/ok/exfil?x=${{HUB_ADMIN__TOKEN}}"}, "url"),
                "patch": ("PATCH", "/api/subscriptions/hook-runtime", {
                    "headers": {"X-Exfil": "${HUB_INGEST__MLFLOW_SECRET}"}},
                    "headers.X-Exfil"),
                "put": ("PUT", "/api/subscriptions/hook-runtime", {
                    **created, "url": runtime_url,
                    "headers": {"X-Exfil": "${SWEEP_HEADER_TOKEN}"}}, "headers.X-Exfil"),
            }
            refused = {}
            for what, (method, where, body, _) in refusals.items():
                refused[what] = await api(method, where, body)

            # a change in the registry → every subscription fails, retries, dead-letters
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=f"sqlite:///{db}",
                                  registry_uri=f"sqlite:///{db}")
            await asyncio.to_thread(client.create_registered_model, "iris")
            push = json.dumps({"entity": "registered_model", "action": "created",
                               "timestamp": "2027-01-15T08:00:00+00:00",
                               "data": {"name": "iris"}}).encode()
            signed = mlflow_headers(ingest_secret, "d-1", int(time.time()), push)
            for headers in (signed, {**signed, "X-MLflow-Signature": "v1,AAAA"}):
                async with http.post(url + "/ingest/mlflow", data=push, headers={
                        **headers, "Content-Type": "application/json"}) as resp:
                    leaks.look(f"POST /ingest/mlflow → {resp.status}", await resp.text(),
                               m.all())

            names = {"hook-file", "slack-hook", "slack-bot", "deploy-http", "deploy-gh",
                     "hook-runtime"}

            async def dead() -> set[str]:
                status, body = await api("GET", "/api/dead-letters")
                return {d["subscription"] for d in body["dead_letters"]} if status == 200 \
                    else set()

            try:
                await eventually(dead, lambda got: names <= got,
                                 what="a dead letter per subscription", timeout_s=60)
            except AssertionError as exc:
                problems.append(str(exc))
            await api("POST", "/api/subscriptions/hook-runtime/test")
            for path_ in ("/api/subscriptions", "/api/deliveries?limit=1000",
                          "/api/dead-letters", "/readyz", "/metrics", "/healthz",
                          *(f"/api/subscriptions/{n}" for n in sorted(names))):
                await api("GET", path_)
            topics = await _read_all(kafka_bootstrap, topic)
        finally:
            code = await asyncio.to_thread(hub.terminate)
            bad_results = await checks

    # --- where the markers must not be -----------------------------------------------------
    if code != 0:
        problems.append(f"the hub exited with {code}")
    leaks.look("the hub's output", hub.dump(), m.all())
    for where, text in api.answers:
        leaks.look(where, text, m.all())
    for (name, (rc, output)) in zip(bad_configs, bad_results, strict=True):
        if rc != 2:
            problems.append(f"check-config {name} exited with {rc}: {output}")
        leaks.look(f"check-config {name}", output, m.all())
    for name, records in topics.items():
        allowed = m.env if name.endswith(".subscriptions") else m.all()
        leaks.look(f"topic {name}", "\n".join(records), allowed)
    never_sent = {k: m.env[k] for k in ("ingest_secret", "sasl_password", "admin_token")}
    leaks.look("the receiver", "\n".join(seen), never_sent)

    # --- the paths really carried them -----------------------------------------------------
    if not (any(c["header_api_key"] in s for s in seen)
            and any(m.env["env_header"] in s for s in seen)):
        problems.append("the file's webhook headers did not reach the receiver")
    if not any(m.env["env_deploy_token"] in s for s in seen):
        problems.append("${VAR} in a deploy header of the file was not expanded")
    if not any(r["runtime_header"] in s for s in seen):
        problems.append("the runtime subscription did not deliver")
    if any("/legacy" in s for s in seen):
        problems.append("the legacy record referencing the environment was delivered")
    if not any("substore.refused" in line and "legacy" in line
               for line in hub.lines("stderr")):
        problems.append("no substore.refused log line naming 'legacy': " + "\n".join(
            line for line in hub.lines("stderr") if "substore" in line))
    for what, (_, _, _, field_) in refusals.items():
        status, body = refused[what]
        if not (status == 422 and isinstance(body, dict) and body.get("field") == field_
                and "only allowed in the configuration file" in body.get("error", "")):
            problems.append(f"runtime ${{...}} {what}: {status} {body}")
    for t in (topic, f"{topic}.dlq", f"{topic}.deliveries", f"{topic}.retry"):
        if not topics.get(t):
            problems.append(f"nothing on {t}")
    assert not leaks.found and not problems, "\n".join(
        [f"{len(leaks.found)} leak(s):", *leaks.found, f"{len(problems)} problem(s):",
         *problems])
