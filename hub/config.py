"""The hub's configuration: one validated pydantic model tree.

Sources, lowest to highest precedence: built-in defaults, the YAML file (``--config`` or
``HUB_CONFIG``), environment variables ``HUB_<SECTION>__<KEY>`` (e.g.
``HUB_KAFKA__TOPIC``). Unknown keys are errors. Reading them, and telling what is wrong with
them, is :mod:`hub.config_load`. Every component receives its own slice.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hub.envrefs import variables
from hub.event_aliases import expand, is_alias, resolve
from hub.events import EVENT_TYPES

DEFAULT_TOPIC = "mlflow.registry.events"
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def _default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def _default_registry_uri() -> str | None:
    return os.environ.get("MLFLOW_REGISTRY_URI") or None


_PER_MODEL_REGISTRIES = ("databricks-uc", "uc:")


class MlflowConfig(Section):
    tracking_uri: str = Field(default_factory=_default_tracking_uri)
    """Registry to watch: a tracking server URL or a database URI. Default: MLFLOW_TRACKING_URI,
    else ``sqlite:///mlflow.db``."""
    page_size: int = Field(200, ge=1, le=1000)
    """Registered models per page of the full scan (versions: ten times as many)."""
    scan_timeout_s: float = Field(120, gt=0)
    """A full scan taking longer than this counts as failed: nothing is emitted from it."""
    request_retries: int = Field(2, ge=0, le=10)
    """MLflow client HTTP retries per request before the scan counts as failed."""
    ui_url: str | None = None
    """Base URL of the MLflow UI, for links in notifications (default: tracking_uri if http)."""
    registry_uri: str | None = Field(default_factory=_default_registry_uri)
    """Model registry to watch when it is not the tracking server's own, e.g. ``databricks-uc``
    (Unity Catalog). Default: MLFLOW_REGISTRY_URI, else ``tracking_uri``."""
    scan_mode: Literal["auto", "registry", "per_model"] = "auto"
    """How a full scan reads versions: ``registry`` (all versions in a few pages), or
    ``per_model`` (list the models, then each model's versions: registries whose version search
    needs a model name, such as Unity Catalog). ``auto``: ``per_model`` for ``databricks-uc``
    and ``uc:`` registry URIs, else ``registry``."""

    @property
    def registry(self) -> str:
        """The registry URI in effect: ``registry_uri``, else ``tracking_uri``."""
        return self.registry_uri or self.tracking_uri

    @property
    def per_model_scan(self) -> bool:
        """True when the scan lists versions model by model (see ``scan_mode``)."""
        if self.scan_mode == "auto":
            return self.registry.startswith(_PER_MODEL_REGISTRIES)
        return self.scan_mode == "per_model"


class DetectorConfig(Section):
    poll_interval_s: float = Field(5, gt=0)
    """Seconds between full scans. MLflow's pushed webhooks (``/ingest/mlflow``) add low
    latency on top; the poll still catches everything MLflow never pushes."""
    reconcile_interval_s: float = Field(60, gt=0)
    """Seconds between full scans while MLflow's pushes are healthy (one was received and
    read within this many seconds): the scan then only reconciles what pushes cannot say
    (stage transitions, deletions, descriptions). Without pushes, ``poll_interval_s``."""
    emit_existing: bool = False
    """First start only: emit every existing model and version as ``*.created``."""
    state_topic: str | None = None
    """Compacted topic keeping the detector's checkpoint. Default ``<kafka.topic>.state``."""
    leader_election: bool = True
    """Run several detectors, one active: elected through a Kafka consumer group; the others
    stand by and take over when it dies. Not used with the embedded broker."""
    backoff_initial_s: float = Field(1, gt=0)
    """First wait after a failed scan or publish; doubles on each failure..."""
    backoff_max_s: float = Field(60, gt=0)
    """...up to this, and never beyond the poll interval (or 5 s, if that is longer): an
    outage of MLflow or Kafka ends at most that long before detection resumes."""


