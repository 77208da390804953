"""Delivery benchmark: webhook throughput against a raw aiohttp POST loop, Kafka -> receiver
latency at a steady rate, and a healthy subscription's throughput beside a hanging one.

    /work/venv/bin/python bench/deliver.py                     # the issue's sizes (~3 min)
    /work/venv/bin/python bench/deliver.py --events 2000 --latency-seconds 5   # a quick look
    /work/venv/bin/python bench/deliver.py --profile           # + cProfile of the hub run

Everything is real and local: an embedded Tansu broker, the hub's ``DeliveryWorker`` with
webhook subscriptions (standard signatures, ``allowed_networks: [127.0.0.0/8]``,
``start_from: earliest``), and a receiver in a *separate process* (an aiohttp server that
answers 200 at once, counts requests per path, stamps arrival times, verifies the first
signatures with the ``standardwebhooks`` library and never answers ``/hang``).

Phases (each on its own topic):

1. **hub**: publish ``--events`` events (``--models`` models, interleaved), then run the
   worker until the receiver has them all. Throughput = deliveries / (last - first arrival).
   The hub's effective concurrency is measured by timing the handler's in-flight calls.
2. **baseline**: a raw aiohttp POST loop over the same events, same body and signing
   (``standard_body`` + ``standard_headers``), at the hub's effective concurrency and at 64.
   Ratio = hub / baseline (goal >= 0.6).
3. **latency**: a producer publishes at ``--rate`` events/s for ``--latency-seconds`` while the
   worker runs; latency = receive time - publish time (carried in the event data). Then the
   floor: the same producer and rate with a plain aiokafka consumer instead of the hub.
4. **hanging**: phase 1 again with one extra subscription whose endpoint hangs
   (``timeout_s: 10``); the healthy subscription's throughput / phase 1's (goal >= 0.9);
   then again with the healthy subscription added ``--hang-lead`` s later, when the hanging
   one's retries are in flight too.
5. **micro**: CPU microseconds per call of each step the hub takes per delivery.

A watchdog thread ends the run (exit code 3, with where the loop is stuck and the results so
far) if the event loop stops turning: no asyncio timeout can fire in a frozen loop.

Prints a compact table and, last, one JSON line (``BENCH_DELIVER {...}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import (
    ReceiverProcess,
    add_run_args,
    headline,
    load,
    local_delivery,
    new_parser,
    percentiles_ms,
    result_line,
    run_benchmark,
    run_info,
    seek_to_end,
    serve_receiver,
    use_checkout,
)

use_checkout()  # run as a script: make `hub` importable from a checkout

SECRET = "whsec_" + "YmVuY2htYXJrLXNlY3JldC1mb3ItdGhlLWh1Yi0xMjM0"
VERIFY_FIRST = 50  # signatures the receiver checks per path (the rest are only counted)
SETTLE = os.environ.get("BENCH_SETTLE", "1") != "0"


# --- the receiver (runs in its own process: `deliver.py --serve-receiver`) ------------------


@dataclass
class PathStats:
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    verified: int = 0
    unverified: int = 0
    bad_status_bodies: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "first": self.first, "last": self.last,
                "verified": self.verified, "unverified": self.unverified}


class ReceiverApp:
    def __init__(self) -> None:
        from standardwebhooks.webhooks import Webhook

        self._webhook = Webhook(SECRET)
        self.paths: dict[str, PathStats] = {}
        self.latencies: dict[str, list[float]] = {}
        self.conns: dict[str, set[Any]] = {}
        self.hanging = 0
        self.hang_arrivals = 0
        self._waiters: list[tuple[str, int, asyncio.Event]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_"):
            return await self._control(request)
        raw = await request.read()
        now = time.time()
        if path.startswith("/d/"):  # /d/<ms>/...: answer after a delay, like a real endpoint
            await asyncio.sleep(int(path.split("/")[2]) / 1000)
        if path.startswith("/fail"):  # an endpoint that is down: 503 at once
            self.hang_arrivals += 1
            return web.Response(status=503, text="down")
        if path.startswith("/hang"):
            self.hang_arrivals += 1
            self.hanging += 1
            try:
                await asyncio.Event().wait()
            finally:
                self.hanging -= 1
        stats = self.paths.get(path)
        if stats is None:
            stats = self.paths[path] = PathStats(first=now)
            self.conns[path] = set()
        stats.count += 1
        stats.last = now
        self.conns[path].add(request.transport.get_extra_info("peername")
                             if request.transport else None)
        if stats.verified + stats.unverified < VERIFY_FIRST:
            try:
                self._webhook.verify(raw, dict(request.headers))
                stats.verified += 1
            except Exception:
                stats.unverified += 1
        if path.startswith("/lat"):
            sent = json.loads(raw)["data"].get("published_at")
            if sent is not None:
                self.latencies.setdefault(path, []).append(now - float(sent))
        if self._waiters:
            for p, count, event in self._waiters:
                if p == path and stats.count >= count:
                    event.set()
        return web.Response(text="ok")

    async def _control(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if request.path == "/_wait":
            path, count = q["path"], int(q["count"])
            event = asyncio.Event()
            entry = (path, count, event)
            self._waiters.append(entry)
            try:
                if self.paths.get(path, PathStats()).count < count:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), float(q.get("timeout", 120)))
            finally:
                self._waiters.remove(entry)
        path = q.get("path", "")
        stats = self.paths.get(path, PathStats())
        body: dict[str, Any] = {**stats.as_dict(), "connections": len(self.conns.get(path, ())),
                                "hanging": self.hanging, "hang_arrivals": self.hang_arrivals}
        if q.get("latencies"):
            body["latencies"] = self.latencies.get(path, [])
        return web.json_response(body)


def proc_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process used so far, from /proc (Linux); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by this process and by the broker and receiver processes, between two points;
    on two cores, everything the hub makes the broker do competes with the hub itself."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {"bench": time.process_time(),
                **{name: proc_cpu_s(pid) for name, pid in self._pids.items()}}

    def start(self) -> None:
        self._start = self._now()

    def us_per(self, count: int) -> dict[str, int]:
        end = self._now()
        return {name: round((end[name] - self._start[name]) / max(1, count) * 1e6)
                for name in end}


class Receiver(ReceiverProcess):
    """This script's receiver (``--serve-receiver``) as a child process, with the CPU meter
    the runs read."""

    def __init__(self, log_path: Path) -> None:
        super().__init__(__file__, log_path)
        self.cpu = CpuMeter({})

    async def wait(self, path: str, count: int, timeout_s: float) -> dict[str, Any]:
        """Until ``count`` requests reached ``path`` (or the timeout); the path's stats."""
        return await self.get("/_wait", {"path": path, "count": str(count),
                                         "timeout": str(timeout_s)})

    async def stats(self, path: str, *, latencies: bool = False) -> dict[str, Any]:
        return await self.get("/_stats", {"path": path,
                                          **({"latencies": "1"} if latencies else {})})


