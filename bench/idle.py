"""Idle cost on the MLflow server: its CPU per hour while a detector watches a quiet
registry, polling every ``poll_interval_s`` (today without pushes) versus reconciling every
``reconcile_interval_s`` while pushes arrive, in one run against one server.

    .venv/bin/python bench/idle.py                      # 50 models, 2 x 180 s (about 8 min)
    .venv/bin/python bench/idle.py --window 60          # a quick look

A real ``mlflow server`` (sqlite, seeded with ``--models`` x ``--versions``), the hub's real
scan (``RegistrySource``) and ``Detector.run`` loop, with the in-memory events topic and
checkpoint of :mod:`hub.testing` (Kafka costs the MLflow server nothing). In each mode, every
``--push-every`` s one model gets a tag and the detector is told as ``/ingest/mlflow`` tells
it on MLflow's push (``refresh_model``: one model re-read); the same mutations in both modes.

Modes:

1. **poll**: ``reconcile_interval_s`` = ``poll_interval_s`` (the cadence before reconciling
   existed: a full scan every poll interval whatever the pushes).
2. **reconcile**: ``reconcile_interval_s`` (default 60 s) while pushes arrive.

CPU = user + system time of every process in the server's session (``mlflow server`` and its
workers), read from ``/proc`` at the start and end of each window, scaled to an hour; the
scans the detector ran are counted. Prints a table and ``BENCH_IDLE {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    add_run_args,
    headline,
    load,
    mlflow_server,
    new_parser,
    quiet_mlflow,
    run_benchmark,
    run_info,
    use_checkout,
)

use_checkout()  # run as a script: make `hub` and `tests.support` importable

TICK = os.sysconf("SC_CLK_TCK")


def session_cpu_s(session: int) -> float:
    """User + system CPU seconds of every live process in ``session``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[3]) == session:  # state ppid pgrp session ...
            total += int(fields[11]) + int(fields[12])  # utime stime
    return total / TICK


def seed(uri: str, models: int, versions: int) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for m in range(models):
        name = f"idle-{m:04}"
        client.create_registered_model(name)
        for v in range(versions):
            client.create_model_version(name, source=f"s3://bench/{m}/{v}", run_id=None)


async def window(args: argparse.Namespace, uri: str, session: int, mode: str
                 ) -> dict[str, Any]:
    from mlflow import MlflowClient

    from hub.config import DetectorConfig, MlflowConfig
    from hub.detect.detector import Detector
    from hub.detect.source import RegistrySource
    from hub.testing import MemoryCheckpoint, MemorySink

    reconcile = args.poll_interval if mode == "poll" else args.reconcile_interval
    config = DetectorConfig(poll_interval_s=args.poll_interval, reconcile_interval_s=reconcile,
                            leader_election=False)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    async with RegistrySource(MlflowConfig(tracking_uri=uri)) as source:
        scans = 0
        scan = source.scan

        async def counted() -> Any:
            nonlocal scans
            scans += 1
            return await scan()

        source.scan = counted  # type: ignore[method-assign]
        sink = MemorySink()
        detector = Detector(config, scanner=source, sink=sink, checkpoint=MemoryCheckpoint(),
                            tracking_uri=uri)
        await detector.poll_once()  # the baseline
        loop = asyncio.create_task(detector.run())  # its first scan is in the window
        load_before, cpu_before, scans_before = load(), session_cpu_s(session), scans
        started = time.monotonic()
        pushes = 0
        while (elapsed := time.monotonic() - started) < args.window:
            if args.push_every <= 0:  # no changes, no pushes
                await asyncio.sleep(args.window - elapsed)
                continue
            name = f"idle-{pushes % args.models:04}"
            await asyncio.to_thread(client.set_registered_model_tag, name, "bench",
                                    f"{mode}-{pushes}")
            await detector.refresh_model(name)  # what /ingest/mlflow does on MLflow's push
            pushes += 1
            await asyncio.sleep(min(args.push_every, max(0.0, args.window - elapsed)))
        duration = time.monotonic() - started
        cpu = session_cpu_s(session) - cpu_before
        detector.stop()
        await loop
    return {"mode": mode, "poll_interval_s": args.poll_interval,
            "reconcile_interval_s": reconcile, "window_s": round(duration, 1),
            "scans": scans - scans_before, "pushes": pushes, "published": len(sink.events),
            "mlflow_cpu_s": round(cpu, 2),
            "mlflow_cpu_s_per_hour": round(cpu * 3600 / duration, 1),
            "mlflow_cpu_pct": round(100 * cpu / duration, 2),
            "load_before": load_before, "load_after": load()}


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {**run_info(), "models": args.models, "versions": args.versions,
                               "push_every_s": args.push_every, "load_start": load()}
    db_uri = f"sqlite:///{workdir / 'registry.db'}"
    async with mlflow_server(db_uri, workdir) as (server, start_s):
        results["mlflow_start_s"] = round(start_s, 1)
        assert server._proc is not None
        await asyncio.to_thread(seed, server.url, args.models, args.versions)
        results["modes"] = [await window(args, server.url, server._proc.pid, mode)
                            for mode in args.modes.split(",")]
    by_mode = {m["mode"]: m for m in results["modes"]}
    if {"poll", "reconcile"} <= set(by_mode):
        results["ratio"] = round(by_mode["reconcile"]["mlflow_cpu_s_per_hour"]
                                 / by_mode["poll"]["mlflow_cpu_s_per_hour"], 3)
    results["load_end"] = load()
    return results


def print_table(r: dict[str, Any]) -> None:
    print(headline("idle", r))
    print(f"  {r['models']} models x {r['versions']} versions, a push every "
          f"{r['push_every_s']} s; load {r['load_start']} -> {r['load_end']}")
    print(f"  {'mode':<10} {'poll s':>7} {'recon s':>8} {'window s':>9} {'scans':>6} "
          f"{'pushes':>7} {'MLflow CPU s/h':>15} {'CPU %':>6} {'load':>11}")
    for m in r["modes"]:
        print(f"  {m['mode']:<10} {m['poll_interval_s']:>7} {m['reconcile_interval_s']:>8} "
              f"{m['window_s']:>9} {m['scans']:>6} {m['pushes']:>7} "
              f"{m['mlflow_cpu_s_per_hour']:>15} {m['mlflow_cpu_pct']:>6} "
              f"{m['load_before']:>5}->{m['load_after']:<5}")
    if "ratio" in r:
        print(f"  reconcile / poll MLflow CPU: {r['ratio']}")


def main() -> int:
    quiet_mlflow()
    p = new_parser(__doc__)
    p.add_argument("--models", type=int, default=50, help="models in the registry")
    p.add_argument("--versions", type=int, default=2, help="versions per model")
    p.add_argument("--window", type=float, default=180.0, help="seconds measured per mode")
    p.add_argument("--poll-interval", type=float, default=5.0, help="poll_interval_s")
    p.add_argument("--reconcile-interval", type=float, default=60.0,
                   help="reconcile_interval_s in the reconcile mode")
    p.add_argument("--push-every", type=float, default=30.0,
                   help="seconds between a tag set and its push (0: none)")
    p.add_argument("--modes", default="poll,reconcile", help="comma-separated: poll, reconcile")
    add_run_args(p)
    return run_benchmark("idle", p.parse_args(), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
