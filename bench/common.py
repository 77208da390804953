"""What the benchmarks under ``bench/`` share: the checkout on ``sys.path``, a quiet MLflow,
the ``main`` skeleton (work dir, hub logs to a file, the table, then one ``BENCH_<NAME> {...}``
JSON line), the common flags, a real ``mlflow server`` for the run, the receiver as a child
process, a plain consumer from the end of a topic, and small statistics.

The scripts import it as a sibling module (run as ``python bench/<name>.py``, ``bench/`` is
``sys.path[0]``); ``hub`` and ``tests.support`` are imported inside the functions, so call
:func:`use_checkout` before importing anything from the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent

Results = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- process setup -------------------------------------------------------------------------


def use_checkout() -> None:
    """Make ``hub`` and ``tests.support`` importable from this checkout (run as a script)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def quiet_mlflow() -> None:
    """No telemetry, no deprecation noise (stages are deprecated), and no tracking or registry
    URI from the environment: the benchmark talks only to the server it starts. Call it
    before anything imports ``mlflow``."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)


def configure_logging(level: str, path: Path) -> Any:
    """The hub's JSON logs at ``level`` into ``path`` (not the terminal); returns the open
    file, for the caller to close."""
    import structlog

    from hub import logging as hub_logging

    hub_logging.configure(level, "json")
    out = path.open("a")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out))
    return out


# --- main, flags, the report ---------------------------------------------------------------


def new_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_run_args(p: argparse.ArgumentParser, *, keeps: str = "logs",
                 receiver: bool = False) -> None:
    """``--log-level`` and ``--workdir`` (what :func:`run_benchmark` reads), and with
    ``receiver`` the hidden ``--serve-receiver`` that :class:`ReceiverProcess` spawns."""
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="hub log level (logs go to a file in the work dir)")
    p.add_argument("--workdir", help=f"keep {keeps} here (default: a temp dir, removed)")
    if receiver:
        p.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)


def run_info() -> Results:
    """The first keys of every report."""
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def headline(what: str, r: Results) -> str:
    """The table's first line, from :func:`run_info`'s keys."""
    return f"{what} benchmark  {r['date']}  cpus={r['cpus']}  python {r['python']}"


def result_line(name: str, results: Results) -> str:
    """The machine-readable last line: ``BENCH_<NAME> {...}``."""
    return f"BENCH_{name.upper()} " + json.dumps(results, separators=(",", ":"), default=str)


def run_benchmark(name: str, args: argparse.Namespace,
                  run: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, Results]],
                  print_table: Callable[[Results], None],
                  exit_code: Callable[[Results], int] = lambda results: 0) -> int:
    """A benchmark's ``main``: a work dir (``--workdir``, or a temp dir removed afterwards)
    with the hub's logs in it, ``run(args, workdir)``, then the table and the JSON line;
    returns ``exit_code(results)``."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix=f"bench-{name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = configure_logging(args.log_level, workdir / "hub.log")
    try:
        results = asyncio.run(run(args, workdir))
    finally:
        log_file.close()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    print(result_line(name, results))
    return exit_code(results)


def load() -> float:
    """The 1-minute load average, as reported before and after a run."""
    return round(os.getloadavg()[0], 2)


# --- small statistics ----------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def percentiles_ms(values: list[float], qs: Iterable[int] = (50, 90, 99), *,
                   empty_max: float = float("nan")) -> dict[str, float]:
    """``{"p50_ms": ..., ..., "max_ms": ...}`` of durations in seconds (``empty_max`` is the
    max of no values)."""
    return {**{f"p{q}_ms": ms(pct(values, q)) for q in qs},
            "max_ms": ms(max(values or [empty_max]))}


# --- the services a run starts -------------------------------------------------------------


def local_delivery(group_id_prefix: str, **extra: Any) -> dict[str, Any]:
    """``delivery`` settings for a hub delivering to a receiver on 127.0.0.1, from the start
    of its topic."""
    return {"allowed_networks": ["127.0.0.0/8"], "start_from": "earliest",
            "grace_period_s": 2, **extra, "group_id_prefix": group_id_prefix}


@contextlib.asynccontextmanager
async def mlflow_server(db_uri: str, workdir: Path) -> AsyncIterator[tuple[Any, float]]:
    """A real ``mlflow server`` on ``db_uri`` (artifacts and its log in ``workdir``), stopped
    on exit; yields it and how many seconds it took to start."""
    from hub.broker.embedded import free_port
    from tests.support.mlflow_server import MlflowServerProcess

    server = MlflowServerProcess(db_uri, free_port(), workdir / "artifacts",
                                 log_path=workdir / "mlflow-server.log")
    start_s = await asyncio.to_thread(server.start, 120.0)
    try:
        yield server, start_s
    finally:
        await asyncio.to_thread(server.stop)


async def seek_to_end(consumer: Any, topic: str, partitions: Iterable[int]) -> None:
    """Assign ``partitions`` of ``topic`` to a started aiokafka consumer (no group) and resolve
    their end offsets now, so it sees only what is published from here on."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, n) for n in sorted(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)


# --- the receiver: a child process ---------------------------------------------------------


def serve_receiver(make_handler: Callable[[], Handler], *, backlog: int = 128,
                   handler_cancellation: bool = False) -> int:
    """The child's side of :class:`ReceiverProcess`: every path to ``make_handler()`` on
    127.0.0.1 (a free port, printed as ``PORT <n>``), until the process is stopped."""

    async def serve() -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", make_handler())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1,
                               handler_cancellation=handler_cancellation)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=backlog)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"PORT {port}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


class ReceiverProcess:
    """``script --serve-receiver`` as a child process (stderr to ``log_path``), so the
    receiver's work does not compete with the hub's event loop; ``url`` once started."""

    def __init__(self, script: str | Path, log_path: Path) -> None:
        self._script = Path(script).resolve()
        self._log_path = log_path
        self._proc: subprocess.Popen[str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def _spawn(self) -> subprocess.Popen[str]:
        with open(self._log_path, "ab") as err:
            return subprocess.Popen(
                [sys.executable, str(self._script), "--serve-receiver"],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True)

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.to_thread(self._spawn)
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self._proc.stdout.readline), 30)
        if not line.startswith("PORT "):
            raise RuntimeError(f"receiver did not start: {line!r} (see {self._log_path})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def get(self, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
        """``GET endpoint`` on the receiver (its control paths): the JSON answer."""
        assert self._session is not None
        async with self._session.get(f"{self.url}{endpoint}", params=params) as resp:
            return dict(await resp.json())
