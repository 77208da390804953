"""Latency benchmark: MLflow registry change -> webhook receiver, through the hub's push path
(MLflow's webhook -> ``/ingest/mlflow``), through its poll path, and MLflow's own webhook
straight to the receiver (the baseline), in one run.

    /work/venv/bin/python bench/latency.py                       # the issue's sizes (about 75 s)
    /work/venv/bin/python bench/latency.py --mutations 20        # a quick look

Everything is real and local (127.0.0.1): a real ``mlflow server`` (sqlite, one worker, the
test suite's environment: loopback webhooks allowed, webhook cache TTL 0), an embedded Tansu
broker, a ``Hub`` with every role (detector under leader election, delivery worker, admin
server with ``/ingest/mlflow``) in this process, and a receiver in a *separate process*
(aiohttp; stamps each arrival with ``time.time()`` as soon as the body is read, then checks
its signature: Standard Webhooks for the hub, MLflow's HMAC for MLflow's own webhook).

The mutation is ``set_model_version_tag`` with a key unique to each mutation (so no two
changes can coalesce into one event), round-robin over ``--models`` models, one every
``--interval`` s. MLflow pushes ``model_version_tag.set`` for it; the hub delivers
``model_version_tag.set`` to a webhook subscription (standard signature).

Phases (each with its own hub, topics and consumer groups):

1. **push**: ``detector.poll_interval_s: 3600`` (after the first poll, only a push can
   publish), ``ingest.mlflow_secret`` set, and two MLflow webhooks on the same event: one to
   the hub's ``/ingest/mlflow``, one straight to the receiver. Both paths see the *same*
   mutations: the baseline is measured beside the push path.
2. **poll**: the hub's MLflow webhook is deleted and the hub has no ingest secret;
   ``poll_interval_s: --poll-interval``. MLflow's direct webhook stays on (second baseline).

Latency = receiver arrival - the moment the ``MlflowClient`` call *started*. (MLflow hands
its webhooks to a thread pool before it answers the request, so its own webhook can arrive
before the client call returns: measured from the call's end it can be negative.) The JSON
also has the figures from the call's end, and a breakdown of the push and poll paths taken by
wrapping the hub's instances (nothing in ``hub/`` is changed): when the push reached
``Detector.pushed``, when the broker acknowledged the event, when the checkpoint was written,
when the delivery worker called the webhook handler. A plain aiokafka consumer on the events
topic (``--probe-fetch-wait-ms``) shows what Kafka -> consumer costs without the hub.

Prints a compact table and, last, one JSON line (``BENCH_LATENCY {...}``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from common import (
    ROOT,
    ReceiverProcess,
    add_run_args,
    headline,
    load,
    local_delivery,
    mlflow_server,
    ms,
    new_parser,
    pct,
    percentiles_ms,
    quiet_mlflow,
    run_benchmark,
    run_info,
    seek_to_end,
    serve_receiver,
    use_checkout,
)

use_checkout()  # run as a script: make `hub` and `tests.support` importable
quiet_mlflow()

HUB_SECRET = "whsec_" + "bGF0ZW5jeS1iZW5jaG1hcmstc2VjcmV0LTEyMzQ1Ng=="  # hub -> receiver
INGEST_SECRET = "latency-bench-ingest-secret-5b2d"  # MLflow -> hub
DIRECT_SECRET = "latency-bench-direct-secret-91ac"  # MLflow -> receiver
EVENT = "model_version_tag.set"
HUB_PATH, MLFLOW_PATH = "/hub", "/mlflow"


# --- the receiver (its own process: `latency.py --serve-receiver`) ---------------------------


class ReceiverApp:
    """``POST /hub`` (the hub's deliveries) and ``POST /mlflow`` (MLflow's own webhook): stamp
    the arrival per tag key, then verify the signature. ``GET /_wait`` and ``/_arrivals``."""

    def __init__(self) -> None:
        from standardwebhooks.webhooks import Webhook

        self._standard = Webhook(HUB_SECRET)
        self.arrivals: dict[str, dict[str, float]] = {HUB_PATH: {}, MLFLOW_PATH: {}}
        self.verified: dict[str, list[int]] = {HUB_PATH: [0, 0], MLFLOW_PATH: [0, 0]}
        self.changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_"):
            return await self._control(request)
        raw = await request.read()
        now = time.time()
        path = request.path
        if path not in self.arrivals:
            return web.Response(status=404)
        key = json.loads(raw)["data"].get("key")
        if isinstance(key, str):
            self.arrivals[path].setdefault(key, now)
        self.verified[path][0 if self._verify(path, raw, request.headers) else 1] += 1
        async with self.changed:
            self.changed.notify_all()
        return web.Response(text="ok")

    def _verify(self, path: str, raw: bytes, headers: Any) -> bool:
        try:
            if path == HUB_PATH:
                self._standard.verify(raw, dict(headers))
                return True
            signed = (f"{headers['X-MLflow-Delivery-Id']}.{headers['X-MLflow-Timestamp']}."
                      .encode() + raw)
            digest = hmac.new(DIRECT_SECRET.encode(), signed, hashlib.sha256).digest()
            expected = "v1," + base64.b64encode(digest).decode()
            return hmac.compare_digest(expected, headers["X-MLflow-Signature"])
        except Exception:
            return False

    def _matching(self, path: str, prefix: str) -> dict[str, float]:
        return {k: t for k, t in self.arrivals.get(path, {}).items() if k.startswith(prefix)}

    async def _control(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        path, prefix = q["path"], q.get("prefix", "")
        if request.path == "/_wait":
            count = int(q["count"])
            with contextlib.suppress(TimeoutError):
                async with self.changed:
                    await asyncio.wait_for(self.changed.wait_for(
                        lambda: len(self._matching(path, prefix)) >= count),
                        float(q.get("timeout", 60)))
        ok, bad = self.verified.get(path, [0, 0])
        return web.json_response({"arrivals": self._matching(path, prefix),
                                  "verified": ok, "unverified": bad})


class Receiver(ReceiverProcess):
    """This script's receiver (``--serve-receiver``) as a child process."""

    def __init__(self, log_path: Path) -> None:
        super().__init__(__file__, log_path)

    async def wait(self, path: str, prefix: str, count: int, timeout_s: float
                   ) -> dict[str, Any]:
        """Until ``count`` keys starting with ``prefix`` reached ``path`` (or the timeout):
        ``{"arrivals": {key: unix time}, "verified": n, "unverified": n}``."""
        return await self.get("/_wait", {"path": path, "prefix": prefix, "count": str(count),
                                         "timeout": str(timeout_s)})


