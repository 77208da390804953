"""``registry-hub replay`` as a user runs it, against the session's broker: it replays each
dead letter once, says what it skipped and why, and replays one by id whatever its state."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from hub.bus import start_producer
from hub.config import HubConfig
from hub.deliver.jobs import DeadLetter
from hub.deliver.worker import ensure_hub_topics
from hub.events import Event
from tests.support.hub_process import clean_env
from tests.support.kafka_reader import read_topic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def replay(config_file: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", "replay", "--config", str(config_file), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env())
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_replay_cli_replays_once_and_says_what_it_skipped(
        kafka_bootstrap: str, topic_name: str, tmp_path: Path) -> None:
    raw = {"kafka": {"bootstrap_servers": kafka_bootstrap, "topic": topic_name},
           "subscriptions": [{"name": "w", "handler": "console"}]}
    config_file = tmp_path / "hub.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    config = HubConfig.model_validate(raw)
    await ensure_hub_topics(config, kafka_bootstrap)
    producer = await start_producer(config.kafka, kafka_bootstrap)
    try:
        for n in range(3):
            event = Event(id=f"evt-{n}", type="model_version.created", model="iris",
                          version=str(n), time=datetime.now(UTC), source="s", data={})
            letter = DeadLetter("w", event, 3, "HTTP 503", 503, "exhausted",
                                datetime.now(UTC).isoformat())
            await producer.send_and_wait(config.dead_letter_topic, key=letter.key,
                                         value=letter.encode())
    finally:
        await producer.stop()

    dry = await replay(config_file, "--dry-run")
    assert "would replay evt-0 model_version.created iris → w" in dry
    assert dry.splitlines()[-1] == "3 deliveries would be enqueued"
    assert (await replay(config_file)).splitlines()[-1] == "3 deliveries enqueued"
    assert (await replay(config_file)).splitlines()[-1] == (
        "0 deliveries enqueued; 3 skipped (3 replay_in_progress; --event-id replays one "
        "whatever its state)")
    forced = await replay(config_file, "--event-id", "evt-1")
    assert forced.splitlines() == ["replaying evt-1 model_version.created iris → w",
                                   "1 delivery enqueued"]
    jobs = await read_topic(kafka_bootstrap, config.retry_topic, at_least=4, settle_s=0.3)
    assert sorted(j.data["event"]["id"] for j in jobs) == ["evt-0", "evt-1", "evt-1", "evt-2"]
