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
(:func:`bridge.cli.run.quiet_gc`).  Over each bridge run, from the simulator's start to
the last confirm, the CPU time of the bridge, of RabbitMQ (when it runs on this machine)
and of the simulator is taken (:mod:`cpu_time`): the throughput line gives it per
event, and how many of the host's cores were busy.

Phases (about 55 s in all by default on a 2-core machine):

* **throughput**: the simulator far faster than the bridge can publish; events/s from the
  first AMI read to the last confirm (the journal holds the backlog meanwhile); run twice,
  without the history stream and then with ``<exchange>.stream`` bound (the product's
  default), so the stream's cost is measured against a baseline of the same run;
* **ceiling**: :func:`amqp_ceiling.plain_aio_pika`, a plain aio-pika loop publishing the
  bridge's message of median size (its body and its headers: RabbitMQ decodes every
  header table) with confirms, persistence and the bridge's publish window in flight;
  the same loop with 3 headers, as before the CloudEvents headers; and the bridge's own
  publisher alone (:func:`amqp_ceiling.bridge_publisher`), no parsing;
* **latency**: a steady 1,000 events/s; p50 and p99 from AMI read to confirm;
* **burst**: 30,000 events/s for 5 s (every event generated before the first login, so
  the simulator plays them on schedule: live generation tops out near 10,000 events/s),
  against the simulator's Asterisk-like 100 ms write deadline; once on an idle host,
  then ``--contended-runs`` times with two busy-looping processes at normal priority
  for the length of the burst; with ``--replay FILE`` also the capture at each of
  ``--replay-speeds``, contended.  Each run prints the sessions the simulator dropped,
  the longest gap between socket reads (the reader's
  ``ami_bridge_ami_read_gap_max_seconds`` gauge where the bridge has one, else the gaps
  between ``on_items`` calls), the largest kernel receive queue on the bridge's AMI
  socket (``/proc/net/tcp`` by the simulator's port, sampled every 2 ms by a thread),
  the journal's peak depth and how long the journal takes to drain; then a summary
  line over the contended runs.  ``--burst-only`` runs this phase alone.

Peak RSS is this process's (the bridge's) high-water mark after the bridge phases, before
the ceiling runs.  The last line printed is one JSON object.

    python bench/e2e.py [--url amqp://guest:guest@127.0.0.1:5672/] [--events 40000]
        [--contended-runs 3] [--replay tests/fixtures/captures/burst-450.ami.gz]
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
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel
from amqp_ceiling import SMALL_HEADERS, Load, bridge_publisher, plain_aio_pika
from cpu_time import CpuClock, broker_pid

from bridge.ami.capture import CapturedEvent
from bridge.ami.client import StreamItem
from bridge.ami.protocol import AmiParser, Event, serialize
from bridge.ami.simulator import AmiSimulator
from bridge.ami.simulator_producer import pregenerate
from bridge.ami.traffic import TrafficGenerator
from bridge.cli.run import new_event_loop, quiet_gc
from bridge.ha.event_id import EventIds
from bridge.publish.amqp import Outcome, PublishResult
from bridge.publish.message import OutgoingMessage
from bridge.publish.records import decode, encode_event
from bridge.publish.routing import Router
from bridge.publish.topology import declare_topology, stream_name, unrouted_name
from bridge.service.app import BridgeApp
from bridge.service.render import Renderer
from bridge.service.server import ServerPipeline, Token
from bridge.settings import Settings, load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.cpu_hog import cpu_hogs

SECRET = "bench-secret"
SERVER = "pbx1"
#: The bridge's default publish window, given to the plain loop as well.
WINDOW: int = Settings.model_fields["publish_window"].default
#: Busy-looping processes of a contended burst, at normal priority.
HOGS = 2


# -- the AMI side, in a child process ------------------------------------------------------


@dataclass(frozen=True)
class SourceReport:
    events_sent: int
    max_write_stall: float
    dropped_sessions: int
    #: The longest an event was queued after its due time (the simulator's own lag).
    max_production_lag: float


@dataclass(frozen=True)
class Traffic:
    """What the simulator plays: ``rate`` events/s for ``duration`` s, or a capture."""

    rate: float
    duration: float
    seed: int = 1
    #: Generate every event before the first login, so a burst beyond what live
    #: generation sustains (about 10,000 events/s) is still played on schedule.
    pregenerated: bool = False
    replay: Path | None = None
    speed: float = 1.0


def _serve_ami(conn: Connection, traffic: Traffic) -> None:
    asyncio.run(_serve_ami_async(conn, traffic))


async def _serve_ami_async(conn: Connection, traffic: Traffic) -> None:
    loop = asyncio.get_running_loop()
    replay: Path | list[CapturedEvent] | None = traffic.replay
    if traffic.pregenerated:
        replay = pregenerate(TrafficGenerator(traffic.seed), traffic.rate, traffic.duration)
    async with AmiSimulator(
        port=0,
        secret=SECRET,
        rate=traffic.rate,
        duration=traffic.duration,
        seed=traffic.seed,
        replay=replay,
        speed=traffic.speed,
    ) as simulator:
        conn.send(simulator.port)
        await simulator.wait_for_sessions(1, 60)
        while not simulator.traffic_done:  # noqa: ASYNC110 (a thread's flag, no event)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        report = SourceReport(
            simulator.events_sent,
            simulator.max_write_stall,
            simulator.dropped_sessions,
            simulator.max_production_lag,
        )
        conn.send(report)
        await loop.run_in_executor(None, conn.recv)  # serve until told to stop


