"""Detector benchmark: per-poll cost on a 500 models x 10 versions registry, and the latency
from a registry change to its event on Kafka.

    /work/venv/bin/python bench/detect.py            # the issue's sizes (about 1.5 minutes)
    /work/venv/bin/python bench/detect.py --models 50 --mutations 10   # a quick look

What runs (all real, on 127.0.0.1): a sqlite registry seeded without a server (MLflow's
own ORM in one transaction, or ``--seed store``: one ``SqlAlchemyStore`` call per object),
a real ``mlflow server`` on it, an embedded Tansu broker, and a ``Hub`` in the detect role
(``poll_interval_s: 1``).

What it reports:

* seeding time (models, versions, tags, aliases, stages);
* per poll, with no change and with a handful of changes: the MLflow scan (time inside
  ``RegistrySource.scan``: REST pages + snapshot), the hub's own time (``poll_once`` total
  minus the scan: diff + stamp + publish + checkpoint) and the ratio hub / scan; the parts
  are timed by wrapping the detector's collaborators, nothing in ``hub/`` is changed;
* a baseline for the diff alone: the pure ``diff`` of two snapshots of the same size;
* mutation -> Kafka latency p50/p99: a mutator sets a version tag every ~0.3 s while the
  detector loop runs; an independent aiokafka consumer on the events topic stamps each
  event's arrival; latency = arrival - the moment the MLflow call returned.

Prints a compact table and, last, one JSON line (``BENCH_DETECT {...}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer
from common import (
    add_run_args,
    headline,
    mlflow_server,
    ms,
    new_parser,
    pct,
    percentiles_ms,
    quiet_mlflow,
    run_benchmark,
    run_info,
    seek_to_end,
    use_checkout,
)

use_checkout()  # run as a script: make `hub` and `tests.support` importable
quiet_mlflow()

import hub.detect.detector as detector_module  # noqa: E402
from hub.app import Hub, Roles  # noqa: E402
from hub.broker.embedded import EmbeddedBroker  # noqa: E402
from hub.config import HubConfig  # noqa: E402
from hub.detect.detector import Detector  # noqa: E402
from hub.detect.diff import diff  # noqa: E402
from hub.detect.snapshot import Snapshot  # noqa: E402

T = TypeVar("T")
TAG_KEY = "bench_seq"


# --- seeding ---------------------------------------------------------------------------------


def seed_plan(m: int, versions: int) -> dict[str, Any]:
    """What model ``m`` looks like: two model tags; ``versions`` versions with two tags each;
    the newest is ``champion`` and in Production, the one before ``challenger`` and in
    Staging, the first one Archived."""
    stages = {str(v): "None" for v in range(1, versions + 1)}
    aliases = {"champion": str(versions)}
    if versions >= 2:
        aliases["challenger"] = str(versions - 1)
        stages[str(versions - 1)] = "Staging"
    if versions >= 3:
        stages["1"] = "Archived"
    stages[str(versions)] = "Production"
    return {"tags": {"team": f"team-{m % 7}", "domain": "bench"}, "aliases": aliases,
            "stages": stages, "description": f"benchmark model {m}"}


def seed_registry(db_uri: str, models: int, versions: int, mode: str) -> dict[str, Any]:
    """Write the registry without a server. ``orm``: MLflow's own ORM classes (the store's
    schema, defaults and workspace column) added in one transaction; ``store``: one
    ``SqlAlchemyStore`` call per object, as a client would (about 4 ms per version)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    started = time.perf_counter()
    store = SqlAlchemyStore(db_uri)
    migrated = time.perf_counter()
    if mode == "orm":
        _seed_orm(store, models, versions)
    else:
        _seed_store(store, models, versions)
    store.engine.dispose()
    done = time.perf_counter()
    return {"mode": mode, "seed_s": round(done - migrated, 2),
            "migrate_s": round(migrated - started, 2), "models": models,
            "versions": models * versions}


