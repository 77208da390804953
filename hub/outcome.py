"""What one delivery attempt came to. A failed attempt is a value, not an exception.

Its ``detail`` is redacted when the outcome is made (:func:`hub.redaction.redact_text`:
URL credentials and query values, known token shapes): it goes to the attempt log, the
dead-letter and retry topics, log lines and API answers, whichever handler wrote it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum

from hub.redaction import redact_text

_redacted = functools.lru_cache(maxsize=1024)(redact_text)
"""Most details repeat ("HTTP 200 OK" on every delivery): each is redacted once."""


class Status(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: try again later (5xx, timeout, 429, connection refused)
    FAILED = "failed"  # final: straight to the dead-letter topic (4xx, invalid_auth, ...)
    GONE = "gone"  # final, and the endpoint asked us to stop (410 Gone)


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str = ""
    http_status: int | None = None
    retry_after_s: float | None = None
    latency_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", _redacted(self.detail))

    @property
    def final(self) -> bool:
        return self.status is not Status.RETRY

    @classmethod
    def delivered(cls, detail: str = "", **kw: object) -> Outcome:
        return cls(Status.DELIVERED, detail, **kw)  # type: ignore[arg-type]

    @classmethod
    def retry(cls, detail: str, **kw: object) -> Outcome:
        return cls(Status.RETRY, detail, **kw)  # type: ignore[arg-type]

    @classmethod
    def failed(cls, detail: str, **kw: object) -> Outcome:
        return cls(Status.FAILED, detail, **kw)  # type: ignore[arg-type]

    @classmethod
    def gone(cls, detail: str, **kw: object) -> Outcome:
        return cls(Status.GONE, detail, **kw)  # type: ignore[arg-type]
