"""What ``/metrics`` holds before anything happens, and the series an operator expects."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bridge import __version__
from bridge.publish.records import encode_status
from bridge.service.app import BridgeApp
from bridge.service.metrics import Metrics
from bridge.settings import load_settings


def _samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _app(tmp_path: Path) -> BridgeApp:
    settings = load_settings(
        {
            "ami": ["pbx1=ami://bridge@127.0.0.1:1", "pbx2=ami://bridge@127.0.0.1:2"],
            "ami_secret": "s",
            "journal_dir": tmp_path,
            "metrics_port": 0,
        }
    )
    return BridgeApp(settings)


def test_runtime_collectors_and_build_info_without_created_series() -> None:
    samples = _samples(Metrics())
    names = {name for name, _ in samples}
    assert any(name.startswith("process_") for name in names)
    assert any(name.startswith("python_") for name in names)
    assert samples[("ami_bridge_build_info", frozenset({("version", __version__)}))] == 1
    assert not [name for name in names if name.endswith("_created")]


def test_two_registries_share_the_runtime_collectors() -> None:
    # Each bridge object has its own registry; the runtime collectors go into every one.
    first, second = _samples(Metrics()), _samples(Metrics())
    assert {n for n, _ in first if n.startswith("process_")} == {
        n for n, _ in second if n.startswith("process_")
    }


async def test_every_configured_server_has_its_counters_at_zero_from_the_start(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)
    samples = _samples(app.metrics)
    for server in ("pbx1", "pbx2"):
        at = frozenset({("server", server)})
        for name in (
            "ami_bridge_ami_reconnects_total",
            "ami_bridge_publish_failed_total",
            "ami_bridge_ami_connected",
            "ami_bridge_journal_depth",
            "ami_bridge_journal_oldest_age_seconds",
            "ami_bridge_journal_bytes",
        ):
            assert samples[(name, at)] == 0, name
        for reason in ("max_bytes", "max_age"):
            key = frozenset({("server", server), ("reason", reason)})
            assert samples[("ami_bridge_journal_dropped_total", key)] == 0


def test_an_event_read_once_has_its_refusal_counters_at_zero() -> None:
    metrics = Metrics()
    metrics.add_event("pbx1", "Newchannel", "channel")
    samples = _samples(metrics)
    labels = frozenset({("server", "pbx1"), ("event", "Newchannel"), ("class", "channel")})
    for name in ("nacked", "returned", "refused"):
        assert samples[(f"ami_bridge_publish_{name}_total", labels)] == 0
    invalid = frozenset({("server", "pbx1"), ("event", "Newchannel")})
    assert samples[("ami_bridge_events_invalid_total", invalid)] == 0


async def test_the_journal_size_gauge_follows_the_pending_bytes(tmp_path: Path) -> None:
    app = _app(tmp_path)
    pipeline = app.pipelines[0]
    try:
        pipeline.journal.append([encode_status(1, n, 0.0, "connected", {}) for n in range(10)])
        task = asyncio.create_task(pipeline.housekeeping(interval=0.01))
        await asyncio.sleep(0.05)
        task.cancel()
        samples = _samples(app.metrics)
        size = samples[("ami_bridge_journal_bytes", frozenset({("server", "pbx1")}))]
        assert size == pipeline.journal.pending_bytes > 0
    finally:
        for p in app.pipelines:
            p.journal.close()
