"""The README's promise, driven as a user would: ``python -m hub run`` with no configuration
in an empty directory watches ``./mlflow.db`` through an embedded broker and prints one line
per registry change; ``python -m hub detect`` publishes CloudEvents to an external broker.
Both stop cleanly on SIGTERM (exit 0, no broker process left behind).

The hub runs as a real subprocess; its stdout (console handler) and stderr (structlog) are
read by background threads, and every wait is a condition on those lines with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from tests.support.mlflow_server import MlflowServer

STARTUP_TIMEOUT_S = 90.0  # embedded broker + MLflow import + first scan (creates the DB)
EVENT_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that configures the hub or MLflow."""
    drop = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k not in drop}
    return env | {"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"} | extra


class HubProcess:
    """``python -m hub <args>`` with its output collected line by line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            errors="replace",
        )  # fmt: skip
        self._cond = threading.Condition()
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._open = {"stdout": True, "stderr": True}
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self._lines[name].append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._open[name] = False
            self._cond.notify_all()

    def lines(self, name: str) -> list[str]:
        with self._cond:
            return list(self._lines[name])

    def dump(self) -> str:
        return (f"--- exit code {self.proc.poll()}\n--- stdout\n" + "\n".join(self.lines("stdout"))
                + "\n--- stderr\n" + "\n".join(self.lines("stderr")))

    def wait_line(self, name: str, predicate: Callable[[str], bool], what: str,
                  timeout_s: float = EVENT_TIMEOUT_S) -> str:
        """The first line of ``name`` satisfying ``predicate``; fails at the deadline or when
        the stream closes (the process exited) without one."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for line in self._lines[name]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if not self._open[name] or remaining <= 0:
                    why = "the process closed it" if not self._open[name] else f"{timeout_s:g} s"
                    pytest.fail(f"no {what} on {name} ({why})\n{self.dump()}")
                self._cond.wait(remaining)

    def log_line(self, event: str, timeout_s: float = EVENT_TIMEOUT_S) -> str:
        """The structlog line of ``event`` (console renderer: ``<time> [<level>] <event> k=v``)."""
        pattern = re.compile(rf"\]\s+{re.escape(event)}(\s|$)")
        return self.wait_line("stderr", lambda line: bool(pattern.search(line)), event, timeout_s)

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the hub did not exit within {timeout_s:g} s of SIGTERM\n{self.dump()}")
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_hub() -> Iterator[Callable[..., HubProcess]]:
    procs: list[HubProcess] = []

    def start(args: list[str], cwd: Path, env: dict[str, str]) -> HubProcess:
        procs.append(HubProcess(args, cwd, env))
        return procs[-1]

    yield start
    for proc in procs:
        proc.kill()


