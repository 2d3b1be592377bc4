"""How fast ``/healthz`` and ``/metrics`` answer during a 30,000 events/s burst.

Approach
--------
The bridge (:class:`~bridge.service.app.BridgeApp`, uvloop, the collector tuned as
``ami-bridge run`` tunes it) reads the project's simulator in a child process
(:class:`e2e.AmiSource`) at ``--rate`` events/s for ``--seconds`` and publishes with
confirms to a fresh exchange and queue (deleted afterwards).  A child process (as a
kubelet or Prometheus is another process: a thread here would compete for the bridge's
interpreter lock, which no real prober does) asks ``/healthz`` and ``/metrics`` in turn
every 20 ms over a fresh TCP connection, from the start of the burst until the journal
is empty, and times each answer.  It prints p50, p99 and the longest answer of each, how
many took over 100 ms, and the read path's own gauges at the end: the longest read gap
and the receive queue.

    python bench/probes.py [--url amqp://guest:guest@127.0.0.1:5672/] [--rate 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import socket
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import aio_pika
from e2e import SECRET, SERVER, AmiSource, Traffic, delete_topology
from prometheus_client.parser import text_string_to_metric_families

from bridge.cli.run import new_event_loop, quiet_gc
from bridge.publish.topology import declare_topology
from bridge.service.app import BridgeApp
from bridge.settings import load_settings

_INTERVAL = 0.02


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe(port: int, stop: EventType, results: Connection) -> None:
    """In the child process: probe until ``stop``, then send the times back."""
    times: dict[str, list[float]] = {"/healthz": [], "/metrics": []}
    paths = ["/healthz", "/metrics"]
    n = 0
    while not stop.is_set():
        path = paths[n % 2]
        n += 1
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            times[path].append(time.perf_counter() - started)
        except OSError:
            times[path].append(float("inf"))
        time.sleep(max(0.0, _INTERVAL - (time.perf_counter() - started)))
    results.send(times)


def _gauge(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return float("nan")


async def run(url: str, rate: float, seconds: float) -> None:
    exchange = f"bench.probes.{uuid.uuid4().hex[:12]}"
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await declare_topology(channel, exchange)
    queue = await channel.declare_queue(f"{exchange}.queue", durable=True)
    await queue.bind(exchange, "#")
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    stop, (received, sent) = context.Event(), context.Pipe(duplex=False)
    prober = context.Process(target=_probe, args=(port, stop, sent), daemon=True)
    try:
        with tempfile.TemporaryDirectory(prefix="ami-bridge-probes-") as journal:
            async with AmiSource(Traffic(rate, seconds, pregenerated=True)) as source:
                settings = load_settings(
                    {
                        "ami": [f"{SERVER}=ami://bridge@127.0.0.1:{source.port}"],
                        "ami_secret": SECRET,
                        "amqp": url,
                        "exchange": exchange,
                        "journal_dir": Path(journal),
                        "metrics_host": "127.0.0.1",
                        "metrics_port": port,
                        "resync_actions": [],
                        "rpc_exchange": "",
                        "stream": False,
                    }
                )
                app = BridgeApp(settings)
                bridge = asyncio.create_task(app.run())
                await asyncio.sleep(0.5)  # the probe server is up
                prober.start()
                sent.close()  # the child's end: a child that dies ends recv() below
                report = await source.report()
                while app.pipelines[0].journal.depth:  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.05)
                stop.set()
                times: dict[str, list[float]] = await asyncio.to_thread(received.recv)
                await asyncio.to_thread(prober.join)
                text = app.metrics.render().decode()
                app.request_stop()
                await bridge
    finally:
        await delete_topology(channel, exchange)
        await connection.close()
    print(f"{report.events_sent:,} events at {rate:,.0f}/s; probes until the journal was empty:")
    for path, answers in times.items():
        ordered = sorted(answers)
        p50 = 1000 * ordered[len(ordered) // 2]
        p99 = 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        slow = sum(1 for t in ordered if t > 0.1)
        print(
            f"  {path:9} {len(ordered)} answers: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {1000 * ordered[-1]:.1f} ms, {slow} over 100 ms"
        )
    gap = _gauge(text, "ami_bridge_ami_read_gap_max_seconds")
    dropped = report.dropped_sessions
    print(f"  longest AMI read gap {1000 * gap:.1f} ms; sessions the simulator dropped {dropped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--rate", type=float, default=30_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="sys.setswitchinterval (s)"
    )
    args = parser.parse_args()
    quiet_gc()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    print(f"switch interval {1000 * sys.getswitchinterval():g} ms")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run(args.url, args.rate, args.seconds))


if __name__ == "__main__":
    main()