# --- the registry ----------------------------------------------------------------------------


def model_name(m: int) -> str:
    return f"latency-model-{m:02d}"


def seed(client: Any, models: int, versions: int) -> None:
    exp_id = client.create_experiment("latency-bench")
    run = client.create_run(exp_id)
    for m in range(models):
        client.create_registered_model(model_name(m))
        for _ in range(versions):
            client.create_model_version(model_name(m), f"{run.info.artifact_uri}/model",
                                        run.info.run_id)


# --- one phase -------------------------------------------------------------------------------


@dataclass
class HubStamps:
    """Per tag key, when (unix time) the event passed each step inside the hub, taken by
    wrapping the detector's and the handler's *instances* (private collaborators: a benchmark
    may, the hub's code does not change): ``pushed`` the push reached ``Detector.pushed``,
    ``acked`` the broker acknowledged the publish, ``saved`` the checkpoint was written (the
    refresh or poll returned), ``handed`` the delivery worker called the webhook handler."""

    pushed: dict[str, float] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    saved: dict[str, float] = field(default_factory=dict)
    handed: dict[str, float] = field(default_factory=dict)
    poll_s: list[float] = field(default_factory=list)  # duration of each full poll

    @staticmethod
    def _stamp(into: dict[str, float], events: list[Any], at: float) -> None:
        for event in events:
            key = event.data.get("key") if event.type == EVENT else None
            if isinstance(key, str):
                into.setdefault(key, at)

    def wrap(self, detector: Any, handler: Any) -> None:
        push: Callable[..., Awaitable[list[Any]]] = detector.pushed
        poll: Callable[[], Awaitable[list[Any]]] = detector.poll_once
        sink = detector._acked._sink
        publish: Callable[[list[Any]], Awaitable[None]] = sink.publish
        deliver: Callable[[Any], Awaitable[Any]] = handler.deliver

        async def pushed(name: str, fact: Any = None) -> list[Any]:
            started = time.time()
            events = await push(name, fact)
            self._stamp(self.pushed, events, started)
            self._stamp(self.saved, events, time.time())
            return events

        async def poll_once() -> list[Any]:
            started = time.perf_counter()
            events = await poll()
            self.poll_s.append(time.perf_counter() - started)
            self._stamp(self.saved, events, time.time())
            return events

        async def publish_events(events: list[Any]) -> None:
            await publish(events)
            self._stamp(self.acked, events, time.time())

        async def deliver_event(event: Any) -> Any:
            self._stamp(self.handed, [event], time.time())
            return await deliver(event)

        detector.pushed = pushed
        detector.poll_once = poll_once
        sink.publish = publish_events
        handler.deliver = deliver_event


