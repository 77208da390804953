"""Re-delivery on demand: from the dead-letter topic, or from the events topic since a time.

Replay does not deliver by itself: it writes fresh jobs (attempt 1, due now) to the retry
topic, and the running workers deliver them with the usual retries and dead-lettering.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

import structlog

from hub.bus import read_to_end, start_producer
from hub.codec import decode
from hub.config import HubConfig
from hub.errors import BusError, ConfigError
from hub.jobs import DeadLetter, Job
from hub.routing import route

log = structlog.get_logger(__name__)


async def dead_letters(config: HubConfig, bootstrap: str, *, subscription: str | None = None,
                       event_id: str | None = None) -> list[DeadLetter]:
    letters = []
    for record in await read_to_end(config.kafka, bootstrap, config.dead_letter_topic):
        try:
            letter = DeadLetter.decode(record.value)
        except (ValueError, KeyError, TypeError):
            log.error("replay.bad_dead_letter", offset=record.offset, action="skipped")
            continue
        if subscription and letter.subscription != subscription:
            continue
        if event_id and letter.event.id != event_id:
            continue
        letters.append(letter)
    return letters


async def replay_dead_letters(config: HubConfig, bootstrap: str, *,
                              subscription: str | None = None, event_id: str | None = None,
                              dry_run: bool = False) -> list[Job]:
    now_ms = int(time.time() * 1000)
    letters = await dead_letters(config, bootstrap, subscription=subscription, event_id=event_id)
    jobs = [Job(d.subscription, d.event, 1, now_ms, last_error=d.last_error, replayed=True)
            for d in letters]
    if not dry_run:
        await _enqueue(config, bootstrap, jobs)
    return jobs


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
        await _enqueue(config, bootstrap, jobs)
    return jobs


async def _enqueue(config: HubConfig, bootstrap: str, jobs: list[Job]) -> None:
    producer = await start_producer(config.kafka, bootstrap)
    try:
        futures = [await producer.send(config.retry_topic, key=j.key, value=j.encode())
                   for j in jobs]
        for future in futures:
            await future
    except Exception as exc:
        raise BusError(f"writing replay jobs to {config.retry_topic} failed: {exc!r}") from exc
    finally:
        await producer.stop()
    log.info("replay.enqueued", jobs=len(jobs), topic=config.retry_topic)


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
    if args.origin == "events":
        if args.since is None:
            raise ConfigError("--from events needs --since", field="--since")
        jobs = await replay_events(config, bootstrap, since=args.since,
                                   subscription=args.subscription, dry_run=args.dry_run)
    else:
        jobs = await replay_dead_letters(config, bootstrap, subscription=args.subscription,
                                         event_id=args.event_id, dry_run=args.dry_run)
    for job in jobs:
        print(f"{'would replay' if args.dry_run else 'replaying'} {job.event.id} "
              f"{job.event.type} {job.event.model} → {job.subscription}")
    print(f"{len(jobs)} deliver{'y' if len(jobs) == 1 else 'ies'} "
          f"{'would be ' if args.dry_run else ''}enqueued")
    return 0
