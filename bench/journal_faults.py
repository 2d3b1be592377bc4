"""The bridge with its journal on real failing filesystems (needs root: mounts, loop devices).

Each scenario runs ``ami-bridge run`` as a child process against the project's AMI
simulator (in this process) at ``--rate`` events/s and the real broker, with the journal on
a filesystem of its own, and a consumer on a fresh exchange and queue:

* ``full``: an 8 MB tmpfs, nearly filled beforehand, so the journal's disk fills early;
  broker up;
* ``full-capped``: the same with ``--journal-max-bytes 2000000``, so 1 MiB segments;
* ``full-cut``: the same, with the broker link cut for 8 s while the disk is full, and a
  small memory buffer (``--memory-mb``), so that buffer overflows;
* ``start-full``: the bridge started on a tmpfs with no space left at all;
* ``read-only``: an ext4 loop mount (``errors=remount-ro``) that turns read-only mid-run
  through ext4's error trigger, as an ext4 abort does (``mount -o remount,ro`` is refused
  with "busy" while the journal has its segment open for writing);
* ``frozen``: an ext4 loop mount frozen with ``fsfreeze`` for 10 s;
* ``damaged``: a backlog journalled with the broker cut, the bridge stopped, 64 bytes of
  a segment flipped and its last record cut, then a restart with the broker up.

``/healthz`` is probed every 100 ms throughout (each probe times out after 1 s).  For
each scenario it prints events sent and arrived (distinct, AMI events only), the drops and
unwritten events the bridge counted, the ``journal`` statuses seen on the bus, the exit
status, and probe latencies.  The last line printed is one JSON object.

    sudo python bench/journal_faults.py [--url amqp://guest:guest@127.0.0.1:5672/]
        [--rate 1000] [--only full,frozen]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bridge.ami.simulator import AmiSimulator
from bridge.publish.topology import declare_topology
from tests.integration.harness import (
    SECRET,
    BridgeProcess,
    broker_address,
    free_port,
    run_args,
    scrape_metrics,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames, amqp_connection, bind_queue, delete_names
from tests.support.tcp_proxy import TcpProxy

SERVER = "pbx1"
MB = 1024 * 1024


@dataclass
class Outcome:
    name: str
    sent: int = 0
    arrived: int = 0
    dropped_counted: float = 0.0
    unwritten_counted: float = 0.0
    journal_statuses: list[str] = field(default_factory=list)
    overflow: list[str] = field(default_factory=list)
    exit_code: int | None = None
    probes: list[float | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        answered = [p for p in self.probes if p is not None]
        return {
            "scenario": self.name,
            "sent": self.sent,
            "arrived": self.arrived,
            "lost_uncounted": max(0, self.sent - self.arrived - int(self.dropped_counted)),
            "dropped_counted": int(self.dropped_counted),
            "unwritten_counted": int(self.unwritten_counted),
            "journal_statuses": self.journal_statuses,
            "overflow": self.overflow,
            "exit_code": self.exit_code,
            "probes": len(self.probes),
            "probe_timeouts": len(self.probes) - len(answered),
            "probe_p50_ms": round(statistics.median(answered) * 1000, 1) if answered else None,
            "probe_max_ms": round(max(answered) * 1000, 1) if answered else None,
            "notes": self.notes,
        }


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@contextlib.contextmanager
def tmpfs(size_mb: int, leave_free: int | None) -> Iterator[Path]:
    """A tmpfs of ``size_mb``; with ``leave_free``, filled until that many bytes are left."""
    mount = Path(tempfile.mkdtemp(prefix="journal-tmpfs-"))
    sh("mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount))
    try:
        if leave_free is not None:
            _fill(mount, leave_free)
        yield mount
    finally:
        sh("umount", "-l", str(mount))
        mount.rmdir()


def _fill(mount: Path, leave_free: int) -> None:
    with (mount / "filler").open("wb") as file:
        while True:
            free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
            if free <= leave_free:
                return
            try:
                file.write(b"\0" * min(64 * 1024, free - leave_free))
                file.flush()
            except OSError:
                return


@contextlib.contextmanager
def ext4(size_mb: int = 64) -> Iterator[Path]:
    """An ext4 loop mount that turns read-only on error."""
    work = Path(tempfile.mkdtemp(prefix="journal-ext4-"))
    image, mount = work / "fs.img", work / "mnt"
    mount.mkdir()
    with image.open("wb") as file:
        file.truncate(size_mb * MB)
    sh("mkfs.ext4", "-q", "-F", str(image))
    sh("mount", "-o", "loop,errors=remount-ro", str(image), str(mount))
    try:
        yield mount
    finally:
        subprocess.run(["fsfreeze", "-u", str(mount)], capture_output=True)
        sh("umount", "-l", str(mount))
        image.unlink()
        mount.rmdir()
        work.rmdir()


def trigger_ext4_error(mount: Path) -> None:
    source = subprocess.run(
        ["findmnt", "-no", "SOURCE", str(mount)], capture_output=True, text=True, check=True
    ).stdout.strip()
    device = os.path.basename(os.path.realpath(source))
    Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("journal fault bench\n")


async def probe_health(port: int, into: list[float | None], stop: asyncio.Event) -> None:
    """GET /healthz every 100 ms: each latency, None for a timeout (1 s) or refusal."""
    while not stop.is_set():
        started = time.perf_counter()
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
                await writer.drain()
                await reader.read()
                writer.close()
            into.append(time.perf_counter() - started)
        except (TimeoutError, OSError):
            into.append(None)
        await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))


@dataclass
class Run:
    """One bridge process, its simulator, its consumer, its prober."""

    args: argparse.Namespace
    journal_dir: Path
    flags: dict[str, object]
    outcome: Outcome
    exchange: str = field(default_factory=lambda: f"bench.faults.{uuid.uuid4().hex[:8]}")

    async def go(
        self, duration: float, during: Callable[[Run], Awaitable[None]], *, settle: bool = True
    ) -> None:
        url = self.args.url
        names = AmqpNames(self.exchange)
        async with amqp_connection(url) as connection:
            channel = await connection.channel()
            await declare_topology(channel, self.exchange)
            await bind_queue(channel, self.exchange, names.queue)
        try:
            await self._go(duration, during, settle)
            bodies = await drain_queue(url, names.queue)
        finally:
            await delete_names(url, names)
        self.outcome.arrived += len({b["id"] for b in bodies if _is_ami(b)})
        for body in bodies:
            fields = body.get("fields") or {}
            if body["kind"] == "status" and body["event"] == "journal":
                self.outcome.journal_statuses.append(
                    f"{fields['state']}: {fields['reason']} (unwritten {fields['unwritten']},"
                    f" dropped {fields['dropped']})"
                )
            if body["kind"] == "status" and body["event"] == "overflow":
                self.outcome.overflow.append(f"{fields['dropped']} {fields['reason']}")

    async def _go(
        self, duration: float, during: Callable[[Run], Awaitable[None]], settle: bool
    ) -> None:
        async with (
            TcpProxy(*broker_address(self.args.url)) as proxy,
            AmiSimulator(port=0, secret=SECRET, rate=self.args.rate, duration=duration) as pbx,
        ):
            self.proxy, self.pbx = proxy, pbx
            metrics_port = free_port()
            args = run_args(
                {SERVER: pbx.port},
                amqp=via_proxy(self.args.url, proxy),
                exchange=self.exchange,
                journal_dir=self.journal_dir,
                metrics_port=metrics_port,
                **self.flags,
            )
            log = Path(tempfile.mkstemp(prefix="journal-faults-", suffix=".log")[1])
            bridge = BridgeProcess(args, log, {"AMI_BRIDGE_AMI_SECRET": SECRET})
            self.bridge = bridge
            stop = asyncio.Event()
            async with bridge:
                await wait_for(lambda: pbx.events_sent > 0 or not bridge.running, 20, "events")
                started = time.monotonic()
                prober = asyncio.create_task(probe_health(metrics_port, self.outcome.probes, stop))
                try:
                    await during(self)
                    await asyncio.sleep(max(0.0, started + duration + 0.5 - time.monotonic()))
                    if settle:
                        await _settle(metrics_port)
                    if bridge.running:
                        figures = await scrape_metrics(metrics_port)
                        self.outcome.dropped_counted += figures.get(
                            "ami_bridge_journal_dropped_total", 0.0
                        )
                        self.outcome.unwritten_counted += figures.get(
                            "ami_bridge_journal_unwritten_total", 0.0
                        )
                        self.outcome.notes.append(
                            "before the stop: depth {:.0f}, published {:.0f}, read {:.0f}".format(
                                figures.get("ami_bridge_journal_depth", 0.0),
                                figures.get("ami_bridge_events_published_total", 0.0),
                                figures.get("ami_bridge_events_read_total", 0.0),
                            )
                        )
                finally:
                    stop.set()
                    await prober
                if bridge.running:
                    bridge.send_signal(signal.SIGTERM)
                self.outcome.exit_code = await bridge.wait(30)
            self.outcome.sent += pbx.events_sent
            lines = bridge.log().splitlines()
            crashes = [line for line in lines if "Traceback" in line]
            if crashes:
                self.outcome.notes.append(f"{len(crashes)} traceback(s) in the bridge's log")
            self.outcome.notes += [line[-120:] for line in lines if "stay journalled" in line]
            self.outcome.notes.append(f"log: {log}")


def _is_ami(body: dict[str, Any]) -> bool:
    return bool(body["kind"] != "status" and body["event"] != "FullyBooted")


async def _settle(metrics_port: int) -> None:
    """Wait (up to 30 s) for the bridge's journal to be empty: everything confirmed."""

    async def empty() -> bool:
        figures = await scrape_metrics(metrics_port)
        return figures.get("ami_bridge_journal_depth", 1.0) == 0

    with contextlib.suppress(TimeoutError, OSError):
        await wait_for(empty, 30, "the journal to empty")


