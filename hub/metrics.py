"""Prometheus metrics, on a registry of our own (no module-level singletons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_detected = Counter(
            "registry_hub_events_detected", "Registry changes detected", ["type", "path"],
            registry=r)
        self.events_published = Counter(
            "registry_hub_events_published", "Events acknowledged by Kafka", ["type"],
            registry=r)
        self.poll_duration = Histogram(
            "registry_hub_poll_duration_seconds", "Full registry scan duration",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.pushes = Counter(
            "registry_hub_pushes", "MLflow pushes handled, by how: applied from the payload, "
            "or the model read", ["how"], registry=r)
        self.rereads = Counter(
            "registry_hub_rereads", "Re-reads of a model after pushes applied from payloads",
            registry=r)
        self.poll_failures = Counter(
            "registry_hub_poll_failures", "Scans that failed (nothing emitted)", registry=r)
        self.deliveries = Counter(
            "registry_hub_deliveries", "Delivery attempts by outcome",
            ["subscription", "outcome"], registry=r)
        self.delivery_latency = Histogram(
            "registry_hub_delivery_latency_seconds", "Duration of one delivery attempt",
            ["subscription"], registry=r)
        self.event_to_delivery = Histogram(
            "registry_hub_event_to_delivery_seconds",
            "From the event's time to its successful delivery", ["subscription"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600), registry=r)
        self.retries_pending = Gauge(
            "registry_hub_retries_pending", "Retries held waiting for their time", registry=r)
        self.dead_letters = Counter(
            "registry_hub_dead_letters", "Deliveries sent to the dead-letter topic",
            ["subscription", "reason"], registry=r)
        self.consumer_lag = Gauge(
            "registry_hub_consumer_lag", "Records not yet processed, per consumer group",
            ["group"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
