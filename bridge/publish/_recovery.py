"""Opening a journal directory again, after a clean stop or a crash.

1. Segments wholly inside the saved acked prefix are deleted (every id in a segment is
   below the name of the next one, so this needs no reading).
2. The other segments are read through once, sequentially: this counts the unacked records
   and their bytes and finds the first of them, where delivery resumes.
3. Damage that runs to the end of the *last* segment is a write a crash interrupted: its
   ``append`` never returned, so the bytes are truncated away.  Damage anywhere else is
   corruption: it is logged and skipped, and reported so it is counted once.
4. The next id is above every id seen: saved, recorded, or named by a segment, so ids are
   never reused: not those of deleted segments, nor those of refused records once a
   checkpoint has saved them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bridge.publish._frames import Record
from bridge.publish._segments import (
    SegmentReader,
    delete_segments_through,
    log_damage,
    segment_path,
)
from bridge.publish._state import SavedState

__all__ = ["Recovered", "recover"]

_SCAN_BATCH = 4096


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


def recover(directory: Path, segments: list[int], saved: SavedState) -> Recovered:
    """Recover the segments listed in ``segments``, which is updated; one always remains.

    Raises:
        OSError: a segment cannot be read, truncated or deleted.
    """
    delete_segments_through(directory, segments, saved.acked_through)
    damage: list[tuple[int, int, int, bool]] = []
    reader = SegmentReader(directory, segments, lambda *where: damage.append(where))
    last_id, depth, pending_bytes, first_unacked = 0, 0, 0, None
    try:
        if segments:
            reader.seek(segments[0], 0)
        while batch := reader.read(_SCAN_BATCH):
            for record in batch:
                if record.id > saved.acked_through:
                    if first_unacked is None:
                        first_unacked = record
                    depth += 1
                    pending_bytes += record.size
            last_id = batch[-1].id
    finally:
        reader.close()

    damaged = set()
    for segment, offset, length, trailing in damage:
        if trailing and segment == segments[-1]:
            log_damage(directory, segment, offset, length, "a torn write, truncated")
            os.truncate(segment_path(directory, segment), offset)
        else:
            log_damage(directory, segment, offset, length, "CRC mismatch, skipped")
            damaged.add((segment, offset))

    next_id = max(saved.next_id, saved.acked_through + 1, last_id + 1, *segments[-1:])
    if not segments:
        segments.append(next_id)
    return Recovered(next_id, depth, pending_bytes, first_unacked, frozenset(damaged))
