"""The disk journal: order, acks, rewinds, restarts, crashes, damage, limits and fsync."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from io import FileIO
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.publish import _frames, _segments
from bridge.publish.journal import (
    Dropped,
    DropReason,
    Journal,
    JournalClosed,
    JournalLocked,
)

HEADER = _frames.HEADER_SIZE


def payload(record_id: int, size: int = 20) -> bytes:
    """A payload that names its record, padded to ``size`` bytes."""
    return f"record-{record_id}-".encode().ljust(size, b"x")


def fill(journal: Journal, count: int, *, batch: int = 10, size: int = 20) -> list[int]:
    """Append ``count`` self-describing records; return their ids."""
    ids: list[int] = []
    while len(ids) < count:
        first = journal.append([]) + 1  # an empty append returns the last id
        n = min(batch, count - len(ids))
        last = journal.append([payload(first + k, size) for k in range(n)])
        ids += range(last - n + 1, last + 1)
    return ids


def drain(journal: Journal, chunk: int = 7) -> list[tuple[int, bytes]]:
    records: list[tuple[int, bytes]] = []
    while batch := journal.take(chunk):
        records += batch
    return records


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def journal(journal_dir: Path) -> Iterator[Journal]:
    with Journal.open(journal_dir, memory_records=100) as opened:
        yield opened


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- append, take, ack -----------------------------------------------------------------


def test_append_returns_the_last_id_and_take_hands_out_in_order(journal: Journal) -> None:
    assert journal.append([b"a", b"b", b"c"]) == 3
    assert journal.append([b"d"]) == 4
    assert journal.append([]) == 4
    assert journal.take(2) == [(1, b"a"), (2, b"b")]
    assert journal.take(10) == [(3, b"c"), (4, b"d")]
    assert journal.take(10) == []
    assert (journal.depth, journal.appended) == (4, 4)


def test_acks_in_any_order_keep_the_prefix_contiguous(journal: Journal) -> None:
    journal.append([b"r"] * 5)
    journal.take(5)
    journal.ack(3)
    journal.ack(5)
    assert (journal.acked_through, journal.depth) == (0, 3)
    journal.ack(1)
    assert journal.acked_through == 1
    journal.ack_many([2, 4])
    assert (journal.acked_through, journal.depth, journal.pending_bytes) == (5, 0, 0)
    assert journal.acked == 5


def test_acks_of_ids_not_in_flight_are_ignored(journal: Journal) -> None:
    journal.append([b"r"] * 3)
    journal.take(1)
    journal.ack_many([1, 1, 2, 99, -4])  # 1 twice, 2 not taken yet, 99 and -4 never existed
    assert (journal.acked, journal.depth, journal.acked_through) == (1, 2, 1)
    assert journal.take(5) == [(2, b"r"), (3, b"r")]


def test_pending_bytes_counts_unacked_frames(journal: Journal) -> None:
    journal.append([b"12345", b"1234567890"])
    assert journal.pending_bytes == 2 * HEADER + 15
    journal.take(1)
    journal.ack(1)
    assert journal.pending_bytes == HEADER + 10


def test_rewind_hands_out_exactly_the_unacked_records_again(journal: Journal) -> None:
    fill(journal, 8)
    assert [i for i, _ in journal.take(6)] == [1, 2, 3, 4, 5, 6]
    journal.ack_many([2, 5])
    journal.rewind()
    assert [i for i, _ in journal.take(2)] == [1, 3]
    journal.ack(4)  # acked while waiting to be handed out again
    assert [i for i, _ in drain(journal)] == [6, 7, 8]
    journal.rewind()
    journal.ack_many([1, 3, 6, 7, 8])
    assert journal.take(10) == []
    assert (journal.depth, journal.acked_through) == (0, 8)


def test_acks_after_a_rewind_move_the_prefix_and_survive_a_restart(journal_dir: Path) -> None:
    with Journal.open(journal_dir) as journal:
        fill(journal, 4)
        journal.take(3)
        journal.ack(3)
        journal.rewind()
        journal.ack_many([1, 2])  # before they were handed out again
        assert journal.acked_through == 3
    with Journal.open(journal_dir) as journal:
        assert [i for i, _ in drain(journal)] == [4]


def test_records_acked_while_awaiting_redelivery_are_not_aged_or_dropped(
    journal_dir: Path,
) -> None:
    clock = FakeClock()
    with Journal.open(journal_dir, clock=clock, max_age=100) as journal:
        for _ in range(3):
            fill(journal, 1)
            clock.now += 10
        journal.take(3)
        journal.ack(2)
        journal.rewind()
        journal.ack(1)
        assert journal.oldest_age() == 10  # record 3's
        clock.now += 91
        assert journal.expire() == [Dropped(1, 3, 3, DropReason.MAX_AGE)]
        assert (journal.dropped, journal.acked, journal.depth) == (1, 2, 0)


def test_rewind_with_nothing_in_flight_changes_nothing(journal: Journal) -> None:
    fill(journal, 3)
    journal.rewind()
    assert [i for i, _ in journal.take(10)] == [1, 2, 3]


def test_oldest_age_follows_the_oldest_unacked_record(journal_dir: Path) -> None:
    clock = FakeClock()
    with Journal.open(journal_dir, clock=clock) as journal:
        assert journal.oldest_age() is None
        journal.append([b"a"])
        clock.now += 5
        journal.append([b"b"])
        clock.now += 5
        assert journal.oldest_age() == 10
        journal.take(1)
        journal.ack(1)
        assert journal.oldest_age() == 5


def test_concurrent_appends_and_takes_lose_and_repeat_nothing(journal_dir: Path) -> None:
    with Journal.open(journal_dir, memory_records=50, segment_bytes=4096) as journal:
        appenders = [threading.Thread(target=fill, args=(journal, 500)) for _ in range(2)]
        taken: list[int] = []
        for thread in appenders:
            thread.start()
        deadline = time.monotonic() + 20
        while any(thread.is_alive() for thread in appenders) or journal.depth:
            assert time.monotonic() < deadline, f"stuck with depth {journal.depth}"
            batch = [i for i, _ in journal.take(13)]
            journal.ack_many(batch)
            taken += batch
        for thread in appenders:
            thread.join(timeout=10)
        assert taken == list(range(1, 1001))


# --- restart and crash recovery ---------------------------------------------------------


def test_reopen_resumes_after_the_acked_prefix_and_ids_go_on(journal_dir: Path) -> None:
    with Journal.open(journal_dir) as journal:
        fill(journal, 10)
        journal.take(6)
        journal.ack_many([1, 2, 3, 5])  # prefix 3; 5 is acked above it
    with Journal.open(journal_dir) as journal:
        # At-least-once: 5 comes again because only the prefix is saved.
        assert drain(journal) == [(i, payload(i)) for i in (4, 5, 6, 7, 8, 9, 10)]
        assert journal.depth == 7
        assert journal.append([b"new"]) == 11


def test_a_crash_without_close_keeps_every_appended_record(
    journal_dir: Path, tmp_path: Path
) -> None:
    crashed = tmp_path / "crashed"
    with Journal.open(journal_dir, fsync="never", fsync_interval=3600) as journal:
        fill(journal, 25, batch=4)
        journal.take(10)
        journal.ack_many(range(1, 11))
        # What a SIGKILL leaves on disk: everything written, no state saved since open.
        shutil.copytree(journal_dir, crashed)
    with Journal.open(crashed) as recovered:
        assert drain(recovered) == [(i, payload(i)) for i in range(1, 26)]
        assert recovered.append([b"next"]) == 26


def test_a_crash_redelivers_only_what_was_acked_since_the_last_save(
    journal_dir: Path, tmp_path: Path
) -> None:
    with Journal.open(journal_dir, fsync_interval=3600) as journal:
        fill(journal, 20)
        journal.ack_many(i for i, _ in journal.take(15))
        journal.sync()  # what the journal's thread does every interval
        shutil.copytree(journal_dir, tmp_path / "crashed")
    with Journal.open(tmp_path / "crashed") as recovered:
        assert [i for i, _ in drain(recovered)] == [16, 17, 18, 19, 20]


_APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bridge.publish.journal import Journal

    journal = Journal.open(Path(sys.argv[1]), segment_bytes=8192, memory_records=10)
    last = 0
    while True:
        ids = range(last + 1, last + 8)
        last = journal.append([b"record-%d-" % i + b"x" * (i % 50) for i in ids])
        print(last, flush=True)
    """
)