def _seed_store(store: Any, models: int, versions: int) -> None:
    from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag

    for m in range(models):
        name, plan = model_name(m), seed_plan(m, versions)
        store.create_registered_model(
            name, tags=[RegisteredModelTag(k, v) for k, v in plan["tags"].items()],
            description=plan["description"])
        for v in range(1, versions + 1):
            store.create_model_version(
                name, f"s3://bucket/{name}/{v}", run_id=None,
                tags=[ModelVersionTag("quality", "ok"), ModelVersionTag("build", str(v))])
        for alias, version in plan["aliases"].items():
            store.set_registered_model_alias(name, alias, version)
        for version, stage in plan["stages"].items():
            if stage != "None":
                store.transition_model_version_stage(name, version, stage, False)


def _seed_orm(store: Any, models: int, versions: int) -> None:
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlModelVersionTag,
        SqlRegisteredModel,
        SqlRegisteredModelAlias,
        SqlRegisteredModelTag,
    )

    ws = store._with_workspace_field
    now = int(time.time() * 1000)
    rows: list[Any] = []
    for m in range(models):
        name, plan = model_name(m), seed_plan(m, versions)
        created = now + m  # distinct creation times, as models created one after the other
        rows.append(ws(SqlRegisteredModel(name=name, creation_time=created,
                                          last_updated_time=created,
                                          description=plan["description"])))
        rows += [ws(SqlRegisteredModelTag(name=name, key=k, value=v))
                 for k, v in plan["tags"].items()]
        for v in range(1, versions + 1):
            rows.append(ws(SqlModelVersion(
                name=name, version=v, creation_time=created, last_updated_time=created,
                source=f"s3://bucket/{name}/{v}", run_id=None,
                current_stage=plan["stages"][str(v)], status="READY")))
            rows += [ws(SqlModelVersionTag(name=name, version=v, key=k, value=val))
                     for k, val in (("quality", "ok"), ("build", str(v)))]
        rows += [ws(SqlRegisteredModelAlias(name=name, alias=a, version=int(v)))
                 for a, v in plan["aliases"].items()]
    with store.ManagedSessionMaker(read_only=False) as session:
        # parents first: the tables reference registered_models / model_versions
        for kind in (SqlRegisteredModel, SqlRegisteredModelTag, SqlModelVersion,
                     SqlModelVersionTag, SqlRegisteredModelAlias):
            session.add_all([r for r in rows if isinstance(r, kind)])
            session.flush()


def model_name(m: int) -> str:
    return f"bench-model-{m:04d}"


# --- instrumentation (wraps the detector's collaborators; hub/ is untouched) ----------------


@dataclass
class PollTimes:
    scan: list[float] = field(default_factory=list)
    diff: list[float] = field(default_factory=list)
    stamp: list[float] = field(default_factory=list)
    publish: list[float] = field(default_factory=list)
    checkpoint: list[float] = field(default_factory=list)

    def reset(self) -> None:
        for values in (self.scan, self.diff, self.stamp, self.publish, self.checkpoint):
            values.clear()


def _timed_async(fn: Callable[..., Awaitable[T]], into: list[float]) -> Callable[..., Awaitable[T]]:
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)
    return wrapper


def _timed_sync(fn: Callable[..., T], into: list[float]) -> Callable[..., T]:
    def wrapper(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)
    return wrapper


def instrument(detector: Detector, times: PollTimes) -> None:
    """Time the scan, diff, stamp, publish and checkpoint of every poll. Uses the detector's
    private collaborators: a benchmark may, the hub's code does not change."""
    for owner, name, into in ((detector._scanner, "scan", times.scan),
                              (detector._acked._sink, "publish", times.publish),
                              (detector._checkpoint, "save", times.checkpoint)):
        setattr(owner, name, _timed_async(getattr(owner, name), into))
    for name, into in (("diff", times.diff), ("stamp", times.stamp)):
        setattr(detector_module, name, _timed_sync(getattr(detector_module, name), into))


# --- the phases ------------------------------------------------------------------------------


