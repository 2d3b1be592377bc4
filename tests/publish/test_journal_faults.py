"""The journal on a failing disk: memory mode, its bound, the way back, damage, no blocking.

Faults are injected through :mod:`bridge.publish._disk`, the one place the journal's
writes, fsyncs and file creations go through, so these tests need no root and no special
filesystem (``bench/journal_faults.py`` does the same against real ones).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.publish import _disk, _frames
from bridge.publish.journal import (
    DiskState,
    Dropped,
    DropReason,
    Journal,
    JournalIOError,
    segment_bytes_for,
)
from tests.support.disk_faults import FAULTS, Disk, FailingReads

HEADER = _frames.HEADER_SIZE
MIB = 1024 * 1024


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    return Disk(monkeypatch)


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def journal(journal_dir: Path) -> Iterator[Journal]:
    with Journal.open(journal_dir, retry_interval=0.05, fsync_interval=0.05) as opened:
        yield opened


def payloads(first: int, count: int) -> list[bytes]:
    return [f"record-{i}".encode() for i in range(first, first + count)]


def drain(journal: Journal) -> list[tuple[int, bytes]]:
    records: list[tuple[int, bytes]] = []
    while batch := journal.take(7):
        records += batch
    return records


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def recover_disk(journal: Journal, first: int) -> int:
    """Append until the journal is back on disk (the retry is on a timer); the last id."""
    last = first - 1

    def back() -> bool:
        nonlocal last
        last = journal.append(payloads(last + 1, 1))
        return journal.unavailable is None

    wait_for(back, "the journal to be back on disk")
    return last


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_write_keeps_reading_from_memory_and_counts(
    journal: Journal, disk: Disk, fault: str
) -> None:
    journal.append(payloads(1, 3))
    disk.fail(FAULTS[fault], "write")
    assert journal.append(payloads(4, 2)) == 5
    assert journal.append(payloads(6, 3)) == 8
    reason = FAULTS[fault].strerror
    assert reason is not None
    assert journal.unavailable == reason
    assert (journal.unwritten, journal.depth) == (5, 8)
    assert journal.memory_bytes == sum(HEADER + len(p) for p in payloads(4, 5))
    assert journal.disk_changes() == [DiskState("unavailable", reason, 0, 0)]
    assert journal.disk_changes() == []  # reported once
    # Handed out in order across the disk and memory, as usual; acks work the same.
    assert drain(journal) == [(i, p) for i, p in enumerate(payloads(1, 8), 1)]
    journal.ack_many(range(1, 9))
    assert (journal.depth, journal.memory_bytes, journal.acked_through) == (0, 0, 8)


@pytest.mark.parametrize("fault", FAULTS)
def test_an_fsync_failure_under_always_switches_to_memory(
    journal_dir: Path, disk: Disk, fault: str
) -> None:
    with Journal.open(journal_dir, fsync="always") as journal:
        disk.fail(FAULTS[fault], "fsync")
        assert journal.append(payloads(1, 2)) == 2
        assert journal.unavailable is not None
        assert [i for i, _ in drain(journal)] == [1, 2]
        disk.heal()


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_a_failed_sync_or_checkpoint_on_the_journals_thread_switches_to_memory(
    journal: Journal, disk: Disk, call: str
) -> None:
    journal.append(payloads(1, 2))
    journal.ack_many(i for i, _ in journal.take(1))  # so the state has something to save
    disk.fail(FAULTS["EIO"], call)
    wait_for(lambda: journal.unavailable is not None, "the sync thread to see the fault")
    assert journal.append(payloads(3, 1)) == 3
    assert [i for i, _ in drain(journal)] == [2, 3]
    disk.heal()
    recover_disk(journal, 4)
    changes = journal.disk_changes()
    assert [change.state for change in changes] == ["unavailable", "recovered"]


def test_a_new_segment_that_cannot_be_created(journal_dir: Path, disk: Disk) -> None:
    with Journal.open(journal_dir, segment_bytes=100, retry_interval=0.05) as journal:
        journal.append(payloads(1, 10))  # over 100 bytes: the next append rolls
        disk.fail(FAULTS["ENOSPC"], "create")
        assert journal.append(payloads(11, 2)) == 12
        assert journal.unavailable == "No space left on device"
        disk.heal()
        last = recover_disk(journal, 13)
        assert [i for i, _ in drain(journal)] == list(range(1, last + 1))


def test_the_disk_comes_back_with_what_memory_held_written_first(
    journal_dir: Path, disk: Disk
) -> None:
    with Journal.open(journal_dir, retry_interval=0.05) as journal:
        journal.append(payloads(1, 3))
        taken = journal.take(2)
        disk.fail(FAULTS["ENOSPC"], "write")
        journal.append(payloads(4, 4))  # 4..7 in memory
        in_flight = journal.take(3)  # 3, 4, 5
        journal.ack(4)  # acked in memory: never written
        disk.heal()
        last = recover_disk(journal, 8)
        assert journal.memory_bytes == 0
        (unavailable, recovered) = journal.disk_changes()
        # 4..7, and 8..last-1 appended before the retry was due: all kept in memory.
        assert recovered == DiskState("recovered", "No space left on device", last - 4, 0)
        assert unavailable.state == "unavailable"
        # A rewind after the way back finds the records in flight on disk now.
        journal.rewind()
        redelivered = [i for i, _ in drain(journal)]
        assert redelivered == [1, 2, 3, 5, 6, 7, *range(8, last + 1)]
        journal.ack_many(i for i, _ in taken + in_flight if i != 4)
    # And they survive a restart: everything not acked, in order, nothing acked in memory.
    with Journal.open(journal_dir) as reopened:
        assert [i for i, _ in drain(reopened)] == [6, 7, *range(8, last + 1)]
        assert reopened.append([b"next"]) == last + 1


def test_a_full_memory_buffer_drops_and_counts(journal_dir: Path, disk: Disk) -> None:
    record = HEADER + len(payloads(1, 1)[0])
    with Journal.open(journal_dir, memory_max_bytes=5 * record, retry_interval=60) as journal:
        disk.fail(FAULTS["ENOSPC"], "write")
        assert journal.append(payloads(1, 3)) == 3
        assert journal.append(payloads(4, 4)) == 7  # 6 and 7 do not fit
        assert journal.append(payloads(8, 1)) == 8
        assert (journal.unwritten, journal.memory_dropped, journal.depth) == (8, 3, 5)
        assert journal.expire() == [Dropped(3, 6, 8, DropReason.MEMORY_FULL)]
        # What announces the drops is kept all the same.
        assert journal.append([b"status"], essential=True) == 9
        assert journal.memory_dropped == 3
        # Acks free the buffer, and ids go on.
        assert [i for i, _ in drain(journal)] == [1, 2, 3, 4, 5, 9]
        journal.ack_many(range(1, 10))
        assert journal.append(payloads(10, 1)) == 10
        assert [i for i, _ in drain(journal)] == [10]
        assert journal.memory_dropped == 3


def test_a_long_outage_keeps_memory_bounded_while_acks_come(journal_dir: Path, disk: Disk) -> None:
    with Journal.open(journal_dir, memory_records=10, memory_max_bytes=MIB) as journal:
        disk.fail(FAULTS["EROFS"], "write")
        for first in range(1, 5001, 50):
            journal.append(payloads(first, 50))
            journal.ack_many(i for i, _ in journal.take(50))
        assert journal.memory_dropped == 0
        assert journal.depth == 0
        assert journal.memory_bytes == 0
        assert journal.records_held <= 60  # not the 5000 of the outage


def test_start_on_a_full_disk_runs_in_memory(journal_dir: Path, disk: Disk) -> None:
    with Journal.open(journal_dir) as journal:
        journal.append(payloads(1, 2))
    disk.fail(FAULTS["ENOSPC"], "write", "fsync", "replace")
    with Journal.open(journal_dir, retry_interval=0.05) as journal:
        assert journal.append(payloads(3, 2)) == 4
        assert journal.disk_changes() == [DiskState("unavailable", "No space left on device", 0, 0)]
        assert [i for i, _ in drain(journal)] == [1, 2, 3, 4]
        disk.heal()


def test_a_read_only_directory_fails_at_open_with_one_clear_line(
    journal_dir: Path, disk: Disk
) -> None:
    journal_dir.mkdir()
    disk.fail(FAULTS["EROFS"], "create")
    with pytest.raises(JournalIOError) as raised:
        Journal.open(journal_dir)
    assert str(raised.value) == (
        f"journal directory {journal_dir} is not writable: Read-only file system"
    )


def test_the_event_loops_calls_never_wait_for_a_frozen_disk(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thaw = threading.Event()
    frozen = threading.Event()
    real_fsync = _disk.fsync

    def frozen_fsync(fd: int) -> None:
        frozen.set()
        thaw.wait(10)
        real_fsync(fd)

    with Journal.open(journal_dir, fsync_interval=0.01) as journal:
        monkeypatch.setattr(_disk, "fsync", frozen_fsync)
        journal.append(payloads(1, 5))
        assert frozen.wait(5), "the sync thread never fsynced"
        try:
            started = time.monotonic()
            for _ in range(100):
                taken = journal.take(2)
                journal.ack_many(i for i, _ in taken)
                journal.expire()
                journal.oldest_age()
                journal.disk_bytes  # noqa: B018  (a property read: it must not block)
                journal.append(payloads(journal.append([]) + 1, 1))  # appends still work
            assert time.monotonic() - started < 1.0
            assert journal.depth > 0
        finally:
            thaw.set()


def test_segment_size_follows_max_bytes(journal_dir: Path) -> None:
    assert segment_bytes_for(8 * MIB) == MIB  # clamped up
    assert segment_bytes_for(80 * MIB) == 10 * MIB
    assert segment_bytes_for(1024 * MIB) == 64 * MIB  # clamped down
    big = os.urandom(100_000)
    with Journal.open(journal_dir, max_bytes=2 * MIB, fsync_interval=0.05) as journal:
        for _ in range(40):  # 4 MB through a journal capped at 2 MB
            journal.append([big])
            journal.ack_many(i for i, _ in journal.take(10))
        journal.sync()
        assert journal.disk_bytes <= MIB + len(big) + HEADER
        files = sum(path.stat().st_size for path in journal_dir.glob("*.seg"))
        assert files == journal.disk_bytes


def _flip(path: Path, offset: int, count: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        data = file.read(count)
        file.seek(offset)
        file.write(bytes(b ^ 0xFF for b in data))


def test_damaged_records_found_on_recovery_are_reported_as_drops(journal_dir: Path) -> None:
    with Journal.open(journal_dir) as journal:
        journal.append(payloads(1, 1000))
    (segment,) = journal_dir.glob("*.seg")
    size = segment.stat().st_size
    _flip(segment, size // 2, 64)  # a few records in the middle
    with segment.open("r+b") as file:
        file.truncate(size - 3)  # and the last record cut short
    with Journal.open(journal_dir) as journal:
        ids = [i for i, _ in drain(journal)]
        missing = sorted(set(range(1, 1000)) - set(ids))
        assert 1 <= len(missing) <= 3  # 64 bytes over records of 37-40
        # The flipped records and the torn one, in one report.
        (damaged,) = journal.expire()
        assert damaged == Dropped(len(missing) + 1, missing[0], 1000, DropReason.DAMAGED)
        assert journal.dropped == len(missing) + 1
        assert journal.append([b"next"]) == 1001


def test_damage_in_records_already_acked_is_no_loss(journal_dir: Path) -> None:
    with Journal.open(journal_dir) as journal:
        journal.append(payloads(1, 100))
        journal.ack_many(i for i, _ in journal.take(60))
    (segment,) = journal_dir.glob("*.seg")
    _flip(segment, segment.stat().st_size // 4, 16)  # inside the acked first 60
    with Journal.open(journal_dir) as journal:
        assert [i for i, _ in drain(journal)] == list(range(61, 101))
        assert journal.expire() == []


def test_one_appender_thread_and_the_loop_across_faults_lose_nothing_silently(
    journal_dir: Path, disk: Disk
) -> None:
    total = 3000
    with Journal.open(
        journal_dir, memory_max_bytes=20_000, retry_interval=0.02, memory_records=50
    ) as journal:

        def appender() -> None:
            for first in range(1, total + 1, 10):
                if first % 1000 == 501:
                    disk.fail(FAULTS["ENOSPC"], "write")
                elif first % 1000 == 1:
                    disk.heal()
                journal.append(payloads(first, 10))
                time.sleep(0.0005)
            disk.heal()

        thread = threading.Thread(target=appender)
        thread.start()
        seen: list[int] = []
        while thread.is_alive() or journal.depth:
            batch = journal.take(25)
            seen += [i for i, _ in batch]
            journal.ack_many(i for i, _ in batch)
            if not batch:
                time.sleep(0.001)
        thread.join()
        dropped = {i for d in journal.expire() for i in range(d.first_id, d.last_id + 1)}
    assert seen == sorted(set(seen))  # in order, each once
    assert set(seen) | dropped == set(range(1, total + 1))
    assert journal.unwritten > 0


def test_a_full_disk_rolls_to_a_new_segment_so_the_confirmed_one_can_go(
    journal_dir: Path, disk: Disk
) -> None:
    with Journal.open(journal_dir, retry_interval=0.02, fsync_interval=0.02) as journal:
        journal.append(payloads(1, 5))
        disk.fail(FAULTS["ENOSPC"], "write")
        journal.append(payloads(6, 1))
        # The broker confirms everything: the full segment holds only confirmed records.
        journal.ack_many(i for i, _ in drain(journal))
        disk.heal()
        last = recover_disk(journal, 7)
        journal.ack_many(i for i, _ in drain(journal))
        journal.sync()
        # 6 was confirmed from memory, so the new segment starts with 7, the first written.
        assert [int(path.stem) for path in journal_dir.glob("*.seg")] == [7]
        assert last >= 7


def test_deleted_segments_are_not_kept_open(journal_dir: Path) -> None:
    # An open file keeps its space: on a full disk, deleting it would free nothing.
    with Journal.open(journal_dir, segment_bytes=200) as journal:
        for first in range(1, 21, 5):  # the reader opened the first segment; records
            journal.append(payloads(first, 5))  # come from memory, so it stays there
        journal.ack_many(i for i, _ in drain(journal))
        journal.append(payloads(21, 20))
        journal.sync()
        assert not (journal_dir / f"{1:020d}.seg").exists()
        fds = Path(f"/proc/{os.getpid()}/fd")
        held = [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()]
        assert not [path for path in held if str(journal_dir) in path and "(deleted)" in path]
        assert [i for i, _ in drain(journal)] == list(range(21, 41))


def test_segment_reads_that_fail_skip_nothing_and_hand_out_nothing_twice(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = FailingReads(monkeypatch)
    # Nothing kept in memory and small segments: every take reads, and opens, segments.
    with Journal.open(journal_dir, memory_records=0, segment_bytes=2000) as journal:
        for first in range(1, 301, 10):
            journal.append(payloads(first, 10))
        handed = journal.take(25)
        reads.failing = True
        failed: JournalIOError | None = None
        while failed is None:
            try:
                batch = journal.take(7)
            except JournalIOError as exc:
                failed = exc
                continue
            # What was buffered comes out; a failing disk is never the end of the journal.
            assert batch
            handed += batch
        assert "Input/output error" in str(failed)
        journal.rewind()  # the disk still failing: no error, the next take seeks again
        assert journal.oldest_age() is None  # unknown while the disk cannot be read
        with pytest.raises(JournalIOError):
            journal.take(7)
        reads.failing = False
        journal.ack_many(record_id for record_id, _ in handed)
        handed += drain(journal)
    assert handed == [(i, f"record-{i}".encode()) for i in range(1, 301)]
    assert reads.refused >= 2
