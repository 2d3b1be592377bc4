"""Journal throughput: appends under each fsync policy, then take + ack from memory and disk.

Appends 600-byte records in batches of 100 (about one AMI event each) for at most
``--seconds`` or ``--records`` per policy, in a fresh temporary directory, and prints
records/s and MB/s of payload.  Then it measures handing records out and acking them, in
batches of 100, first from the in-memory tail, then from a backlog read back from disk,
and the time to reopen (recover) that backlog.

Run: ``python bench/journal.py [--records N] [--seconds S]``.  The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bridge.publish.journal import FsyncPolicy, Journal

RECORD_SIZE = 600
BATCH = 100


def _records(seed: int) -> list[bytes]:
    block = os.urandom(RECORD_SIZE)
    return [block[i:] + block[:i] for i in range(seed, seed + BATCH)]


def bench_append(directory: Path, policy: FsyncPolicy, limit: int, seconds: float) -> float:
    """Records/s appended under ``policy``."""
    batch = _records(0)
    with Journal.open(directory, fsync=policy, memory_records=BATCH) as journal:
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while count < limit and time.perf_counter() < deadline:
            journal.append(batch)
            count += BATCH
        elapsed = time.perf_counter() - start
    return count / elapsed


def fill(journal: Journal, count: int) -> None:
    batch = _records(1)
    for _ in range(count // BATCH):
        journal.append(batch)


def drain_and_ack(journal: Journal) -> tuple[int, float]:
    """Take and ack everything, in batches of 100: (records, records/s)."""
    count = 0
    start = time.perf_counter()
    while batch := journal.take(BATCH):
        journal.ack_many([record_id for record_id, _ in batch])
        count += len(batch)
    return count, count / (time.perf_counter() - start)


def bench_take(directory: Path, count: int, memory_records: int) -> float:
    with Journal.open(directory, fsync="never", memory_records=memory_records) as journal:
        fill(journal, count)
        taken, rate = drain_and_ack(journal)
    if taken != count:
        raise SystemExit(f"took {taken} records, expected {count}")
    return rate


def bench_recovery(directory: Path, count: int) -> tuple[float, float]:
    """Seconds to reopen a backlog of ``count`` records, and records/s read back after it."""
    with Journal.open(directory, fsync="never") as journal:
        fill(journal, count)
    start = time.perf_counter()
    with Journal.open(directory, fsync="never") as journal:
        opened = time.perf_counter() - start
        taken, rate = drain_and_ack(journal)
    if taken != count:
        raise SystemExit(f"recovered {taken} records, expected {count}")
    return opened, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000, help="records per measure")
    parser.add_argument("--seconds", type=float, default=3.0, help="time cap per append measure")
    args = parser.parse_args()
    records = args.records - args.records % BATCH
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="journal-bench-") as tmp:
        root = Path(tmp)
        for policy in ("never", "interval", "always"):
            rate = bench_append(root / f"append-{policy}", policy, records, args.seconds)
            mb_rate = rate * RECORD_SIZE / 1e6
            print(f"append, fsync={policy:<9} {rate:>12,.0f} records/s  {mb_rate:>8.1f} MB/s")
            figures[f"append_{policy}_records_per_s"] = round(rate)
            figures[f"append_{policy}_mb_per_s"] = round(mb_rate, 1)

        memory = bench_take(root / "take-memory", records, memory_records=records)
        print(f"take+ack from memory        {memory:>12,.0f} records/s")
        disk = bench_take(root / "take-disk", records, memory_records=0)
        print(f"take+ack from disk          {disk:>12,.0f} records/s")
        opened, after_reopen = bench_recovery(root / "recovery", records)
        print(f"reopen a {records:,}-record backlog: {opened:.2f} s", end=", ")
        print(f"then take+ack {after_reopen:,.0f} records/s")
        figures |= {
            "take_ack_memory_records_per_s": round(memory),
            "take_ack_disk_records_per_s": round(disk),
            "reopen_seconds": round(opened, 3),
            "reopen_records": records,
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
