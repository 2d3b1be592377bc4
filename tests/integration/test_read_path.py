"""The read path under faults: SIGKILLs while reading, a stalled publisher, a blocked
event loop, and probes during a burst."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from aio_pika.abc import AbstractIncomingMessage

from tests.integration.counting_peer import CountingPeer
from tests.integration.harness import (
    SECRET,
    BridgeProcess,
    bridge_settings,
    consuming,
    metric_totals,
    run_args,
    running_bridge,
    wait_for,
)
from tests.support import AmqpNames

SERVER = "pbx1"
RATE = 3000
#: Three in the suite; ``READ_PATH_KILLS=10`` for the full fault run (35-90 s on 2 busy cores).
KILLS = int(os.environ.get("READ_PATH_KILLS", "3"))


class Ticks:
    """The ``Tick`` of every UserEvent on the queue.  The contract's own consumer checks
    each delivery against the schemas, too slow for tens of thousands of them here."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.deliveries = 0

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        self.deliveries += 1
        body = orjson.loads(message.body)
        if body.get("event") == "UserEvent":
            self.seen.add(int(body["extra"]["Tick"]))

    @classmethod
    @asynccontextmanager
    async def bound(cls, url: str, exchange: str, queue: str) -> AsyncIterator[Ticks]:
        ticks = cls()
        async with consuming(url, exchange, queue, ticks._deliver, prefetch=5000):
            yield ticks


async def test_sigkill_while_reading_3000_events_per_s_loses_nothing_read(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    """SIGKILLs, each at a random moment of the stream; after each, every event the
    bridge had taken off its socket (measured from outside: written minus what the
    kernel still held) reaches the broker."""
    rng = random.Random(9)
    must_arrive: set[int] = set()
    lost_unread = 0
    with CountingPeer(RATE) as peer:
        async with Ticks.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer:
            args = run_args(
                {SERVER: peer.port},
                amqp=amqp_url,
                exchange=amqp_names.exchange,
                journal_dir=tmp_path / "journal",
                ami_auth="plain",
                ami_reconnect_base=0.1,
                ami_reconnect_cap=0.2,
            )
            env = {"AMI_BRIDGE_AMI_SECRET": SECRET}
            previous = None
            for kill in range(KILLS + 1):
                async with BridgeProcess(args, tmp_path / f"run{kill}.log", env) as bridge:
                    await wait_for(
                        lambda old=previous: peer.current not in (None, old), 15, "a new session"
                    )
                    conn = previous = peer.current
                    assert conn is not None
                    if kill < KILLS:
                        await asyncio.sleep(0.4 + rng.random() * 0.6)
                        bridge.send_signal(signal.SIGSTOP)
                        peer.pause()
                        await asyncio.sleep(0.05)  # loopback delivery settles
                        read = peer.read_by_bridge(conn)
                        done = {tick for tick, end in conn.ends if end <= read}
                        must_arrive |= done
                        lost_unread += len(conn.ends) - len(done)
                        bridge.send_signal(signal.SIGKILL)
                        assert await bridge.wait(5) == -signal.SIGKILL
                        peer.resume()
                        continue
                    # The last run: traffic stopped, then all of it read and published.
                    await asyncio.sleep(0.5)
                    peer.pause()
                    await asyncio.sleep(0.3)
                    assert conn.written == peer.read_by_bridge(conn)
                    must_arrive |= {tick for tick, _ in conn.ends}

                    await wait_for(
                        lambda read=must_arrive: read <= consumer.seen,
                        30,
                        f"{len(must_arrive)} events",
                    )
                    bridge.send_signal(signal.SIGTERM)
                    assert await bridge.wait(15) == 0
    missing = must_arrive - consumer.seen
    assert not missing, f"{len(missing)} events read by the bridge never arrived"
    assert len(must_arrive) > KILLS * RATE * 0.3
    print(f"{KILLS} kills: {len(must_arrive)} events read, all arrived; {lost_unread} unread")


async def test_reading_goes_on_with_the_publisher_stalled_and_the_loop_blocked(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    """Publishing waits forever and the event loop is blocked twice for 0.5 s: the reader
    still takes every event off the socket into the journal, with short read gaps."""
    with CountingPeer(5000) as peer:
        settings = bridge_settings(
            {SERVER: peer.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            ami_auth="plain",
            shutdown_timeout=1,  # what the stalled publisher never sent stays journalled
        )
        async with running_bridge(settings) as app:
            stalled = asyncio.Event()

            async def never(*args: object) -> None:
                await stalled.wait()

            app.publisher.publish = never  # type: ignore[method-assign]
            await wait_for(lambda: peer.current is not None, 10, "a logged-in session")
            conn = peer.current
            assert conn is not None
            for _ in range(2):
                await asyncio.sleep(0.4)
                time.sleep(0.5)  # the event loop does nothing  # noqa: ASYNC251
            peer.pause()
            await asyncio.sleep(0.3)
            assert peer.read_by_bridge(conn) == conn.written  # all of it off the socket
            pipeline = app.pipelines[0]
            figures = metric_totals(app.metrics.render().decode())
            assert figures["ami_bridge_events_read_total"] == len(conn.ends)
            # What was read is journalled, published before the stall or waiting: the
            # read lag counts the waiting ones.
            published = figures.get("ami_bridge_events_published_total", 0.0)
            assert figures["ami_bridge_read_lag_events"] + published >= len(conn.ends)
            assert pipeline.journal.depth > 5000
            assert figures["ami_bridge_ami_read_gap_max_seconds"] < 0.25
            stalled.set()
