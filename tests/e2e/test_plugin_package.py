"""A handler shipped as its own package: installed from tests/plugins, discovered through
the ``registry_hub.handlers`` entry point, validated at start-up, and run end to end by a
``registry-hub deliver`` process on the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.bus import Publisher
from hub.config import HubConfig
from hub.deliver.worker import ensure_hub_topics
from hub.events import Event
from tests.support.wait import eventually

PLUGIN_SRC = Path(__file__).parents[1] / "plugins" / "example_plugin"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(PLUGIN_SRC)],
        check=True, capture_output=True, timeout=120,
    )
    return target


def hub_env(plugin_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "MLFLOW_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def start_deliver(config_file: Path, plugin_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hub", "deliver", "-c", str(config_file)],
                            env=hub_env(plugin_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_invalid_plugin_options_name_subscription_plugin_and_field(
        plugin_path: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.yaml", (
        "subscriptions:\n"
        "  - name: archive\n"
        "    handler: jsonl\n"
        "    fail_first: -1\n"
    ))
    result = subprocess.run([sys.executable, "-m", "hub", "check-config", "-c", str(config)],
                            env=hub_env(plugin_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "subscription 'archive' (handler 'jsonl')" in result.stderr
    assert "subscriptions.0.fail_first" in result.stderr
    assert "subscriptions.0.path" in result.stderr  # required option missing


def test_unknown_handler_lists_the_installed_plugin(plugin_path: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.yaml",
                          "subscriptions:\n  - name: x\n    handler: jsonnl\n")
    result = subprocess.run([sys.executable, "-m", "hub", "check-config", "-c", str(config)],
                            env=hub_env(plugin_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown handler 'jsonnl'" in result.stderr
    for known in ("console", "deploy", "jsonl", "slack", "webhook"):
        assert known in result.stderr


@pytest.mark.slow
async def test_plugin_runs_end_to_end_through_the_broker(
        plugin_path: Path, tmp_path: Path, kafka_bootstrap: str, topic_name: str) -> None:
    out = tmp_path / "events.jsonl"
    config_file = write_config(tmp_path / "hub.yaml", (
        f"kafka:\n  bootstrap_servers: {kafka_bootstrap}\n  topic: {topic_name}\n"
        "  partitions: 2\n  session_timeout_ms: 2000\n  heartbeat_interval_ms: 500\n"
        "delivery:\n  retry_schedule_s: [0.1, 0.1]\n  start_from: earliest\n"
        "admin:\n  enabled: false\n"
        "subscriptions:\n"
        "  - name: archive\n"
        "    handler: jsonl\n"
        f"    path: {out}\n"
        "    fail_first: 1\n"
        "    events: ['model_version.*']\n"
    ))
    config = HubConfig(kafka={"bootstrap_servers": kafka_bootstrap, "topic": topic_name,
                              "partitions": 2})
    await ensure_hub_topics(config, kafka_bootstrap)
    now = datetime.now(UTC)
    events = [
        Event(id="e1", type="model_version.created", model="iris", version="1", time=now,
              source="s", data={"model_name": "iris", "version": "1"}),
        Event(id="e2", type="registered_model.created", model="wine", time=now, source="s",
              data={"model_name": "wine"}),
        Event(id="e3", type="model_version.stage_transitioned", model="iris", version="1",
              time=now, source="s", data={"model_name": "iris", "version": "1",
                                          "to_stage": "Production"}),
    ]
    async with Publisher(config.kafka, kafka_bootstrap, topic_name) as publisher:
        await publisher.publish(events)

    proc = start_deliver(config_file, plugin_path)
    def written() -> list[dict[str, object]]:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []

    try:
        lines = await eventually(written, lambda got: len(got) >= 2,
                                 what="two lines from the plugin", timeout_s=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert sorted(str(line["id"]) for line in lines) == ["e1", "e3"]  # filtered by events glob
    assert "example plugin: failing on purpose" in stderr  # the first attempt was retried
