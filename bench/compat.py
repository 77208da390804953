"""Compatibility matrix: the registry workflow through the hub's detector, for each MLflow
server release and each store the hub reads.

    .venv/bin/python bench/compat.py                      # every row (first run: venv builds)
    .venv/bin/python bench/compat.py --only server-2.9.2,per-model

Each row runs the thirteen steps of ``tests/support/workflow.py`` (the workflow the
integration tests assert), one detection round after each, and compares the round's events
with the step's, exactly. The detector is the hub's own (``RegistrySource`` + ``Detector``
with the configuration a user would write); only its two Kafka edges are the in-memory ones
of ``hub.testing``, as the source and the diff are what is tested here.

Rows:

* ``server-<release>``: ``mlflow server`` of that release on a fresh sqlite database, changed
  by that release's own ``MlflowClient`` (a child process), read over REST. Releases other
  than the installed one run from a venv each, built once and cached
  (``<cache-dir>/mlflow-servers/<release>``, see ``tests/support/mlflow_versions.py``).
* ``sqlite``, ``postgres``, ``file-store``: the hub reading the store directly
  (``sqlite:///``, ``postgresql://`` on a throwaway cluster of Debian's Postgres,
  ``file:///.../mlruns``), changed by the installed client.
* ``per-model``: the installed server with ``mlflow.scan_mode: per_model`` (Unity Catalog's).
* ``registry-uri``: ``mlflow.registry_uri`` set to the installed server and ``tracking_uri``
  to a closed port: a hub that read the tracking URI would fail every round.

Prints the table and, last, ``BENCH_COMPAT {...}``; exits 1 if any row failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    add_run_args,
    headline,
    new_parser,
    quiet_mlflow,
    run_benchmark,
    run_info,
    use_checkout,
)

use_checkout()  # run as a script: make `hub` and `tests.support` importable
quiet_mlflow()

from hub.config import DetectorConfig, MlflowConfig  # noqa: E402
from hub.detect.detector import Detector  # noqa: E402
from hub.detect.source import RegistrySource  # noqa: E402
from hub.testing import MemoryCheckpoint, MemorySink  # noqa: E402
from tests.support import mlflow_versions  # noqa: E402
from tests.support.mlflow_globals import mlflow_globals_restored  # noqa: E402
from tests.support.workflow import WorkflowResult, run_workflow  # noqa: E402

SERVERS = ("2.9.2", "2.20.4", "2.22.5", "3.17.2")
"""MLflow server releases in the matrix: the oldest supported, the last one whose model
search misread MLflow 3 clients' prompt filter, the last 2.x, and the installed one."""
MODEL = "iris-classifier"


@dataclass
class Row:
    name: str
    registry: str
    """What the hub reads, in words (the table's first column)."""
    server: str | None = None
    """The ``mlflow server`` release to start (its sqlite store), or None: a store read
    directly."""
    store: str = "sqlite"
    """Without a server: ``sqlite``, ``postgres`` or ``file``."""
    mlflow: dict[str, Any] = field(default_factory=dict)
    """Hub settings beside the registry's URI (``scan_mode``, ...)."""
    upstream_bug: UpstreamBug | None = None


@dataclass(frozen=True)
class UpstreamBug:
    """A step MLflow itself cannot do on this registry: the client's own call fails. The row
    is reported as such, not as failed, only while every step before it passes and that
    step's call fails with ``error``; a fixed MLflow (the row passes) or any other failure
    shows as it is."""

    step: str
    error: str
    note: str


def rows() -> list[Row]:
    installed = _installed_mlflow()
    return [
        *(Row(f"server-{v}", f"MLflow {v} server, sqlite, its own client", server=v)
          for v in SERVERS),
        Row("sqlite", "sqlite:/// read directly", store="sqlite"),
        Row("postgres", "postgresql:// read directly (Postgres)", store="postgres"),
        Row("file-store", "file:///.../mlruns read directly", store="file",
            upstream_bug=UpstreamBug(
                "rename", "AttributeError: 'str' object has no attribute 'key'",
                "MLflow's FileStore.rename_registered_model fails for a model whose "
                "versions have tags (2.22 and 3.17), leaving it half renamed: the steps "
                "after it cannot run")),
        Row("per-model", f"MLflow {installed} server, scan_mode per_model", server=installed,
            mlflow={"scan_mode": "per_model"}),
        Row("registry-uri", f"MLflow {installed} server as registry_uri, tracking_uri unused",
            server=installed, mlflow={"tracking_uri": "http://127.0.0.1:9"}),
    ]


def _installed_mlflow() -> str:
    from importlib.metadata import version

    return version("mlflow")


# --- the registry of a row: (hub's URI, the client's python and URI, its env) ---------------


