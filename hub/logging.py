"""structlog set-up, called only by the CLI. Event names are stable (``delivery.attempt``),
data goes in fields, and a processor redacts anything that looks like a secret."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"(secret|password|token|authorization|api_key)", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"(whsec_[A-Za-z0-9+/=]+|xox[abpr]-[A-Za-z0-9-]+|gh[pousr]_[A-Za-z0-9]+)"
)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and value not in (None, ""):
            event_dict[key] = "***"
        elif isinstance(value, str):
            event_dict[key] = _SECRET_VALUE.sub("***", value)
    return event_dict


def configure(level: str = "INFO", fmt: str = "console") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library; keep them quiet but visible.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # MLflow re-configures its logger when imported; this is how it lets us keep it quiet.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if level == "DEBUG" else "WARNING")
    for noisy in ("aiokafka", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR if level != "DEBUG" else logging.INFO)
