"""A detector-only hub configuration for tests: a registry, the session broker, a fast poll
and backoff, no leader election, no admin listener."""

from __future__ import annotations

from typing import Any

from hub.config import HubConfig


def hub_config(server_url: str, bootstrap: str, topic: str, **detector: Any) -> HubConfig:
    return HubConfig(
        mlflow={"tracking_uri": server_url, "request_retries": 0, "scan_timeout_s": 10},
        kafka={"bootstrap_servers": bootstrap, "topic": topic, "partitions": 3},
        detector={"poll_interval_s": 0.2, "backoff_initial_s": 0.1, "backoff_max_s": 0.5,
                  "leader_election": False, **detector},
        subscriptions=[],
        admin={"enabled": False},
    )
