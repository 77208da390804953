"""What one push costs the detector at a registry size, without MLflow or Kafka:
``Detector.refresh_model`` for one model among ``--models`` x ``--versions`` (in-memory
edges of :mod:`hub.testing`, so only the hub's own work is timed), and the wait of a push
that arrives while a full scan (held for ``--scan-s``) is running.

    .venv/bin/python bench/push_cost.py --models 10000 --versions 10

Run it at two commits to compare (``git worktree`` or ``git archive`` of the older one).
Prints a table and ``BENCH_PUSH_COST {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

from common import load, ms, new_parser, result_line, run_info, use_checkout

use_checkout()  # run as a script: make `hub` importable


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from hub.config import DetectorConfig
    from hub.detect.detector import Detector
    from hub.detect.snapshot import ModelState, Snapshot, VersionState
    from hub.testing import MemoryCheckpoint, MemorySink, StaticScanner

    models = [ModelState(f"m{i:05}", i, tags={"a": "b"}, versions={
        str(v): VersionState(str(v), i * 1000 + v, run_id=f"r{v}", tags={"t": "x"})
        for v in range(1, args.versions + 1)}) for i in range(args.models)]

    class HeldScanner(StaticScanner):
        hold_s = 0.0

        async def scan(self) -> Snapshot:
            seen = await super().scan()
            await asyncio.sleep(self.hold_s)  # a scan this long, by construction
            return seen

    scanner = HeldScanner(Snapshot.of(models))
    detector = Detector(DetectorConfig(leader_election=False), scanner=scanner,
                        sink=MemorySink(), checkpoint=MemoryCheckpoint(), tracking_uri="bench")
    await detector.poll_once()  # the baseline

    def change(name: str, value: str) -> None:
        model = scanner.snapshot.models[name]
        scanner.snapshot = Snapshot({**scanner.snapshot.models,
                                     name: replace(model, tags={"a": value})})

    times = []
    for k in range(args.pushes):
        name = f"m{k % args.models:05}"
        change(name, f"v{k}")
        started = time.perf_counter()
        assert len(await detector.refresh_model(name)) == 1
        times.append(time.perf_counter() - started)
    scanner.hold_s = args.scan_s
    poll = asyncio.create_task(detector.poll_once())
    await asyncio.sleep(args.scan_s / 10)  # the scan is under way
    change("m00000", "during")
    started = time.perf_counter()
    await detector.refresh_model("m00000")
    during = time.perf_counter() - started
    await poll
    return {"refresh_ms_p50": ms(statistics.median(times)), "refresh_ms_max": ms(max(times)),
            "push_during_scan_ms": ms(during)}


def main() -> int:
    p = new_parser(__doc__)
    p.add_argument("--models", type=int, default=10_000, help="models in the registry")
    p.add_argument("--versions", type=int, default=10, help="versions per model")
    p.add_argument("--pushes", type=int, default=20, help="pushes timed")
    p.add_argument("--scan-s", type=float, default=2.0, help="how long the held scan takes")
    args = p.parse_args()
    logging.disable(logging.INFO)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results = {**run_info(), "models": args.models, "versions": args.versions,
               "scan_s": args.scan_s, "load_start": load()}
    results.update(asyncio.run(measure(args)))
    results["load_end"] = load()
    print(f"push cost  {results['date']}  {args.models} x {args.versions}, load "
          f"{results['load_start']} -> {results['load_end']}")
    print(f"  refresh_model p50 {results['refresh_ms_p50']} ms, max "
          f"{results['refresh_ms_max']} ms; a push during a {args.scan_s} s scan "
          f"{results['push_during_scan_ms']} ms")
    print(result_line("push_cost", results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
