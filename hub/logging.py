"""structlog set-up, called only by the CLI. Event names are stable (``delivery.attempt``),
data goes in fields, and a processor redacts anything that looks like a secret
(:mod:`hub.redaction`); standard-library log records (aiokafka, MLflow, slack-sdk) are
redacted by a filter on the same rules. While a broker is away, aiokafka repeats the same
error every few milliseconds: :class:`RepeatFilter` shows each of its messages once per
window (the hub itself logs each state change once: ``bus.unreachable``, ``bus.reachable``)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

from hub.redaction import redact_event_dict, redact_text


class RedactingFilter(logging.Filter):
    """Redacts a standard-library record's message (arguments merged in) and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


class RepeatFilter(logging.Filter):
    """Lets each message of the ``prefix`` loggers (by logger and message template, whatever
    its arguments) through once per ``window_s``; the next one shown says how many were
    held back. Other loggers pass untouched."""

    def __init__(self, prefix: str = "aiokafka", window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._prefix = prefix
        self._window_s = window_s
        self._clock = clock
        self._shown: dict[tuple[str, str], tuple[float, int]] = {}  # → (shown at, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != self._prefix and not record.name.startswith(self._prefix + "."):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        shown_at, held = self._shown.get(key, (None, 0))
        if shown_at is not None and now - shown_at < self._window_s:
            self._shown[key] = (shown_at, held + 1)
            return False
        self._shown[key] = (now, 0)
        if held and shown_at is not None:
            record.msg = (f"{record.msg} [and {held} more like it in the last "
                          f"{now - shown_at:.0f} s, not shown]")
        return True


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
            structlog.processors.format_exc_info,
            redact_event_dict,  # after format_exc_info: tracebacks are text by now, redacted too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library; keep them quiet but visible.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())  # first: it keys on the message template
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    # MLflow re-configures its logger when imported; this is how it lets us keep it quiet.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if level == "DEBUG" else "WARNING")
    for noisy in ("aiokafka", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR if level != "DEBUG" else logging.INFO)
