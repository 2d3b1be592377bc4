"""The unacked records of a journal and the cursor that hands them out, oldest first.

Three pieces of state describe delivery:

* the *cursor*: the lowest id not yet handed out in the current cycle;
* ``in_flight``: records handed out and not acked, in id order, with just enough to find
  them again (time, size, position), not their payloads;
* ``redeliver_until``: after a rewind, the records below it were handed out before, so
  only those still in flight are handed out again; the others were acked meanwhile.

Every record below ``max(cursor, redeliver_until)`` was handed out, so the ones not in
flight are acked: the acked prefix ends just before the first record in flight (or at that
frontier), and out-of-order acks need no set of their own.

The most recent ``memory_records`` records stay in memory (the *tail*), and the cursor is
served from there whenever it has reached them.  Older records are read back from the
segments by one buffered reader that follows the cursor.  The reader's position is only
kept right while the cursor is below the tail: when the tail drops records the cursor has
not reached, or a rewind goes below it, the reader is moved to the exact frame.

While the disk cannot be written, records are appended *in memory only*
(:attr:`Record.in_memory`): they form the end of the tail and leave it only once acked, or
once written after all (:meth:`Backlog.relocate`).  Their ids are above every id on disk.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from operator import attrgetter
from typing import NamedTuple

from bridge.publish._frames import IN_MEMORY, Record
from bridge.publish._segments import SegmentReader

__all__ = ["Backlog"]

_record_id = attrgetter("id")
# Drop the evicted front of the tail list once it is this long and half the list (or all).
_COMPACT_AFTER = 4096


class _InFlight(NamedTuple):
    appended_at: float
    size: int
    segment: int
    offset: int


class Backlog:
    """Hands out unacked records in id order; knows the acked prefix."""

    def __init__(self, reader: SegmentReader, *, memory_records: int, cursor_id: int) -> None:
        """``reader`` must be positioned at the first record with id ``cursor_id`` or more."""
        self._reader = reader
        self._reader_synced = True
        self._memory_records = memory_records
        self._tail: list[Record] = []
        self._tail_start = 0
        self._cursor_id = cursor_id
        self._redeliver_until = 0
        self._in_flight: OrderedDict[int, _InFlight] = OrderedDict()
        #: Id of the first in-memory-only record of the tail, if any.
        self._memory_first: int | None = None

    @property
    def acked_through(self) -> int:
        """Every id up to this one is acked or dropped."""
        # Below the frontier, every record was handed out: only those in flight are unacked.
        frontier = max(self._cursor_id, self._redeliver_until)
        if self._in_flight:
            return min(next(iter(self._in_flight)), frontier) - 1
        return frontier - 1

    @property
    def held(self) -> int:
        """Records held in memory."""
        return len(self._tail) - self._tail_start

    def appended(self, records: list[Record]) -> None:
        """Keep newly appended ``records`` (written, or in memory only) in the tail."""
        self._tail += records
        if self._memory_first is None:
            self._memory_first = next((r.id for r in records if r.in_memory), None)
        self._trim()

    def unacked_in_memory(self) -> list[Record]:
        """The in-memory-only records not acked yet, in id order."""
        if self._memory_first is None:
            return []
        start = bisect_left(self._tail, self._memory_first, lo=self._tail_start, key=_record_id)
        return [r for r in self._tail[start:] if not self._is_acked(r.id)]

    def relocate(self, written: list[Record]) -> None:
        """The records of :meth:`unacked_in_memory` are now written: these are their frames."""
        if self._memory_first is None:
            return
        start = bisect_left(self._tail, self._memory_first, lo=self._tail_start, key=_record_id)
        placed = {record.id: record for record in written}
        self._tail[start:] = [placed[r.id] for r in self._tail[start:] if r.id in placed]
        for record in written:
            if record.id in self._in_flight:
                self._in_flight[record.id] = _InFlight(
                    record.appended_at, record.size, record.segment, record.offset
                )
        self._memory_first = None

    def take(self, limit: int) -> list[Record]:
        """Hand out up to ``limit`` records not yet handed out in this cycle, in id order."""
        taken: list[Record] = []
        while len(taken) < limit:
            try:
                batch = self._read(limit - len(taken))
            except OSError:
                if taken:
                    break  # hand out what was read; the next take meets the fault again
                raise
            if not batch:
                break
            for record in batch:
                if record.id < self._redeliver_until and record.id not in self._in_flight:
                    continue  # acked after it was first handed out
                self._in_flight[record.id] = _InFlight(
                    record.appended_at, record.size, record.segment, record.offset
                )
                taken.append(record)
        return taken

    def ack(self, record_id: int) -> tuple[int, bool] | None:
        """Retire a handed-out record: (its size, whether it is in memory only), or None if
        it was not in flight."""
        entry = self._in_flight.pop(record_id, None)
        return None if entry is None else (entry.size, entry.segment == IN_MEMORY)

    def rewind(self) -> None:
        """Hand out again, from the oldest, every record in flight."""
        if not self._in_flight:
            return
        first_id, entry = next(iter(self._in_flight.items()))
        self._redeliver_until = max(self._redeliver_until, self._cursor_id)
        self._cursor_id = first_id
        if not self._in_memory():
            self._seek(entry.segment, entry.offset)

    def drop_oldest(self) -> tuple[int, int, bool] | None:
        """Retire the oldest unacked record unsent: its (id, size, whether in memory only),
        or None if none is left."""
        if self._in_flight:
            first_id = next(iter(self._in_flight))
            if first_id < self._cursor_id:
                entry = self._in_flight.pop(first_id)
                return first_id, entry.size, entry.segment == IN_MEMORY
        record = self._peek()
        if record is None:
            return None
        self._consume(record)
        self._in_flight.pop(record.id, None)
        return record.id, record.size, record.in_memory

    def segments_deleted(self, first_ids: list[int]) -> None:
        """Segments were deleted: let go of the one the reader has open among them, since
        an open file keeps its space on disk (the cursor is past every record in it)."""
        if self._reader.segment in first_ids:
            self._reader.close()
            self._reader_synced = False

    def oldest_appended_at(self) -> float | None:
        """When the oldest unacked record was appended, or None if none is left."""
        if self._in_flight:
            first_id = next(iter(self._in_flight))
            if first_id < self._cursor_id:
                return self._in_flight[first_id].appended_at
        try:
            record = self._peek()
        except OSError:
            return None  # the disk cannot be read now; the next look tries again
        return None if record is None else record.appended_at

    def _tail_first_id(self) -> int | None:
        return self._tail[self._tail_start].id if self._tail_start < len(self._tail) else None

    def _in_memory(self) -> bool:
        first = self._tail_first_id()
        return first is not None and self._cursor_id >= first

    def _tail_index(self) -> int:
        return bisect_left(self._tail, self._cursor_id, lo=self._tail_start, key=_record_id)

    def _seek(self, segment: int, offset: int) -> None:
        try:
            self._reader.seek(segment, offset)
        except OSError:
            # Deleted because every record in it is acked (find the cursor by id instead),
            # or the disk failed: the next read seeks again.
            self._reader_synced = False
        else:
            self._reader_synced = True

    def _sync_reader(self) -> None:
        if not self._reader_synced:
            self._reader.seek_id(self._cursor_id)
            self._reader_synced = True

    def _read(self, limit: int) -> list[Record]:
        """Consume up to ``limit`` records from the cursor, acked ones included."""
        records: list[Record] = []
        while len(records) < limit:
            if self._in_memory():
                index = self._tail_index()
                chunk = self._tail[index : index + limit - len(records)]
                if not chunk:
                    break
                records += chunk
                self._cursor_id = chunk[-1].id + 1
                self._reader_synced = False
                continue
            tail_first = self._tail_first_id()
            try:
                self._sync_reader()
                from_disk = self._reader.read(limit - len(records), below=tail_first)
            except OSError:
                if records:
                    break  # what memory gave; the disk is tried again next time
                raise
            if from_disk:
                records += from_disk
                self._cursor_id = from_disk[-1].id + 1
            elif tail_first is None:
                break
            else:
                self._cursor_id = tail_first  # the rest is in memory
        return records

    def _peek(self) -> Record | None:
        """The record at the cursor that would be handed out next, not consumed."""
        while True:
            if self._in_memory():
                index = self._tail_index()
                record = self._tail[index] if index < len(self._tail) else None
            else:
                self._sync_reader()
                tail_first = self._tail_first_id()
                record = self._reader.peek(below=tail_first)
                if record is None and tail_first is not None:
                    self._cursor_id = tail_first
                    continue
            if record is None or record.id >= self._redeliver_until:
                return record
            if record.id in self._in_flight:
                return record
            self._consume(record)  # acked while waiting for redelivery: step over it

    def _consume(self, record: Record) -> None:
        if self._in_memory():
            self._reader_synced = False
        else:
            self._reader.advance(record)
        self._cursor_id = record.id + 1

    def _is_acked(self, record_id: int) -> bool:
        """Whether a record of the tail is acked (or dropped)."""
        frontier = max(self._cursor_id, self._redeliver_until)
        return record_id < frontier and record_id not in self._in_flight

    def _trim(self) -> None:
        """Evict written records past ``memory_records``, and acked in-memory ones."""
        tail, start = self._tail, self._tail_start
        excess = len(tail) - start - self._memory_records
        end = start
        while end < len(tail):
            record = tail[end]
            if record.in_memory:
                # The last record stays, so the cursor always has a record to be served from.
                if end == len(tail) - 1 or not self._is_acked(record.id):
                    break
            elif end - start >= excess:
                break
            end += 1
        if end > start:
            self._evict(end - start)

    def _evict(self, count: int) -> None:
        start, end = self._tail_start, self._tail_start + count
        in_memory_before = self._cursor_id >= self._tail[start].id
        self._tail_start = end
        if self._memory_first is not None and self._memory_first < self._tail[end - 1].id + 1:
            # Only acked in-memory records are evicted, and never the last one.
            self._memory_first = self._tail[end].id
        if in_memory_before and not self._in_memory():
            # The cursor's record leaves memory: read on from its frame.
            index = bisect_left(self._tail, self._cursor_id, lo=start, key=_record_id)
            if index < len(self._tail):
                record = self._tail[index]
                if record.in_memory:
                    # Acked: every id up to the next record kept is acked or was never kept.
                    self._cursor_id = self._tail[end].id
                else:
                    self._seek(record.segment, record.offset)
        if end == len(self._tail) or (end >= _COMPACT_AFTER and 2 * end >= len(self._tail)):
            del self._tail[:end]
            self._tail_start = 0