class KafkaConfig(Section):
    bootstrap_servers: str = "embedded"
    """``embedded`` (a Tansu child process for local use, its topics kept in ``state_dir``)
    or ``host:port,...``."""
    topic: str = DEFAULT_TOPIC
    """The events topic (CloudEvents, key = model name). Derived topics add a suffix:
    ``.state``, ``.retry``, ``.dlq``, ``.deliveries``, ``.subscriptions``."""
    partitions: int = Field(6, ge=1)
    """Partitions of the topics the hub creates (events, retry, deliveries)."""
    replication_factor: int = Field(1, ge=1)
    """Replication of the topics the hub creates (use 3 on a production cluster)."""
    enable_idempotence: bool = False
    """Idempotent producer; off by default because the embedded broker lacks it."""
    client_id: str = "registry-hub"
    """Kafka client id of every producer and consumer."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How to talk to the brokers."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism when ``security_protocol`` is ``SASL_*``."""
    sasl_username: str | None = None
    """SASL user."""
    sasl_password: SecretStr | None = None
    """SASL password (prefer ``HUB_KAFKA__SASL_PASSWORD``)."""
    ssl_cafile: str | None = None
    """CA bundle for ``SSL`` / ``SASL_SSL``."""
    session_timeout_ms: int = Field(10_000, ge=1000)
    """Consumer-group session timeout: how fast a dead worker's partitions move on."""
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    """Consumer heartbeat interval (about a third of the session timeout)."""

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        value = value.strip()
        if value == "embedded":
            return value
        parts = [p.strip() for p in value.split(",") if p.strip()]
        bad = [p for p in parts if not _HOST_PORT.match(p)]
        if not parts or bad:
            raise ValueError(
                f"expected 'embedded' or a comma-separated list of host:port, got {value!r}"
            )
        return ",".join(parts)

    @property
    def embedded(self) -> bool:
        return self.bootstrap_servers == "embedded"


SVIX_SCHEDULE_S = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]


class DeliveryConfig(Section):
    retry_schedule_s: list[float] = Field(default_factory=lambda: list(SVIX_SCHEDULE_S))
    """Delays between attempts after the first (immediate) one. Default as Svix / Standard
    Webhooks: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. Exhausted → dead-letter topic."""
    jitter: float = Field(0.2, ge=0, lt=1)
    """Each delay is randomised by ±jitter (0.2 = ±20%)."""
    allowed_networks: list[str] = Field(default_factory=list)
    """CIDRs that outgoing deliveries may reach although private/loopback/link-local
    (refused by default: SSRF guard). E.g. ``["10.0.0.0/8"]``."""
    group_id_prefix: str = "registry-hub"
    """Each subscription consumes in its own group ``<prefix>.<subscription>``."""
    start_from: Literal["now", "earliest"] = "now"
    """Where a subscription with no committed offsets starts: events published after the
    worker started (``now``), or the whole retained history (``earliest``)."""
    max_in_flight: int = Field(64, ge=1, le=10_000)
    """Concurrent deliveries per subscription (different models; one model stays in order)."""
    fetch_max_wait_ms: int = Field(50, ge=0, le=5000)
    """How long a subscription's consumer lets the broker wait for more data before
    answering a fetch: lower is lower latency, higher is fewer requests when idle."""
    max_batch: int = Field(500, ge=1)
    """Records fetched per batch; offsets are committed per batch."""
    max_pending_retries: int = Field(10_000, ge=1)
    """Retries held in memory waiting for their time; past it the retry topic is paused."""
    grace_period_s: float = Field(10, ge=0)
    """On shutdown, how long in-flight deliveries may finish before the worker stops."""
    retry_topic: str | None = None
    """Durable retry schedule (default ``<kafka.topic>.retry``)."""
    dead_letter_topic: str | None = None
    """Final failures, for inspection and replay (default ``<kafka.topic>.dlq``)."""
    deliveries_topic: str | None = None
    """One record per delivery attempt (default ``<kafka.topic>.deliveries``)."""

    @field_validator("retry_schedule_s")
    @classmethod
    def _non_negative(cls, delays: list[float]) -> list[float]:
        if any(d < 0 for d in delays):
            raise ValueError("delays must be >= 0 seconds")
        return delays

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, networks: list[str]) -> list[str]:
        for cidr in networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR such as 127.0.0.0/8") from None
        return networks


class AdminConfig(Section):
    enabled: bool = True
    """Serve the admin API, metrics, health checks and the MLflow ingest endpoint."""
    host: str = "127.0.0.1"
    """Listen address (``0.0.0.0`` in a container)."""
    port: int = Field(8080, ge=0, le=65535)
    """The admin API, /metrics, health checks and /ingest/mlflow share this port."""
    token: SecretStr | None = None
    """Bearer token every /api/* call needs (health, metrics and the signed ingest stay
    open). Unset: one is generated at first start, kept in ``<state_dir>/admin-token`` and
    shown once in the ready line. Never empty: there is no way to switch auth off."""
    read_deadline_s: float = Field(10, gt=0, le=300)
    """A connection must send a whole request (headers and body) within this many seconds
    of opening or of its previous answer, else it is closed (slow-client protection)."""

    @field_validator("token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("an empty token would leave the admin API open, which is not "
                             "possible; remove the setting to have a token generated, or set "
                             "a long random one")
        return value


