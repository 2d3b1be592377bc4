"""Opening a journal directory again, after a clean stop or a crash.

1. Segments wholly inside the saved acked prefix are deleted (every id in a segment is
   below the name of the next one, so this needs no reading).
2. The other segments are read through once, sequentially: this counts the unacked records
   and their bytes and finds the first of them, where delivery resumes.
3. Damage that runs to the end of the *last* segment is a write a crash interrupted: the
   bytes are truncated away.  Damage anywhere else is corruption: it is logged and
   skipped, and reported so it is counted once.  Both lose records that were read from
   the PBX, so both are reported as drops (reason ``damaged``): a range in the middle
   covers the ids missing between the records around it; a torn write counts as one
   record, whose id is reserved.
4. The next id is above every id seen: saved, recorded, or named by a segment, so ids are
   never reused: not those of deleted segments, nor those of refused records once a
   checkpoint has saved them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bridge.publish._frames import Record
from bridge.publish._overflow import Dropped, DropReason
from bridge.publish._segments import (
    SegmentReader,
    delete_segments_through,
    log_damage,
    segment_path,
)
from bridge.publish._state import SavedState

__all__ = ["Recovered", "recover"]

_SCAN_BATCH = 4096
_DAMAGED = DropReason.DAMAGED


@dataclass(frozen=True, slots=True)
class Recovered:
    """What the segments say once recovered."""

    next_id: int
    depth: int
    pending_bytes: int
    #: Where delivery resumes; None when every record is acked.
    first_unacked: Record | None
    #: (segment, offset) of every damaged range skipped, torn tail excluded.
    damaged: frozenset[tuple[int, int]]
    #: The unacked records lost to damage, torn tail included.
    drops: tuple[Dropped, ...] = ()


def recover(directory: Path, segments: list[int], saved: SavedState) -> Recovered:
    """Recover the segments listed in ``segments``, which is updated; one always remains.

    Raises:
        OSError: a segment cannot be read, truncated or deleted.
    """
    delete_segments_through(directory, segments, saved.acked_through)
    damage: list[tuple[int, int, int, bool]] = []
    ends: set[tuple[int, int]] = set()  # where each damaged range ends

    def on_damage(segment: int, offset: int, length: int, trailing: bool) -> None:
        damage.append((segment, offset, length, trailing))
        ends.add((segment, offset + length))

    reader = SegmentReader(directory, segments, on_damage)
    last_id, depth, pending_bytes, first_unacked = 0, 0, 0, None
    drops: list[Dropped] = []
    matched: set[tuple[int, int]] = set()
    try:
        if segments:
            reader.seek(segments[0], 0)
        while batch := reader.read(_SCAN_BATCH):
            for record in batch:
                where = (record.segment, record.offset)
                if where in ends and where not in matched:
                    matched.add(where)
                    first = max(last_id, saved.acked_through) + 1
                    if record.id > first:
                        drops.append(Dropped(record.id - first, first, record.id - 1, _DAMAGED))
                last_id = record.id
                if record.id > saved.acked_through:
                    if first_unacked is None:
                        first_unacked = record
                    depth += 1
                    pending_bytes += record.size
    finally:
        reader.close()

    damaged = set()
    next_id = max(saved.next_id, saved.acked_through + 1, last_id + 1, *segments[-1:])
    for segment, offset, length, trailing in damage:
        if trailing and segment == segments[-1]:
            log_damage(directory, segment, offset, length, "a torn write, truncated")
            os.truncate(segment_path(directory, segment), offset)
            torn = last_id + 1  # the id the torn record had, never to be reused
            drops.append(Dropped(1, torn, torn, _DAMAGED))
            next_id = max(next_id, torn + 1)
        else:
            log_damage(directory, segment, offset, length, "CRC mismatch, skipped")
            damaged.add((segment, offset))
            if (segment, offset + length) not in matched:  # no record right after it
                drops.append(Dropped(1, 0, 0, _DAMAGED))

    if not segments:
        segments.append(next_id)
    return Recovered(next_id, depth, pending_bytes, first_unacked, frozenset(damaged), tuple(drops))
