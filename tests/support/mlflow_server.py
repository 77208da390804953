"""A real ``mlflow server`` as a restartable child process, for integration tests.

``mlflow server`` forks uvicorn (and, unless disabled, a job runner with huey workers), so
the server runs in its own session and :meth:`MlflowServerProcess.stop` signals the whole
process group. Stopping and starting again on the same port and database simulates an
MLflow outage.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

# Fixed so webhook secrets stored by one server process can be decrypted after a restart
# (without it every process encrypts with a fresh random Fernet key).
WEBHOOK_SECRET_ENCRYPTION_KEY = base64.urlsafe_b64encode(b"registry-hub-tests-webhook-key!!")

SERVER_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # skip the huey job runner (4 extra processes, ~2 s of start-up and ~3 s of shutdown)
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # webhooks are always on for SQL stores; these let them target http://127.0.0.1 receivers
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": WEBHOOK_SECRET_ENCRYPTION_KEY.decode(),
    # the server caches the webhook list per event type for 60 s; tests need it live
    "MLFLOW_WEBHOOK_CACHE_TTL": "0",
}


@dataclass(frozen=True)
class MlflowServer:
    """The session's MLflow server (do not stop it: use ``mlflow_server_factory`` for that)."""

    url: str
    db_path: Path
    db_uri: str
    artifact_root: Path


class MlflowServerProcess:
    """``mlflow server`` on 127.0.0.1:``port`` backed by ``db_uri``; start/stop repeatedly."""

    def __init__(
        self,
        db_uri: str,
        port: int,
        artifact_root: Path,
        *,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        python: Path | None = None,
    ) -> None:
        """``python``: the interpreter whose ``mlflow`` serves (another release's venv, see
        :mod:`tests.support.mlflow_versions`); default: this one."""
        self.python = str(python) if python is not None else sys.executable
        self.db_uri = db_uri
        self.port = port
        self.artifact_root = artifact_root
        self.log_path = log_path or artifact_root.parent / f"mlflow-server-{port}.log"
        self._extra_env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return [
            self.python, "-m", "mlflow", "server",
            "--backend-store-uri", self.db_uri,
            "--default-artifact-root", str(self.artifact_root),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip

    def start(self, timeout_s: float = 60.0) -> float:
        """Start the server and wait for ``GET /health``; return the seconds it took."""
        if self._proc is not None:
            raise RuntimeError(f"mlflow server on port {self.port} is already started")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(SERVER_ENV)
        env.update(self._extra_env)
        # old releases start ``gunicorn`` by name: find the one beside their python first
        env["PATH"] = os.pathsep.join([str(Path(self.python).parent), env.get("PATH", "")])
        self.artifact_root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as out:
            out.write(f"--- starting: {' '.join(self.command())}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_healthy(started + timeout_s)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def _wait_healthy(self, deadline: float) -> None:
        assert self._proc is not None
        last_error = "no attempt made"
        while True:
            if (code := self._proc.poll()) is not None:
                raise RuntimeError(f"mlflow server exited with code {code}{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"HTTP {resp.status}"
            except (OSError, urllib.error.URLError) as exc:
                last_error = repr(exc)
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"mlflow server not healthy at {self.url} in time ({last_error})"
                    + self.log_tail()
                )
            try:
                self._proc.wait(timeout=0.1)  # poll interval that ends at once on exit
            except subprocess.TimeoutExpired:
                pass

    def stop(self, *, graceful: bool = True, grace_s: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM then SIGKILL, or SIGKILL at once
        (``graceful=False``, a crash). Idempotent; the port is free afterwards."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if graceful and proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(proc, signal.SIGKILL)  # also reaps a uvicorn left behind
        proc.wait()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n  server log ({self.log_path}):\n    " + "\n    ".join(text)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: ``mlflow_server_factory(db_path=None, port=None, *, start=True, env=None, python=None)``
MlflowServerFactory = Callable[..., MlflowServerProcess]