def test_sigkill_mid_stream_loses_no_record_whose_append_returned(journal_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _APPENDER, str(journal_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        confirmed = 0
        for line in child.stdout:
            confirmed = int(line)
            if confirmed >= 3000:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
        child.stdout.close()
    assert confirmed >= 3000
    with Journal.open(journal_dir) as journal:
        records = drain(journal, chunk=500)
        ids = [i for i, _ in records]
        assert ids == list(range(1, len(ids) + 1))
        assert len(ids) >= confirmed
        assert all(data == b"record-%d-" % i + b"x" * (i % 50) for i, data in records)
        assert journal.corrupt_records == 0
        assert journal.append([b"after"]) > ids[-1]


# --- torn tails and corruption ----------------------------------------------------------


def _frame_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        length = int.from_bytes(data[pos + 8 : pos + 12], "little")
        pos += HEADER + length
    return offsets


def test_a_torn_last_record_is_truncated_away(journal_dir: Path) -> None:
    with Journal.open(journal_dir) as journal:
        fill(journal, 10)
    (segment,) = segment_files(journal_dir)
    last_frame = _frame_offsets(segment)[-1]
    with segment.open("r+b") as file:
        file.truncate(last_frame + HEADER + 5)  # record 10 cut mid-payload
    with Journal.open(journal_dir) as journal:
        assert drain(journal) == [(i, payload(i)) for i in range(1, 10)]
        assert journal.corrupt_records == 0
        assert segment.stat().st_size == last_frame
        assert journal.append([b"new"]) == 11  # 10 was saved as used on close
        assert journal.take(5) == [(11, b"new")]


@pytest.mark.parametrize("garbage", [b"\x00" * 3, b"\x00" * 100, b"JRNL" + os.urandom(60)])
def test_garbage_after_the_last_record_is_dropped(journal_dir: Path, garbage: bytes) -> None:
    with Journal.open(journal_dir) as journal:
        fill(journal, 5)
    (segment,) = segment_files(journal_dir)
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(garbage)
    with Journal.open(journal_dir) as journal:
        assert journal.corrupt_records == 0
        assert segment.stat().st_size == size
        # What follows the last record counts as one torn record, whose id is not reused.
        assert journal.expire() == [Dropped(1, 6, 6, DropReason.DAMAGED)]
        journal.append([b"seven"])
        assert [i for i, _ in drain(journal)] == [1, 2, 3, 4, 5, 7]


@pytest.mark.parametrize(
    ("where", "label"),
    [(HEADER + 3, "payload"), (8, "length"), (0, "magic"), (12, "id"), (4, "crc")],
)
def test_a_flipped_byte_mid_segment_skips_that_record_only(
    journal_dir: Path, where: int, label: str
) -> None:
    with Journal.open(journal_dir) as journal:
        fill(journal, 10)
    (segment,) = segment_files(journal_dir)
    data = bytearray(segment.read_bytes())
    data[_frame_offsets(segment)[4] + where] ^= 0x40  # damage record 5
    segment.write_bytes(bytes(data))
    with Journal.open(journal_dir, memory_records=0) as journal:
        assert journal.corrupt_records == 1, label
        assert journal.depth == 9
        assert drain(journal) == [(i, payload(i)) for i in range(1, 11) if i != 5]
        journal.rewind()  # read again: counted once
        assert len(drain(journal)) == 9
        assert journal.corrupt_records == 1


def test_damage_spanning_several_records_is_skipped(journal_dir: Path) -> None:
    with Journal.open(journal_dir) as journal:
        fill(journal, 10)
    (segment,) = segment_files(journal_dir)
    offsets = _frame_offsets(segment)
    data = bytearray(segment.read_bytes())
    data[offsets[2] + 10 : offsets[6] + 10] = b"\xff" * (offsets[6] - offsets[2])
    segment.write_bytes(bytes(data))
    with Journal.open(journal_dir) as journal:
        assert [i for i, _ in drain(journal)] == [1, 2, 8, 9, 10]
        assert journal.corrupt_records == 1


def test_an_unreadable_state_file_redelivers_everything(journal_dir: Path) -> None:
    with Journal.open(journal_dir) as journal:
        fill(journal, 4)
        journal.ack_many(i for i, _ in journal.take(4))
    (journal_dir / "state").write_bytes(b"12")  # cut short: no newline
    with Journal.open(journal_dir) as journal:
        assert [i for i, _ in drain(journal)] == [1, 2, 3, 4]
        assert journal.append([b"x"]) == 5


# --- segments ------------------------------------------------------------------------------


def test_segments_roll_over_and_fully_acked_ones_are_deleted(journal_dir: Path) -> None:
    with Journal.open(journal_dir, segment_bytes=500, fsync_interval=3600) as journal:
        fill(journal, 100, batch=5)
        names = [int(path.stem) for path in segment_files(journal_dir)]
        assert len(names) > 5
        assert names[0] == 1
        assert all(
            size <= 500 + 5 * (HEADER + 20) for size in map(_size, segment_files(journal_dir))
        )
        journal.ack_many(i for i, _ in journal.take(50))
        journal.sync()
        holding_51 = max(name for name in names if name <= 51)
        remaining = [int(path.stem) for path in segment_files(journal_dir)]
        assert remaining == [name for name in names if name >= holding_51]
        journal.ack_many(i for i, _ in drain(journal))
        journal.sync()
        assert [int(path.stem) for path in segment_files(journal_dir)] == names[-1:]
    with Journal.open(journal_dir) as journal:
        assert journal.depth == 0
        assert journal.append([b"next"]) == 101


def _size(path: Path) -> int:
    return path.stat().st_size


def test_ids_never_go_back_even_when_every_segment_is_acked(journal_dir: Path) -> None:
    with Journal.open(journal_dir, segment_bytes=1) as journal:
        fill(journal, 6, batch=2)
        journal.ack_many(i for i, _ in drain(journal))
    assert [path.stem for path in segment_files(journal_dir)] == [f"{5:020d}"]
    (journal_dir / "state").unlink()  # even without the saved state
    with Journal.open(journal_dir, segment_bytes=1) as journal:
        assert journal.append([b"x"]) == 7
        assert [i for i, _ in drain(journal)] == [5, 6, 7]  # at-least-once


# --- memory tail and reading back from disk ------------------------------------------------


@pytest.mark.parametrize("memory_records", [0, 1, 10])
def test_a_backlog_larger_than_memory_is_read_back_from_disk_in_order(
    journal_dir: Path, memory_records: int
) -> None:
    with Journal.open(journal_dir, memory_records=memory_records, segment_bytes=2000) as journal:
        fill(journal, 200, batch=9)
        first = journal.take(30)
        fill(journal, 100, batch=9)  # the tail moves on while the cursor is on disk
        rest = drain(journal, chunk=11)
        assert first + rest == [(i, payload(i)) for i in range(1, 301)]
        journal.ack_many(range(1, 151))
        journal.rewind()  # back onto disk
        assert drain(journal, chunk=40) == [(i, payload(i)) for i in range(151, 301)]


def test_records_in_flight_when_memory_moves_on_are_rewound_from_disk(journal_dir: Path) -> None:
    with Journal.open(journal_dir, memory_records=5) as journal:
        fill(journal, 5)
        assert [i for i, _ in journal.take(5)] == [1, 2, 3, 4, 5]  # from memory
        fill(journal, 20)  # evicts 1-5 from memory
        journal.ack(2)
        journal.rewind()
        assert [i for i, _ in drain(journal)] == [1, 3, 4, 5, *range(6, 26)]


def test_reading_back_is_buffered_not_a_read_per_record(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0

    class CountingFileIO(FileIO):
        def read(self, size: int | None = -1, /) -> bytes:
            nonlocal reads
            reads += 1
            return super().read(size)

    monkeypatch.setattr(_segments, "FileIO", CountingFileIO)
    with Journal.open(journal_dir, memory_records=0) as journal:
        fill(journal, 10_000, batch=100, size=100)
        reads = 0
        assert len(drain(journal, chunk=1000)) == 10_000
        assert reads <= 5  # 1.28 MB in 1 MiB reads


# --- overflow ---------------------------------------------------------------------------


def test_drop_oldest_by_size(journal_dir: Path) -> None:
    frame = HEADER + 20
    with Journal.open(journal_dir, max_bytes=10 * frame) as journal:
        fill(journal, 3)
        assert [i for i, _ in journal.take(2)] == [1, 2]
        fill(journal, 12)
        assert (journal.depth, journal.pending_bytes, journal.dropped) == (10, 10 * frame, 5)
        assert journal.expire() == [Dropped(5, 1, 5, DropReason.MAX_BYTES)]
        assert journal.expire() == []
        assert journal.acked_through == 5
        journal.ack(1)  # a late confirm of a dropped record changes nothing
        assert (journal.acked, journal.depth) == (0, 10)
        journal.rewind()
        assert [i for i, _ in drain(journal)] == list(range(6, 16))


def test_drop_oldest_by_age(journal_dir: Path) -> None:
    clock = FakeClock()
    with Journal.open(journal_dir, max_age=100, clock=clock, memory_records=2) as journal:
        fill(journal, 3)
        clock.now += 50
        fill(journal, 2)
        clock.now += 51
        assert journal.expire() == [Dropped(3, 1, 3, DropReason.MAX_AGE)]
        assert journal.oldest_age() == 51
        assert [i for i, _ in drain(journal)] == [4, 5]
        clock.now += 100
        assert journal.expire() == [Dropped(2, 4, 5, DropReason.MAX_AGE)]  # in flight too
        assert journal.depth == 0


def test_drop_newest_by_size_refuses_what_does_not_fit(journal_dir: Path) -> None:
    frame = HEADER + 20
    with Journal.open(journal_dir, max_bytes=10 * frame, overflow="drop_newest") as journal:
        fill(journal, 8)
        assert journal.append([payload(i) for i in range(9, 14)]) == 13
        assert (journal.depth, journal.dropped, journal.appended) == (10, 3, 10)
        assert journal.expire() == [Dropped(3, 11, 13, DropReason.MAX_BYTES)]
        assert [i for i, _ in drain(journal)] == list(range(1, 11))
        journal.ack_many(range(1, 5))
        assert journal.append([b"x" * 20]) == 14
        assert journal.take(5) == [(14, b"x" * 20)]
    with Journal.open(journal_dir) as journal:
        assert journal.append([b"y"]) == 15  # refused ids stay used


def test_drop_newest_by_age_refuses_until_the_old_records_are_acked(journal_dir: Path) -> None:
    clock = FakeClock()
    with Journal.open(journal_dir, max_age=60, overflow="drop_newest", clock=clock) as journal:
        fill(journal, 2)
        clock.now += 61
        assert journal.append([b"a", b"b"]) == 4
        assert journal.expire() == [Dropped(2, 3, 4, DropReason.MAX_AGE)]
        assert journal.depth == 2  # the old records are kept
        journal.ack_many(i for i, _ in journal.take(2))
        assert journal.append([b"c"]) == 5
        assert journal.take(5) == [(5, b"c")]


# --- fsync policy, lock, errors -----------------------------------------------------------


_FSYNC_THREADS: set[str] = set()


@pytest.fixture
def fsync_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        _FSYNC_THREADS.add(threading.current_thread().name)
        real_fsync(fd)

    _FSYNC_THREADS.clear()

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return calls


def test_fsync_always_syncs_every_append(journal_dir: Path, fsync_calls: list[int]) -> None:
    with Journal.open(journal_dir, fsync="always", fsync_interval=3600) as journal:
        fsync_calls.clear()
        for _ in range(5):
            fill(journal, 10)
        assert len(fsync_calls) == 5


def test_fsync_interval_syncs_only_when_due_and_on_close(
    journal_dir: Path, fsync_calls: list[int]
) -> None:
    journal = Journal.open(journal_dir, fsync="interval", fsync_interval=3600)
    fsync_calls.clear()
    fill(journal, 50)
    assert fsync_calls == []
    journal.close()
    assert fsync_calls


def test_fsync_interval_runs_on_the_journals_thread(
    journal_dir: Path, fsync_calls: list[int]
) -> None:
    with Journal.open(journal_dir, fsync="interval", fsync_interval=0.05) as journal:
        fsync_calls.clear()
        _FSYNC_THREADS.clear()
        for _ in range(3):
            fill(journal, 10)
            deadline = time.monotonic() + 5
            synced = len(fsync_calls)
            while len(fsync_calls) == synced and time.monotonic() < deadline:
                time.sleep(0.01)
        assert len(fsync_calls) >= 3
        assert set(_FSYNC_THREADS) == {"journal-sync-journal"}


def test_fsync_never_leaves_it_to_the_os(journal_dir: Path, fsync_calls: list[int]) -> None:
    with Journal.open(journal_dir, fsync="never", fsync_interval=0) as journal:
        fill(journal, 50)
        journal.take(10)
    assert fsync_calls == []


def test_the_lock_keeps_a_second_journal_out(journal_dir: Path) -> None:
    with Journal.open(journal_dir), pytest.raises(JournalLocked, match="already open"):
        Journal.open(journal_dir)
    Journal.open(journal_dir).close()


def test_the_lock_works_across_processes(journal_dir: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from bridge.publish.journal import Journal
        try:
            Journal.open(Path(sys.argv[1]))
        except Exception as e:
            print(type(e).__name__)
        """
    )
    with Journal.open(journal_dir):
        result = subprocess.run(
            [sys.executable, "-c", code, str(journal_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.stdout.strip() == "JournalLocked"


def test_a_closed_journal_refuses_use(journal_dir: Path) -> None:
    journal = Journal.open(journal_dir)
    journal.close()
    journal.close()
    with pytest.raises(JournalClosed):
        journal.append([b"x"])
    with pytest.raises(JournalClosed):
        journal.take(1)


def test_a_failed_write_keeps_nothing_of_the_batch_in_the_file(
    journal: Journal, journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(journal, 3)
    (segment,) = segment_files(journal_dir)
    size = segment.stat().st_size
    real_write = os.write

    def short_then_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[:7])  # part of the batch reaches the file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    assert journal.append([b"kept", b"in memory"]) == 5
    monkeypatch.undo()
    assert segment.stat().st_size == size
    assert (journal.depth, journal.appended, journal.unwritten) == (5, 5, 2)
    assert [i for i, _ in drain(journal)] == [1, 2, 3, 4, 5]


def test_oversized_records_are_refused_before_writing(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_frames, "MAX_PAYLOAD", 100)
    with pytest.raises(ValueError, match="exceeds"):
        journal.append([b"ok", b"x" * 101])
    assert journal.depth == 0
    assert journal.append([b"ok"]) == 1


@pytest.mark.parametrize(
    "settings_",
    [{"fsync": "sometimes"}, {"overflow": "drop_all"}, {"segment_bytes": 0}, {"max_age": 0}],
)
def test_bad_settings_are_refused(journal_dir: Path, settings_: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Journal.open(journal_dir, **settings_)


# --- the property: every unacked record is handed out, in order, once per cycle --------


class JournalMachine(RuleBasedStateMachine):
    """A model of the journal: the payloads, the acked ids, and what this cycle handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.generation = 0
        self.journal = self._open()
        self.payloads: dict[int, bytes] = {}
        self.acked: set[int] = set()
        self.in_flight: set[int] = set()
        self.last_taken = 0  # in this cycle
        self.saved_prefix = 0  # the prefix a crash falls back to (saved at the last close)

    def _open(self) -> Journal:
        directory = Path(self.tmp.name) / str(self.generation)
        return Journal.open(
            directory, fsync="never", fsync_interval=3600, segment_bytes=150, memory_records=3
        )

    def _unacked(self) -> list[int]:
        return sorted(set(self.payloads) - self.acked)

    def _prefix(self) -> int:
        unacked = self._unacked()
        return unacked[0] - 1 if unacked else max(self.payloads, default=0)

    @rule(sizes=st.lists(st.integers(0, 40), max_size=5))
    def append(self, sizes: list[int]) -> None:
        first = max(self.payloads, default=0) + 1
        records = [payload(first + k, size) for k, size in enumerate(sizes)]
        last = self.journal.append(records)
        assert last == first + len(records) - 1
        self.payloads.update(zip(range(first, last + 1), records, strict=True))

    @rule(limit=st.integers(0, 8))
    def take(self, limit: int) -> None:
        expected = [i for i in self._unacked() if i > self.last_taken][:limit]
        taken = self.journal.take(limit)
        assert taken == [(i, self.payloads[i]) for i in expected]
        if taken:
            self.last_taken = taken[-1][0]
        self.in_flight.update(expected)

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        """Ack some records in flight, and ids that are not (acked, not taken, unknown)."""
        in_flight = st.sampled_from(sorted(self.in_flight)) if self.in_flight else st.nothing()
        ids = data.draw(st.lists(in_flight | st.integers(-1, 60), max_size=5))
        self.journal.ack_many(ids)
        self.acked.update(self.in_flight.intersection(ids))
        self.in_flight.difference_update(ids)

    @rule()
    def rewind(self) -> None:
        self.journal.rewind()
        self.last_taken = 0

    @rule(crash=st.booleans())
    def restart(self, crash: bool) -> None:
        """Close and reopen, or copy the files as a SIGKILL leaves them and open the copy."""
        if crash:
            source = Path(self.tmp.name) / str(self.generation)
            self.generation += 1
            target = Path(self.tmp.name) / str(self.generation)
            shutil.copytree(source, target, ignore=_no_lock)
        else:
            self.saved_prefix = self._prefix()
        self.journal.close()
        self.journal = self._open()
        # Only the saved prefix survives: acks above it are redelivered (at-least-once).
        self.acked = {i for i in self.acked if i <= self.saved_prefix}
        self.in_flight.clear()
        self.last_taken = 0

    @invariant()
    def counts_match_the_model(self) -> None:
        unacked = self._unacked()
        assert self.journal.depth == len(unacked)
        assert self.journal.pending_bytes == sum(HEADER + len(self.payloads[i]) for i in unacked)
        assert self.journal.acked_through == self._prefix()

    def teardown(self) -> None:
        try:
            self.journal.rewind()
            assert self.journal.take(10_000) == [(i, self.payloads[i]) for i in self._unacked()]
            assert self.journal.take(10_000) == []
        finally:
            self.journal.close()
            self.tmp.cleanup()


def _no_lock(directory: str, names: list[str]) -> list[str]:
    return [name for name in names if name == "lock"]


TestJournalProperty = JournalMachine.TestCase
TestJournalProperty.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
