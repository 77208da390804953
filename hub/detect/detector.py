"""The detector: scan → diff → stamp → publish (acked) → checkpoint, every poll interval.

* A scan that fails emits nothing; the detector logs once, backs off (up to the poll
  interval, at least 5 s) and scans again. Publishing and the checkpoint retry until the
  broker acknowledges (:mod:`hub.detect.acked`); the checkpoint advances only afterwards.
* First start (no checkpoint) takes a baseline without emitting, unless ``emit_existing``.
* A broker that comes back empty has lost the checkpoint and the events not yet delivered:
  the detector writes the state it holds in memory back whole and publishes again the events
  of the last few minutes (same ids; :mod:`hub.detect.recent`), then diffs on from it.
* Ids (:func:`hub.events.event_id`) are drawn in the checkpoint's epoch. A new baseline
  starts a new epoch, and an epoch is in the checkpoint before any event that uses it is
  published: a re-publication after a crash always finds the epoch it was first stamped in.
* A push (:meth:`Detector.pushed`) costs one model and never waits for a full scan. A tag or
  alias change is applied from MLflow's payload to the model state held and published at
  once (:mod:`hub.detect.facts`), the model re-read shortly after (:mod:`hub.detect.rereads`);
  other pushes re-read the model now (:meth:`Detector.refresh_model`). Pushes and the poll
  never publish a change twice or out of order (:mod:`hub.detect.pushes`). While pushes are
  healthy the full scan runs every ``reconcile_interval_s`` (:mod:`hub.detect.cadence`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from hub.config import DetectorConfig
from hub.detect.acked import Acked, EventSink
from hub.detect.cadence import next_interval
from hub.detect.checkpoint import Checkpoint, DetectorState
from hub.detect.diff import diff
from hub.detect.facts import Fact, fresh
from hub.detect.pushes import Gate, Pushes, hold_back, narrowed
from hub.detect.recent import RecentEvents
from hub.detect.rereads import REREAD_AFTER_S, Rereads
from hub.detect.snapshot import ModelState, Snapshot
from hub.detect.stamp import stamp
from hub.errors import SourceError
from hub.events import Change, Event, new_epoch
from hub.metrics import Metrics
from hub.redaction import redact_url

log = structlog.get_logger(__name__)


class Scanner(Protocol):
    async def scan(self) -> Snapshot: ...

    async def scan_model(self, name: str) -> ModelState | None: ...


class Detector:
    def __init__(self, config: DetectorConfig, *, scanner: Scanner, sink: EventSink,
                 checkpoint: Checkpoint, tracking_uri: str, metrics: Metrics | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 reread_after_s: float = REREAD_AFTER_S) -> None:
        self._config = config
        self._scanner = scanner
        self._checkpoint = checkpoint
        self._source = redact_url(tracking_uri)
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()  # one poll at a time
        self._gate = Gate()  # pushes apply together, the poll alone (hub.detect.pushes)
        self._pushes = Pushes()
        self._rereads = Rereads(self._reread, reread_after_s)
        self.last_push_monotonic: float | None = None  # a push received and read
        self.interval_s = config.poll_interval_s  # until the next full scan, as last chosen
        self.state: DetectorState | None = None
        self._remembered: DetectorState | None = None  # see forget()
        self._recent = RecentEvents()
        self._acked = Acked(config, sink=sink, checkpoint=checkpoint, stopping=self._stopping,
                            recent=self._recent, before_retry=self._before_publish_retry)
        self.last_success_monotonic: float | None = None
        self.last_scan_s: float | None = None
        self.consecutive_failures = 0
        self.last_error: str | None = None

    def health(self, stale_after_s: float) -> dict[str, Any]:
        """``/readyz``'s detector check: ok while a round completed within ``stale_after_s``
        (plus twice the last scan's duration: a big registry's scan takes its time)."""
        last, failures = self.last_success_monotonic, self.consecutive_failures
        if last is None:
            return {"ok": False, "detail": "no successful scan yet",
                    "consecutive_failures": failures, "error": self.last_error}
        age = time.monotonic() - last
        stale_after = stale_after_s + 2 * (self.last_scan_s or 0.0) \
            + max(0.0, self.interval_s - self._config.poll_interval_s)  # reconciling
        check: dict[str, Any] = {"ok": age <= stale_after, "last_success_s_ago": round(age, 1),
                                 "consecutive_failures": failures,
                                 "stale_after_s": round(stale_after, 1)}
        if not check["ok"]:
            check["detail"] = (f"no detection round completed for {age:.0f} s: "
                               + (self.last_error or "publishing or the checkpoint waits "
                                  "for the broker"))
        return check

    def stop(self) -> None:
        self._stopping.set()

    def forget(self) -> None:
        """Drop the in-memory state: the next round reloads the checkpoint (an elected
        detector, which another leader may have advanced meanwhile). The state is kept
        aside, to write it back if the broker lost the checkpoint."""
        if self.state is not None:
            self._remembered = self.state
        self.state = None
        self._pushes.unread()

    def resume(self) -> None:
        """Allow :meth:`run` again after :meth:`stop` (an elected standby; see hub.elect)."""
        self._stopping.clear()

    async def run(self) -> None:
        """Poll until :meth:`stop`. Never raises for outages; they are logged and retried."""
        try:
            await self._run()
        finally:
            await self._rereads.cancel()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.poll_once()
            except SourceError as exc:
                self._metrics.poll_failures.inc()
                self.consecutive_failures += 1
                delay = self._acked.backoff(self.consecutive_failures)
                if self.consecutive_failures == 1 or str(exc) != self.last_error:
                    log.warning("detector.scan_failed", error=str(exc), emitted=0,
                                retry_every_s=self._acked.backoff(1_000),
                                action="retrying; logged again when it changes or recovers")
                self.last_error = str(exc)
                await self._acked.wait(delay)
                continue
            if self.consecutive_failures:
                log.info("detector.scan_recovered", failed_scans=self.consecutive_failures)
            self.consecutive_failures = 0
            self.last_error = None
            await self._wait_for_next_round(time.monotonic())

    async def _wait_for_next_round(self, ended: float) -> None:
        """Until ``poll_interval_s`` after ``ended``, or ``reconcile_interval_s`` while pushes
        are healthy; re-checked at least every poll interval, so a push path that goes quiet
        brings the poll interval back within one."""
        while True:
            now = time.monotonic()
            self.interval_s = next_interval(self._config, last_push=self.last_push_monotonic,
                                            now=now)
            delay = ended + self.interval_s - now
            if delay <= 0 or await self._acked.wait(min(delay, self._config.poll_interval_s)):
                return

    async def poll_once(self) -> list[Event]:
        """One detection round; returns the events published (empty on baseline)."""
        async with self._lock:
            since = self._pushes.mark()  # pushes after this may be newer than the scan
            self._pushes.forget_before(since)
            scan_at = self._clock().timestamp()
            started = time.perf_counter()
            with self._metrics.poll_duration.time():
                current = await self._scanner.scan()
            self.last_scan_s = time.perf_counter() - started
            async with self._gate.exclusive():
                ready = await self._prepare(current)
            if ready is not None:
                if self.state is not None:
                    self._pushes.scanned(scan_at, set())  # the baseline is this scan
                return ready
            events = await self._reconcile(current, since, scan_at)
            self.last_success_monotonic = time.monotonic()
            return events

    async def _prepare(self, current: Snapshot) -> list[Event] | None:
        """Load (or take) the state the poll diffs from: ``None`` when ready to diff, else the
        round's result (a baseline, or stopping)."""
        if self.state is None:
            state = await self._checkpoint.load()
            if state is None and self._remembered is not None:
                state = self._remembered  # the broker lost the checkpoint we had
                if not await self._reseed(state):
                    return []  # stopping
            elif state is None:
                return await self._baseline(current)
            elif state.epoch is None:
                state = await self._give_epoch(state)
                if state is None:
                    return []  # stopping before the epoch was saved
            self.state = state
        elif await self._checkpoint.lost() and not await self._reseed(self.state):
            return []  # stopping
        return None

    async def _reconcile(self, current: Snapshot, since: int, scan_at: float) -> list[Event]:
        """Publish what the scan found, except for models pushes may have seen after it
        (:func:`hub.detect.pushes.hold_back`). The diff runs outside the gate, so pushes go
        on meanwhile; if one applied or started meanwhile, the models it may concern are
        diffed again, under the gate (:func:`hub.detect.pushes.narrowed`)."""
        base, held = self.state, self._pushes.held(since)
        if base is None:
            return []  # forgotten (stood down) meanwhile
        target = hold_back(base.snapshot, current, held)
        # pure and over immutable snapshots: in a thread, so a big diff (0.1 s at 100,000
        # versions) interleaves with pushes and deliveries instead of pausing them
        changes = await asyncio.to_thread(diff, base.snapshot, target)
        async with self._gate.exclusive():
            if self.state is base and self._pushes.held(since) == held:
                return await self._scanned(base, target, changes, scan_at, held)
        async with self._gate.exclusive():
            if self.state is None:
                return []
            later = self._pushes.held(since)
            target, changes = narrowed(self.state.snapshot, current, changes, later)
            return await self._scanned(self.state, target, changes, scan_at, later)

    async def _scanned(self, base: DetectorState, target: Snapshot, changes: list[Change],
                       scan_at: float, held: set[str]) -> list[Event]:
        events = await self._apply(base, target, changes, path="poll")
        if self.state is not None and (self.state.snapshot is target or not changes):
            self._pushes.scanned(scan_at, held)
        return events

    async def pushed(self, name: str, fact: Fact | None = None) -> list[Event]:
        """MLflow pushed a change to ``name``. A ``fact`` sent after the model was last read
        is applied to the model held and published at once, the model re-read shortly after
        (:mod:`hub.detect.rereads`); otherwise the model is re-read now (:meth:`refresh_model`)."""
        if fact is not None and self.state is not None and not self._stopping.is_set():
            events = await self._apply_fact(fact)
            if events is not None:
                self._metrics.pushes.labels("payload").inc()
                self._rereads.schedule(name)
                return events
        if self.state is not None and not self._stopping.is_set():  # else refresh reads nothing
            self._metrics.pushes.labels("read").inc()
        return await self.refresh_model(name)

    async def _apply_fact(self, fact: Fact) -> list[Event] | None:
        """Publish ``fact`` applied to the model held; None if it cannot be (not fresh, or a
        model or version the state does not have)."""
        name = fact.name
        async with self._pushes.model(name):  # in flight: a poll leaves the model alone
            async with self._gate.shared():
                held = self.state.snapshot.models.get(name) if self.state else None
                model = fact.apply(held) if held is not None else None
                if model is None or not fresh(fact, self._pushes.read_at(name)):
                    return None
                self.last_push_monotonic = time.monotonic()
                events = await self._apply_pushed(model, read=False)
                self._pushes.read(name, fact.sent_at)
                return events

    async def _reread(self, name: str) -> None:
        await self.refresh_model(name)
        self._metrics.rereads.inc()

    async def refresh_model(self, name: str) -> list[Event]:
        """Re-read one model now (MLflow pushed a webhook for it) and publish what changed.

        Costs one model: the re-read and the diff cover ``name`` only, and neither waits for
        a full scan (see :mod:`hub.detect.pushes` for why the poll then neither repeats nor
        reverts what this published). Pushes for one model run in arrival order, pushes for
        different models concurrently. A model that is gone is left to the full poll, which
        alone can tell a deletion from a rename.
        """
        if self.state is None or self._stopping.is_set():
            return []  # no baseline yet (or standing by): the poll takes care of it
        async with self._pushes.model(name):
            self._pushes.touch(name)
            read_at = self._clock().timestamp()
            model = await self._scanner.scan_model(name)
            self.last_push_monotonic = time.monotonic()
            if model is None:
                return []
            async with self._gate.shared():
                events = await self._apply_pushed(model, read=True)
                self._pushes.read(name, read_at)
                return events

    async def _apply_pushed(self, model: ModelState, *, read: bool) -> list[Event]:
        state, name = self.state, model.name
        if state is None or self._stopping.is_set():
            return []
        assert state.epoch is not None  # a state is only set once it has one
        old = state.snapshot.models.get(name)
        previous = Snapshot({name: old} if old is not None else {})
        current = Snapshot({name: model})
        changes = diff(previous, current)  # one model: cheap enough for the loop
        if not changes:
            return []
        counters = {name: state.sequences[name]} if name in state.sequences else {}
        events, counters = stamp(changes, previous, current, counters, epoch=state.epoch,
                                 source=self._source, now=self._clock())
        started = time.perf_counter()
        if not await self._acked.publish(events):
            return []  # stopping before the broker acknowledged: the checkpoint stays put
        self._count(events, "push")
        self._pushes.touch(name)  # applied: a scan started before now must not apply it
        await self._acked.save(DetectorState(current, counters, state.epoch), changed={name},
                         removed=set())
        latest = self.state  # other models' pushes may have moved it meanwhile
        if latest is not None:  # (None: forgotten meanwhile; the next round reloads it)
            self.state = DetectorState(Snapshot({**latest.snapshot.models, name: model}),
                                       {**latest.sequences, **counters}, latest.epoch)
        log.info("detector.published", events=len(events), models=1, path="push", reread=read,
                 publish_s=round(time.perf_counter() - started, 4))
        return events

    async def _advance(self, current: Snapshot, *, path: str) -> list[Event]:
        """Diff the state against ``current`` and apply it (the caller holds the gate)."""
        assert self.state is not None
        changes = await asyncio.to_thread(diff, self.state.snapshot, current)
        return await self._apply(self.state, current, changes, path=path)

    async def _apply(self, base: DetectorState, current: Snapshot, changes: list[Change], *,
                     path: str) -> list[Event]:
        """Stamp, publish (until acknowledged), checkpoint what changed, then move the state
        to ``current``. The caller holds the gate exclusively."""
        if not changes:
            return []
        previous = base.snapshot
        assert base.epoch is not None  # poll_once and _baseline see to it
        events, sequences = stamp(changes, previous, current, base.sequences,
                                  epoch=base.epoch, source=self._source, now=self._clock())
        started = time.perf_counter()
        if not await self._acked.publish(events):
            return []  # stopping before the broker acknowledged: the checkpoint stays put
        self._count(events, path)
        touched = {e.model for e in events}
        new_state = DetectorState(current, sequences, base.epoch)
        await self._acked.save(new_state, changed=touched & set(current.models),
                         removed=(set(previous.models) - set(current.models)))
        self.state = new_state
        log.info("detector.published", events=len(events), models=len(touched), path=path,
                 publish_s=round(time.perf_counter() - started, 4))
        return events

    def _count(self, events: list[Event], path: str) -> None:
        for event in events:
            self._metrics.events_detected.labels(event.type, path).inc()
            self._metrics.events_published.labels(event.type).inc()

    async def _give_epoch(self, state: DetectorState) -> DetectorState | None:
        """A format 1 checkpoint gets a fresh epoch, saved before anything is stamped with it
        (``None`` if stopping first).

        Why fresh and not derived from the old checkpoint: a constant epoch would be shared by
        every format 1 checkpoint (a re-created one, a restored copy, a second hub), whose
        sequences overlap: the collisions epochs exist to prevent. The checkpoint's content
        changes with every save, so it cannot be the source either. Saved first, the fresh
        epoch is as stable as a derived one: every later load reads it back.
        """
        state = replace(state, epoch=new_epoch())
        if not await self._acked.save(state, changed=set(), removed=set(), baseline=True):
            return None
        log.info("detector.epoch_created", epoch=state.epoch, reason="format 1 checkpoint")
        return state

    async def _baseline(self, current: Snapshot) -> list[Event]:
        """No checkpoint: a new epoch and ``current`` as the baseline. With ``emit_existing``
        the baseline is empty and the first round publishes every model as created, so a crash
        in the middle re-publishes them with the same ids."""
        epoch = new_epoch()
        start = Snapshot() if self._config.emit_existing else current
        state = DetectorState(start, {}, epoch)
        if not await self._acked.save(state, changed=set(start.models), removed=set(),
                                      baseline=True):
            return []
        self.state = state
        events = await self._advance(current, path="baseline") if start is not current else []
        self.last_success_monotonic = time.monotonic()
        log.info("detector.baseline", models=len(current), emitted=len(events), epoch=epoch)
        return events

    async def _reseed(self, state: DetectorState) -> bool:
        """The broker lost the checkpoint (it came back empty, or a new cluster answers at
        its address). Publish again the recent events it lost with it (same ids: receivers
        drop what they had), then write ``state`` back whole. False if stopping first."""
        recent = self._recent.events()
        log.warning("detector.checkpoint_lost", topic=self._checkpoint.topic,
                    models=len(state.snapshot), republishing=len(recent),
                    action="writing it back from memory; changes since are published next")
        if recent and not await self._acked.publish(recent, reseeding=True):
            return False
        if not await self._acked.save(state, changed=set(state.snapshot.models), removed=set(),
                                baseline=True):
            return False
        log.info("detector.checkpoint_reseeded", models=len(state.snapshot),
                 republished=len(recent), window_s=self._recent.window_s)
        return True

    async def _before_publish_retry(self) -> bool:
        """A broker that came back empty gets the checkpoint back before a publish retry."""
        return self.state is None or not await self._checkpoint.lost() \
            or await self._reseed(self.state)
