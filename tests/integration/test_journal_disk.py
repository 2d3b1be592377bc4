"""A journal disk that fails under a running bridge: events keep flowing from memory, the
outage is announced on the bus, in ``/readyz`` and the metrics, and the journal comes back;
one whose reads fail holds publishing back, and loses nothing, until they work again.

The fault is injected where the journal's OS calls go (:mod:`bridge.publish._disk`); the
same on real full, read-only and frozen filesystems is ``bench/journal_faults.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NamedTuple, Self

import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.publish.journal import Journal
from bridge.service import server
from bridge.service.app import BridgeApp
from tests.integration.contract import Body, assert_contiguous
from tests.integration.harness import (
    SECRET,
    Consumer,
    bridge_settings,
    free_port,
    running_bridge,
    scrape_metrics,
    wait_for,
)
from tests.support import AmqpNames
from tests.support.disk_faults import FAULTS, Disk, FailingReads

SERVER = "pbx1"


class _Run(NamedTuple):
    pbx: AmiSimulator
    consumer: Consumer
    app: BridgeApp
    #: Loop time when the simulator's 4 s of traffic end.
    traffic_ends: float


@contextlib.asynccontextmanager
async def _bridge_at_500_per_s(
    amqp_url: str, names: AmqpNames, journal_dir: Path, *, seed: int
) -> AsyncIterator[_Run]:
    """A simulator sending 500 events/s for 4 s, a consumer of everything and a bridge
    between them, its session logged in."""
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=500, duration=4.0, seed=seed) as pbx,
        Consumer.bound(amqp_url, names.exchange, names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=names.exchange,
            journal_dir=journal_dir,
            metrics_port=free_port(),
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            yield _Run(pbx, consumer, app, asyncio.get_running_loop().time() + 4.0)


async def test_a_full_journal_disk_keeps_events_flowing_and_says_so(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    async with _bridge_at_500_per_s(amqp_url, amqp_names, tmp_path, seed=5) as run:
        pbx, consumer, app, traffic_ends = run
        assert app.health is not None
        await asyncio.sleep(0.5)
        disk.fail(FAULTS["ENOSPC"])
        await consumer.wait_until(_has_status("unavailable"), 5, "the journal status")
        ready, why = app.readiness()
        assert not ready
        assert "pbx1: journal cannot be written (No space left on device)" in why
        figures = await scrape_metrics(app.health.port)
        assert figures["ami_bridge_journal_available"] == 0
        await asyncio.sleep(1.0)
        disk.heal()
        await consumer.wait_until(_has_status("recovered"), 5, "the recovered status")
        await asyncio.sleep(traffic_ends + 0.3 - asyncio.get_running_loop().time())
        expected = pbx.events_sent + 4  # FullyBooted, connected, and two journal statuses

        await consumer.wait_until(lambda b: len(b) >= expected, 20, f"{expected} messages")
        await wait_for(lambda: app.pipelines[0].journal.depth == 0, 5, "the journal to drain")
        assert app.readiness() == (True, "ready")
        figures = await scrape_metrics(app.health.port)

    bodies = consumer.bodies
    # Nothing lost, nothing published twice; then the stop's disconnected.
    assert len(bodies) == expected + 1
    assert bodies[-1]["event"] == "disconnected"
    assert_contiguous(bodies)
    (unavailable,) = [b for b in bodies if _journal_state(b) == "unavailable"]
    (recovered,) = [b for b in bodies if _journal_state(b) == "recovered"]
    assert unavailable["fields"]["reason"] == "No space left on device"
    unwritten = recovered["fields"]["unwritten"]
    assert unwritten > 200  # about 1.5 s at 500 events/s
    assert recovered["fields"]["dropped"] == 0
    assert figures["ami_bridge_journal_unwritten_total"] == unwritten
    assert figures["ami_bridge_journal_available"] == 1
    assert figures["ami_bridge_journal_disk_bytes"] > 0


class _DiskOnlyJournal(Journal):
    """A journal that keeps no record in memory: every record is read back from disk."""

    @classmethod
    def open(cls, directory: Path, **options: Any) -> Self:
        return super().open(directory, memory_records=0, **options)


async def test_journal_reads_that_fail_hold_publishing_back_and_lose_nothing(
    amqp_url: str,
    amqp_names: AmqpNames,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(server, "Journal", _DiskOnlyJournal)
    reads = FailingReads(monkeypatch)
    async with _bridge_at_500_per_s(amqp_url, amqp_names, tmp_path, seed=6) as run:
        pbx, consumer, app, traffic_ends = run
        assert app.health is not None
        await consumer.wait_until(lambda b: len(b) > 100, 5, "the first messages")
        reads.failing = True
        await wait_for(lambda: reads.refused > 0, 5, "a failed read")
        published = len(consumer.bodies)
        await asyncio.sleep(1.5)
        journal = app.pipelines[0].journal
        held_back = journal.depth
        assert held_back > 300  # the reader journalled on, about 500 events/s
        assert len(consumer.bodies) - published < 100  # what was read before the fault
        figures = await scrape_metrics(app.health.port)
        assert figures["ami_bridge_journal_read_errors_total"] >= 1
        reads.failing = False
        await asyncio.sleep(traffic_ends + 0.3 - asyncio.get_running_loop().time())
        expected = pbx.events_sent + 2  # FullyBooted and connected
        await consumer.wait_until(lambda b: len(b) >= expected, 20, f"{expected} messages")
        await wait_for(lambda: journal.depth == 0, 5, "the journal to drain")

    bodies = consumer.bodies
    assert len(bodies) == expected + 1  # and the stop's disconnected: nothing twice
    assert_contiguous(bodies)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("publishing waits" in line for line in lines) == 1, lines
    assert sum("can be read again" in line for line in lines) == 1, lines


def _journal_state(body: Body) -> str | None:
    if body["kind"] == "status" and body["event"] == "journal":
        state: str = body["fields"]["state"]
        return state
    return None


def _has_status(state: str) -> Callable[[list[Body]], bool]:
    def check(bodies: list[Body]) -> bool:
        return any(_journal_state(b) == state for b in bodies)

    return check