@dataclass
class Poll:
    total: float
    scan: float
    diff: float
    stamp: float
    publish: float
    checkpoint: float
    events: int

    @property
    def hub(self) -> float:
        return self.total - self.scan


async def one_poll(detector: Detector, times: PollTimes) -> Poll:
    times.reset()
    started = time.perf_counter()
    events = await detector.poll_once()
    total = time.perf_counter() - started
    return Poll(total=total, scan=sum(times.scan), diff=sum(times.diff), stamp=sum(times.stamp),
                publish=sum(times.publish), checkpoint=sum(times.checkpoint), events=len(events))


def make_changes(client: Any, round_no: int, count: int, models: int, versions: int) -> int:
    """``count`` assorted changes on different models (tag, alias move, stage, description,
    model tag); returns how many events they should produce at least."""
    kinds = [
        lambda name: client.set_model_version_tag(name, "1", "reviewed", f"r{round_no}"),
        lambda name: client.set_registered_model_alias(  # never the current champion
            name, "champion", str(1 + round_no % max(1, versions - 1))),
        lambda name: client.transition_model_version_stage(name, "2", "Staging"),
        lambda name: client.update_registered_model(name, description=f"round {round_no}"),
        lambda name: client.set_registered_model_tag(name, "round", str(round_no)),
    ]
    for i in range(count):
        m = (round_no * count + i) * 37 % models
        kinds[i % len(kinds)](model_name(m))
    return count


def summarize_polls(polls: list[Poll]) -> dict[str, float]:
    def med(attr: str) -> float:
        return ms(statistics.median(getattr(p, attr) for p in polls))

    scan, hub_ = med("scan"), med("hub")
    return {
        "polls": len(polls),
        "events_per_poll": round(statistics.mean(p.events for p in polls), 1),
        "scan_ms_p50": scan,
        "scan_ms_max": ms(max(p.scan for p in polls)),
        "hub_ms_p50": hub_,
        "hub_ms_max": ms(max(p.hub for p in polls)),
        "diff_ms_p50": med("diff"),
        "stamp_ms_p50": med("stamp"),
        "publish_ms_p50": med("publish"),
        "checkpoint_ms_p50": med("checkpoint"),
        "hub_over_scan": round(statistics.median(p.hub / p.scan for p in polls), 3),
    }


def diff_baseline(snapshot: Snapshot, changes: int, repeat: int) -> dict[str, float]:
    """The pure diff alone on two snapshots of the registry's size: identical, and with
    ``changes`` version tags changed."""
    changed_models = dict(snapshot.models)
    for name in sorted(changed_models)[:changes]:
        model = changed_models[name]
        key = next(iter(model.versions))
        version = model.versions[key]
        changed_models[name] = replace(model, versions={
            **model.versions, key: replace(version, tags={**version.tags, "x": "y"})})
    changed = Snapshot(changed_models)

    def timed(a: Snapshot, b: Snapshot) -> float:
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            diff(a, b)
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    versions = sum(len(m.versions) for m in snapshot.models.values())
    return {"versions": versions, "same_ms": ms(timed(snapshot, snapshot)),
            "changed_ms": ms(timed(snapshot, changed)), "changes": len(diff(snapshot, changed))}


