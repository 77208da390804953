"""One exception tree for the hub.

Third-party errors are mapped at the boundary (``raise SourceError(...) from exc``) and
every message says what to do next. Messages are redacted when the error is made
(:func:`hub.redaction.redact_text`: credentials and query values of URLs, known token
shapes), since they end up on standard error, in logs and in API answers. A failed delivery
attempt is *not* an exception: it is an outcome value (see ``hub.outcome``).

Every exception class defined in ``hub`` and ``handlers`` (a test keeps this complete)::

    HubError                  hub.errors      every error the hub raises on purpose
    ├── ConfigError           hub.errors      invalid configuration; CLI exit code 2
    ├── SourceError           hub.errors      the registry could not be read completely
    ├── BusError              hub.errors      Kafka unreachable or refusing a request
    ├── PluginError           hub.errors      a handler plugin cannot be loaded or built
    ├── SignatureError        hub.signing     a signed request (MLflow push) did not verify
    └── HubClientError        hub.admin.client  the admin API answered an error (HubClient)

    Outside HubError, on purpose: each derives from what the code around it catches.

    OSError
    └── SsrfRefused           hub.http        raised in aiohttp's connector, which reports
                                              OSErrors as a failed connection (a retry)
    aiohttp.ClientError
    └── RedirectRefused       hub.http        a 3xx that the session would have followed
    ValueError
    ├── MalformedPush         hub.ingest.push   answered 400; never leaves the ingest route
    └── TemplateError         handlers.slack_templates
                                              pydantic reports a ValueError of a validator
                                              as an option error naming the field
    Exception
    ├── ApiError              hub.admin.bodies  an admin API answer (status, message,
    │                                           field); never leaves the admin routes
    └── TooLarge              hub.ingest.push   a body over the limit; answered 413
"""

from __future__ import annotations

from hub.redaction import redact_text


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class ConfigError(HubError):
    """The configuration is invalid. ``field`` names the offending path, e.g. ``kafka.topic``."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        self.field = field
        self.hint = hint
        text = f"{field}: {message}" if field else message
        if hint:
            text = f"{text}\n  hint: {hint}"
        super().__init__(text)


class SourceError(HubError):
    """The registry could not be read completely (server down, page error, timeout)."""


class BusError(HubError):
    """Kafka (or the embedded broker) could not be reached or refused a request."""


class PluginError(HubError):
    """A handler plugin could not be found, configured or loaded."""
