"""Building blocks of the scale-out tests: hub processes (``registry-hub detect`` and
``deliver``) started as children, whose JSON log lines on stderr are collected as they come,
so a test waits on those lines, with deadlines, never on sleeps; and their environment (the
session broker, a topic and consumer groups of the test's own)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DETECTOR_CMD = [sys.executable, "-m", "hub", "detect"]
WORKER_CMD = [sys.executable, "-m", "hub", "deliver"]
SESSION_TIMEOUT_MS = 2000


# --- processes -------------------------------------------------------------------------

class Proc:
    """A child process whose JSON log lines (stderr) are collected as they come."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process,
                 changed: asyncio.Condition) -> None:
        self.name = name
        self.proc = proc
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = changed  # shared by the test's processes: wait on several at once
        self._eof = False
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            text = line.decode(errors="replace").rstrip("\n")
            async with self._changed:
                self.raw.append(text)
                try:
                    entry = json.loads(text)
                except ValueError:
                    entry = None
                if isinstance(entry, dict):
                    self.logs.append(entry)
                self._changed.notify_all()
        async with self._changed:
            self._eof = True
            self._changed.notify_all()

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name
                and all(e.get(k) == v for k, v in fields.items())]

    async def wait_for(self, name: str, count: int = 1, timeout_s: float = 60,
                       **fields: Any) -> dict[str, Any]:
        """The ``count``-th log line ``name`` (with ``fields``); fails at the deadline or
        when the process exits first."""
        def ready() -> bool:
            return len(self.events(name, **fields)) >= count or self._eof

        try:
            async with asyncio.timeout(timeout_s):
                async with self._changed:
                    await self._changed.wait_for(ready)
        except TimeoutError:
            pass
        found = self.events(name, **fields)
        if len(found) < count:
            pytest.fail(f"{self.name}: no {name} #{count} {fields or ''} within {timeout_s:g} s"
                        f" (exit code {self.proc.returncode})\n{self.dump()}")
        return found[count - 1]

    def dump(self, lines: int = 60) -> str:
        return f"--- {self.name} stderr (last {lines})\n" + "\n".join(self.raw[-lines:])

    def send(self, sig: signal.Signals) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def kill(self) -> None:
        self.send(signal.SIGKILL)
        await self.proc.wait()
        await asyncio.wait({self._pump}, timeout=5)

    async def terminate(self, timeout_s: float = 20) -> int:
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await self.kill()
            pytest.fail(f"{self.name} ignored SIGTERM for {timeout_s:g} s\n{self.dump()}")


class Procs:
    """Starts the test's processes; :meth:`until` waits for a predicate over their logs."""

    def __init__(self) -> None:
        self.started: list[Proc] = []
        self.changed = asyncio.Condition()

    async def __call__(self, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        self.started.append(Proc(name, proc, self.changed))
        return self.started[-1]

    async def until(self, predicate: Callable[[], bool], what: str,
                    timeout_s: float = 60) -> None:
        try:
            async with asyncio.timeout(timeout_s), self.changed:
                await self.changed.wait_for(predicate)
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}\n"
                        + "\n".join(p.dump(20) for p in self.started))


def base_env(bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    """The caller's environment minus anything configuring the hub or MLflow, plus a
    config for the session broker, a topic and consumer groups of this test only."""
    drop = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k not in drop}
    return env | {
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "HUB_KAFKA__TOPIC": topic,
        "HUB_KAFKA__PARTITIONS": "6",
        "HUB_KAFKA__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "HUB_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "HUB_DELIVERY__GROUP_ID_PREFIX": topic,
        "HUB_ADMIN__ENABLED": "false",
        "HUB_LOG_FORMAT": "json",
    } | extra
