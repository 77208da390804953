"""The hub process's heap, settled once it is ready (:func:`settle`).

Importing MLflow and opening its client leaves some 200,000 long-lived objects (modules,
classes, SQLAlchemy and protobuf machinery). Python's full (generation 2) garbage collections
walk every tracked object, so each one paused the event loop 50-120 ms at any registry size,
and the push path's p99 with it (``bench/latency.py``). Once the hub is ready, :func:`settle`
collects once and freezes what is alive then (:func:`gc.freeze`): later collections walk only
what the running hub allocates. Frozen objects are still freed by reference counting; the
only cost is that a reference cycle alive at that moment and dropped later is never
collected, and there is at most one such moment per process.

It also collects the young generation every 20,000 net allocations instead of Python's 700
(:data:`THRESHOLDS`). A delivery worker keeps some thousands of objects in flight (64
requests, their coroutines, records and buffers): with the default, a young collection ran
about every 20 deliveries, walked what was in flight and promoted it, and the promoted
objects fed full collections — about 1.0 s of collector CPU in a 20,000-delivery run of
``bench/deliver.py``, 0.2 s with these thresholds. Objects in no cycle are freed by
reference counting as before; a cycle waits for at most 20,000 allocations.
"""

from __future__ import annotations

import gc
import time

import structlog

log = structlog.get_logger(__name__)

THRESHOLDS = (20_000, 20, 20)
"""``gc.set_threshold`` once settled: young collections every 20,000 net allocations."""


def settle() -> None:
    """Collect once, then keep every object alive now out of later collections."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    log.info("hub.heap_settled", frozen_objects=gc.get_freeze_count(),
             gc_thresholds=list(THRESHOLDS), took_s=round(time.perf_counter() - started, 3))
