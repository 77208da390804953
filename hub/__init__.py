"""Registry Hub: MLflow Model Registry changes as CloudEvents on Kafka, delivered to
webhooks, Slack and deploy pipelines.

The names below are the public surface for users and plugin authors; plugin tests add
``hub.testing`` (in-memory fakes). Everything else is internal and may change.
"""

from hub.config import HubConfig, SubscriptionConfig
from hub.config_load import load_config
from hub.detect.diff import apply, diff
from hub.detect.snapshot import ModelState, Snapshot, VersionState
from hub.errors import BusError, ConfigError, HubError, PluginError, SourceError
from hub.events import EVENT_TYPES, Change, Event, EventType
from hub.outcome import Outcome, Status
from hub.plugins import Handler, HandlerContext, HandlerOptions, is_test

__all__ = [
    "EVENT_TYPES",
    "BusError",
    "Change",
    "ConfigError",
    "Event",
    "EventType",
    "Handler",
    "HandlerContext",
    "HandlerOptions",
    "HubConfig",
    "HubError",
    "ModelState",
    "Outcome",
    "PluginError",
    "Snapshot",
    "SourceError",
    "Status",
    "SubscriptionConfig",
    "VersionState",
    "apply",
    "diff",
    "is_test",
    "load_config",
]
