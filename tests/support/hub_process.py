"""A hub (or any command) run as a real subprocess, its standard output and error read line
by line by background threads; every wait is a condition on those lines with a deadline."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

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

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], *,
                 command: list[str] | None = None) -> None:
        """``python -m hub *args`` in ``cwd``, or ``command`` as given (in its own process
        group, so a signal reaches every process it started)."""
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "hub", *args], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", start_new_session=True,
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

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S, *,
                  sig: signal.Signals = signal.SIGTERM, group: bool = False) -> int:
        """Send ``sig`` (to the whole process group with ``group``) and wait for the exit."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the hub did not exit within {timeout_s:g} s of SIGTERM\n{self.dump()}")
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    def kill(self) -> None:
        """SIGKILL the process group (the command and whatever it started in it)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


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