class AmiSource:
    """``async with AmiSource(traffic) as source:`` a simulator in a child process."""

    def __init__(self, traffic: Traffic) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_ami, args=(child, traffic), daemon=True)
        self.port = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid

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
    #: ``ami_bridge_ami_read_gap_max_seconds`` where the bridge exposes it, else None.
    gauge_read_gap: float | None = None

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

        last_epoch: int | None = None

        def on_items(epoch: int, items: list[StreamItem]) -> None:
            nonlocal last_read, last_epoch
            now = time.perf_counter()
            # Within one connection: the time a reconnection takes is no read gap.
            if last_read is not None and epoch == last_epoch:
                self.read_gaps.append(now - last_read)
            last_read, last_epoch = now, epoch
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
        """The reader's own gauge where it has one, else the gaps between ``on_items``."""
        if self.gauge_read_gap is not None:
            return 1000 * self.gauge_read_gap
        return 1000 * max(self.read_gaps, default=0.0)

    @property
    def read_gap_source(self) -> str:
        return "reader gauge" if self.gauge_read_gap is not None else "between on_items"


@dataclass
class Phase:
    probe: Probe
    source: SourceReport
    peak_depth: int
    #: Seconds from the end of the AMI traffic until the journal was empty.
    drain_s: float
    #: The largest receive queue seen on the bridge's AMI socket, in bytes.
    peak_rx_bytes: int = 0
    #: CPU seconds of the bridge, RabbitMQ and the simulator from the simulator's start to
    #: the last confirm (None where a process could not be read), and that span's length.
    cpu: dict[str, float | None] = field(default_factory=dict)
    cpu_wall: float = 0.0

    def cpu_line(self) -> str:
        """CPU time an event of each process, and how many cores they kept busy."""
        events = len(self.probe.latencies)
        parts = [
            f"{name} {'n/a' if spent is None else f'{spent * 1e6 / events:,.0f} us'}"
            for name, spent in self.cpu.items()
        ]
        busy = sum(spent or 0.0 for spent in self.cpu.values()) / self.cpu_wall
        return (
            f"CPU an event: {', '.join(parts)}; {busy:.2f} cores busy of "
            f"{os.cpu_count()} over {self.cpu_wall:.1f} s"
        )


