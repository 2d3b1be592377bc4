"""Prometheus metrics of one bridge process, in a registry of its own.

A registry per process object (rather than prometheus_client's global one) lets tests run
several bridges side by side.  Per-label children are cached because ``labels()`` costs
more than the increment itself on the publish path.

Besides the bridge's own series the registry holds the process and platform collectors
(``process_*``, ``python_*``) and ``ami_bridge_build_info{version}``.  No ``_created``
series are exported: they doubled the sample count and no dashboard reads them.

So that an ``increase()`` alert sees the first drop, reconnect or nack, every counter
exists at 0 before it first moves: the per-server ones once the server is configured
(:meth:`Metrics.add_server`), the per-event ones once that event is first read
(:meth:`Metrics.add_event`), which is always before it can be nacked or returned.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.registry import Collector

from bridge import __version__
from bridge.publish.journal import DropReason

__all__ = ["Metrics"]

#: The sample names of a metric family, by its type (a gauge's sample is its own name).
_SAMPLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "info": ("_info",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}

disable_created_metrics()  # type: ignore[no-untyped-call]

#: The default registry's process, platform and GC collectors, shared by every registry
#: (they hold no state of their own: each scrape reads /proc and the interpreter).
_RUNTIME_COLLECTORS: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)

_READ_GAP_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        for collector in _RUNTIME_COLLECTORS:
            r.register(collector)
        Info("ami_bridge_build", "The running ami-bridge", registry=r).info(
            {"version": __version__}
        )
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
            "Messages dropped before they were published: by a journal limit (max_bytes, "
            "max_age), a full memory buffer while the disk failed (memory_full), or found "
            "damaged on disk (damaged)",
            ["server", "reason"],
            registry=r,
        )
        self.journal_bytes = Gauge(
            "ami_bridge_journal_bytes",
            "Bytes on disk of the journalled messages not yet confirmed "
            "(journal_max_bytes caps it)",
            ["server"],
            registry=r,
        )
        self.journal_unwritten = Counter(
            "ami_bridge_journal_unwritten",
            "Events that could not be journalled (the disk failed): kept in memory or dropped",
            ["server"],
            registry=r,
        )
        self.journal_read_errors = Counter(
            "ami_bridge_journal_read_errors",
            "Failed reads of the journal's segments (the disk failed): publishing waits",
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

    def add_server(self, server: str) -> None:
        """Create the series of a configured server at 0, before anything happens to it."""
        for metric in (
            self.ami_connected,
            self.ami_reconnects,
            self.publish_failed,
            self.journal_depth,
            self.journal_oldest_age,
            self.journal_bytes,
            self.journal_unwritten,
            self.journal_read_errors,
            self.journal_available,
            self.journal_disk_bytes,
            self.journal_memory_bytes,
        ):
            metric.labels(server)
        for reason in DropReason:
            self.journal_dropped.labels(server, str(reason))

    def add_event(self, server: str, event: str, klass: str) -> None:
        """Create at 0 the counters of what can happen to an event once it has been read."""
        for counter in (self.publish_nacked, self.publish_returned, self.publish_refused):
            counter.labels(server, event, klass)
        self.events_invalid.labels(server, event)

    def exported_names(self) -> set[str]:
        """Every sample name ``/metrics`` can show (for checking dashboards and alerts)."""
        return {
            family.name + suffix
            for family in self.registry.collect()
            for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",))
        }

    def render(self) -> bytes:
        return generate_latest(self.registry)
