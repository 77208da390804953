"""The embedded broker's memory: its topics and consumer-group offsets, kept in a local
directory so that ``kafka.bootstrap_servers: embedded`` survives a restart.

The embedded broker (Tansu) keeps everything in memory. While the hub runs, a mirror
consumer appends every record of every topic to ``<dir>/topics/<topic>/<partition>.jsonl``
as soon as the broker has it, and the committed offsets of every consumer group go to
``<dir>/groups.json`` every ``sync_interval_s`` and once more at shutdown, after every other
component has committed. On the next start, before anything else uses the new broker,
:meth:`Journal.restore` writes the records back in order (same partitions, same offsets,
keys, headers and timestamps) and commits the groups' offsets: the detector's checkpoint,
runtime subscriptions, retries still owed, dead letters, the attempt log and each
subscription's position are as they were when the hub stopped.

What it does not keep: after a hard kill (``kill -9``, power loss), records the broker
acknowledged in the last moments before may be missing (the detector then re-publishes
them with the same ids) and group offsets can be up to ``sync_interval_s`` old (those
events are delivered again, with the same ids). Nothing is ever deleted: the directory
grows with every event and attempt. One hub process at a time: the directory is locked.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any, Self

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from hub.bus import connection_options, new_group_consumer, start_producer
from hub.config import KafkaConfig
from hub.errors import BusError

__all__ = ["Journal"]

log = structlog.get_logger(__name__)

_RESTORE_CHUNK = 1000  # sends in flight per partition while restoring


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class _Partition:
    """One partition's journal file: JSON lines ``{"o", "t", "k", "v", "h"}`` in offset order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next_offset = 0
        self._file: IO[str] | None = None

    def load(self) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (a hard kill mid-write) is cut off."""
        records: list[dict[str, Any]] = []
        if not self.path.exists():
            return records
        good_bytes = 0
        with open(self.path, "rb") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except ValueError:
                    break
                if not line.endswith(b"\n") or record.get("o") != len(records):
                    break
                records.append(record)
                good_bytes += len(line)
        if good_bytes != self.path.stat().st_size:
            log.warning("journal.truncated", path=str(self.path), records=len(records))
            with open(self.path, "r+b") as file:
                file.truncate(good_bytes)
        self.next_offset = len(records)
        return records

    def append(self, messages: list[Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        for m in messages:
            if m.offset < self.next_offset:
                continue  # fetched twice across a re-assignment
            line = {"o": self.next_offset, "t": m.timestamp, "k": _b64(m.key),
                    "v": _b64(m.value), "h": [[k, _b64(v)] for k, v in m.headers or ()]}
            self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
            self.next_offset += 1
        self._file.flush()

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


class Journal:
    """Mirror the broker at ``bootstrap_servers`` into ``directory``, restoring it first.

    ``async with Journal(dir, kafka, bootstrap) as journal:`` locks the directory, restores
    what it holds into the (empty) broker, then mirrors until closed; closing takes a last
    complete copy. Enter it right after the broker and before anything else uses it.
    """

    def __init__(self, directory: Path, kafka: KafkaConfig, bootstrap_servers: str, *,
                 sync_interval_s: float = 1.0) -> None:
        self.directory = directory
        self._kafka = kafka
        self._bootstrap = bootstrap_servers
        self._sync_interval_s = sync_interval_s
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._groups: dict[str, dict[str, int]] = {}
        self._lock_file: IO[str] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.restored_records = 0

    @property
    def _topics_dir(self) -> Path:
        return self.directory / "topics"

    @property
    def _groups_path(self) -> Path:
        return self.directory / "groups.json"

    async def __aenter__(self) -> Self:
        self._lock()
        try:
            await self.restore()
            self._admin = AIOKafkaAdminClient(**connection_options(self._kafka, self._bootstrap))
            await self._admin.start()
            self._consumer = AIOKafkaConsumer(
                **connection_options(self._kafka, self._bootstrap),
                enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100)
            await self._consumer.start()
            await self._follow_topics()
        except KafkaError as exc:
            await self.aclose()
            raise BusError(f"cannot mirror the embedded broker: {exc!r}") from exc
        except BaseException:
            await self.aclose()
            raise
        self._task = asyncio.create_task(self._mirror(), name="journal")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- restore -----------------------------------------------------------------------

    async def restore(self) -> int:
        """Write the journal back into the broker; return the number of records restored."""
        layout = self._load_layout()
        if not layout:
            return 0
        admin = AIOKafkaAdminClient(**connection_options(self._kafka, self._bootstrap))
        producer = await start_producer(self._kafka, self._bootstrap)
        restored = 0
        try:
            await admin.start()
            try:
                await admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=1)
                                           for t, n in layout.items()])
            except TopicAlreadyExistsError:
                pass
            for tp, part in sorted(self._partitions.items()):
                restored += await _restore_partition(producer, tp, part.load())
            self._groups = self._load_groups()
            for group, offsets in self._groups.items():
                await self._commit_group(group, offsets)
        except KafkaError as exc:
            raise BusError(f"cannot restore the embedded broker from {self.directory}: "
                           f"{exc!r}") from exc
        finally:
            await producer.stop()
            await admin.close()
        self.restored_records = restored
        log.info("journal.restored", directory=str(self.directory), records=restored,
                 topics=len(layout), groups=len(self._groups))
        return restored

    def _load_layout(self) -> dict[str, int]:
        """``{topic: partitions}`` from the directory; registers each partition's file."""
        layout: dict[str, int] = {}
        if not self._topics_dir.is_dir():
            return layout
        for topic_dir in sorted(p for p in self._topics_dir.iterdir() if p.is_dir()):
            meta = _read_json(topic_dir / "topic.json")
            partitions = int(meta.get("partitions", 0)) if isinstance(meta, dict) else 0
            if partitions < 1:
                log.warning("journal.topic_skipped", topic=topic_dir.name,
                            reason="no partition count in topic.json")
                continue
            layout[topic_dir.name] = partitions
            for p in range(partitions):
                tp = TopicPartition(topic_dir.name, p)
                self._partitions[tp] = _Partition(topic_dir / f"{p}.jsonl")
        return layout

    def _load_groups(self) -> dict[str, dict[str, int]]:
        data = _read_json(self._groups_path)
        if not isinstance(data, dict):
            return {}
        return {str(g): {str(k): int(v) for k, v in offsets.items()}
                for g, offsets in data.items() if isinstance(offsets, dict)}

    async def _commit_group(self, group: str, offsets: dict[str, int]) -> None:
        commits = {}
        for key, offset in offsets.items():
            topic, _, partition = key.rpartition(":")
            tp = TopicPartition(topic, int(partition))
            if tp in self._partitions:
                commits[tp] = offset
        if not commits:
            return
        consumer = new_group_consumer(self._kafka, self._bootstrap, group)
        try:
            await consumer.start()
            consumer.assign(list(commits))
            await consumer.commit(commits)
        finally:
            await consumer.stop()

    # --- mirror ------------------------------------------------------------------------

    async def _mirror(self) -> None:
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        next_sync = loop.time() + self._sync_interval_s
        while not self._stopping.is_set():
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
                self._append(batch)
                if loop.time() >= next_sync:
                    next_sync = loop.time() + self._sync_interval_s
                    await self._follow_topics()
                    await self._save_groups()
            except (KafkaError, OSError) as exc:
                log.error("journal.mirror_failed", directory=str(self.directory),
                          error=repr(exc))
                try:  # retried: what the broker holds is copied once this passes
                    await asyncio.wait_for(self._stopping.wait(), self._sync_interval_s)
                except TimeoutError:
                    pass

    def _append(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, messages in batch.items():
            part = self._partitions.get(tp)
            if part is not None and messages:
                part.append(messages)

    async def _follow_topics(self) -> None:
        """Assign partitions of topics created since the last look, positioned after what the
        journal already holds."""
        assert self._consumer is not None
        await self._consumer._client.force_metadata_update()
        fresh = []
        for topic in sorted(self._consumer._client.cluster.topics()):
            if topic.startswith("__"):
                continue
            partitions = self._consumer._client.cluster.partitions_for_topic(topic) or set()
            for p in partitions:
                tp = TopicPartition(topic, p)
                if tp not in self._partitions:
                    fresh.append(tp)
                    self._partitions[tp] = _Partition(self._topics_dir / topic / f"{p}.jsonl")
            if any(tp.topic == topic for tp in fresh):
                _write_json(self._topics_dir / topic / "topic.json",
                            {"partitions": len(partitions)})
        if fresh or not self._consumer.assignment():
            self._consumer.assign(list(self._partitions))
            for tp, part in self._partitions.items():
                self._consumer.seek(tp, part.next_offset)

    async def _save_groups(self) -> None:
        """Write every group's committed offsets, if they changed."""
        assert self._admin is not None
        tps = list(self._partitions)
        groups: dict[str, dict[str, int]] = dict(self._groups)
        for group, _ in await self._admin.list_consumer_groups():
            if not tps:
                break
            offsets = await self._admin.list_consumer_group_offsets(group, partitions=tps)
            committed = {f"{tp.topic}:{tp.partition}": meta.offset
                         for tp, meta in offsets.items() if meta.offset >= 0}
            if committed:
                groups[group] = committed
        if groups != self._groups:
            _write_json(self._groups_path, groups)
            self._groups = groups

    async def _catch_up(self) -> None:
        """Copy everything the broker holds now (its end offsets, then one more short fetch
        for brokers that report the end of a multi-record batch short)."""
        assert self._consumer is not None
        await self._follow_topics()
        tps = list(self._partitions)
        if not tps:
            return
        ends = await self._consumer.end_offsets(tps)
        behind = {tp for tp in tps if self._partitions[tp].next_offset < ends[tp]}
        while behind:
            self._append(await self._consumer.getmany(*behind, timeout_ms=1000))
            behind = {tp for tp in behind if self._partitions[tp].next_offset < ends[tp]}
        self._append(await self._consumer.getmany(*tps, timeout_ms=100))

    # --- lifecycle ---------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop mirroring after a last complete copy of records and group offsets."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task
            try:
                await self._catch_up()
                await self._save_groups()
                log.info("journal.saved", directory=str(self.directory),
                         records=sum(p.next_offset for p in self._partitions.values()),
                         groups=len(self._groups))
            except KafkaError as exc:
                log.error("journal.final_copy_failed", directory=str(self.directory),
                          error=repr(exc))
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()
        for part in self._partitions.values():
            part.close()
        self._unlock()

    def _lock(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.directory / "lock", "a+", encoding="utf-8")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock_file.seek(0)
            owner = lock_file.read().strip() or "another process"
            lock_file.close()
            raise BusError(
                f"the state directory {self.directory} is in use by {owner}: stop that hub, "
                f"or give this one its own state_dir") from exc
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"registry-hub pid {os.getpid()}\n")
        lock_file.flush()
        self._lock_file = lock_file

    def _unlock(self) -> None:
        lock_file, self._lock_file = self._lock_file, None
        if lock_file is not None:
            lock_file.close()  # closing releases the lock


async def _restore_partition(producer: Any, tp: TopicPartition,
                             records: list[dict[str, Any]]) -> int:
    """Send ``records`` to ``tp`` in order; check they land at their recorded offsets."""
    for start in range(0, len(records), _RESTORE_CHUNK):
        chunk = records[start:start + _RESTORE_CHUNK]
        futures = [await producer.send(
            tp.topic, partition=tp.partition, key=_unb64(r["k"]), value=_unb64(r["v"]),
            timestamp_ms=r["t"], headers=[(k, _unb64(v) or b"") for k, v in r["h"]],
        ) for r in chunk]
        metadata = await asyncio.gather(*futures)
        if metadata[0].offset != chunk[0]["o"]:
            raise BusError(f"restoring {tp.topic}[{tp.partition}]: record {chunk[0]['o']} "
                           f"landed at offset {metadata[0].offset}; the broker was not empty")
    return len(records)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise BusError(f"{path} is not valid JSON ({exc}); move it away to start over") from exc


def _write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically (write a sibling, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
