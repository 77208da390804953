"""Other MLflow releases than the one installed: a cached virtualenv per version, and that
version's own ``MlflowClient`` driven from here.

``server_python("2.9.2")`` returns the python of ``<cache>/mlflow-servers/2.9.2/``, building
the venv (``python -m venv`` + pip) when it is missing and reusing it when present; pass it
to ``MlflowServerProcess(python=...)`` to run that release's ``mlflow server``.
``OldClient(python, url)`` runs that release's client in a child process (a registry
workflow made the way its users make it). The cache root is ``$REGISTRY_HUB_CACHE`` or
``~/.cache/registry-hub``. Tests and ``bench/compat.py`` share both.

Old releases meet today's package index: they need older pins (``pins``). A build that
fails because the index cannot be reached raises :class:`IndexUnreachable` (a test skips on
it); any other failure is an error with pip's output.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

#: Substrings of pip's output that mean "no index", not "no such release"
_UNREACHABLE = ("NewConnectionError", "Failed to establish a new connection",
                "Temporary failure in name resolution", "Name or service not known",
                "ConnectTimeoutError", "ProxyError", "Network is unreachable")


OLDEST = "2.9.2"
"""The oldest MLflow server the hub supports: the one old release the test suite runs (one
venv build, about a minute, on a fresh CI machine; ``bench/compat.py`` runs the others)."""


class IndexUnreachable(RuntimeError):
    """pip could not reach the package index to build an MLflow venv."""


def cache_root() -> Path:
    return Path(os.environ.get("REGISTRY_HUB_CACHE") or Path.home() / ".cache/registry-hub")


def pins(version: str) -> list[str]:
    """What an old MLflow release needs besides itself to install and serve today.

    Checked for 2.9.2, 2.20.4 and 2.22.5 (``bench/compat.py`` builds, serves and runs the
    workflow on each): SQLAlchemy 2.1 breaks every 2.x server's store; 2.9's pandas code
    predates numpy 2 and pandas 2.3 (2.20 and 2.22 need neither cap). For other releases
    the same caps are a guess.
    """
    major, minor = (int(p) for p in version.split(".")[:2])
    if major >= 3:
        return []
    reqs = ["sqlalchemy<2.1"]
    if minor < 15:
        reqs += ["numpy<2", "pandas<2.3"]
    return reqs


def venv_dir(version: str) -> Path:
    return cache_root() / "mlflow-servers" / version


def server_python(version: str) -> Path:
    """The python of a venv with ``mlflow==version``, built first if missing (about a
    minute). Safe to call from several processes at once: one builds, the others wait."""
    target = venv_dir(version)
    python, done = target / "bin" / "python", target / ".complete"
    if done.exists():
        return python
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return python
        shutil.rmtree(target, ignore_errors=True)  # a build that did not finish
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", str(target)], version)
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                    "--no-input", f"mlflow=={version}", *pins(version)], version)
        found = _run([str(python), "-c", "import mlflow; print(mlflow.__version__)"], version)
        if found.strip() != version:
            raise RuntimeError(f"the venv at {target} has mlflow {found.strip()}, not {version}")
        took = time.monotonic() - started
        done.write_text(f"built in {took:.0f} s\n")
    return python


def build_seconds(version: str) -> float | None:
    """How long the cached venv took to build, if it was built here."""
    try:
        return float((venv_dir(version) / ".complete").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return None


def _run(cmd: list[str], version: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if proc.returncode == 0:
        return proc.stdout
    output = proc.stdout + proc.stderr
    shutil.rmtree(venv_dir(version), ignore_errors=True)
    if any(s in output for s in _UNREACHABLE):
        raise IndexUnreachable(f"building the MLflow {version} venv: the package index is "
                               f"unreachable ({output.strip().splitlines()[-1][:300]})")
    raise RuntimeError(f"building the MLflow {version} venv failed: {' '.join(cmd)}\n"
                       f"{output[-3000:]}")


_CLIENT_SCRIPT = r"""
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1])
for line in sys.stdin:
    call = json.loads(line)
    try:
        result = getattr(client, call["method"])(*call["args"], **call["kwargs"])
        reply = {"ok": True, "result": repr(result)[:2000]}
        if hasattr(result, "info"):  # a run: what a model version's source needs
            reply["run_id"], reply["artifact_uri"] = result.info.run_id, result.info.artifact_uri
    except Exception as exc:
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    print(json.dumps(reply), flush=True)
"""


class OldClient:
    """Another release's ``MlflowClient`` in a child process: ``client("create_registered_model",
    "m", tags={...})`` calls it there and returns the reply (``result`` is the ``repr``)."""

    def __init__(self, python: Path, tracking_uri: str, *,
                 env: dict[str, str] | None = None) -> None:
        """``env``: MLflow variables for the child (none of this process's are passed on),
        e.g. ``MLFLOW_ALLOW_FILE_STORE`` for a file store."""
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
               "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
        self._proc = subprocess.Popen(
            [str(python), "-c", _CLIENT_SCRIPT, tracking_uri], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"method": method, "args": args,
                                           "kwargs": kwargs}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the old MLflow client exited (code {self._proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"{method}{args!r}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