# --- events -----------------------------------------------------------------------------------


def make_events(count: int, models: int, *, order: str = "interleaved",
                prefix: str = "evt") -> list[Any]:
    """``count`` model_version.created events over ``models`` models with realistic payloads;
    ``interleaved`` = version 1 of every model, then version 2, ... (as a registry changes)."""
    from hub.events import Event

    per_model = -(-count // models)
    pairs = ([(m, v) for v in range(1, per_model + 1) for m in range(models)]
             if order == "interleaved"
             else [(m, v) for m in range(models) for v in range(1, per_model + 1)])
    now = datetime.now(UTC)
    events = []
    for n, (m, v) in enumerate(pairs[:count]):
        name = f"bench-model-{m:03d}"
        events.append(Event(
            id=f"{prefix}-{n}", type="model_version.created", model=name, version=str(v),
            time=now, source="http://mlflow.bench:5000",
            data={"model_name": name, "version": str(v), "run_id": f"{m:08x}{v:024x}",
                  "source": f"s3://bucket/{name}/{v}", "creation_timestamp": 1764300000000 + n,
                  "user_id": "bench", "status": "READY", "stage": "None",
                  "description": None, "tags": {"quality": "ok", "build": str(v)},
                  "aliases": [], "tracking_uri": "http://mlflow.bench:5000"}))
    return events


async def publish_all(config: Any, bootstrap: str, events: list[Any]) -> float:
    from hub.bus import Publisher
    from hub.deliver.worker import ensure_hub_topics

    await ensure_hub_topics(config, bootstrap)
    started = time.perf_counter()
    async with Publisher(config.kafka, bootstrap, config.kafka.topic) as publisher:
        for i in range(0, len(events), 1000):
            await publisher.publish(events[i:i + 1000])
    return time.perf_counter() - started


# --- the hub side -------------------------------------------------------------------------------


def hub_config(bootstrap: str, topic: str, subscriptions: list[dict[str, Any]],
               args: argparse.Namespace, phase: str) -> Any:
    from hub.config import HubConfig

    return HubConfig(
        kafka={"bootstrap_servers": bootstrap, "topic": topic, "partitions": args.partitions},
        delivery=local_delivery(f"bench-{phase}", max_in_flight=args.max_in_flight,
                                max_batch=args.max_batch),
        subscriptions=subscriptions,
    )


def webhook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "handler": "webhook", "url": url, "secret": SECRET, **extra}


