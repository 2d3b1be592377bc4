"""The whole bridge, end to end: simulated AMI in, confirmed persistent messages out.

Approach
--------
The AMI side is the project's :class:`~bridge.ami.simulator.AmiSimulator` in a child
process of its own (as Asterisk is another process), so generating traffic never takes
the bridge's event loop.  The bridge is :class:`~bridge.service.app.BridgeApp` in this
process, on uvloop (:func:`bridge.cli.run.new_event_loop`), publishing with confirms and
persistent delivery into a fresh topic exchange with a durable queue bound to ``#``
(exchanges and queues are deleted afterwards).

Latency is measured exactly: each pipeline's ``on_results`` is wrapped so every confirmed
message records ``confirm handled - received_at``, where ``received_at`` is the
``time.time()`` the bridge stamped when the socket read returned.  No sampling, no
histogram buckets.  ``on_items`` is wrapped too, to time the gaps between AMI reads.
The process tunes its garbage collector as ``ami-bridge run`` does
(:func:`bridge.cli.run.quiet_gc`).

Phases (about 55 s in all by default on a 2-core machine):

* **throughput**: the simulator far faster than the bridge can publish; events/s from the
  first AMI read to the last confirm (the journal holds the backlog meanwhile); run twice,
  without the history stream and then with ``<exchange>.stream`` bound (the product's
  default), so the stream's cost is measured against a baseline of the same run;
* **ceiling**: :func:`amqp_ceiling.plain_aio_pika`, a plain aio-pika loop publishing a
  body of the median rendered size with confirms, persistence and 1,000 in flight, plus
  the bridge's own publisher alone (:func:`amqp_ceiling.bridge_publisher`), no parsing;
* **latency**: a steady 1,000 events/s; p50 and p99 from AMI read to confirm;
* **burst**: 30,000 events/s for 5 s; the simulator's longest write stall (Asterisk drops
  a client whose socket stalls 100 ms; the figure includes the simulator's own loop time,
  so on a busy machine it overstates the bridge's share), the bridge's longest gap
  between two AMI reads, the journal's peak depth, and how long the journal takes to
  drain once the burst is over.

Peak RSS is this process's (the bridge's) high-water mark after the bridge phases, before
the ceiling runs.  The last line printed is one JSON object.

    python bench/e2e.py [--url amqp://guest:guest@127.0.0.1:5672/] [--events 40000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import resource
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel
from amqp_ceiling import bridge_publisher, plain_aio_pika

from bridge.ami.client import StreamItem
from bridge.ami.protocol import AmiParser, Event, serialize
from bridge.ami.simulator import AmiSimulator
from bridge.ami.traffic import TrafficGenerator
from bridge.cli.run import new_event_loop, quiet_gc
from bridge.publish.amqp import Outcome, PublishResult
from bridge.publish.records import decode, encode_event
from bridge.publish.routing import Router
from bridge.publish.topology import declare_topology, stream_name, unrouted_name
from bridge.service.app import BridgeApp
from bridge.service.render import Renderer
from bridge.service.server import ServerPipeline, Token
from bridge.settings import load_settings

SECRET = "bench-secret"
SERVER = "pbx1"
WINDOW = 1000


# -- the AMI side, in a child process ------------------------------------------------------


@dataclass(frozen=True)
class SourceReport:
    events_sent: int
    max_write_stall: float
    slow_disconnects: int


def _serve_ami(conn: Connection, rate: float, duration: float, seed: int) -> None:
    asyncio.run(_serve_ami_async(conn, rate, duration, seed))


async def _serve_ami_async(conn: Connection, rate: float, duration: float, seed: int) -> None:
    loop = asyncio.get_running_loop()
    async with AmiSimulator(
        port=0, secret=SECRET, rate=rate, duration=duration, seed=seed
    ) as simulator:
        conn.send(simulator.port)
        await simulator.wait_for_sessions(1, 60)
        await asyncio.sleep(duration + 0.2)
        report = SourceReport(
            simulator.events_sent, simulator.max_write_stall, simulator.slow_disconnects
        )
        conn.send(report)
        await loop.run_in_executor(None, conn.recv)  # serve until told to stop


class AmiSource:
    """``async with AmiSource(rate, duration) as source:`` a simulator in a child process."""

    def __init__(self, rate: float, duration: float, seed: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve_ami, args=(child, rate, duration, seed), daemon=True
        )
        self.port = 0

    async def _receive(self) -> object:
        return await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)

    async def __aenter__(self) -> AmiSource:
        self._process.start()
        port = await self._receive()
        assert isinstance(port, int)
        self.port = port
        return self

    async def report(self) -> SourceReport:
        """Wait for the traffic to end; what the simulator saw."""
        report = await self._receive()
        assert isinstance(report, SourceReport)
        return report

    async def __aexit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        await asyncio.get_running_loop().run_in_executor(None, self._process.join, 5)
        if self._process.is_alive():
            self._process.kill()


# -- the bridge side -----------------------------------------------------------------------


@dataclass
class Probe:
    """What the bridge did, recorded from inside its pipelines.

    ``latencies``: for each confirmed message, confirm handled - ``received_at`` (the
    ``time.time()`` the bridge stamped when the socket read returned).  ``read_gaps``: the
    time between two consecutive AMI socket reads, which is how long the reader waited on
    the rest of the event loop while data was waiting.
    """

    latencies: list[float] = field(default_factory=list)
    read_gaps: list[float] = field(default_factory=list)
    first_read: float = float("inf")
    last_confirm: float = 0.0

    def watch(self, pipeline: ServerPipeline) -> None:
        settle, journal = pipeline.on_results, pipeline.on_items
        last_read: float | None = None

        def on_results(results: list[PublishResult[Token]]) -> None:
            settle(results)
            now = time.time()
            for result in results:
                if result.outcome is Outcome.CONFIRMED:
                    self.latencies.append(now - result.token.received_at)
                    self.first_read = min(self.first_read, result.token.received_at)
                    self.last_confirm = now

        def on_items(epoch: int, items: list[StreamItem]) -> None:
            nonlocal last_read
            now = time.perf_counter()
            if last_read is not None:
                self.read_gaps.append(now - last_read)
            last_read = now
            journal(epoch, items)

        # Wrapping the bound methods of this one instance: the session and BridgeApp call
        # them through the instance.
        pipeline.on_results = on_results  # type: ignore[method-assign]
        pipeline.on_items = on_items  # type: ignore[method-assign]

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rate(self) -> float:
        """Confirmed messages per second, from the first AMI read to the last confirm."""
        return len(self.latencies) / (self.last_confirm - self.first_read)

    @property
    def max_read_gap_ms(self) -> float:
        return 1000 * max(self.read_gaps, default=0.0)


@dataclass
class Phase:
    probe: Probe
    source: SourceReport
    peak_depth: int
    #: Seconds from the end of the AMI traffic until the journal was empty.
    drain_s: float


async def bridge_phase(
    url: str,
    rate: float,
    duration: float,
    seed: int,
    *,
    nodes: list[str] | None = None,
    quorum: bool = False,
    stream: bool = False,
) -> Phase:
    """Run the bridge against ``rate`` events/s for ``duration`` s until all is confirmed.

    ``nodes`` are the broker nodes the bridge is given (``url`` alone by default);
    ``quorum`` makes the bound queue and the unrouted queue quorum queues; ``stream`` lets
    the bridge declare and fill its history stream as well.
    """
    exchange = f"bench.e2e.{uuid.uuid4().hex[:12]}"
    queue_type = "quorum" if quorum else "classic"
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, exchange, unrouted_queue_type=queue_type)
        queue = await channel.declare_queue(
            f"{exchange}.queue", durable=True, arguments={"x-queue-type": queue_type}
        )
        await queue.bind(exchange, "#")
        try:
            with tempfile.TemporaryDirectory(prefix="ami-bridge-bench-") as journal:
                return await _run_bridge(
                    nodes or [url],
                    exchange,
                    Path(journal),
                    rate,
                    duration,
                    seed,
                    queue_type,
                    stream,
                )
        finally:
            await delete_topology(channel, exchange)
    finally:
        await connection.close()


async def delete_topology(channel: AbstractChannel, exchange: str) -> None:
    """Delete the queue, the unrouted queue and both exchanges of a bench run."""
    for name in (f"{exchange}.queue", unrouted_name(exchange), stream_name(exchange)):
        await channel.queue_delete(name)
    for name in (exchange, unrouted_name(exchange)):
        await channel.exchange_delete(name)


async def _run_bridge(
    nodes: list[str],
    exchange: str,
    journal: Path,
    rate: float,
    duration: float,
    seed: int,
    queue_type: str = "classic",
    stream: bool = False,
) -> Phase:
    async with AmiSource(rate, duration, seed) as source:
        settings = load_settings(
            {
                "ami": [f"{SERVER}=ami://bridge@127.0.0.1:{source.port}"],
                "ami_secret": SECRET,
                "amqp": nodes,
                "unrouted_queue_type": queue_type,
                "exchange": exchange,
                "journal_dir": journal,
                "metrics_port": 0,
                "publish_window": WINDOW,
                # The event path alone: no resync lists, no action requests.
                "resync_actions": [],
                "rpc_exchange": "",
                "stream": stream,
            }
        )
        app = BridgeApp(settings)
        probe = Probe()
        for pipeline in app.pipelines:
            probe.watch(pipeline)
        bridge = asyncio.create_task(app.run())
        peak = 0

        def sample() -> int:
            nonlocal peak
            depth = sum(p.journal.depth for p in app.pipelines)
            peak = max(peak, depth)
            return depth

        reported = asyncio.create_task(source.report())
        while not reported.done():
            sample()
            await asyncio.wait({reported, bridge}, timeout=0.02)
            if bridge.done():
                raise RuntimeError(f"the bridge stopped early: {bridge.result()!r}")
        report = reported.result()
        traffic_end = time.monotonic()
        expected = report.events_sent + 2  # + FullyBooted + the connected status
        deadline = traffic_end + 120
        while len(probe.latencies) < expected or sample():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(probe.latencies)} of {expected} confirmed")
            await asyncio.sleep(0.01)
        drain_s = time.monotonic() - traffic_end
        app.request_stop()
        await bridge
    return Phase(probe, report, peak, drain_s)


# -- the reference body for the ceiling ----------------------------------------------------


def median_body(count: int = 2000) -> bytes:
    """The bridge's body of median size over ``count`` simulated events."""
    traffic = TrafficGenerator(1)
    parser = AmiParser(expect_banner=False)
    wire = b"".join(serialize(traffic.next_event()) for _ in range(count))
    renderer = Renderer(Router(SERVER))
    now = time.time()
    bodies = [
        renderer.render(decode(encode_event(1, seq, now, item))).message.body
        for seq, item in enumerate(parser.feed(wire), 1)
        if isinstance(item, Event)
    ]
    return sorted(bodies, key=len)[len(bodies) // 2]


# -- main ----------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def run(args: argparse.Namespace) -> dict[str, float]:
    throughput = await bridge_phase(args.url, args.source_rate, args.events / args.source_rate, 1)
    t = throughput.probe
    print(
        f"throughput: {t.rate:,.0f} events/s end to end ({len(t.latencies):,} confirmed, "
        f"journal peak {throughput.peak_depth:,}); behind that backlog p50 "
        f"{t.percentile_ms(0.5):,.0f} ms, p99 {t.percentile_ms(0.99):,.0f} ms",
        flush=True,
    )
    if throughput.peak_depth < WINDOW:
        print("  warning: the simulator, not the bridge, set the pace", flush=True)
    streamed = await bridge_phase(
        args.url, args.source_rate, args.events / args.source_rate, 1, stream=True
    )
    s = streamed.probe
    print(
        f"throughput with the history stream bound: {s.rate:,.0f} events/s end to end "
        f"({s.rate / t.rate:.2f}x the run without it)",
        flush=True,
    )

    latency = await bridge_phase(args.url, 1000, args.latency_seconds, 2)
    steady = latency.probe
    print(
        f"steady 1,000 events/s: p50 {steady.percentile_ms(0.5):.2f} ms, "
        f"p99 {steady.percentile_ms(0.99):.2f} ms, max {1000 * max(steady.latencies):.1f} ms "
        f"over {len(steady.latencies):,} events (target p99 <= 20 ms)",
        flush=True,
    )

    burst = await bridge_phase(args.url, args.burst_rate, args.burst_seconds, 3)
    sent = burst.source.events_sent
    print(
        f"burst {args.burst_rate:,.0f} events/s for {args.burst_seconds:g} s: {sent:,} sent; "
        f"simulator's longest write stall {1000 * burst.source.max_write_stall:.1f} ms "
        f"({burst.source.slow_disconnects} over 100 ms); bridge's longest gap between AMI "
        f"reads {burst.probe.max_read_gap_ms:.1f} ms; journal peak {burst.peak_depth:,}, "
        f"empty {burst.drain_s:.1f} s after the burst",
        flush=True,
    )
    rss = _peak_rss_mb()
    print(f"peak RSS of the bridge process: {rss:.0f} MB", flush=True)

    body = median_body()
    ceiling = await plain_aio_pika(args.url, args.ceiling_events, WINDOW, body)
    publisher = await bridge_publisher(args.url, args.ceiling_events, WINDOW, body)
    print(
        f"ceiling, plain aio-pika ({len(body)}-byte body, {WINDOW} in flight): "
        f"{ceiling.rate:,.0f} msgs/s; the bridge's publisher alone: {publisher.rate:,.0f} msgs/s",
        flush=True,
    )
    return {
        "events_per_s": round(t.rate),
        "events_per_s_with_stream": round(s.rate),
        "ceiling_events_per_s": round(ceiling.rate),
        "p50_ms": round(steady.percentile_ms(0.5), 2),
        "p99_ms": round(steady.percentile_ms(0.99), 2),
        "rss_mb": round(rss, 1),
        "burst_max_write_stall_ms": round(1000 * burst.source.max_write_stall, 1),
        "burst_drain_s": round(burst.drain_s, 2),
        "burst_slow_disconnects": burst.source.slow_disconnects,
        "burst_max_read_gap_ms": round(burst.probe.max_read_gap_ms, 1),
        "burst_journal_peak": burst.peak_depth,
        "publisher_only_events_per_s": round(publisher.rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--events", type=int, default=40_000, help="throughput run size")
    parser.add_argument(
        "--source-rate", type=float, default=40_000, help="simulator rate in the throughput run"
    )
    parser.add_argument("--ceiling-events", type=int, default=20_000, help="ceiling run size")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--burst-rate", type=float, default=30_000)
    parser.add_argument("--burst-seconds", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_gc()  # as ``ami-bridge run`` does
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        figures = runner.run(run(args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