@dataclass
class Registry:
    uri: str
    client_python: Path
    client_env: dict[str, str] = field(default_factory=dict)
    setup_s: float = 0.0


def server_python(release: str) -> Path | None:
    """None for the installed release (this interpreter), else the cached venv's python."""
    return None if release == _installed_mlflow() else mlflow_versions.server_python(release)


@contextlib.asynccontextmanager
async def registry_for(row: Row, workdir: Path, postgres: Callable[[], Any]
                       ) -> AsyncIterator[Registry]:
    from hub.broker.embedded import free_port
    from tests.support.mlflow_server import MlflowServerProcess

    here = workdir / row.name
    here.mkdir(parents=True, exist_ok=True)
    if row.server is not None:
        python = await asyncio.to_thread(server_python, row.server)
        server = MlflowServerProcess(f"sqlite:///{here / 'mlflow.db'}", free_port(),
                                     here / "artifacts", log_path=here / "mlflow-server.log",
                                     python=python)
        start_s = await asyncio.to_thread(server.start, 180.0)
        try:
            yield Registry(server.url, python or Path(sys.executable), setup_s=start_s)
        finally:
            await asyncio.to_thread(server.stop)
    elif row.store == "sqlite":
        yield Registry(f"sqlite:///{here / 'registry.db'}", Path(sys.executable))
    elif row.store == "postgres":
        started = time.monotonic()
        cluster = await asyncio.to_thread(postgres)
        uri = await asyncio.to_thread(cluster.create_database, f"compat_{uuid.uuid4().hex[:8]}")
        yield Registry(uri, Path(sys.executable), setup_s=time.monotonic() - started)
    elif row.store == "file":
        yield Registry((here / "mlruns").as_uri(), Path(sys.executable),
                       {"MLFLOW_ALLOW_FILE_STORE": "true"})
    else:
        raise ValueError(f"unknown store {row.store!r}")


class Postgres:
    """One throwaway cluster for the run, started on first use (tests/support/postgres.py)."""

    def __init__(self) -> None:
        self._running: Any = None
        self.cluster: Any = None

    def __call__(self) -> Any:
        if self.cluster is None:
            import pytest

            from tests.support.postgres import running_postgres

            self._running = running_postgres()
            try:
                self.cluster = next(self._running)
            except pytest.skip.Exception as exc:  # what makes the tests skip, said here
                raise RuntimeError(f"no Postgres: {exc}") from None
        return self.cluster

    def close(self) -> None:
        if self._running is not None:
            self._running.close()  # stops the cluster and removes its directory


# --- a row ----------------------------------------------------------------------------------


async def run_row(row: Row, workdir: Path, postgres: Postgres) -> dict[str, Any]:
    result: dict[str, Any] = {"row": row.name, "registry": row.registry}
    started = time.monotonic()
    try:
        async with registry_for(row, workdir, postgres) as registry:
            result["setup_s"] = round(registry.setup_s, 1)
            with mlflow_globals_restored():
                outcome = await run_on(row, registry)
    except Exception as exc:
        result.update(ok=False, steps="0/13", events=0,
                      mismatch=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                      total_s=round(time.monotonic() - started, 1))
        return result
    mismatches = outcome.mismatches()
    if not outcome.ok and row.upstream_bug is not None and upstream(row.upstream_bug, outcome):
        result["upstream_bug"] = row.upstream_bug.note
    result.update(ok=outcome.ok or "upstream_bug" in result,
                  steps=f"{outcome.passed}/{len(outcome.steps)}",
                  events=len(outcome.events), expected_events=outcome.expected_events,
                  workflow_s=round(outcome.seconds, 2), mismatch=mismatches[0] if mismatches
                  else None, total_s=round(time.monotonic() - started, 1))
    return result


def upstream(bug: UpstreamBug, outcome: WorkflowResult) -> bool:
    """The workflow went as ``bug`` says it goes on a registry with it, and no otherwise."""
    first = next(i for i, s in enumerate(outcome.steps) if not s.passed)
    failed = outcome.steps[first]
    return (failed.step.what == bug.step and failed.error is not None
            and bug.error in failed.error)