async def bridge_phase(
    url: str,
    rate: float,
    duration: float,
    seed: int,
    *,
    nodes: list[str] | None = None,
    quorum: bool = False,
    stream: bool = False,
    traffic: Traffic | None = None,
    hogs: int = 0,
) -> Phase:
    """Run the bridge against ``rate`` events/s for ``duration`` s until all is confirmed.

    ``nodes`` are the broker nodes the bridge is given (``url`` alone by default);
    ``quorum`` makes the bound queue and the unrouted queue quorum queues; ``stream`` lets
    the bridge declare and fill its history stream as well; ``traffic`` replaces
    ``rate``, ``duration`` and ``seed`` (a pregenerated burst, a capture); ``hogs``
    busy-looping processes run from the first login to the end of the traffic.
    """
    traffic = traffic or Traffic(rate, duration, seed)
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
                    nodes or [url], exchange, Path(journal), traffic, queue_type, stream, hogs
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
    traffic: Traffic,
    queue_type: str = "classic",
    stream: bool = False,
    hogs: int = 0,
) -> Phase:
    async with AmiSource(traffic) as source:
        clock = CpuClock(bridge="self", RabbitMQ=broker_pid(nodes[0]), simulator=source.pid)
        clock.start()
        clock_started = time.monotonic()
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
        receive_queue = ReceiveQueueSampler(source.port)
        with receive_queue, cpu_hogs(hogs):
            while not reported.done():
                sample()
                await asyncio.wait({reported, bridge}, timeout=0.02)
                if bridge.done():
                    raise RuntimeError(f"the bridge stopped early: {bridge.result()!r}")
        report = reported.result()
        probe.gauge_read_gap = read_gap_gauge(app)
        traffic_end = time.monotonic()
        expected = report.events_sent + 2  # + FullyBooted + the connected status
        deadline = traffic_end + 120
        while len(probe.latencies) < expected or sample():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(probe.latencies)} of {expected} confirmed")
            if report.dropped_sessions and not sample():
                # A dropped session's queued events are gone: all that can come is what
                # the bridge read, and the statuses of its reconnection.
                before = len(probe.latencies)
                await asyncio.sleep(1.0)
                if len(probe.latencies) == before and not sample():
                    break
            await asyncio.sleep(0.01)
        drain_s = time.monotonic() - traffic_end
        clock.stop()
        cpu_wall = time.monotonic() - clock_started
        app.request_stop()
        await bridge
    return Phase(probe, report, peak, drain_s, receive_queue.peak, clock.spent, cpu_wall)


READ_GAP_GAUGE = "ami_bridge_ami_read_gap_max_seconds"


def read_gap_gauge(app: BridgeApp) -> float | None:
    """The largest ``ami_bridge_ami_read_gap_max_seconds`` over servers, if it exists."""
    values = [
        sample.value
        for family in app.metrics.registry.collect()
        for sample in family.samples
        if sample.name == READ_GAP_GAUGE
    ]
    return max(values) if values else None


def receive_queue(port: int) -> int | None:
    """The kernel receive queue (bytes) of the connection whose peer is ``port``.

    Read from ``/proc/net/tcp``: the bridge's AMI socket is the one whose remote port is
    the simulator's, whatever the bridge does with it.
    """
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[2].endswith(wanted) and fields[3] == "01":  # ESTABLISHED
                    return int(fields[4].partition(":")[2], 16)
    return None


class ReceiveQueueSampler:
    """``with ReceiveQueueSampler(port):`` samples :func:`receive_queue` every 2 ms."""

    def __init__(self, port: int, every: float = 0.002) -> None:
        self._port = port
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak = max(self.peak, receive_queue(self._port) or 0)

    def __enter__(self) -> ReceiveQueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the reference message for the ceiling -------------------------------------------------


