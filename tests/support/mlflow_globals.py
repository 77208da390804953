"""MLflow's process-wide registry settings, put back after something changed them.

A hub reading a registry makes it MLflow's process-wide tracking and registry URI, environment
included (``hub.detect.registry_uri.prepare``), so a second configuration built in the same
process would default to the first one's registry. Tests (an autouse fixture in
tests/conftest.py) and ``bench/compat.py`` (one row after another) put back what was there.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

NAMES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ALLOW_FILE_STORE")


@contextlib.contextmanager
def mlflow_globals_restored() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in NAMES}
    try:
        yield
    finally:
        if "mlflow" in sys.modules:  # imported meanwhile, or before
            import mlflow

            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: unset (MLflow's API)
            mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