async def run_on(row: Row, registry: Registry) -> WorkflowResult:
    """A detector on the row's registry (its baseline taken), then the workflow through the
    release's own client."""
    settings = {"tracking_uri": registry.uri, "request_retries": 0, "scan_timeout_s": 30,
                **row.mlflow}
    if "tracking_uri" in row.mlflow:  # the registry-uri row: the registry is set apart
        settings["registry_uri"] = registry.uri
    config = MlflowConfig(**settings)
    detector_config = DetectorConfig(poll_interval_s=1, leader_election=False)
    async with RegistrySource(config) as source:
        detector = Detector(detector_config, scanner=source, sink=MemorySink(),
                            checkpoint=MemoryCheckpoint(), tracking_uri=config.tracking_uri)
        baseline = await detector.poll_once()
        if baseline or detector.state is None:
            raise RuntimeError(f"the baseline round gave {len(baseline)} events")
        with mlflow_versions.OldClient(registry.client_python, registry.uri,
                                       env=registry.client_env) as call:
            return await run_workflow(call, detector.poll_once, MODEL)


# --- main -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    chosen = [r for r in rows() if not args.only or r.name in args.only]
    results: dict[str, Any] = {**run_info(), "command": " ".join(["bench/compat.py",
                                                                   *sys.argv[1:]])}
    results["venvs"] = await build_venvs(sorted({r.server for r in chosen if r.server}))
    postgres = Postgres()
    try:
        results["rows"] = []
        for row in chosen:
            print(f"{row.name} ...", flush=True)
            results["rows"].append(await run_row(row, workdir, postgres))
    finally:
        await asyncio.to_thread(postgres.close)
    results["failed"] = [r["row"] for r in results["rows"] if not r["ok"]]
    return results


async def build_venvs(releases: list[str]) -> dict[str, Any]:
    """Each release's venv, built at once where missing (cached for the next run): how long
    the build took when it was made, and whether it was made now."""
    installed = _installed_mlflow()
    wanted = [v for v in releases if v != installed]
    cached = {v for v in wanted if (mlflow_versions.venv_dir(v) / ".complete").exists()}
    started = time.monotonic()
    outcomes = await asyncio.gather(*(asyncio.to_thread(mlflow_versions.server_python, v)
                                      for v in wanted), return_exceptions=True)
    venvs: dict[str, Any] = {"wall_s": round(time.monotonic() - started, 1)}
    for release, outcome in zip(wanted, outcomes, strict=True):
        venvs[release] = {"cached": release in cached,
                          "build_s": mlflow_versions.build_seconds(release),
                          "error": None if isinstance(outcome, Path) else
                          str(outcome).splitlines()[0][:300]}
    return venvs


def print_table(r: dict[str, Any]) -> None:
    print()
    print(headline("Compatibility", r))
    print(f"  command: {r['command']}")
    for release, venv in r["venvs"].items():
        if release != "wall_s":
            state = "cached" if venv["cached"] else "built now"
            print(f"  venv mlflow {release}: {state}, build {venv['build_s']} s"
                  + (f", ERROR {venv['error']}" if venv["error"] else ""))
    width = max(len(row["registry"]) for row in r["rows"]) if r["rows"] else 10
    print(f"  {'registry':<{width}}  {'steps':>5}  {'events':>6}  {'workflow s':>10}  "
          f"{'setup s':>7}  first mismatch")
    for row in r["rows"]:
        events = f"{row['events']}/{row.get('expected_events', 15)}"
        note = (f"MLflow bug, not the hub's: {row['upstream_bug']}"
                if row.get("upstream_bug") else row["mismatch"] or "-")
        print(f"  {row['registry']:<{width}}  {row['steps']:>5}  {events:>6}  "
              f"{row.get('workflow_s', '-'):>10}  {row.get('setup_s', '-'):>7}  {note}")
    upstream = [row["row"] for row in r["rows"] if row.get("upstream_bug")]
    print(f"  {len(r['rows']) - len(r['failed'])}/{len(r['rows'])} rows passed"
          + (f" ({', '.join(upstream)} as far as MLflow itself goes)" if upstream else "")
          + (f"; failed: {', '.join(r['failed'])}" if r["failed"] else ""))


def main() -> int:
    parser = new_parser(__doc__)
    names = [r.name for r in rows()]
    parser.add_argument("--only", type=lambda s: s.split(","), metavar="ROW[,ROW...]",
                        help=f"run only these rows, of: {', '.join(names)}")
    parser.add_argument("--cache-dir", help="where the MLflow venvs are kept (default: "
                        "$REGISTRY_HUB_CACHE or ~/.cache/registry-hub)")
    add_run_args(parser, keeps="each row's server log and store")
    args = parser.parse_args()
    if unknown := set(args.only or ()) - set(names):
        parser.error(f"unknown rows: {', '.join(sorted(unknown))} (rows: {', '.join(names)})")
    if args.cache_dir:
        os.environ["REGISTRY_HUB_CACHE"] = str(Path(args.cache_dir).absolute())
    return run_benchmark("compat", args, run, print_table,
                         exit_code=lambda results: 1 if results["failed"] else 0)


if __name__ == "__main__":
    sys.exit(main())
