"""Re-delivery on demand: from the dead-letter topic, or from the events topic since a time.

Replay does not deliver by itself: it writes fresh jobs (attempt 1, due now) to the retry
topic, and the running workers deliver them with the usual retries and dead-lettering.

A dead letter is replayed once per request that asks for it, never again by itself
(:mod:`hub.deliver.dlq` has the states). A replay folds the dead-letter topic to one state per
(event, subscription) and replays those whose latest state is ``dead``; one that is
``replayed`` (its replay has no outcome yet) or ``delivered`` (since a replay) is skipped,
unless the request names the event (``event_id``). For each replayed one it first writes a
``replayed`` mark next to the dead letter and waits for the acknowledgement, then the job:
a worker's later ``delivered`` mark or new dead letter always lands after the mark. The
CLI (``registry-hub replay``) and ``POST /api/dead-letters/replay`` both call
:func:`replay_dead_letters`.

Memory stays bounded whatever the topic holds: the fold keeps one small state per key (no
event data), and the events of the chosen dead letters are read back in a second streamed
pass, written out a chunk at a time.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from hub.bus import read_to_end, scan, start_producer
from hub.codec import decode
from hub.config import HubConfig
from hub.deliver.dlq import STATES, DeadLetterView, LetterState
from hub.deliver.jobs import DeadLetter, DeadLetterMark, Job
from hub.deliver.routing import route
from hub.errors import BusError, ConfigError

log = structlog.get_logger(__name__)

SKIP_REASONS = {"replayed": "replay_in_progress", "delivered": "delivered_after_replay"}
_CHUNK = 500  # dead letters read back, marked and enqueued at a time
_FETCH_MAX_BYTES = 1 << 20  # the most a batch of dead letters holds in memory


@dataclass
class ReplayResult:
    """What a dead-letter replay did: the entries it replayed (or would, in a dry run) and
    how many it skipped, by reason (``replay_in_progress``, ``delivered_after_replay``)."""

    replayed: list[LetterState] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    missing: int = 0  # chosen, but its dead letter could not be read back (retention)


def choose(letters: list[LetterState], *, forced: bool
           ) -> tuple[list[LetterState], dict[str, int]]:
    """Which entries a replay takes: every ``dead`` one; ``replayed`` and ``delivered`` ones
    only when ``forced`` (the request named the event). Pure."""
    chosen = [s for s in letters if forced or s.state == "dead"]
    skipped = Counter(SKIP_REASONS[s.state] for s in letters if not forced and s.state != "dead")
    return chosen, dict(skipped)


def dead_since(letter: LetterState, since: datetime | None) -> bool:
    """Whether ``letter`` went dead at or after ``since`` (always, without ``since``; an
    unreadable ``dead_at`` counts as long ago)."""
    if since is None:
        return True
    try:
        dead_at = datetime.fromisoformat(letter.dead_at)
    except ValueError:
        return False
    if dead_at.tzinfo is None:
        dead_at = dead_at.replace(tzinfo=UTC)
    return dead_at >= since


async def dead_letters(config: HubConfig, bootstrap: str, *, subscription: str | None = None,
                       event_id: str | None = None, state: str | None = None
                       ) -> list[LetterState]:
    """The dead-letter view: each (event, subscription) once, at its latest state, newest
    change first. ``state`` (one of ``dead``, ``replayed``, ``delivered``) filters it;
    another value is a ValueError."""
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    view = await _fold(config, bootstrap, subscription=subscription, event_id=event_id)
    return [s for s in view.letters() if state in (None, s.state)]


async def replay_dead_letters(config: HubConfig, bootstrap: str, *,
                              subscription: str | None = None, event_id: str | None = None,
                              since: datetime | None = None,
                              dry_run: bool = False) -> ReplayResult:
    """Replay the dead letters matching ``subscription`` / ``event_id`` and, given ``since``
    (aware), those that went dead at or after it."""
    view = await _fold(config, bootstrap, subscription=subscription, event_id=event_id)
    letters = [s for s in view.letters() if dead_since(s, since)]
    chosen, skipped = choose(letters, forced=event_id is not None)
    result = ReplayResult(chosen, skipped)
    if chosen and not dry_run:
        result.replayed = await _replay(config, bootstrap, chosen)
        result.missing = len(chosen) - len(result.replayed)
    log.info("replay.dead_letters", replayed=len(result.replayed), skipped=skipped,
             missing=result.missing, dry_run=dry_run, subscription=subscription,
             event_id=event_id, since=since.isoformat() if since else None)
    return result


async def _fold(config: HubConfig, bootstrap: str, *, subscription: str | None,
                event_id: str | None) -> DeadLetterView:
    view = DeadLetterView(subscription=subscription, event_id=event_id)
    async with aclosing(scan(config.kafka, bootstrap, config.dead_letter_topic,
                                 max_records=_CHUNK,
                                 fetch_max_bytes=_FETCH_MAX_BYTES)) as batches:
        async for batch in batches:
            for r in batch:
                view.add(r.partition, r.offset, r.timestamp, r.value)
    if view.unreadable:
        log.error("replay.bad_dead_letter", topic=config.dead_letter_topic,
                  records=view.unreadable, action="skipped")
    return view


async def _replay(config: HubConfig, bootstrap: str, chosen: list[LetterState]
                  ) -> list[LetterState]:
    """Read the chosen dead letters back (a second streamed pass, from the lowest offset
    needed), then per chunk: marks, acknowledged; jobs, acknowledged. Returns the entries
    enqueued (a dead letter deleted by retention meanwhile cannot be)."""
    wanted: dict[int, dict[int, LetterState]] = {}
    for s in chosen:
        wanted.setdefault(s.partition, {})[s.offset] = s
    start = {partition: min(offsets) for partition, offsets in wanted.items()}
    done: list[LetterState] = []
    producer = await start_producer(config.kafka, bootstrap)
    try:
        chunk: list[DeadLetter] = []
        until = {partition: max(offsets) + 1 for partition, offsets in wanted.items()}
        async with aclosing(scan(config.kafka, bootstrap, config.dead_letter_topic,
                                 start=start, until=until,
                                 max_records=_CHUNK,
                                 fetch_max_bytes=_FETCH_MAX_BYTES)) as batches:
            async for batch in batches:
                for r in batch:
                    found = wanted.get(r.partition, {}).pop(r.offset, None)
                    if found is not None:
                        chunk.append(DeadLetter.decode(r.value))
                        done.append(found)
                if len(chunk) >= _CHUNK or not any(wanted.values()):
                    await _enqueue(config, producer, chunk)
                    chunk = []
                if not any(wanted.values()):
                    break
        await _enqueue(config, producer, chunk)
    finally:
        await producer.stop()
    missing = sum(len(offsets) for offsets in wanted.values())
    if missing:
        log.error("replay.dead_letter_missing", topic=config.dead_letter_topic, count=missing,
                  hint="deleted by retention while the replay ran; nothing was enqueued "
                       "for them")
    return done


async def _enqueue(config: HubConfig, producer: AIOKafkaProducer,
                   letters: list[DeadLetter]) -> None:
    if not letters:
        return
    now = datetime.now(UTC)
    marks = [DeadLetterMark(d.subscription, d.event.id, "replayed", now.isoformat())
             for d in letters]
    await _send_all(producer, config.dead_letter_topic, [(m.key, m.encode()) for m in marks])
    jobs = [Job(d.subscription, d.event, 1, int(now.timestamp() * 1000),
                last_error=d.last_error, replayed=True) for d in letters]
    await _send_all(producer, config.retry_topic, [(j.key, j.encode()) for j in jobs])


async def _send_all(producer: AIOKafkaProducer, topic: str,
                    records: list[tuple[bytes, bytes]]) -> None:
    try:
        futures = [await producer.send(topic, key=key, value=value) for key, value in records]
        for future in futures:
            await future
    except Exception as exc:
        raise BusError(f"writing replay records to {topic} failed: {exc!r}") from exc
    log.info("replay.enqueued", records=len(records), topic=topic)


async def replay_events(config: HubConfig, bootstrap: str, *, since: datetime,
                        subscription: str | None = None, dry_run: bool = False) -> list[Job]:
    now_ms = int(time.time() * 1000)
    subs = [s for s in config.subscriptions if subscription in (None, s.name)]
    if subscription and not subs:
        raise ConfigError(f"no subscription named {subscription!r}", field="--subscription")
    jobs: list[Job] = []
    records = await read_to_end(config.kafka, bootstrap, config.kafka.topic,
                                since_ms=int(since.timestamp() * 1000))
    for record in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset)):
        try:
            event = decode(record.key, record.value, record.headers)
        except ValueError:
            log.error("replay.bad_record", partition=record.partition, offset=record.offset)
            continue
        jobs.extend(Job(s.name, event, 1, now_ms, replayed=True) for s in route(subs, event))
    if not dry_run:
        await _enqueue_jobs(config, bootstrap, jobs)
    return jobs


async def _enqueue_jobs(config: HubConfig, bootstrap: str, jobs: list[Job]) -> None:
    producer = await start_producer(config.kafka, bootstrap)
    try:
        await _send_all(producer, config.retry_topic, [(j.key, j.encode()) for j in jobs])
    finally:
        await producer.stop()


# --- CLI ----------------------------------------------------------------------------------


def add_replay_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("replay", parents=[common],
                       help="re-deliver from the dead-letter topic or the events topic")
    p.add_argument("--from", dest="origin", choices=["dlq", "events"], default="dlq")
    p.add_argument("--subscription", help="only this subscription")
    p.add_argument("--event-id", help="only this event (dead-letter replay)")
    p.add_argument("--since", type=_timestamp,
                   help="events topic replay: from this time (ISO 8601, e.g. 2026-11-28T10:00Z)")
    p.add_argument("--dry-run", action="store_true", help="list what would be replayed")


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def run_replay(config: HubConfig, args: argparse.Namespace) -> int:
    bootstrap = config.kafka.bootstrap_servers
    if bootstrap == "embedded":
        raise ConfigError(
            "replay needs a Kafka that outlives one process; the embedded broker lives inside "
            "`registry-hub run`", field="kafka.bootstrap_servers",
            hint="point kafka.bootstrap_servers at your cluster, or use the admin API "
                 "(POST /api/dead-letters/replay) of the running hub")
    verb = "would replay" if args.dry_run else "replaying"
    if args.origin == "events":
        if args.since is None:
            raise ConfigError("--from events needs --since", field="--since")
        jobs = await replay_events(config, bootstrap, since=args.since,
                                   subscription=args.subscription, dry_run=args.dry_run)
        for job in jobs:
            print(f"{verb} {job.event.id} {job.event.type} {job.event.model} "
                  f"→ {job.subscription}")
        print(f"{_deliveries(len(jobs))} {'would be ' if args.dry_run else ''}enqueued")
        return 0
    result = await replay_dead_letters(config, bootstrap, subscription=args.subscription,
                                       event_id=args.event_id, dry_run=args.dry_run)
    for s in result.replayed:
        print(f"{verb} {s.event_id} {s.event_type} {s.model} → {s.subscription}")
    print(f"{_deliveries(len(result.replayed))} {'would be ' if args.dry_run else ''}enqueued"
          + _skipped(result))
    return 0


def _deliveries(n: int) -> str:
    return f"{n} deliver{'y' if n == 1 else 'ies'}"


def _skipped(result: ReplayResult) -> str:
    """`; 3 skipped (2 replay_in_progress, 1 delivered_after_replay: ...)` or ``""``."""
    parts = [f"{n} {reason}" for reason, n in sorted(result.skipped.items())]
    if result.missing:
        parts.append(f"{result.missing} missing (deleted by retention)")
    if not parts:
        return ""
    total = sum(result.skipped.values()) + result.missing
    return (f"; {total} skipped ({', '.join(parts)}; --event-id replays one "
            "whatever its state)")