@contextlib.asynccontextmanager
async def kafka_probe(bootstrap: str, topic: str, fetch_wait_ms: int
                      ) -> AsyncIterator[dict[str, float]]:
    """A plain aiokafka consumer (no group, no hub code) on the events topic from its end,
    stamping when each tag event reaches it: what the broker and client cost on their own
    at this rate. ``fetch_wait_ms`` 500 is aiokafka's default, which the hub's lanes use."""
    from aiokafka import AIOKafkaConsumer

    seen: dict[str, float] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_wait_ms)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        while partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        await seek_to_end(consumer, topic, partitions)

        async def consume() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        if ("ce_type", EVENT.encode()) in r.headers:
                            key = json.loads(r.value).get("key")
                            if isinstance(key, str):
                                seen.setdefault(key, now)

        task = asyncio.create_task(consume())
        try:
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await consumer.stop()


def hub_config(server_url: str, bootstrap: str, receiver_url: str, phase: str,
               poll_interval_s: float, args: argparse.Namespace, *, ingest: bool) -> Any:
    from hub.config import HubConfig

    return HubConfig(
        mlflow={"tracking_uri": server_url},
        detector={"poll_interval_s": poll_interval_s},
        kafka={"bootstrap_servers": bootstrap, "topic": f"bench.latency.{phase}",
               "partitions": args.partitions},
        delivery=local_delivery(f"bench-latency-{phase}"),
        admin={"host": "127.0.0.1", "port": 0},
        ingest={"mlflow_secret": INGEST_SECRET} if ingest else {},
        subscriptions=[{"name": "receiver", "handler": "webhook", "events": [EVENT],
                        "url": receiver_url + HUB_PATH, "secret": HUB_SECRET}],
        log_level=args.log_level,
    )


def lane_fetch_wait_ms(config: Any) -> int:
    """The lanes' ``fetch_max_wait_ms``: ``delivery.fetch_max_wait_ms`` where the hub has
    that setting, else aiokafka's default (500)."""
    return int(getattr(config.delivery, "fetch_max_wait_ms", 500))


