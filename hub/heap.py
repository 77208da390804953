"""The hub process's heap, settled once it is ready (:func:`settle`).

Importing MLflow and opening its client leaves some 200,000 long-lived objects (modules,
classes, SQLAlchemy and protobuf machinery). Python's full (generation 2) garbage collections
walk every tracked object, so each one paused the event loop 50-120 ms at any registry size,
and the push path's p99 with it (``bench/latency.py``). Once the hub is ready, :func:`settle`
collects once and freezes what is alive then (:func:`gc.freeze`): later collections walk only
what the running hub allocates. Frozen objects are still freed by reference counting; the
only cost is that a reference cycle alive at that moment and dropped later is never
collected, and there is at most one such moment per process.
"""

from __future__ import annotations

import gc
import time

import structlog

log = structlog.get_logger(__name__)


def settle() -> None:
    """Collect once, then keep every object alive now out of later collections."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("hub.heap_settled", frozen_objects=gc.get_freeze_count(),
             took_s=round(time.perf_counter() - started, 3))
