"""Prometheus metrics of one bridge process, in a registry of its own.

A registry per process object (rather than prometheus_client's global one) lets tests run
several bridges side by side.  Per-label children are cached because ``labels()`` costs
more than the increment itself on the publish path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_READ_GAP_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
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
        # -- the AMI read path, updated by each connection's reader thread ---------------
        self.events_read = Counter(
            "ami_bridge_events_read",
            "AMI events read off the socket (and journalled)",
            ["server"],
            registry=r,
        )
        self.read_lag = Gauge(
            "ami_bridge_read_lag_events",
            "Messages read (and journalled) and not yet confirmed by the broker",
            ["server"],
            registry=r,
        )
        self.ami_receive_queue = Gauge(
            "ami_bridge_ami_receive_queue_bytes",
            "Bytes waiting in the AMI socket's kernel receive queue (sampled every 100 ms)",
            ["server"],
            registry=r,
        )
        self.ami_read_gap = Histogram(
            "ami_bridge_ami_read_gap_seconds",
            "Time the AMI socket had bytes waiting while the reader was elsewhere",
            ["server"],
            buckets=_READ_GAP_BUCKETS,
            registry=r,
        )
        self.ami_read_gap_max = Gauge(
            "ami_bridge_ami_read_gap_max_seconds",
            "Longest time the AMI socket had bytes waiting while the reader was elsewhere",
            ["server"],
            registry=r,
        )
        # ---------------------------------------------------------------------------------
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
            "Journalled messages dropped by the overflow policy",
            ["server", "reason"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