async def latency_phase(hub: Hub, client: Any, args: argparse.Namespace, topic: str,
                        times: PollTimes) -> dict[str, Any]:
    """Mutations every ``--mutation-interval`` s while the detector loop runs; an independent
    consumer stamps arrivals. Matched by the tag value (the mutation's sequence number)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=hub.bootstrap_servers,
                                enable_auto_commit=False)
    await consumer.start()
    done_at: dict[str, float] = {}
    arrived: dict[str, tuple[float, float]] = {}  # seq -> (arrival, kafka record timestamp)
    all_arrived = asyncio.Event()
    try:
        # the end offsets are resolved before anything changes
        await seek_to_end(consumer, topic, consumer.partitions_for_topic(topic) or set())

        async def consume() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        headers = dict(r.headers)
                        if headers.get("ce_type") != b"model_version_tag.set":
                            continue
                        data = json.loads(r.value)
                        if data.get("key") == TAG_KEY:
                            arrived.setdefault(data["value"], (now, r.timestamp / 1000))
                if len(arrived) >= args.mutations:
                    all_arrived.set()

        assert hub.detector is not None
        times.reset()
        loop_task = asyncio.create_task(hub.detector.run())
        consume_task = asyncio.create_task(consume())
        try:
            start = time.monotonic()
            for i in range(args.mutations):
                target = start + i * args.mutation_interval
                await asyncio.sleep(max(0.0, target - time.monotonic()))
                m = i * 53 % args.models
                seq = f"{i}"
                await asyncio.to_thread(client.set_model_version_tag, model_name(m),
                                        str(1 + i % args.versions), TAG_KEY, seq)
                done_at[seq] = time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_arrived.wait(), args.poll_interval * 5 + 30)
        finally:
            hub.detector.stop()
            await asyncio.wait_for(loop_task, 60)
            consume_task.cancel()
            await asyncio.gather(consume_task, return_exceptions=True)
    finally:
        await consumer.stop()
    lat = [arrived[s][0] - done_at[s] for s in done_at if s in arrived]
    to_kafka = [arrived[s][1] - done_at[s] for s in done_at if s in arrived]
    return {
        "mutations": len(done_at), "received": len(lat),
        **percentiles_ms(lat, (50, 99), empty_max=0),
        "append_p50_ms": ms(pct(to_kafka, 50)), "append_p99_ms": ms(pct(to_kafka, 99)),
        "polls_during": len(times.scan),
        "scan_ms_p50_during": ms(statistics.median(times.scan)) if times.scan else None,
    }


# --- main --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    results: dict[str, Any] = run_info()
    db_path = Path(args.db) if args.db else workdir / "registry.db"
    db_uri = f"sqlite:///{db_path}"
    if db_path.exists():
        print(f"reusing seeded registry {db_path}", flush=True)
        results["seed"] = {"reused": str(db_path)}
    else:
        print(f"seeding {args.models} models x {args.versions} versions ...", flush=True)
        results["seed"] = await asyncio.to_thread(seed_registry, db_uri, args.models,
                                                  args.versions, args.seed)
        print(f"  seeded in {results['seed']['seed_s']} s", flush=True)

    async with mlflow_server(db_uri, workdir) as (server, start_s):
        results["mlflow_start_s"] = round(start_s, 2)
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        topic = "bench.detect.events"
        async with EmbeddedBroker() as broker:
            config = HubConfig(
                mlflow={"tracking_uri": server.url},
                detector={"poll_interval_s": args.poll_interval, "leader_election": False},
                kafka={"bootstrap_servers": broker.bootstrap_servers, "topic": topic},
                subscriptions=[],
                admin={"host": "127.0.0.1", "port": 0},
            )
            async with Hub(config, Roles(deliver=False), broker.bootstrap_servers) as hub:
                detector = hub.detector
                assert detector is not None
                times = PollTimes()
                instrument(detector, times)

                baseline = await one_poll(detector, times)
                assert detector.state is not None
                snapshot = detector.state.snapshot
                versions = sum(len(m.versions) for m in snapshot.models.values())
                results["baseline_poll"] = {
                    "models": len(snapshot), "versions": versions,
                    "total_ms": ms(baseline.total), "scan_ms": ms(baseline.scan),
                    "checkpoint_ms": ms(baseline.checkpoint)}
                print(f"baseline: {len(snapshot)} models, {versions} versions, "
                      f"{ms(baseline.total)} ms", flush=True)

                idle = [await one_poll(detector, times) for _ in range(args.idle_polls)]
                results["idle"] = summarize_polls(idle)
                print("idle polls done", flush=True)

                changed = []
                for r in range(args.change_polls):
                    await asyncio.to_thread(make_changes, client, r, args.changes_per_poll,
                                            args.models, args.versions)
                    changed.append(await one_poll(detector, times))
                results["changes"] = summarize_polls(changed)
                print("change polls done", flush=True)

                assert detector.state is not None
                results["diff_baseline"] = diff_baseline(detector.state.snapshot,
                                                         args.changes_per_poll, args.diff_repeat)
                if args.mutations:
                    print(f"latency: {args.mutations} mutations every "
                          f"{args.mutation_interval} s ...", flush=True)
                    results["latency"] = await latency_phase(hub, client, args, topic, times)
    results["poll_interval_s"] = args.poll_interval
    return results


def print_table(r: dict[str, Any]) -> None:
    seed = r["seed"]
    print()
    print(headline("detector", r))
    if "seed_s" in seed:
        how = ("MLflow's ORM, one transaction" if seed["mode"] == "orm"
               else "one SqlAlchemyStore call per object")
        print(f"seed: {seed['models']} models / {seed['versions']} versions ({how}) "
              f"in {seed['seed_s']} s (+ schema {seed['migrate_s']} s); "
              f"mlflow server start {r['mlflow_start_s']} s")
    b = r["baseline_poll"]
    print(f"first poll (baseline, checkpoint of {b['models']} models): {b['total_ms']} ms "
          f"(scan {b['scan_ms']} ms, checkpoint {b['checkpoint_ms']} ms)")
    print()
    head = ("per poll (median ms)", "scan", "hub", "hub/scan", "diff", "stamp", "publish",
            "checkpt", "events")
    print("{:<24}{:>9}{:>8}{:>10}{:>8}{:>8}{:>9}{:>9}{:>8}".format(*head))
    for label, key in (("no change", "idle"), ("a few changes", "changes")):
        p = r[key]
        print("{:<24}{:>9}{:>8}{:>10}{:>8}{:>8}{:>9}{:>9}{:>8}".format(
            f"{label} (n={p['polls']})", p["scan_ms_p50"], p["hub_ms_p50"], p["hub_over_scan"],
            p["diff_ms_p50"], p["stamp_ms_p50"], p["publish_ms_p50"], p["checkpoint_ms_p50"],
            p["events_per_poll"]))
    d = r["diff_baseline"]
    print(f"{'pure diff baseline':<24} {d['versions']} versions: identical {d['same_ms']} ms, "
          f"{d['changes']} changes {d['changed_ms']} ms")
    if "latency" in r:
        lat = r["latency"]
        print()
        print(f"mutation -> Kafka consumer, poll_interval_s={r['poll_interval_s']}: "
              f"p50 {lat['p50_ms']} ms  p99 {lat['p99_ms']} ms  max {lat['max_ms']} ms  "
              f"({lat['received']}/{lat['mutations']} received; "
              f"to broker append p50 {lat['append_p50_ms']} / p99 {lat['append_p99_ms']} ms; "
              f"{lat['polls_during']} polls, scan p50 {lat['scan_ms_p50_during']} ms)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = new_parser(__doc__)
    p.add_argument("--models", type=int, default=500)
    p.add_argument("--versions", type=int, default=10, help="versions per model")
    p.add_argument("--idle-polls", type=int, default=10)
    p.add_argument("--change-polls", type=int, default=10)
    p.add_argument("--changes-per-poll", type=int, default=5)
    p.add_argument("--mutations", type=int, default=60, help="0 skips the latency phase")
    p.add_argument("--mutation-interval", type=float, default=0.3, help="seconds")
    p.add_argument("--poll-interval", type=float, default=1.0, help="detector.poll_interval_s")
    p.add_argument("--diff-repeat", type=int, default=20)
    p.add_argument("--seed", choices=["orm", "store"], default="orm",
                   help="how to write the registry: bulk through MLflow's ORM, or one "
                        "SqlAlchemyStore call per object (slow: ~1 min for 5000 versions)")
    p.add_argument("--db", help="sqlite file to reuse (seeded if missing; kept afterwards)")
    add_run_args(p, keeps="server/hub logs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("detect", parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