def median_message(count: int = 2000) -> OutgoingMessage:
    """The bridge's message whose body is of median size over ``count`` simulated events
    (journalled as the pipeline does, with the event's PBX-wide ``event_id``)."""
    traffic = TrafficGenerator(1)
    parser = AmiParser(expect_banner=False)
    wire = b"".join(serialize(traffic.next_event()) for _ in range(count))
    renderer = Renderer(Router(SERVER))
    ids = EventIds()
    now = time.time()
    messages = [
        renderer.render(
            decode(encode_event(1, seq, now, item, event_id=ids.next(item.raw)))
        ).message
        for seq, item in enumerate(parser.feed(wire), 1)
        if isinstance(item, Event)
    ]
    return sorted(messages, key=lambda message: len(message.body))[len(messages) // 2]


# -- main ----------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def burst_line(name: str, phase: Phase) -> str:
    source = phase.source
    return (
        f"burst {name}: {source.events_sent:,} sent; sessions dropped "
        f"{source.dropped_sessions}; longest read gap {phase.probe.max_read_gap_ms:.1f} ms "
        f"({phase.probe.read_gap_source}); largest receive queue "
        f"{phase.peak_rx_bytes / 1e6:.2f} MB; journal peak {phase.peak_depth:,}, empty "
        f"{phase.drain_s:.1f} s after; longest write stall "
        f"{1000 * source.max_write_stall:.1f} ms; simulator lag "
        f"{1000 * source.max_production_lag:.1f} ms"
    )


async def burst_runs(args: argparse.Namespace) -> list[tuple[str, Phase]]:
    """The burst idle, then contended ``--contended-runs`` times, then each replay speed.

    Each line says what the simulator (Asterisk's 100 ms write deadline) did to the
    bridge's session; the last is a summary over the runs.
    """
    generated = Traffic(args.burst_rate, args.burst_seconds, 3, pregenerated=True)
    label = f"{args.burst_rate:,.0f} events/s for {args.burst_seconds:g} s"
    plan: list[tuple[str, Traffic, int]] = [(f"{label}, idle host", generated, 0)]
    plan += [
        (f"{label}, contended run {n}", generated, HOGS) for n in range(1, args.contended_runs + 1)
    ]
    if args.replay is not None:
        for speed in args.replay_speeds:
            replay = Traffic(0, 0, 3, replay=args.replay, speed=speed)
            plan.append((f"replay of {args.replay.name} at {speed:g}x, contended", replay, HOGS))
    runs = []
    for name, traffic, hogs in plan:
        phase = await bridge_phase(args.url, 0, 0, 0, traffic=traffic, hogs=hogs)
        lost = phase.source.events_sent - (len(phase.probe.latencies) - 2)
        print(f"{burst_line(name, phase)}; {max(0, lost):,} events lost", flush=True)
        runs.append((name, phase))
    contended = [p for name, p in runs if hogs_in(name)]
    if contended:
        dropped = sum(1 for p in contended if p.source.dropped_sessions)
        gap = max(p.probe.max_read_gap_ms for p in contended)
        rx = max(p.peak_rx_bytes for p in contended)
        peak = max(p.peak_depth for p in contended)
        print(
            f"burst summary: {dropped} of {len(contended)} contended runs dropped; longest "
            f"read gap {gap:.1f} ms; largest receive queue {rx / 1e6:.2f} MB; journal peak "
            f"{peak:,}",
            flush=True,
        )
    return runs


def hogs_in(name: str) -> bool:
    return "contended" in name


async def run(args: argparse.Namespace) -> dict[str, float | None]:
    if args.burst_only:
        bursts = await burst_runs(args)
        return {"burst_runs": len(bursts)}
    throughput = await bridge_phase(args.url, args.source_rate, args.events / args.source_rate, 1)
    t = throughput.probe
    print(
        f"throughput: {t.rate:,.0f} events/s end to end ({len(t.latencies):,} confirmed, "
        f"journal peak {throughput.peak_depth:,}); behind that backlog p50 "
        f"{t.percentile_ms(0.5):,.0f} ms, p99 {t.percentile_ms(0.99):,.0f} ms",
        flush=True,
    )
    print(f"  {throughput.cpu_line()}", flush=True)
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

    bursts = await burst_runs(args)
    burst = bursts[0][1]
    rss = _peak_rss_mb()
    print(f"peak RSS of the bridge process: {rss:.0f} MB", flush=True)

    # The plain loop publishes what the bridge does (its median body and its headers,
    # CloudEvents included: RabbitMQ decodes every header table), and, as before the
    # CloudEvents headers, with 2 headers and a seq.
    message = median_message()
    body, headers = message.body, message.headers
    load = Load(args.ceiling_events, WINDOW, body, headers)
    ceiling = await plain_aio_pika(args.url, load)
    small = await plain_aio_pika(args.url, load._replace(headers=SMALL_HEADERS))
    publisher = await bridge_publisher(args.url, load)
    print(
        f"ceiling, plain aio-pika ({len(body)}-byte body, the bridge's {len(headers)} "
        f"headers, {WINDOW} in flight): {ceiling.rate:,.0f} msgs/s "
        f"({_us(ceiling.cpu_us)} of its CPU, RabbitMQ {_us(ceiling.broker_cpu_us)} a message); "
        f"with 3 headers {small.rate:,.0f} msgs/s; the bridge's publisher alone: "
        f"{publisher.rate:,.0f} msgs/s ({_us(publisher.cpu_us)} of its CPU, RabbitMQ "
        f"{_us(publisher.broker_cpu_us)} a message)",
        flush=True,
    )
    print(
        f"end to end {t.rate:,.0f} events/s = {t.rate / ceiling.rate:.2f}x the plain aio-pika "
        f"loop publishing the same messages in the same run ({t.rate / small.rate:.2f}x the "
        f"loop with 3 headers; target >= 2x); the bridge's publisher alone reaches "
        f"{publisher.rate / ceiling.rate:.2f}x",
        flush=True,
    )
    return {
        "events_per_s": round(t.rate),
        "events_per_s_with_stream": round(s.rate),
        "ceiling_events_per_s": round(ceiling.rate),
        "ceiling_3_headers_events_per_s": round(small.rate),
        "p50_ms": round(steady.percentile_ms(0.5), 2),
        "p99_ms": round(steady.percentile_ms(0.99), 2),
        "rss_mb": round(rss, 1),
        "burst_max_write_stall_ms": round(1000 * burst.source.max_write_stall, 1),
        "burst_drain_s": round(burst.drain_s, 2),
        "burst_dropped_sessions": burst.source.dropped_sessions,
        "burst_max_read_gap_ms": round(burst.probe.max_read_gap_ms, 1),
        "burst_journal_peak": burst.peak_depth,
        "burst_peak_rx_bytes": burst.peak_rx_bytes,
        "contended_dropped_sessions": sum(
            p.source.dropped_sessions for name, p in bursts if hogs_in(name)
        ),
        "publisher_only_events_per_s": round(publisher.rate),
        **{
            f"cpu_us_per_event_{name}": spent and round(spent * 1e6 / len(t.latencies))
            for name, spent in throughput.cpu.items()
        },
    }


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} us"


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
    parser.add_argument(
        "--contended-runs",
        type=int,
        default=1,
        help=f"burst runs with {HOGS} busy-looping processes on the host (default: 1)",
    )
    parser.add_argument(
        "--replay", type=Path, default=None, help="also burst this capture (.ami, .ami.gz)"
    )
    parser.add_argument(
        "--replay-speeds",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[1.0, 2.0],
        help="with --replay: comma-separated speeds (default: 1,2)",
    )
    parser.add_argument("--burst-only", action="store_true", help="run the burst phase alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_gc()  # as ``ami-bridge run`` does
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        figures = runner.run(run(args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
