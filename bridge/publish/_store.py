"""The files of one journal directory, and when they are made durable.

The store owns the segment list, the segment being written, and the saved state.  It
writes each batch with one ``write()``, rolls to a new segment once the current one
reaches ``segment_bytes``, and applies the fsync policy:

* ``always``: :meth:`SegmentStore.commit` fsyncs after each batch;
* ``interval``: a checkpoint at most every ``fsync_interval`` seconds fsyncs what was
  written since the last one (a full segment is fsynced when it is closed);
* ``never``: nothing is fsynced unless asked for by :meth:`SegmentStore.checkpoint`.

A checkpoint also saves the acked prefix and then deletes the segments it covers, in that
order, so a crash between the two leaves extra segments, never a hole.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from bridge.publish._frames import Record, encode_batch
from bridge.publish._recovery import Recovered, recover
from bridge.publish._segments import (
    DamageHandler,
    SegmentReader,
    SegmentWriter,
    delete_segments_through,
    fsync_directory,
    list_segments,
)
from bridge.publish._state import SavedState, load_state, save_state

__all__ = ["FsyncPolicy", "SegmentStore"]

FsyncPolicy = Literal["always", "interval", "never"]


class SegmentStore:
    """Segments and state of one directory, recovered on construction."""

    def __init__(
        self, directory: Path, *, fsync: FsyncPolicy, fsync_interval: float, segment_bytes: int
    ) -> None:
        """Recover ``directory``, whose lock the caller holds.

        Raises:
            ValueError: a setting is out of range.
            OSError: the files cannot be read, truncated or created.
        """
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"unknown fsync policy {fsync!r}")
        if segment_bytes <= 0 or fsync_interval < 0:
            raise ValueError("segment_bytes must be > 0 and fsync_interval >= 0")
        self.directory = directory
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._segment_bytes = segment_bytes
        self._saved = load_state(directory)
        self._segments = list_segments(directory)
        self.recovered: Recovered = recover(directory, self._segments, self._saved)
        self._writer = SegmentWriter(directory, self._segments[-1])
        if fsync != "never":
            fsync_directory(directory)  # the segment may be new
        self._unsynced = False
        self._next_checkpoint = time.monotonic() + fsync_interval

    def open_reader(self, on_damage: DamageHandler) -> SegmentReader:
        """A reader at the first unacked record found by recovery, or at the end."""
        reader = SegmentReader(self.directory, self._segments, on_damage)
        first = self.recovered.first_unacked
        if first is None:
            reader.seek(self._writer.first_id, self._writer.size)
        else:
            reader.seek(first.segment, first.offset)
        return reader

    def write(
        self, payloads: Sequence[bytes], first_id: int, appended_at: float
    ) -> tuple[int, list[Record]]:
        """Append ``payloads`` with ids from ``first_id``: (bytes written, the records).

        Raises:
            ValueError: a payload is too large; nothing was written.
            OSError: the OS refused the write; nothing of the batch was kept.
        """
        self._roll_if_full(first_id)
        writer = self._writer
        data, records = encode_batch(payloads, first_id, appended_at, writer.first_id, writer.size)
        writer.write(data)
        self._unsynced = True
        return len(data), records

    def commit(self) -> None:
        """Under ``always``, fsync what :meth:`write` wrote.

        Raises:
            OSError: the fsync failed.
        """
        if self._fsync == "always" and self._unsynced:
            self._writer.fsync()
            self._unsynced = False

    def checkpoint_due(self) -> bool:
        """True at most once per ``fsync_interval``."""
        now = time.monotonic()
        if now < self._next_checkpoint:
            return False
        self._next_checkpoint = now + self._fsync_interval
        return True

    def checkpoint(self, state: SavedState, *, fsync: bool = False) -> None:
        """fsync as the policy says (always when ``fsync``), save ``state``, delete what it covers.

        Raises:
            OSError: the fsync, the save or a deletion failed.
        """
        if self._unsynced and (fsync or self._fsync != "never"):
            self._writer.fsync()
            self._unsynced = False
        if state != self._saved:
            save_state(self.directory, state, durable=self._fsync != "never")
            self._saved = state
            delete_segments_through(self.directory, self._segments, state.acked_through)

    def close(self) -> None:
        self._writer.close()

    def _roll_if_full(self, first_id: int) -> None:
        if self._writer.size < self._segment_bytes:
            return
        full, self._writer = self._writer, SegmentWriter(self.directory, first_id)
        self._segments.append(first_id)
        try:
            if self._fsync != "never":
                full.fsync()  # checkpoints only fsync the segment being written
                fsync_directory(self.directory)
        finally:
            full.close()