async def drain_queue(url: str, queue: str) -> list[dict[str, Any]]:
    """Every message waiting in ``queue``, parsed, once the bridge has stopped."""
    bodies: list[dict[str, Any]] = []
    async with amqp_connection(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            bodies.append(orjson.loads(message.body))
    return bodies


async def scenario_full(args: argparse.Namespace) -> Outcome:
    outcome = Outcome("full: 8 MB tmpfs fills, broker up")
    with tmpfs(8, leave_free=2 * MB) as mount:
        run = Run(args, mount / "journal", {}, outcome)
        await run.go(12.0, _nothing)
        outcome.notes.append(f"segments left: {_segments(mount / 'journal' / SERVER)}")
    return outcome


async def scenario_full_capped(args: argparse.Namespace) -> Outcome:
    outcome = Outcome("full-capped: the same with --journal-max-bytes 2000000 (1 MiB segments)")
    with tmpfs(8, leave_free=2 * MB) as mount:
        run = Run(args, mount / "journal", {"journal_max_bytes": 2_000_000}, outcome)
        await run.go(12.0, _nothing)
        outcome.notes.append(f"segments left: {_segments(mount / 'journal' / SERVER)}")
    return outcome


async def scenario_full_cut(args: argparse.Namespace) -> Outcome:
    outcome = Outcome("full-cut: 8 MB tmpfs full, broker cut 8 s, small memory buffer")
    with tmpfs(8, leave_free=1 * MB) as mount:
        flags = {"journal_memory_max_bytes": args.memory_mb * MB}
        run = Run(args, mount / "journal", flags, outcome)

        async def cut_then_heal(run: Run) -> None:
            await asyncio.sleep(1.0)
            await run.proxy.cut()
            await asyncio.sleep(8.0)
            run.proxy.heal()

        await run.go(12.0, cut_then_heal)
    return outcome


async def scenario_start_full(args: argparse.Namespace) -> Outcome:
    outcome = Outcome("start-full: started on a tmpfs with no space left")
    with tmpfs(8, leave_free=None) as mount:
        (mount / "journal" / SERVER).mkdir(parents=True)
        _fill(mount, 0)
        run = Run(args, mount / "journal", {}, outcome)
        await run.go(5.0, _nothing)
    return outcome


async def scenario_read_only(args: argparse.Namespace) -> Outcome:
    outcome = Outcome("read-only: ext4 turns read-only mid-run (errors=remount-ro)")
    with ext4() as mount:
        run = Run(args, mount / "journal", {}, outcome)

        async def turn_read_only(run: Run) -> None:
            await asyncio.sleep(2.0)
            trigger_ext4_error(mount)

        await run.go(8.0, turn_read_only)
    return outcome


async def scenario_frozen(args: argparse.Namespace) -> Outcome:
    outcome = Outcome("frozen: ext4 frozen (fsfreeze) for 10 s")
    with ext4() as mount:
        run = Run(args, mount / "journal", {}, outcome)

        async def freeze(run: Run) -> None:
            await asyncio.sleep(2.0)
            sh("fsfreeze", "-f", str(mount))
            try:
                await asyncio.sleep(10.0)
            finally:
                sh("fsfreeze", "-u", str(mount))

        await run.go(14.0, freeze)
    return outcome


async def scenario_damaged(args: argparse.Namespace) -> Outcome:
    outcome = Outcome("damaged: 64 bytes flipped mid-segment and the last record cut")
    with tempfile.TemporaryDirectory(prefix="journal-damaged-") as tmp:
        journal = Path(tmp) / "journal"
        first = Outcome("damaged, first run")

        async def cut(run: Run) -> None:
            await asyncio.sleep(0.5)
            await run.proxy.cut()

        await Run(args, journal, {}, first).go(4.0, cut, settle=False)
        (segment,) = sorted((journal / SERVER).glob("*.seg"))[-1:]
        size = segment.stat().st_size
        with segment.open("r+b") as file:
            file.seek(size // 2)
            data = file.read(64)
            file.seek(size // 2)
            file.write(bytes(b ^ 0xFF for b in data))
            file.truncate(size - 3)
        await Run(args, journal, {}, outcome).go(2.0, _nothing)
        outcome.sent += first.sent
        outcome.arrived += first.arrived
        outcome.notes.append(f"first run exit {first.exit_code}, arrived {first.arrived}")
    return outcome


async def _nothing(run: Run) -> None:
    return None


def _segments(directory: Path) -> str:
    files = sorted(directory.glob("*.seg"))
    return ", ".join(f"{p.name[-8:]}={p.stat().st_size}" for p in files) or "none"


SCENARIOS = {
    "full": scenario_full,
    "full-capped": scenario_full_capped,
    "full-cut": scenario_full_cut,
    "start-full": scenario_start_full,
    "read-only": scenario_read_only,
    "frozen": scenario_frozen,
    "damaged": scenario_damaged,
}


async def main_async(args: argparse.Namespace) -> list[dict[str, object]]:
    results = []
    for name in args.only.split(",") if args.only else SCENARIOS:
        outcome = await SCENARIOS[name](args)
        summary = outcome.summary()
        results.append(summary)
        print(json.dumps(summary), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--memory-mb", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated scenarios")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("journal_faults.py needs root (tmpfs and loop mounts, fsfreeze)")
    results = asyncio.run(main_async(args))
    print(json.dumps({"journal_faults": results}))


if __name__ == "__main__":
    main()