def field(line: str, name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", line)
    assert match, f"no {name}= in {line!r}"
    return match.group(1)


def console_event(event_type: str, model: str, version: str | None = None, *details: str
                  ) -> Callable[[str], bool]:
    """Matches a console line ``HH:MM:SS <type> <model> [vN] <detail>``."""
    def match(line: str) -> bool:
        parts = line.split()
        return (len(parts) >= 3 and parts[1] == event_type and parts[2] == model
                and (version is None or parts[3:4] == [f"v{version}"])
                and all(d in line for d in details))
    return match


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d [a-z_]+\.[a-z_]+ +\S+")


@pytest.mark.timeout(180)
def test_run_with_no_config_watches_local_sqlite_and_prints_each_change(
    tmp_path: Path, start_hub: Callable[..., HubProcess]
) -> None:
    hub = start_hub(["run"], tmp_path,
                    clean_env(HUB_DETECTOR__POLL_INTERVAL_S="0.3", HUB_ADMIN__PORT="0"))

    started = hub.log_line("embedded_broker.started", STARTUP_TIMEOUT_S)
    broker_pid = int(field(started, "pid"))
    assert "in memory" in started and "local use only" in started, started
    assert "registry=sqlite:///mlflow.db" in hub.log_line("hub.started", STARTUP_TIMEOUT_S)
    hub.log_line("delivery.lane_started", STARTUP_TIMEOUT_S)
    hub.log_line("detector.baseline", STARTUP_TIMEOUT_S)
    db = tmp_path / "mlflow.db"
    assert db.is_file(), "the hub should watch (and create) ./mlflow.db in its working directory"

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = f"iris-{uuid.uuid4().hex[:8]}"
    source = str(tmp_path / "artifacts" / "model")

    client.create_registered_model(name, tags={"team": "ml"}, description="Iris classifier")
    hub.wait_line("stdout", console_event("registered_model.created", name),
                  "registered_model.created")
    for version in ("1", "2"):
        client.create_model_version(name, source=source)
        hub.wait_line("stdout", console_event("model_version.created", name, version),
                      f"model_version.created v{version}")
    client.set_registered_model_alias(name, "champion", "1")
    hub.wait_line("stdout", console_event("model_version_alias.created", name, "1", "@champion"),
                  "model_version_alias.created")
    client.transition_model_version_stage(name, "2", "Production")
    hub.wait_line("stdout",
                  console_event("model_version.stage_transitioned", name, "2",
                                "stage None → Production"),
                  "model_version.stage_transitioned")

    code = hub.terminate()
    assert code == 0, hub.dump()
    stderr = hub.lines("stderr")
    assert any(re.search(r"\]\s+hub\.stopped", line) for line in stderr), hub.dump()
    assert process_gone(broker_pid), f"embedded broker pid {broker_pid} survived the hub"

    stdout = hub.lines("stdout")
    assert all(CONSOLE_LINE.match(line) for line in stdout), \
        f"stdout should hold only event lines (logs go to stderr)\n{hub.dump()}"
    assert [line.split()[1] for line in stdout if line.split()[2] == name] == [
        "registered_model.created",
        "model_version.created",
        "model_version.created",
        "model_version_alias.created",
        "model_version.stage_transitioned",
    ], hub.dump()


async def read_first(bootstrap: str, topic: str, key: bytes, timeout_s: float) -> Any:
    """The first record with ``key`` on ``topic``, read from the beginning by a fresh,
    group-less consumer."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            async for record in consumer:
                if record.key == key:
                    return record
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


@pytest.mark.timeout(180)
def test_detect_publishes_cloudevents_to_an_external_broker(
    tmp_path: Path, start_hub: Callable[..., HubProcess], kafka_bootstrap: str,
    topic_name: str, mlflow_server: MlflowServer,
) -> None:
    env = clean_env(
        HUB_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
        HUB_KAFKA__TOPIC=topic_name,
        HUB_MLFLOW__TRACKING_URI=mlflow_server.url,
        HUB_DETECTOR__POLL_INTERVAL_S="0.3", HUB_ADMIN__PORT="0",
    )
    hub = start_hub(["detect"], tmp_path, env)
    hub.log_line("detector.baseline", STARTUP_TIMEOUT_S)

    from mlflow.tracking import MlflowClient

    client: MlflowClient = MlflowClient(tracking_uri=mlflow_server.url,
                                        registry_uri=mlflow_server.url)
    name = f"detect-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name, tags={"team": "ml"}, description="via detect")

    record = asyncio.run(read_first(kafka_bootstrap, topic_name, name.encode(), EVENT_TIMEOUT_S))
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["ce_type"] == "registered_model.created"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] and headers["ce_source"]
    assert headers.get("ce_partitionkey") == name, headers
    data = json.loads(record.value)
    assert data["model_name"] == name
    assert data["tags"] == {"team": "ml"}
    assert data["description"] == "via detect"
    hub.log_line("detector.published")

    code = hub.terminate()
    assert code == 0, hub.dump()
    assert any(re.search(r"\]\s+hub\.stopped", line) for line in hub.lines("stderr")), hub.dump()
    assert not any("embedded_broker" in line for line in hub.lines("stderr")), hub.dump()
    assert hub.lines("stdout") == [], "detect runs no delivery, so the console prints nothing"
