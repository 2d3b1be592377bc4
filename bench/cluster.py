"""The bridge on a 3-node RabbitMQ cluster: throughput into a quorum queue, and failover.

Approach
--------
Three private RabbitMQ nodes are started on loopback and joined into one cluster (the
test suite's :class:`tests.support.rabbit_nodes.RabbitCluster`: own node names, ports in
5700-5799, data folders in a temporary directory, torn down at the end).

* **throughput**, in the same run: :func:`e2e.bridge_phase` (simulated AMI far faster
  than the bridge, everything confirmed) against the single node at ``--url`` with a
  classic queue bound, the same node with a quorum queue, and the cluster with a quorum
  queue (replicated on all three nodes; a confirm means a majority has the message).
* **failover**, ``--trials`` times each, at ``--rate`` events/s into a quorum queue on
  the cluster: the seconds from the fault until the first confirm on another node, for
  a *reset cut* (a proxy in front of the first node aborts every connection), a *node
  kill* (``kill -9`` of the node the bridge is on; it is restarted between trials) and a
  *hung broker* (the proxy stops forwarding; found by the heartbeat).

The last line printed is one JSON object.

    python bench/cluster.py [--url amqp://guest:guest@127.0.0.1:5672/] [--trials 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
from e2e import Phase, bridge_phase, delete_topology

from bridge.ami.simulator import AmiSimulator
from bridge.cli.run import new_event_loop, quiet_gc
from bridge.publish.topology import declare_topology
from bridge.service.app import BridgeApp
from bridge.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.rabbit_nodes import RabbitCluster
from tests.support.tcp_proxy import TcpProxy

SECRET = "bench-secret"
SERVER = "pbx1"


def _line(name: str, phase: Phase) -> str:
    p = phase.probe
    return (
        f"{name}: {p.rate:,.0f} events/s end to end ({len(p.latencies):,} confirmed, "
        f"journal peak {phase.peak_depth:,})"
    )


async def throughput(args: argparse.Namespace, cluster: RabbitCluster) -> dict[str, float]:
    duration = args.events / args.source_rate
    single = await bridge_phase(args.url, args.source_rate, duration, 1)
    print(_line("single node, classic queue", single), flush=True)
    single_quorum = await bridge_phase(args.url, args.source_rate, duration, 1, quorum=True)
    print(_line("single node, quorum queue", single_quorum), flush=True)
    clustered = await bridge_phase(
        cluster.urls[0], args.source_rate, duration, 1, nodes=cluster.urls, quorum=True
    )
    print(_line("3-node cluster, quorum queue", clustered), flush=True)
    return {
        "single_classic_events_per_s": round(single.probe.rate),
        "single_quorum_events_per_s": round(single_quorum.probe.rate),
        "cluster_quorum_events_per_s": round(clustered.probe.rate),
    }


async def _quorum_topology(url: str, exchange: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, exchange, unrouted_queue_type="quorum")
        queue = await channel.declare_queue(
            f"{exchange}.queue", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, "#")
    finally:
        await connection.close()


async def _delete_topology(urls: list[str], exchange: str) -> None:
    for url in urls:
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(url, timeout=5)
            try:
                await delete_topology(await connection.channel(), exchange)
            finally:
                await connection.close()
            return


async def _until(predicate: Callable[[], bool], within: float) -> None:
    """Poll ``predicate`` every 10 ms (counters of the bridge have no event to wait on)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def failover_trial(
    cluster: RabbitCluster,
    proxy: TcpProxy,
    kind: str,
    rate: float,
    journal: Path,
) -> float:
    """Seconds from the fault to the first confirm on another node."""
    exchange = f"bench.cluster.{uuid.uuid4().hex[:12]}"
    first = cluster.nodes[0]
    via_proxy = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    nodes = cluster.urls if kind == "kill" else [via_proxy, *cluster.urls[1:]]
    await _quorum_topology(cluster.urls[1], exchange)
    loop = asyncio.get_running_loop()
    try:
        async with AmiSimulator(port=0, secret=SECRET, rate=rate) as pbx:
            settings = load_settings(
                {
                    "ami": [f"{SERVER}=ami://bridge@127.0.0.1:{pbx.port}"],
                    "ami_secret": SECRET,
                    "amqp": nodes,
                    "unrouted_queue_type": "quorum",
                    "exchange": exchange,
                    "journal_dir": journal / exchange,
                    "metrics_port": 0,
                    "resync_actions": [],
                    "rpc_exchange": "",
                }
            )
            app = BridgeApp(settings)
            bridge = asyncio.create_task(app.run())
            publisher = app.publisher
            try:
                await _until(lambda: publisher.confirmed > rate, 30)
                before_url, before = publisher.url, publisher.confirmed
                victim = cluster.node_at(before_url) if kind == "kill" else first
                started = loop.time()
                if kind == "kill":
                    await asyncio.to_thread(victim.kill)
                elif kind == "cut":
                    await proxy.cut()
                else:
                    proxy.stall()
                await _until(
                    lambda: publisher.url != before_url and publisher.confirmed > before, 60
                )
                took = loop.time() - started
            finally:
                app.request_stop()
                await asyncio.wait_for(bridge, 30)
                if kind == "kill":
                    await asyncio.to_thread(victim.start)
                    await asyncio.to_thread(cluster.wait_formed)
                elif kind == "cut":
                    proxy.heal()
                else:
                    await proxy.cut()  # drop the stalled connections, then forward again
                    proxy.heal()
    finally:
        await _delete_topology(cluster.urls, exchange)
    return took


async def failover(args: argparse.Namespace, cluster: RabbitCluster) -> dict[str, object]:
    figures: dict[str, object] = {}
    first = cluster.nodes[0]
    with tempfile.TemporaryDirectory(prefix="ami-bridge-bench-") as journal:
        async with TcpProxy("127.0.0.1", first.port) as proxy:
            kinds = (("cut", "reset cut"), ("kill", "node kill"), ("hung", "hung broker"))
            for kind, label in kinds:
                times: list[float] = []
                for _ in range(args.trials):
                    trial: Awaitable[float] = failover_trial(
                        cluster, proxy, kind, args.rate, Path(journal)
                    )
                    times.append(await trial)
                shown = ", ".join(f"{t:.2f}" for t in times)
                print(
                    f"failover after a {label}: {shown} s "
                    f"(median {statistics.median(times):.2f} s, max {max(times):.2f} s)",
                    flush=True,
                )
                figures[f"failover_{kind}_s"] = [round(t, 2) for t in times]
    return figures


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ami-bridge-cluster-") as root:
        cluster = RabbitCluster(Path(root))
        with cluster.running():
            figures: dict[str, object] = {}
            figures.update(await throughput(args, cluster))
            if args.trials:
                figures.update(await failover(args, cluster))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--events", type=int, default=30_000, help="throughput run size")
    parser.add_argument("--source-rate", type=float, default=40_000)
    parser.add_argument("--trials", type=int, default=5, help="failover trials of each kind")
    parser.add_argument("--rate", type=float, default=500, help="events/s during failover")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    quiet_gc()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        figures = runner.run(run(args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
