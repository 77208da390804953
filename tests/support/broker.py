"""A Tansu broker on a fixed port that a test can kill and start again. Tansu keeps its data
in memory: the broker that comes back after a kill is empty (no topics, no offsets, no
groups), like a Kafka cluster re-created at the same address. A frozen one (SIGSTOP) comes
back with its data, like a broker behind a network partition."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from hub.broker.embedded import free_port, start_broker_process, stop_process, wait_kafka_ready


class Broker:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = start_broker_process(self.port, self._log)
        wait_kafka_ready(self.bootstrap, timeout_s=20, proc=self._proc, log_path=self._log)

    def kill(self) -> None:
        """SIGKILL: the broker is gone at once, with everything it held."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def freeze(self) -> None:
        """SIGSTOP: the broker stops answering, connections hang; it keeps its data."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None:
            self.thaw()
            stop_process(self._proc)
            self._proc = None


def running_broker(tmp_path: Path) -> Iterator[Broker]:
    """For a fixture: a broker of the test's own, started, stopped at teardown."""
    broker = Broker(tmp_path / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