def hub_revision() -> str:
    """``git`` HEAD of the checkout, and which files under ``hub/`` differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hub"], cwd=ROOT,
                               text=True, capture_output=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return head + (f" + uncommitted {', '.join(changed)}" if changed else "")


async def until(predicate: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def mutate(client: Any, prefix: str, count: int, args: argparse.Namespace
                 ) -> dict[str, tuple[float, float]]:
    """``count`` tag sets, one every ``--interval`` s; key -> (call start, call end)."""
    calls: dict[str, tuple[float, float]] = {}
    start = time.monotonic()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i * args.interval - time.monotonic()))
        key = f"{prefix}{i:04d}"
        m = i % args.models
        version = str(1 + (i // args.models) % args.versions)
        began = time.time()
        await asyncio.to_thread(client.set_model_version_tag, model_name(m), version, key,
                                str(i))
        calls[key] = (began, time.time())
    return calls


def summary(lat: list[float], sent: int) -> dict[str, Any]:
    return {"n": len(lat), "sent": sent, **percentiles_ms(lat),
            "min_ms": ms(min(lat or [float("nan")]))}


def p50_of(pairs: list[tuple[float, float]]) -> float:
    return ms(pct([b - a for a, b in pairs], 50))


async def run_phase(phase: str, *, client: Any, server_url: str, bootstrap: str,
                    receiver: Receiver, args: argparse.Namespace) -> dict[str, Any]:
    from hub import heap
    from hub.app import Hub, Roles

    push = phase == "push"
    poll_interval = 3600.0 if push else args.poll_interval
    config = hub_config(server_url, bootstrap, receiver.url, phase, poll_interval, args,
                        ingest=push)
    stamps = HubStamps()
    hook_id: str | None = None
    lane_wait_ms = lane_fetch_wait_ms(config)
    probe_wait_ms = lane_wait_ms if args.probe_fetch_wait_ms < 0 else args.probe_fetch_wait_ms
    async with Hub(config, Roles(), bootstrap) as hub:
        assert hub.detector is not None and hub.worker is not None and hub.admin is not None
        stamps.wrap(hub.detector, hub.worker.handlers["receiver"])
        task = asyncio.create_task(hub.run())
        probe = contextlib.AsyncExitStack()
        try:
            probed: dict[str, float] = {}
            if probe_wait_ms:
                probed = await probe.enter_async_context(kafka_probe(
                    bootstrap, config.kafka.topic, probe_wait_ms))
            await hub.worker.wait_ready(60)
            await until(lambda: hub.detector is not None and hub.detector.state is not None,
                        "the detector's first poll (leader election + baseline)", 60)
            heap.settle()  # as ``registry-hub run`` does once ready (hub/cli.py)
            if push:
                hook = await asyncio.to_thread(
                    client.create_webhook, "registry-hub", f"{hub.admin.url}/ingest/mlflow",
                    [EVENT], None, INGEST_SECRET)
                hook_id = hook.webhook_id
            if args.warmup:  # first connections (MLflow -> hub, hub -> Kafka, -> receiver)
                calls = await mutate(client, f"warm_{phase}_", args.warmup, args)
                await receiver.wait(HUB_PATH, f"warm_{phase}_", len(calls),
                                    poll_interval * 2 + 30 if not push else 30)
            prefix = f"lat_{phase}_"
            print(f"{phase}: {args.mutations} mutations every {args.interval} s ...",
                  flush=True)
            load_before = load()
            calls = await mutate(client, prefix, args.mutations, args)
            deadline = 30 + (0 if push else 3 * poll_interval)
            hub_got = await receiver.wait(HUB_PATH, prefix, len(calls), deadline)
            direct = await receiver.wait(MLFLOW_PATH, prefix, len(calls), 10)
            if probe_wait_ms:  # the probe may lag behind the hub a little
                with contextlib.suppress(RuntimeError):
                    await until(lambda: all(k in probed for k in calls), "the probe", 2)
        finally:
            await probe.aclose()
            hub.stop()
            await asyncio.wait_for(task, 60)
            if hook_id is not None:
                await asyncio.to_thread(client.delete_webhook, hook_id)
    hub_at, direct_at = hub_got["arrivals"], direct["arrivals"]
    keys = sorted(calls)

    def from_start(at: dict[str, float]) -> list[float]:
        return [at[k] - calls[k][0] for k in keys if k in at]

    def from_end(at: dict[str, float]) -> list[float]:
        return [at[k] - calls[k][1] for k in keys if k in at]

    both = [k for k in keys if k in hub_at and k in direct_at]
    hub_stats = summary(from_start(hub_at), len(keys))
    hub_stats["from_call_end"] = summary(from_end(hub_at), len(keys))
    mlflow_stats = summary(from_start(direct_at), len(keys))
    mlflow_stats["from_call_end"] = summary(from_end(direct_at), len(keys))
    steps = [("hub", stamps.pushed), ("kafka", stamps.acked), ("checkpoint", stamps.saved),
             ("handler", stamps.handed), ("receiver", hub_at)]
    breakdown: dict[str, Any] = {
        "mlflow_call_ms_p50": p50_of([calls[k] for k in keys]),
        # p50 of (step time - call start) per step: where the time goes on the hub's path
        **{f"to_{name}_ms_p50": p50_of([(calls[k][0], at[k]) for k in keys if k in at])
           for name, at in steps if at},
        "hub_minus_mlflow_ms_p50": ms(pct([hub_at[k] - direct_at[k] for k in both], 50)),
        "pushed": len([k for k in keys if k in stamps.pushed]),
    }
    starts = {k: calls[k][0] for k in keys}
    segments = [("mlflow_to_hub", starts, stamps.pushed), ("reread_publish", stamps.pushed,
                                                          stamps.acked),
                ("checkpoint", stamps.acked, stamps.saved),
                ("kafka_to_handler", stamps.acked, stamps.handed),
                ("kafka_to_plain_consumer", stamps.acked, probed),
                ("handler_to_receiver", stamps.handed, hub_at)]
    # per mutation, the time between two steps: p50 / p90 / max in ms
    breakdown["segments"] = {
        name: {"n": len(d), "p50": ms(pct(d, 50)), "p90": ms(pct(d, 90)),
               "max": ms(max(d))}
        for name, a, b in segments
        if (d := [b[k] - a[k] for k in keys if k in a and k in b])}
    return {"poll_interval_s": poll_interval, "lane_fetch_max_wait_ms": lane_wait_ms,
            "probe_fetch_max_wait_ms": probe_wait_ms, "hub": hub_stats, "mlflow": mlflow_stats,
            "breakdown": breakdown, "polls": len(stamps.poll_s),
            "poll_ms_p50": ms(pct(stamps.poll_s, 50)), "load_before": load_before,
            "hub_signatures": [hub_got["verified"], hub_got["unverified"]],
            "mlflow_signatures": [direct["verified"], direct["unverified"]]}


# --- main --------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b > 0 and not math.isnan(a) else float("nan")


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import mlflow
    from mlflow.tracking import MlflowClient

    from hub.broker.embedded import EmbeddedBroker

    r: dict[str, Any] = {**run_info(), "mlflow": mlflow.__version__, "models": args.models,
                         "versions": args.versions, "mutations": args.mutations,
                         "interval_s": args.interval, "warmup": args.warmup,
                         "partitions": args.partitions, "log_level": args.log_level,
                         "hub_revision": hub_revision(),
                         "load_start": load()}
    db = workdir / "registry.db"
    db.unlink(missing_ok=True)  # a fresh registry each run, also in a kept --workdir
    async with mlflow_server(f"sqlite:///{db}", workdir) as (server, start_s):
        r["mlflow_start_s"] = round(start_s, 1)
        client: Any = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        await asyncio.to_thread(seed, client, args.models, args.versions)
        async with EmbeddedBroker() as broker, \
                Receiver(workdir / "receiver.log") as receiver:
            direct = await asyncio.to_thread(
                client.create_webhook, "direct-receiver", receiver.url + MLFLOW_PATH, [EVENT],
                None, DIRECT_SECRET)
            try:
                for phase in args.phases.split(","):
                    r[phase] = await run_phase(phase, client=client, server_url=server.url,
                                               bootstrap=broker.bootstrap_servers,
                                               receiver=receiver, args=args)
            finally:
                await asyncio.to_thread(client.delete_webhook, direct.webhook_id)
    for phase in ("push", "poll"):
        if phase in r:
            h, m = r[phase]["hub"], r[phase]["mlflow"]
            r[phase]["ratio_p50"] = ratio(h["p50_ms"], m["p50_ms"])
            r[phase]["ratio_p99"] = ratio(h["p99_ms"], m["p99_ms"])
    r["load_end"] = load()
    return r


def print_table(r: dict[str, Any]) -> None:
    print()
    print(headline("latency", r) + f"  mlflow {r['mlflow']}  load avg {r['load_start']} -> "
          f"{r['load_end']}")
    print(f"{r['models']} models x {r['versions']} versions; per phase {r['mutations']} "
          f"set_model_version_tag (unique key) every {r['interval_s']} s after {r['warmup']} "
          f"warm-up; latency = receiver arrival - start of the MLflow client call; "
          f"hub {r['hub_revision']}")
    row = "{:<44}{:>8}{:>8}{:>8}{:>8}{:>8}{:>10}{:>10}"
    print(row.format("path (ms)", "n", "p50", "p90", "p99", "max", "x p50", "x p99"))
    for phase, label in (("push", "hub push: MLflow webhook -> hub -> receiver"),
                         ("poll", "hub poll: every {:g} s -> hub -> receiver")):
        if phase not in r:
            continue
        p = r[phase]
        h, m = p["hub"], p["mlflow"]
        print(row.format(label.format(p["poll_interval_s"]), f"{h['n']}/{h['sent']}",
                         h["p50_ms"], h["p90_ms"], h["p99_ms"], h["max_ms"], p["ratio_p50"],
                         p["ratio_p99"]))
        print(row.format("  MLflow's own webhook -> receiver (same)", f"{m['n']}/{m['sent']}",
                         m["p50_ms"], m["p90_ms"], m["p99_ms"], m["max_ms"], "1", "1"))
        b = p["breakdown"]
        labels = (("hub", "push at hub"), ("kafka", "on Kafka"), ("checkpoint", "checkpointed"),
                  ("handler", "handler called"), ("receiver", "at receiver"))
        parts = [f"call returned {b['mlflow_call_ms_p50']}"] + [
            f"{label} {b[f'to_{name}_ms_p50']}" for name, label in labels
            if f"to_{name}_ms_p50" in b]
        print("  hub path, p50 ms from call start: " + ", ".join(parts)
              + f"; hub - MLflow per mutation {b['hub_minus_mlflow_ms_p50']}")
        seg = b["segments"]
        print(f"  segments (lane fetch_max_wait_ms {p['lane_fetch_max_wait_ms']}, plain consumer "
              f"{p['probe_fetch_max_wait_ms']}), ms p50/max: " + ", ".join(
            f"{name.replace('_', ' ')} {v['p50']}/{v['max']}" for name, v in seg.items()))
        print(f"  signatures verified: hub {p['hub_signatures'][0]}/{sum(p['hub_signatures'])}"
              f", MLflow {p['mlflow_signatures'][0]}/{sum(p['mlflow_signatures'])}; "
              f"polls {p['polls']} (p50 {p['poll_ms_p50']} ms); from the call's end: hub p50 "
              f"{h['from_call_end']['p50_ms']}, MLflow p50 {m['from_call_end']['p50_ms']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = new_parser(__doc__)
    p.add_argument("--mutations", type=int, default=100, help="measured mutations per phase")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between mutations")
    p.add_argument("--warmup", type=int, default=3, help="unreported mutations per phase")
    p.add_argument("--models", type=int, default=10, help="models mutated round-robin")
    p.add_argument("--versions", type=int, default=2, help="versions per model")
    p.add_argument("--poll-interval", type=float, default=1.0,
                   help="detector.poll_interval_s in the poll phase")
    p.add_argument("--partitions", type=int, default=6, help="kafka.partitions")
    p.add_argument("--probe-fetch-wait-ms", type=int, default=-1,
                   help="fetch_max_wait_ms of a plain aiokafka consumer stamping arrivals on "
                        "the events topic (-1: the same as the hub's lanes; 0: no probe)")
    p.add_argument("--phases", default="push,poll", help="comma-separated: push, poll")
    add_run_args(p, receiver=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_receiver:
        return serve_receiver(lambda: ReceiverApp().handle)
    return run_benchmark("latency", args, run, print_table)


if __name__ == "__main__":
    sys.exit(main())