class InFlight:
    """Time-weighted concurrency of a handler's ``deliver`` calls (instance-level wrapper)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.area = 0.0
        self.first: float | None = None
        self.last = 0.0
        self._changed = 0.0

    def _move(self, delta: int) -> None:
        t = time.perf_counter()
        if self.first is None:
            self.first = self._changed = t
        self.area += self.now * (t - self._changed)
        self._changed = self.last = t
        self.now += delta
        self.peak = max(self.peak, self.now)

    def wrap(self, fn: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        async def deliver(event: Any) -> Any:
            self._move(+1)
            try:
                return await fn(event)
            finally:
                self._move(-1)
        return deliver

    @property
    def mean(self) -> float:
        span = self.last - (self.first or self.last)
        return self.area / span if span > 0 else 0.0


@contextlib.asynccontextmanager
async def running_worker(config: Any, bootstrap: str,
                         meters: dict[str, InFlight] | None = None
                         ) -> AsyncIterator[Any]:
    from hub.deliver.worker import DeliveryWorker
    from hub.heap import settle

    async with DeliveryWorker(config, bootstrap) as worker:
        for name, meter in (meters or {}).items():
            handler = worker.handlers[name]
            setattr(handler, "deliver", meter.wrap(handler.deliver))  # noqa: B010
        if SETTLE:
            settle()  # as `registry-hub run` does once ready (the raw loop, later, gains too)
        task = asyncio.create_task(worker.run())
        try:
            await worker.wait_ready(60)
            yield worker
        finally:
            worker.stop()
            await asyncio.wait_for(task, 60)


def ok_path(args: argparse.Namespace, name: str) -> str:
    """The receiver path of a healthy endpoint (delayed with ``--endpoint-delay-ms``)."""
    return f"/d/{args.endpoint_delay_ms}/{name}" if args.endpoint_delay_ms else f"/ok/{name}"


def rate(stats: dict[str, Any]) -> float:
    span = stats["last"] - stats["first"]
    return (stats["count"] - 1) / span if span > 0 and stats["count"] > 1 else float("nan")


async def hub_throughput(receiver: Receiver, bootstrap: str, args: argparse.Namespace,
                         phase: str, *, count: int | None = None, hanging: bool = False,
                         lead_s: float = 0.0,
                         profile: cProfile.Profile | None = None) -> dict[str, Any]:
    """Publish, then deliver everything to one healthy webhook subscription (plus, with
    ``hanging``, a subscription whose endpoint never answers)."""
    from hub.config import SubscriptionConfig

    if count is not None:
        args = argparse.Namespace(**{**vars(args), "events": count})
    topic = f"bench.deliver.{phase}"
    path = ok_path(args, phase)
    healthy = webhook("healthy", receiver.url + path)
    stuck = [webhook(f"stuck{n}", f"{receiver.url}/{args.bad_endpoint}/{n}", timeout_s=10)
             for n in range(args.hanging_subs if hanging else 0)]
    late = hanging and lead_s > 0
    subs = stuck if late else [healthy, *stuck]
    hang_before = (await receiver.stats("/hang"))["hang_arrivals"]
    config = hub_config(bootstrap, topic, subs, args, phase)
    events = make_events(args.events, args.models, order=args.order, prefix=phase)
    publish_s = await publish_all(config, bootstrap, events)
    meter = InFlight()
    async with running_worker(config, bootstrap, {} if late else {"healthy": meter}) as worker:
        if late:
            # the stuck subscription runs alone first, so its lane and its retries (timeouts,
            # retry topic, scheduler) are all hanging when the healthy one starts
            await asyncio.sleep(lead_s)
            await worker.add_subscription(SubscriptionConfig(**healthy))
            handler = worker.handlers["healthy"]
            setattr(handler, "deliver", meter.wrap(handler.deliver))  # noqa: B010
        ready = time.perf_counter()
        receiver.cpu.start()
        if profile is not None:
            profile.enable()
        try:
            stats = await receiver.wait(path, args.events, args.timeout if not hanging
                                        else args.hang_deadline)
        finally:
            if profile is not None:
                profile.disable()
        wall = time.perf_counter() - ready
        cpu = receiver.cpu.us_per(stats["count"])
        side = await receiver.stats("/hang") if hanging else {}
    if stats["count"] < args.events:  # deadline: what arrived over the time it had
        stats["last"] = stats["first"] + wall if stats["count"] else 0.0
    return {
        "delivered": stats["count"], "rate": round(rate(stats), 1),
        "wall_from_ready_s": round(wall, 2), "span_s": round(stats["last"] - stats["first"], 2),
        "cpu_us_per_delivery": cpu["bench"],
        "cpu_us_per_delivery_by_process": cpu,
        "concurrency_mean": round(meter.mean, 1), "concurrency_peak": meter.peak,
        "connections": stats["connections"], "verified": stats["verified"],
        "unverified": stats["unverified"], "publish_rate": round(len(events) / publish_s),
        **({"hanging_subs": len(stuck), "hang_attempts": side["hang_arrivals"] - hang_before,
            "hanging_now": side["hanging"]}
           if hanging else {}),
    }


# --- the baseline: a raw aiohttp POST loop with the same signing -------------------------------


async def raw_post_loop(receiver: Receiver, events: list[Any], concurrency: int,
                        path: str, timeout_s: float) -> dict[str, Any]:
    from hub.signing import standard_body, standard_headers

    url = receiver.url + path
    queue = iter(events)
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for event in queue:
            now = datetime.now(UTC)
            body = standard_body(event)
            headers = {"Content-Type": "application/json", "webhook-id": event.id,
                       **standard_headers([SECRET], event.id, now, body)}
            async with session.post(url, data=body, headers=headers,
                                    allow_redirects=False) as resp:
                await resp.content.read(2048)
                failures += resp.status != 200

    connector = aiohttp.TCPConnector(limit=max(100, concurrency))
    started = time.perf_counter()
    receiver.cpu.start()
    async with aiohttp.ClientSession(connector=connector, trust_env=False,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    stats = await receiver.wait(path, len(events), timeout_s)
    cpu = receiver.cpu.us_per(stats["count"])
    return {"concurrency": concurrency, "delivered": stats["count"],
            "rate": round(rate(stats), 1), "wall_s": round(wall, 2), "failures": failures,
            "cpu_us_per_delivery": cpu["bench"], "cpu_us_per_delivery_by_process": cpu,
            "verified": stats["verified"], "unverified": stats["unverified"]}


# --- latency at a steady rate -------------------------------------------------------------------


async def paced_publish(producer: Any, topic: str, events: list[Any],
                        rate: float) -> tuple[float, int]:
    """Send at a steady ``rate`` (not waiting for acks, as a busy producer would), each event
    carrying ``published_at`` (unix seconds) in its data; returns (seconds, late sends)."""
    from dataclasses import replace

    from hub.codec import encode

    late = 0
    start = time.monotonic()
    for i, event in enumerate(events):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        stamped = replace(event, time=datetime.now(UTC),
                          data={**event.data, "published_at": time.time()})
        record = encode(stamped)
        await producer.send(topic, value=record.value, key=record.key, headers=record.headers)
    return time.monotonic() - start, late


def latency_summary(lat: list[float], sent: int, sent_s: float, late: int,
                    rate_target: float) -> dict[str, Any]:
    return {"rate_target": rate_target, "rate_sent": round(sent / sent_s, 1), "sent": sent,
            "received": len(lat), "late_sends": late, **percentiles_ms(lat)}


async def latency_run(receiver: Receiver, bootstrap: str,
                      args: argparse.Namespace) -> dict[str, Any]:
    """Kafka -> receiver through the hub at a steady rate."""
    from hub.bus import new_producer
    from hub.deliver.worker import ensure_hub_topics

    phase, path = "latency", "/lat/steady"
    config = hub_config(bootstrap, f"bench.deliver.{phase}",
                        [webhook("steady", receiver.url + path)], args, phase)
    total = int(args.rate * args.latency_seconds)
    template = make_events(total, args.models, order="interleaved", prefix=phase)
    await ensure_hub_topics(config, bootstrap)
    producer = new_producer(config.kafka, bootstrap)
    await producer.start()
    try:
        async with running_worker(config, bootstrap):
            sent_s, late = await paced_publish(producer, config.kafka.topic, template, args.rate)
            await receiver.wait(path, total, args.timeout)
            stats = await receiver.stats(path, latencies=True)
    finally:
        await producer.stop()
    return latency_summary(stats["latencies"], total, sent_s, late, args.rate)


async def kafka_floor_run(bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    """The same producer and rate with a plain aiokafka consumer instead of the hub (same
    client defaults as a lane, no group): what the broker and client cost on their own."""
    from aiokafka import AIOKafkaConsumer

    from hub.bus import new_producer
    from hub.deliver.worker import ensure_hub_topics

    phase = "floor"
    config = hub_config(bootstrap, f"bench.deliver.{phase}", [], args, phase)
    total = int(args.rate * args.latency_seconds / 2)
    template = make_events(total, args.models, order="interleaved", prefix=phase)
    await ensure_hub_topics(config, bootstrap)
    producer = new_producer(config.kafka, bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    lat: list[float] = []
    done = asyncio.Event()
    try:
        topic = config.kafka.topic
        await seek_to_end(consumer, topic, range(args.partitions))

        async def consume() -> None:
            while len(lat) < total:
                batch = await consumer.getmany(timeout_ms=300, max_records=args.max_batch)
                now = time.time()
                for records in batch.values():
                    lat.extend(now - json.loads(r.value)["published_at"] for r in records)
            done.set()

        task = asyncio.create_task(consume())
        sent_s, late = await paced_publish(producer, topic, template, args.rate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), args.timeout)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await consumer.stop()
        await producer.stop()
    return latency_summary(lat, total, sent_s, late, args.rate)


# --- per-delivery costs of the hub's steps, in isolation ---------------------------------------


def _per_call_us(fn: Callable[[], Any], n: int) -> float:
    fn()
    started = time.process_time()
    for _ in range(n):
        fn()
    return round((time.process_time() - started) / n * 1e6, 1)


async def micro_costs(bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    """CPU microseconds per call of what the hub does for each delivery, one step at a time
    (the same objects and settings as a worker; logs go to the work dir as in the runs).
    ``attempt_encode_dict`` and ``decode_json`` are not hub code: they are the cheaper
    alternatives the report suggests, measured the same way."""
    import structlog

    from hub.bus import new_producer
    from hub.codec import decode, encode
    from hub.config import SubscriptionConfig
    from hub.deliver.jobs import Attempt
    from hub.deliver.routing import matches
    from hub.metrics import Metrics
    from hub.signing import standard_body, standard_headers

    n = args.micro_n
    event = make_events(1, 1)[0]
    record = encode(event)
    sub = SubscriptionConfig(name="s", handler="webhook", url="http://127.0.0.1/x")
    attempt = Attempt(event_id=event.id, event_type=event.type, model=event.model,
                      subscription="s", attempt=1, status="delivered", http_status=200,
                      latency_ms=1.23, error="", at=datetime.now(UTC).isoformat())
    fields = {k: v for k, v in attempt.__dict__.items() if k != "extra"}
    log = structlog.get_logger("hub.deliver.dispatch")
    metrics = Metrics()

    def attempt_dict() -> bytes:
        a = attempt
        return json.dumps({
            "event_id": a.event_id, "event_type": a.event_type, "model": a.model,
            "subscription": a.subscription, "attempt": a.attempt, "status": a.status,
            "http_status": a.http_status, "latency_ms": a.latency_ms, "error": a.error,
            "at": a.at, "next_attempt_in_s": a.next_attempt_in_s, "extra": a.extra,
        }, separators=(",", ":")).encode()

    def decode_json() -> Any:
        from hub.events import Event

        h = {k: v.decode() for k, v in record.headers}
        data = json.loads(record.value)
        return Event(id=h["ce_id"], type=h["ce_type"], model=h["ce_partitionkey"],
                     time=datetime.fromisoformat(h["ce_time"]), source=h["ce_source"],
                     data=data, version=data.get("version"))

    def metric_updates() -> None:
        metrics.deliveries.labels("s", "delivered").inc()
        metrics.delivery_latency.labels("s").observe(0.001)
        metrics.event_to_delivery.labels("s").observe(0.1)

    out: dict[str, Any] = {
        "decode_cloudevent": _per_call_us(lambda: decode(record.key, record.value,
                                                         record.headers), n),
        "decode_json": _per_call_us(decode_json, n),
        "route_matches": _per_call_us(lambda: matches(sub, event), n),
        "body_and_signature": _per_call_us(lambda: standard_headers(
            [SECRET], event.id, datetime.now(UTC), standard_body(event)), n),
        "attempt_encode_asdict": _per_call_us(attempt.encode, n),
        "attempt_encode_dict": _per_call_us(attempt_dict, n),
        "log_delivery_attempt": _per_call_us(lambda: log.info("delivery.attempt", **fields), n),
        "metrics": _per_call_us(metric_updates, n),
    }
    producer = new_producer(hub_config(bootstrap, "bench.micro", [], args, "micro").kafka,
                            bootstrap)
    await producer.start()
    try:
        value = attempt.encode()
        started = time.process_time()
        futures = [await producer.send("bench.micro.deliveries", key=b"s", value=value)
                   for _ in range(n)]
        await asyncio.gather(*futures)
        out["kafka_send_attempt_record"] = round((time.process_time() - started) / n * 1e6, 1)
    finally:
        await producer.stop()
    return out


# --- event loop watch -----------------------------------------------------------------------


class LoopWatch:
    """How late the event loop runs a 50 ms ticker (max lag per phase), and a thread that
    notices a loop that stopped turning altogether: it then prints where the loop is stuck
    and the results so far, stops the child processes, and exits with code 3 (no asyncio
    timeout can fire in a frozen loop, so the benchmark would otherwise hang forever)."""

    def __init__(self, stall_s: float, results: dict[str, Any]) -> None:
        self.stall_s = stall_s
        self.results = results
        self.phase = "start"
        self.children: list[int] = []
        self.workdir: Path | None = None
        self._last_tick = time.monotonic()
        self._max_lag = 0.0
        self._main = threading.get_ident()
        self._done = threading.Event()

    async def tick(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            now = time.monotonic()
            self._max_lag = max(self._max_lag, now - before - 0.05)
            self._last_tick = now

    def begin(self, phase: str) -> None:
        self.phase = phase
        self._max_lag = 0.0

    def max_lag_ms(self) -> float:
        return round(self._max_lag * 1000, 1)

    def start_thread(self) -> None:
        threading.Thread(target=self._watch, name="loop-watch", daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(1.0):
            stalled = time.monotonic() - self._last_tick
            if stalled < self.stall_s:
                continue
            frame = sys._current_frames().get(self._main)
            stack = "".join(traceback.format_stack(frame)[-8:]) if frame else "?"
            print(f"\nEVENT LOOP FROZEN for {stalled:.0f} s in phase {self.phase!r} (logs in "
                  f"{self.workdir}); the main thread is at:\n{stack}", flush=True)
            self.results["stalled"] = {"phase": self.phase, "seconds": round(stalled, 1)}
            print(result_line("deliver", self.results), flush=True)
            for pid in self.children:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            os._exit(3)


# --- main -------------------------------------------------------------------------------------


def cpu_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = runs[0]["cpu_us_per_delivery_by_process"]
    return {k: median([x["cpu_us_per_delivery_by_process"][k] for x in runs]) for k in keys}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from hub.broker.embedded import EmbeddedBroker

    phases = set(args.phases.split(","))
    r: dict[str, Any] = {**run_info(), "events": args.events, "models": args.models,
                         "order": args.order, "partitions": args.partitions,
                         "max_in_flight": args.max_in_flight, "max_batch": args.max_batch,
                         "endpoint_delay_ms": args.endpoint_delay_ms,
                         "log_level": args.log_level, "repeat": args.repeat,
                         "load_start": load()}
    profile = cProfile.Profile() if args.profile else None
    watch = LoopWatch(args.stall_limit, r)
    watch.workdir = workdir
    ticker = asyncio.create_task(watch.tick())
    watch.start_thread()
    async with EmbeddedBroker() as broker, Receiver(workdir / "receiver.log") as receiver:
        watch.children = [pid for pid in (broker.pid, receiver.pid) if pid is not None]
        receiver.cpu = CpuMeter({"broker": broker.pid, "receiver": receiver.pid})
        bootstrap = broker.bootstrap_servers
        if args.warmup:
            watch.begin("warmup")
            await hub_throughput(receiver, bootstrap, args, "warmup", count=args.warmup)
        if "hub" in phases:
            # hub and raw runs alternate, so a change in the machine's load hits both alike;
            # the ratio is the median of the per-round ratios
            events = make_events(args.events, args.models, order=args.order, prefix="raw")
            r["hub_runs"], r["raw_effective"], r["raw_64"] = [], [], []
            for n in range(args.repeat):
                print(f"round {n + 1}/{args.repeat}: hub, {args.events} events ...", flush=True)
                watch.begin(f"hub{n}")
                h = await hub_throughput(receiver, bootstrap, args, f"hub{n}",
                                         profile=profile if n == 0 else None)
                h["loop_max_lag_ms"] = watch.max_lag_ms()
                r["hub_runs"].append(h)
                effective = max(1, round(h["concurrency_mean"]))
                print(f"  hub {h['rate']}/s at concurrency {h['concurrency_mean']}; raw loop at "
                      f"{effective} and 64 ...", flush=True)
                if "baseline" in phases:
                    watch.begin(f"raw{n}")
                    r["raw_effective"].append(await raw_post_loop(
                        receiver, events, effective, ok_path(args, f"raw{n}-{effective}"),
                        args.timeout))
                    r["raw_64"].append(await raw_post_loop(
                        receiver, events, 64, ok_path(args, f"raw{n}-64"), args.timeout))
            hub_rates = [h["rate"] for h in r["hub_runs"]]
            r["hub"] = {
                "rate": median(hub_rates), "rates": hub_rates,
                "concurrency_mean": median([h["concurrency_mean"] for h in r["hub_runs"]]),
                "concurrency_peak": max(h["concurrency_peak"] for h in r["hub_runs"]),
                "cpu_us_per_delivery": median([h["cpu_us_per_delivery"] for h in r["hub_runs"]]),
                "loop_max_lag_ms": max(h["loop_max_lag_ms"] for h in r["hub_runs"]),
                "cpu_by_process": cpu_medians(r["hub_runs"]),
                "verified": sum(h["verified"] for h in r["hub_runs"]),
                "unverified": sum(h["unverified"] for h in r["hub_runs"]),
            }
            if r["raw_effective"]:
                for key in ("raw_effective", "raw_64"):
                    runs = r[key]
                    r[key + "_summary"] = {
                        "concurrency": runs[0]["concurrency"] if key == "raw_64" else
                        [x["concurrency"] for x in runs],
                        "rate": median([x["rate"] for x in runs]),
                        "cpu_us_per_delivery": median([x["cpu_us_per_delivery"] for x in runs]),
                        "cpu_by_process": cpu_medians(runs),
                        "ratio": median([h["rate"] / x["rate"]
                                         for h, x in zip(r["hub_runs"], runs, strict=True)]),
                    }
        if "latency" in phases and args.latency_seconds > 0:
            print(f"latency: {args.rate}/s for {args.latency_seconds} s ...", flush=True)
            watch.begin("latency")
            r["latency"] = await latency_run(receiver, bootstrap, args)
            r["latency"]["loop_max_lag_ms"] = watch.max_lag_ms()
            print(f"latency floor: a plain aiokafka consumer, {args.rate}/s for "
                  f"{args.latency_seconds / 2:g} s ...", flush=True)
            watch.begin("latency_floor")
            r["latency_kafka_floor"] = await kafka_floor_run(bootstrap, args)
        if "hanging" in phases:
            print("hanging: the hub run beside a subscription whose endpoint hangs ...",
                  flush=True)
            watch.begin("hanging")
            r["hanging"] = await hub_throughput(receiver, bootstrap, args, "hang", hanging=True)
            r["hanging"]["loop_max_lag_ms"] = watch.max_lag_ms()
            if args.hang_lead > 0:
                print(f"hanging: the healthy subscription added {args.hang_lead} s after the "
                      "hanging one ...", flush=True)
                watch.begin("hanging_late")
                r["hanging_late"] = await hub_throughput(receiver, bootstrap, args, "hanglate",
                                                         hanging=True, lead_s=args.hang_lead)
                r["hanging_late"]["loop_max_lag_ms"] = watch.max_lag_ms()
            if "hub" in r:
                r["hanging"]["ratio"] = round(r["hanging"]["rate"] / r["hub"]["rate"], 3)
                if "hanging_late" in r:
                    r["hanging_late"]["ratio"] = round(
                        r["hanging_late"]["rate"] / r["hub"]["rate"], 3)
        if "micro" in phases:
            print("micro: per-delivery costs of the hub's steps ...", flush=True)
            watch.begin("micro")
            r["micro_us"] = await micro_costs(bootstrap, args)
    watch.stop()
    ticker.cancel()
    r["load_end"] = load()
    if profile is not None:
        path = workdir / "hub.pstats"
        profile.dump_stats(str(path))
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out).sort_stats("tottime")
        stats.print_stats(30)
        out.write("\n--- by cumulative time ---\n")
        stats.sort_stats("cumulative").print_stats(40)
        r["profile"] = str(path)
        print(out.getvalue())
    return r


def print_table(r: dict[str, Any]) -> None:
    print()
    print(headline("delivery", r) + f"  load avg {r['load_start']} -> {r['load_end']}")
    print(f"{r['events']} events / {r['models']} models ({r['order']}), {r['partitions']} "
          f"partitions, max_in_flight {r['max_in_flight']}, max_batch {r['max_batch']}, "
          f"endpoint delay {r['endpoint_delay_ms']} ms, hub log level {r['log_level']}, "
          f"medians of {r['repeat']} rounds")
    row = "{:<36}{:>13}{:>13}{:>13}{:>9}"
    print(row.format("run", "deliveries/s", "concurrency", "CPU us/deliv", "ratio"))
    if "hub" in r:
        h = r["hub"]
        print(row.format("hub, 1 webhook subscription", h["rate"],
                         f"{h['concurrency_mean']} (pk {h['concurrency_peak']})",
                         h["cpu_us_per_delivery"], ""))
        for key, label in (("raw_effective", "raw aiohttp loop, same signing"),
                           ("raw_64", "raw aiohttp loop, same signing")):
            b = r.get(key + "_summary")
            if b:
                conc = b["concurrency"] if isinstance(b["concurrency"], int) \
                    else "/".join(map(str, b["concurrency"]))
                print(row.format(label, b["rate"], conc, b["cpu_us_per_delivery"], b["ratio"]))
        for key, label in (("hub", "hub"), ("raw_effective_summary", "raw loop"),
                           ("raw_64_summary", "raw loop at 64")):
            if key in r:
                c = r[key]["cpu_by_process"]
                print(f"  CPU us per delivery, {label}: this process {c['bench']:g}, broker "
                      f"{c['broker']:g}, receiver {c['receiver']:g}")
        print(f"  hub rates per round: {h['rates']}; receiver verified "
              f"{h['verified']}/{h['verified'] + h['unverified']} hub signatures; event-loop "
              f"lag max {h['loop_max_lag_ms']} ms; goal >= 0.6")
    if "latency" in r:
        lat = r["latency"]
        print(f"Kafka -> receiver at {lat['rate_sent']}/s ({lat['received']}/{lat['sent']}): "
              f"p50 {lat['p50_ms']} ms  p90 {lat['p90_ms']} ms  p99 {lat['p99_ms']} ms  "
              f"max {lat['max_ms']} ms")
    if "latency_kafka_floor" in r:
        f = r["latency_kafka_floor"]
        print(f"  floor, plain aiokafka consumer, no hub ({f['received']}/{f['sent']}): "
              f"p50 {f['p50_ms']} ms  p90 {f['p90_ms']} ms  p99 {f['p99_ms']} ms  "
              f"max {f['max_ms']} ms")
    if "micro_us" in r:
        print("CPU us per call: " + ", ".join(f"{k} {v}" for k, v in r["micro_us"].items()))
    for key, label in (("hanging", "healthy, beside a hanging sub"),
                       ("hanging_late", "healthy, added after it hung")):
        g = r.get(key)
        if g:
            print(row.format(label, g["rate"],
                             f"{g['concurrency_mean']} (pk {g['concurrency_peak']})",
                             g["cpu_us_per_delivery"], g.get("ratio", "")))
            print(f"  {g['delivered']}/{r['events']} delivered in {g['wall_from_ready_s']} s; "
                  f"{g['hang_attempts']} attempts reached the {g['hanging_subs']} bad "
                  f"endpoint(s), {g['hanging_now']} hanging at the end; event-loop lag max "
                  f"{g['loop_max_lag_ms']} ms; goal >= 0.9 of the hub run")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = new_parser(__doc__)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--order", choices=["interleaved", "model"], default="interleaved",
                   help="publish order: round-robin over models, or model after model")
    p.add_argument("--partitions", type=int, default=6, help="kafka.partitions")
    p.add_argument("--max-in-flight", type=int, default=64, help="delivery.max_in_flight")
    p.add_argument("--max-batch", type=int, default=500, help="delivery.max_batch")
    p.add_argument("--endpoint-delay-ms", type=int, default=0,
                   help="healthy endpoints answer after this delay (a slower, realistic peer)")
    p.add_argument("--rate", type=float, default=500, help="events/s in the latency run")
    p.add_argument("--latency-seconds", type=float, default=20, help="0 skips the latency run")
    p.add_argument("--phases", default="hub,baseline,latency,hanging,micro",
                   help="comma-separated subset of hub,baseline,latency,hanging,micro "
                        "(micro: CPU cost of each step of a delivery, in isolation)")
    p.add_argument("--micro-n", type=int, default=5000, help="calls per step in 'micro'")
    p.add_argument("--repeat", type=int, default=3, help="rounds of hub + raw runs")
    p.add_argument("--warmup", type=int, default=2000,
                   help="events of an unreported first hub run (0: none)")
    p.add_argument("--stall-limit", type=float, default=30,
                   help="seconds without an event-loop turn before the run is declared frozen "
                        "(prints where it is stuck and the results so far, exits 3)")
    p.add_argument("--bad-endpoint", choices=["hang", "fail"], default="hang",
                   help="what the extra subscriptions' endpoint does: never answer, or 503 "
                        "at once")
    p.add_argument("--hanging-subs", type=int, default=1,
                   help="subscriptions whose endpoint hangs, in the hanging runs")
    p.add_argument("--hang-lead", type=float, default=20,
                   help="seconds the hanging subscription runs alone before the healthy one "
                        "is added (second hanging run; 0 skips it)")
    p.add_argument("--hang-deadline", type=float, default=90,
                   help="seconds a healthy run beside a hanging one may take")
    p.add_argument("--timeout", type=float, default=240, help="per-run deadline, seconds")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the hub run (phase 1) and print the top functions")
    add_run_args(p, receiver=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_receiver:
        # handler_cancellation: a hung request ends (and is counted out) when the client
        # gives up
        return serve_receiver(lambda: ReceiverApp().handle, backlog=1024,
                              handler_cancellation=True)
    return run_benchmark("deliver", args, run, print_table)


if __name__ == "__main__":
    sys.exit(main())
