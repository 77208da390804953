"""Scale benchmark: ``registry-hub run`` as its own process on a 10,000 models x 10 versions
registry (100k versions) and on a 50-model one, in one run: its first scan against the bare
REST calls a scan needs, its idle CPU against the MLflow server's, its memory, and the push
latency against MLflow's own webhook.

    .venv/bin/python bench/scale.py --models 200 --mutations 10    # a quick look (~3 min)
    .venv/bin/python bench/scale.py --db /tmp/scale-10k.db         # full size (~11 min, 45 s
                                      # of it seeding; the file is kept, a re-run reuses it)

All real, on 127.0.0.1. Per size (small, then big): a sqlite registry seeded by
``bench/detect.py``'s ``seed_registry`` (MLflow's ORM), a real ``mlflow server`` on it (one
worker, the tests' environment: loopback webhooks, webhook cache TTL 0), then:

1. **bare REST**: the requests of a full scan (``hub/detect/source.py``): every page of
   ``registered-models/search`` (``page_size``) and ``model-versions/search`` (10 x
   ``page_size``), unfiltered and with the prompt filter, as JSON with ``requests`` (no
   entities, no snapshot); the median of ``--rest-runs``.
2. **hub**: ``registry-hub run --config <yaml>`` in its own session, on an embedded broker
   started here (not the hub's child); a webhook subscription to the receiver, the admin API
   with a token, ``ingest.mlflow_secret``, ``mlflow.scan_timeout_s`` 600 (a 100k scan is
   close to the default 120). First scan = the hub's ``registry_hub_poll_duration_seconds``
   at its first observation (it includes opening MLflow's client, ~2 s: at small sizes
   compare the idle polls); ready = spawn to ``/readyz`` 200.
3. **idle**: ``--idle-s`` with no change (longer until ``--idle-polls`` polls completed):
   the polls' mean from the histogram, CPU seconds (utime + stime in ``/proc``) of the
   hub's session and of the MLflow server's; the hub's VmRSS and VmHWM (peak). An idle
   poll is held to the bare REST scans made again once the hub has stopped: a server that
   has served scans back to back answers the same requests more slowly than a fresh one
   (100k versions, four bare scans in a row: 70, 77, 74, 78 s), and the idle polls meet
   it in that state.
4. **push**: two MLflow webhooks on ``model_version_tag.set``, one to the hub's
   ``/ingest/mlflow``, one straight to the receiver (the baseline, same mutations);
   ``--mutations`` ``set_model_version_tag`` with unique keys, spread evenly over the models,
   one every ``--interval`` s. Latency = receiver arrival - start of the client call. The
   receiver is ``bench/latency.py``'s, in its own process (it checks both signatures). Also
   what the hub adds to each change: its arrival minus MLflow's own webhook's arrival for
   the same change. At 100k versions the server's own delays dominate the p99 of both paths
   (a tag write on sqlite waits behind a scan's long read: 344 ms for MLflow's own webhook
   in one run), and they cancel out of this difference.
5. **bare REST after**: step 1 again, the hub stopped (see 3).

Prints a table with the bars beside the figures, then one JSON line ``BENCH_SCALE {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from common import (
    add_run_args,
    headline,
    load,
    local_delivery,
    mlflow_server,
    new_parser,
    percentiles_ms,
    quiet_mlflow,
    run_benchmark,
    run_info,
    use_checkout,
)
from detect import model_name, seed_registry
from idle import session_cpu_s
from latency import (
    DIRECT_SECRET,
    EVENT,
    HUB_PATH,
    HUB_SECRET,
    INGEST_SECRET,
    MLFLOW_PATH,
    Receiver,
    hub_revision,
    ratio,
)

use_checkout()  # (done already by importing detect.py and latency.py)
quiet_mlflow()

ADMIN_TOKEN = "scale-bench-admin-token-7c1e"
RSS_BAR_MB, PUSH_BAR, SCAN_BAR = 300, 1.2, 1.2


# --- the bare REST calls of a scan ------------------------------------------------------------


def rest_scan(url: str, page_size: int) -> dict[str, Any]:
    """Every page a full scan asks for, as JSON only: (models, versions) x (all, prompts)."""
    import requests

    from hub.detect.source import PROMPTS

    started, pages, size, found = time.perf_counter(), 0, 0, {"models": 0, "versions": 0}
    with requests.Session() as http:
        for what, path, key, per_page in (
                ("models", "registered-models/search", "registered_models", page_size),
                ("versions", "model-versions/search", "model_versions", page_size * 10)):
            for query in (None, PROMPTS):
                token: str | None = None
                while True:
                    params = {"max_results": per_page, "filter": query, "page_token": token}
                    resp = http.get(f"{url}/api/2.0/mlflow/{path}", timeout=120, params={
                        k: v for k, v in params.items() if v is not None})
                    resp.raise_for_status()
                    body = resp.json()
                    pages, size = pages + 1, size + len(resp.content)
                    found[what] += len(body.get(key, [])) if query is None else 0
                    if not (token := body.get("next_page_token")):
                        break
    return {"s": time.perf_counter() - started, "requests": pages,
            "mb": round(size / 2**20, 1), **found}


# --- the hub as a process ---------------------------------------------------------------------


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of ``pid`` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return {"rss": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "peak": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}


class HubProcess:
    """``registry-hub run --config <file>`` in its own session (output to ``log_path``),
    SIGTERM then SIGKILL on exit; its ``/metrics`` and ``/readyz`` read over HTTP."""

    def __init__(self, config: dict[str, Any], workdir: Path, label: str) -> None:
        self.config_path = workdir / f"hub-{label}.yaml"
        self.log_path = workdir / f"hub-{label}.log"
        self.admin = f"http://127.0.0.1:{config['admin']['port']}"
        self._config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.started, self.pid = 0.0, 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.config_path.write_text(yaml.safe_dump(self._config, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HUB_"))}
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        command = [str(Path(sys.executable).parent / "registry-hub"), "run",
                   "--config", str(self.config_path)]
        with self.log_path.open("ab") as out:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)

    async def __aenter__(self) -> HubProcess:
        self.started = time.monotonic()
        self._proc = await asyncio.to_thread(self._spawn)
        self.pid = self._proc.pid  # its session id too
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.close()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)

    async def polls(self) -> tuple[int, float]:
        """(count, sum of seconds) of the hub's ``registry_hub_poll_duration_seconds``."""
        async with self._http.get(f"{self.admin}/metrics") as resp:
            text = await resp.text()
        found = dict(re.findall(r"^registry_hub_poll_duration_seconds_(count|sum) (\S+)$",
                                text, re.MULTILINE))
        return int(float(found["count"])), float(found["sum"])

    async def scanned(self) -> bool:
        return (await self.polls())[0] >= 1

    async def ready(self) -> bool:
        async with self._http.get(f"{self.admin}/readyz") as resp:
            return resp.status == 200

    async def until(self, done: Callable[[], Awaitable[bool]], what: str, timeout_s: float
                    ) -> float:
        """Seconds from spawn until ``done()`` (not answering yet counts as not done); the
        hub exiting, or ``timeout_s`` from now, is an error."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {self._proc.returncode}; see "
                                   f"{self.log_path}")
            try:
                if await done():
                    return time.monotonic() - self.started
            except (aiohttp.ClientError, KeyError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} within {timeout_s} s; see {self.log_path}")
            await asyncio.sleep(0.2)


def hub_config(label: str, server_url: str, bootstrap: str, receiver_url: str, port: int,
               workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from hub.config import HubConfig

    config = {
        "mlflow": {"tracking_uri": server_url, "page_size": args.page_size,
                   "scan_timeout_s": args.scan_timeout},
        "detector": {"poll_interval_s": args.poll_interval},
        "kafka": {"bootstrap_servers": bootstrap, "topic": f"bench.scale.{label}"},
        "delivery": local_delivery(f"bench-scale-{label}"),
        "admin": {"host": "127.0.0.1", "port": port, "token": ADMIN_TOKEN},
        "ingest": {"mlflow_secret": INGEST_SECRET},
        "subscriptions": [{"name": "receiver", "handler": "webhook", "events": [EVENT],
                           "url": receiver_url + HUB_PATH, "secret": HUB_SECRET}],
        "state_dir": str(workdir / f"state-{label}"),
        "log_level": args.log_level, "log_format": "json",
    }
    HubConfig.model_validate(config)  # a typo fails here, not in the child
    return config


# --- one size -------------------------------------------------------------------------------


async def mutate(client: Any, prefix: str, count: int, models: int, args: argparse.Namespace
                 ) -> dict[str, float]:
    """``count`` tag sets with unique keys, spread evenly over ``models``, one every
    ``--interval`` s; key -> start of the client call (unix time)."""
    started: dict[str, float] = {}
    t0 = time.monotonic()
    for i in range(count):
        await asyncio.sleep(max(0.0, t0 + i * args.interval - time.monotonic()))
        key, m = f"{prefix}{i:04d}", i * models // count
        started[key] = time.time()
        await asyncio.to_thread(client.set_model_version_tag, model_name(m),
                                str(1 + i % args.versions), key, str(i))
    return started


async def push_phase(client: Any, hub: HubProcess, receiver: Receiver, label: str,
                     models: int, args: argparse.Namespace) -> dict[str, Any]:
    # keys new to this run: a reused registry (--db) has the last run's tags, and setting a
    # tag to the value it has is no change: MLflow pushes it, the hub rightly publishes nothing
    run = time.strftime("%H%M%S")
    hooks = [await asyncio.to_thread(client.create_webhook, name, url, [EVENT], None, secret)
             for name, url, secret in (
                 ("registry-hub", f"{hub.admin}/ingest/mlflow", INGEST_SECRET),
                 ("direct-receiver", receiver.url + MLFLOW_PATH, DIRECT_SECRET))]
    try:
        if args.warmup:  # first connections: MLflow -> hub, hub -> Kafka -> receiver
            warm = await mutate(client, f"warm_{label}_{run}_", args.warmup, models, args)
            await receiver.wait(HUB_PATH, f"warm_{label}_{run}_", len(warm), 60)
        prefix = f"lat_{label}_{run}_"
        print(f"  {label}: {args.mutations} mutations every {args.interval} s ...", flush=True)
        calls = await mutate(client, prefix, args.mutations, models, args)
        via_hub = await receiver.wait(HUB_PATH, prefix, len(calls), 120)
        direct = await receiver.wait(MLFLOW_PATH, prefix, len(calls), 30)
    finally:
        for hook in hooks:
            await asyncio.to_thread(client.delete_webhook, hook.webhook_id)
    out: dict[str, Any] = {}
    for name, got in (("hub", via_hub), ("mlflow", direct)):
        lat = [got["arrivals"][k] - t for k, t in calls.items() if k in got["arrivals"]]
        out[name] = {"n": len(lat), "sent": len(calls), **percentiles_ms(lat, (50, 90, 99)),
                     "bad_signatures": got["unverified"]}  # so far, all sizes
    out["ratio_p50"] = ratio(out["hub"]["p50_ms"], out["mlflow"]["p50_ms"])
    out["ratio_p99"] = ratio(out["hub"]["p99_ms"], out["mlflow"]["p99_ms"])
    # what the hub adds to the same change: its arrival - MLflow's own webhook's arrival (the
    # server's own delays, e.g. a write waiting behind a scan's read, are in both and cancel)
    added = [via_hub["arrivals"][k] - direct["arrivals"][k] for k in calls
             if k in via_hub["arrivals"] and k in direct["arrivals"]]
    out["added"] = percentiles_ms(added, (50, 90, 99))
    return out


async def idle_window(hub: HubProcess, server_session: int, args: argparse.Namespace
                      ) -> dict[str, Any]:
    """``--idle-s`` with no change (longer until ``--idle-polls`` polls completed): the hub's
    polls, and CPU seconds of the hub's and the server's sessions."""
    def sample() -> tuple[float, float]:
        return session_cpu_s(hub.pid), session_cpu_s(server_session)

    (n0, sum0), cpu0, t0, load0 = await hub.polls(), sample(), time.monotonic(), load()
    await asyncio.sleep(args.idle_s)

    async def enough() -> bool:
        return (await hub.polls())[0] - n0 >= args.idle_polls

    await hub.until(enough, f"{args.idle_polls} idle polls", args.ready_timeout)
    (n1, sum1), cpu1, window = await hub.polls(), sample(), time.monotonic() - t0
    hub_cpu, mlflow_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    return {"window_s": round(window, 1), "polls": n1 - n0,
            "poll_mean_s": round((sum1 - sum0) / (n1 - n0), 2) if n1 > n0 else None,
            "hub_cpu_s": round(hub_cpu, 2), "mlflow_cpu_s": round(mlflow_cpu, 2),
            "hub_cpu_pct": round(100 * hub_cpu / window, 1),
            "mlflow_cpu_pct": round(100 * mlflow_cpu / window, 1),
            "hub_over_mlflow": ratio(hub_cpu, mlflow_cpu), "load": [load0, load()]}


def seeded(db: Path, models: int, versions: int) -> dict[str, Any]:
    """Seed ``db`` unless it exists (a re-run with ``--db`` skips the seeding)."""
    if db.exists():
        print(f"reusing the seeded registry {db}", flush=True)
        return {"reused": str(db)}
    print(f"seeding {models} models x {versions} versions into {db} ...", flush=True)
    return seed_registry(f"sqlite:///{db}", models, versions, "orm")


async def measure(label: str, models: int, db: Path, bootstrap: str, receiver: Receiver,
                  workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    from hub.broker.embedded import free_port

    r: dict[str, Any] = {"models": models, "versions": models * args.versions,
                         "load_start": load()}
    r["seed"] = await asyncio.to_thread(seeded, db, models, args.versions)
    sub = workdir / label
    sub.mkdir(exist_ok=True)
    async with mlflow_server(f"sqlite:///{db}", sub) as (server, start_s):
        r["mlflow_start_s"] = round(start_s, 1)
        assert server._proc is not None
        server_session = server._proc.pid
        client: Any = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        runs = [await asyncio.to_thread(rest_scan, server.url, args.page_size)
                for _ in range(args.rest_runs)]
        r["rest"] = {**runs[0], "s": round(statistics.median(x["s"] for x in runs), 2),
                     "runs_s": [round(x["s"], 2) for x in runs]}
        print(f"  {label}: bare REST scan {r['rest']['s']} s ({r['rest']['requests']} "
              f"requests); starting the hub ...", flush=True)
        config = hub_config(label, server.url, bootstrap, receiver.url, free_port(), sub, args)
        async with HubProcess(config, sub, label) as hub:
            await hub.until(hub.scanned, "first scan", args.ready_timeout)
            count, first = await hub.polls()
            r["first_scan_s"] = round(first, 2) if count == 1 else None
            r["ready_s"] = round(await hub.until(hub.ready, "/readyz 200", args.ready_timeout), 1)
            r["rss_after_scan"] = memory_mb(hub.pid)
            print(f"  {label}: first scan {r['first_scan_s']} s, ready after {r['ready_s']} s; "
                  f"idle for {args.idle_s} s (>= {args.idle_polls} polls) ...", flush=True)
            r["idle"] = await idle_window(hub, server_session, args)
            r["push"] = await push_phase(client, hub, receiver, label, models, args)
            r["rss_end"] = memory_mb(hub.pid)
        # the server as the idle polls found it: it had served scans back to back
        after = [await asyncio.to_thread(rest_scan, server.url, args.page_size)
                 for _ in range(args.rest_runs)]
        r["rest_after"] = {"s": round(statistics.median(x["s"] for x in after), 2),
                           "runs_s": [round(x["s"], 2) for x in after]}
        print(f"  {label}: bare REST scan after the hub {r['rest_after']['s']} s", flush=True)
    idle, rest_s = r["idle"], r["rest"]["s"]
    r["scan_over_rest"] = ratio(r["first_scan_s"] or float("nan"), rest_s)
    r["poll_over_rest"] = ratio(idle["poll_mean_s"] or float("nan"), rest_s)
    r["poll_over_rest_after"] = ratio(idle["poll_mean_s"] or float("nan"),
                                      r["rest_after"]["s"])
    r["load_end"] = load()
    return r


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import mlflow

    from hub.broker.embedded import EmbeddedBroker

    r: dict[str, Any] = {**run_info(), "mlflow": mlflow.__version__, "hub": hub_revision(),
                         "versions_per_model": args.versions, "page_size": args.page_size,
                         "poll_interval_s": args.poll_interval, "mutations": args.mutations,
                         "interval_s": args.interval, "load_start": load()}
    big_db = Path(args.db) if args.db else workdir / "big.db"
    async with EmbeddedBroker() as broker, Receiver(workdir / "receiver.log") as receiver:
        for label, models, db in (("small", args.small_models, workdir / "small.db"),
                                  ("big", args.models, big_db)):
            r[label] = await measure(label, models, db, broker.bootstrap_servers, receiver,
                                     workdir, args)
    small, big = r["small"], r["big"]
    r["push_p99_big_over_small"] = ratio(big["push"]["hub"]["p99_ms"],
                                         small["push"]["hub"]["p99_ms"])
    r["mlflow_p99_big_over_small"] = ratio(big["push"]["mlflow"]["p99_ms"],
                                           small["push"]["mlflow"]["p99_ms"])
    r["added_p99_big_over_small"] = ratio(big["push"]["added"]["p99_ms"],
                                          small["push"]["added"]["p99_ms"])
    r["rss_peak_big_over_small"] = ratio(big["rss_end"]["peak"], small["rss_end"]["peak"])
    r["load_end"] = load()
    return r


# --- the report --------------------------------------------------------------------------------


def verdict(value: float | None, bar: float) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return "ok" if value <= bar else "OVER"


def print_table(r: dict[str, Any]) -> None:
    s, b = r["small"], r["big"]
    print()
    print(headline("scale", r) + f"  mlflow {r['mlflow']}  load {r['load_start']} -> "
          f"{r['load_end']}")
    print(f"hub {r['hub']}; page_size {r['page_size']}, poll_interval_s "
          f"{r['poll_interval_s']}; {r['mutations']} tag sets every {r['interval_s']} s")
    row = "{:<32}{:>24}{:>24}  {}"
    print(row.format("", f"small {s['models']}x{r['versions_per_model']}",
                     f"big {b['models']}x{r['versions_per_model']}", "bar"))

    def line(label: str, get: Any, bar: str = "") -> None:
        print(row.format(label, *(str(get(x)) for x in (s, b)), bar))

    line("versions", lambda x: x["versions"])
    line("seed s", lambda x: x["seed"].get("seed_s", "reused"))
    line("mlflow server start s", lambda x: x["mlflow_start_s"])
    line("bare REST scan s (requests)", lambda x: f"{x['rest']['s']} ({x['rest']['requests']})")
    line("hub first scan s", lambda x: x["first_scan_s"])
    line("  / bare REST", lambda x: x["scan_over_rest"],
         f"<= {SCAN_BAR}  big: {verdict(b['scan_over_rest'], SCAN_BAR)}")
    line("hub spawn -> /readyz s", lambda x: x["ready_s"])
    line("idle polls in window (s)", lambda x: f"{x['idle']['polls']} ({x['idle']['window_s']})")
    line("  mean poll s / bare REST", lambda x: f"{x['idle']['poll_mean_s']} / "
         f"{x['poll_over_rest']}", "(a fresh server: see the next line)")
    line("bare REST scan after the hub s", lambda x: x["rest_after"]["s"])
    line("  mean poll s / bare REST after", lambda x: x["poll_over_rest_after"],
         f"<= {SCAN_BAR}  big: {verdict(b['poll_over_rest_after'], SCAN_BAR)}")
    line("idle CPU s: hub / MLflow", lambda x: "{hub_cpu_s} / {mlflow_cpu_s}".format(**x["idle"]))
    line("  % of a core: hub / MLflow", lambda x: "{hub_cpu_pct} / {mlflow_cpu_pct}"
         .format(**x["idle"]))
    line("  hub / MLflow CPU", lambda x: x["idle"]["hub_over_mlflow"], "(reported)")
    line("  load during idle", lambda x: "->".join(map(str, x["idle"]["load"])))
    line("hub RSS MB after scan (peak)", lambda x: f"{x['rss_after_scan']['rss']} "
         f"({x['rss_after_scan']['peak']})")
    line("hub RSS MB at end (peak)", lambda x: f"{x['rss_end']['rss']} ({x['rss_end']['peak']})",
         f"peak <= {RSS_BAR_MB}  big: {verdict(b['rss_end']['peak'], RSS_BAR_MB)}")
    line("push via hub p50 / p90 / p99 ms", lambda x: "{p50_ms} / {p90_ms} / {p99_ms}"
         .format(**x["push"]["hub"]))
    line("MLflow webhook p50 / p90 / p99 ms", lambda x: "{p50_ms} / {p90_ms} / {p99_ms}"
         .format(**x["push"]["mlflow"]))
    line("  hub / MLflow p50, p99", lambda x: f"{x['push']['ratio_p50']}, "
         f"{x['push']['ratio_p99']}")
    line("  hub - MLflow per change p50/p90/p99", lambda x: "{p50_ms} / {p90_ms} / {p99_ms}"
         .format(**x["push"]["added"]))
    line("  received hub, MLflow (bad sig.)", lambda x: "{}, {} of {} ({})".format(
        x["push"]["hub"]["n"], x["push"]["mlflow"]["n"], x["push"]["hub"]["sent"],
        x["push"]["hub"]["bad_signatures"] + x["push"]["mlflow"]["bad_signatures"]))
    print(f"push p99 big / small: hub {r['push_p99_big_over_small']} (bar <= {PUSH_BAR}: "
          f"{verdict(r['push_p99_big_over_small'], PUSH_BAR)}), MLflow's own webhook "
          f"{r['mlflow_p99_big_over_small']}; what the hub adds, p99 big / small "
          f"{r['added_p99_big_over_small']};  hub peak RSS big / small: "
          f"{r['rss_peak_big_over_small']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = new_parser(__doc__)
    p.add_argument("--models", type=int, default=10_000, help="models in the big registry")
    p.add_argument("--small-models", type=int, default=50, help="models in the small one")
    p.add_argument("--versions", type=int, default=10, help="versions per model")
    p.add_argument("--db", help="sqlite file of the big registry (seeded if missing; kept)")
    p.add_argument("--page-size", type=int, default=200, help="mlflow.page_size (the hub's)")
    p.add_argument("--rest-runs", type=int, default=3, help="bare REST scans (the median)")
    p.add_argument("--poll-interval", type=float, default=5.0, help="detector.poll_interval_s")
    p.add_argument("--scan-timeout", type=float, default=600.0, help="mlflow.scan_timeout_s")
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds")
    p.add_argument("--idle-s", type=float, default=60.0, help="idle window, seconds")
    p.add_argument("--idle-polls", type=int, default=2, help="at least this many polls in it")
    p.add_argument("--mutations", type=int, default=50, help="measured tag sets per size")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between tag sets")
    p.add_argument("--warmup", type=int, default=3, help="unreported tag sets per size")
    add_run_args(p, keeps="registries, server and hub logs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("scale", parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
