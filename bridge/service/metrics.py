"""Prometheus metrics of one bridge process, in a registry of its own.

A registry per process object (rather than prometheus_client's global one) lets tests run
several bridges side by side.  Per-label children are cached because ``labels()`` costs
more than the increment itself on the publish path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ami_connected = Gauge(
            "ami_bridge_ami_connected", "1 while logged in to the PBX's AMI", ["server"], registry=r
        )
        self.ami_reconnects = Counter(
            "ami_bridge_ami_reconnects",
            "AMI reconnections after a lost session",
            ["server"],
            registry=r,
        )
        self.broker_connected = Gauge(
            "ami_bridge_broker_connected", "1 while connected to RabbitMQ", registry=r
        )
        self.broker_blocked = Gauge(
            "ami_bridge_broker_blocked",
            "1 while the broker blocks publishing (a memory or disk alarm)",
            registry=r,
        )
        self.events_read = Counter(
            "ami_bridge_events_read", "AMI events read", ["server", "event", "class"], registry=r
        )
        self.events_published = Counter(
            "ami_bridge_events_published",
            "Messages confirmed by the broker",
            ["server", "event", "class"],
            registry=r,
        )
        self.events_invalid = Counter(
            "ami_bridge_events_invalid",
            "Events that failed validation and went to the invalid route",
            ["server", "event"],
            registry=r,
        )
        self.unknown_fields = Counter(
            "ami_bridge_unknown_fields",
            "Fields the event models do not know (kept under extra)",
            ["server", "event"],
            registry=r,
        )
        self.publish_nacked = Counter(
            "ami_bridge_publish_nacked",
            "Publishes the broker nacked (each published again a few times)",
            ["server", "event", "class"],
            registry=r,
        )
        self.publish_returned = Counter(
            "ami_bridge_publish_returned",
            "Publishes the broker returned (each published again a few times)",
            ["server", "event", "class"],
            registry=r,
        )
        self.publish_refused = Counter(
            "ami_bridge_publish_refused",
            "Messages retired after the broker refused every retry "
            "(announced on {server}.bridge.refused)",
            ["server", "event", "class"],
            registry=r,
        )
        self.publish_failed = Counter(
            "ami_bridge_publish_failed",
            "Publishes lost with the broker connection (republished from the journal)",
            ["server"],
            registry=r,
        )
        self.publish_latency = Histogram(
            "ami_bridge_publish_latency_seconds",
            "From AMI read to broker confirm",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.journal_depth = Gauge(
            "ami_bridge_journal_depth",
            "Journalled messages not yet confirmed",
            ["server"],
            registry=r,
        )
        self.journal_oldest_age = Gauge(
            "ami_bridge_journal_oldest_age_seconds",
            "Age of the oldest unconfirmed journalled message",
            ["server"],
            registry=r,
        )
        self.journal_dropped = Counter(
            "ami_bridge_journal_dropped",
            "Messages dropped before they were published: by a journal limit (max_bytes, "
            "max_age), a full memory buffer while the disk failed (memory_full), or found "
            "damaged on disk (damaged)",
            ["server", "reason"],
            registry=r,
        )
        self.journal_unwritten = Counter(
            "ami_bridge_journal_unwritten",
            "Events that could not be journalled (the disk failed): kept in memory or dropped",
            ["server"],
            registry=r,
        )
        self.journal_available = Gauge(
            "ami_bridge_journal_available",
            "1 while the journal's disk can be written, 0 while events are kept in memory",
            ["server"],
            registry=r,
        )
        self.journal_disk_bytes = Gauge(
            "ami_bridge_journal_disk_bytes",
            "Bytes of the journal's segment files",
            ["server"],
            registry=r,
        )
        self.journal_memory_bytes = Gauge(
            "ami_bridge_journal_memory_bytes",
            "Bytes of events kept in memory because the disk could not be written",
            ["server"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