class IngestConfig(Section):
    mlflow_secret: SecretStr | None = None
    """Secret of the MLflow webhook pointing at /ingest/mlflow (signature checked)."""
    tolerance_s: float = Field(300, gt=0)
    """Webhook timestamps further than this from now are refused (replay protection)."""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """Larger pushed bodies are refused with 413."""


class SubscriptionConfig(BaseModel):
    """A subscription: which events go to which handler. Handler options sit beside these
    keys and are validated by the handler's own options model."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    handler: str
    events: list[str] = Field(default_factory=lambda: ["*"])
    models: list[str] = Field(default_factory=lambda: ["*"])
    when: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    _environment: dict[str, str] | None = PrivateAttr(default=None)  # see .environment

    @field_validator("events")
    @classmethod
    def _known_events(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if is_alias(pattern):  # the seed's upper-case names, see hub.event_aliases
                resolve(pattern)
            elif not any(fnmatch.fnmatchcase(t, pattern) for t in EVENT_TYPES):
                raise ValueError(
                    f"{pattern!r} matches no event type; known types: {', '.join(EVENT_TYPES)}"
                )
        expand(patterns, {})  # aliases that one subscription cannot combine
        return patterns

    @field_validator("when")
    @classmethod
    def _alias_conditions(cls, when: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        events = info.data.get("events")
        if events is not None:
            expand(events, when)  # e.g. when.to_stage contradicting ..._TO_PRODUCTION
        return when

    @model_validator(mode="after")
    def _expand_aliases(self) -> SubscriptionConfig:
        """Aliases become catalog types plus ``when`` conditions: routing sees globs only."""
        self.events, self.when = expand(self.events, self.when)
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def environment(self) -> dict[str, str] | None:
        """The environment variables its options reference (``${VAR}``), taken when the
        configuration was loaded; ``None`` for a subscription that does not come from the
        configuration (a runtime one): its references are refused (see :mod:`hub.envrefs`)."""
        return self._environment


def _default_subscriptions() -> list[SubscriptionConfig]:
    return [SubscriptionConfig(name="console", handler="console")]


class HubConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HUB_", env_nested_delimiter="__", extra="forbid", case_sensitive=False,
        use_attribute_docstrings=True,
    )

    mlflow: MlflowConfig = Field(default_factory=lambda: MlflowConfig())
    detector: DetectorConfig = Field(default_factory=lambda: DetectorConfig())
    kafka: KafkaConfig = Field(default_factory=lambda: KafkaConfig())
    delivery: DeliveryConfig = Field(default_factory=lambda: DeliveryConfig())
    admin: AdminConfig = Field(default_factory=lambda: AdminConfig())
    ingest: IngestConfig = Field(default_factory=lambda: IngestConfig())
    subscriptions: list[SubscriptionConfig] = Field(default_factory=_default_subscriptions)
    state_dir: Path = Path(".registry-hub")
    """Local directory for what must outlive the process (created on first run, locked while
    a hub uses it): with the embedded broker, its topics and consumer offsets. Relative paths
    are relative to the working directory."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the hub's structured logs (on standard error)."""
    log_format: Literal["console", "json"] = "console"
    """``console`` for people, ``json`` for log pipelines."""

    _source_path: Path | None = PrivateAttr(default=None)  # set by load_config; not a setting

    @property
    def source_path(self) -> Path | None:
        """The YAML file this configuration was loaded from; ``None`` when none was given."""
        return self._source_path

    @property
    def default_subscriptions(self) -> bool:
        """True when ``subscriptions`` is the built-in default (one console subscription):
        neither the file nor the environment set the list."""
        return "subscriptions" not in self.model_fields_set

    @field_validator("subscriptions")
    @classmethod
    def _unique_names(cls, subs: list[SubscriptionConfig]) -> list[SubscriptionConfig]:
        seen: set[str] = set()
        for sub in subs:
            if sub.name in seen:
                raise ValueError(f"subscription name {sub.name!r} is used twice")
            seen.add(sub.name)
            # the operator's subscriptions may reference the environment: keep what they do
            sub._environment = variables(sub.options, os.environ)
        return subs

    @property
    def state_topic(self) -> str:
        return self.detector.state_topic or f"{self.kafka.topic}.state"

    @property
    def retry_topic(self) -> str:
        return self.delivery.retry_topic or f"{self.kafka.topic}.retry"

    @property
    def dead_letter_topic(self) -> str:
        return self.delivery.dead_letter_topic or f"{self.kafka.topic}.dlq"

    @property
    def deliveries_topic(self) -> str:
        return self.delivery.deliveries_topic or f"{self.kafka.topic}.deliveries"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment overrides the file
