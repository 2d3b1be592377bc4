"""The files of one journal directory, who writes them, and when they are made durable.

The store owns the segment list, the segment being written, and the saved state.  Two
threads use it, and neither holds the journal's lock across disk I/O (only to swap a
reference or edit the segment list), so the event loop, which takes that lock, never waits
for a slow or frozen disk:

* the *appender* (:meth:`SegmentStore.write`): one ``write()`` per batch; it rolls to a
  new segment once the current one reaches ``segment_bytes``, and under ``always`` it
  fsyncs the batch before returning;
* the *syncer* (:meth:`SegmentStore.sync`, the journal's background thread): the fsyncs
  of ``interval``, closing full segments, saving the acked prefix, deleting the segments
  it covers.

A checkpoint saves the acked prefix and then deletes the segments it covers.  When the
state cannot be saved (a full disk) the covered segments are deleted all the same: they
hold only confirmed records, so a crash before the next save redelivers only records of
the segments left, and deleting them is what frees the space.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from bridge.publish._frames import Record, encode_frames
from bridge.publish._recovery import Recovered, recover
from bridge.publish._segments import (
    DamageHandler,
    SegmentReader,
    SegmentWriter,
    forget_segments_through,
    fsync_directory,
    list_segments,
    segment_path,
)
from bridge.publish._state import SavedState, load_state, save_state

__all__ = ["FsyncPolicy", "SegmentStore"]

logger = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]

#: ``(id, appended_at, payload)``: one record to write.
Item = tuple[int, float, bytes]


class SegmentStore:
    """Segments and state of one directory, recovered on construction."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: FsyncPolicy,
        segment_bytes: int,
        lock: threading.Lock,
    ) -> None:
        """Recover ``directory``, whose directory lock the caller holds.

        ``lock`` is the journal's: held briefly to change the segment list, which the
        reader follows.

        Raises:
            ValueError: a setting is out of range.
            OSError: the files cannot be read, truncated or created.
        """
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"unknown fsync policy {fsync!r}")
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be > 0")
        self.directory = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._lock = lock
        self._saved = load_state(directory)
        self._segments = list_segments(directory)
        self.recovered: Recovered = recover(directory, self._segments, self._saved)
        self._writer = SegmentWriter(directory, self._segments[-1])
        #: Size of each segment file; changed under ``lock``.
        self._sizes = {first_id: _file_size(directory, first_id) for first_id in self._segments}
        self._roll_early = False  # the disk was full: roll before the next write
        #: Called with the lock held with the segments about to be deleted.
        self.on_delete: Callable[[list[int]], None] = lambda first_ids: None
        #: Full segments the syncer still has to fsync and close.
        self._closing: list[SegmentWriter] = []
        self._written = 0  # bytes written so far; compared by the syncer to skip fsyncs
        self._synced = 0
        self._sync_lock = threading.Lock()  # one checkpoint at a time
        #: A disk fault met while opening (a full disk): the journal starts in memory.
        self.fault: OSError | None = None
        if fsync != "never":
            try:
                fsync_directory(directory)  # the segment may be new
            except OSError as e:
                self.fault = e

    def open_reader(self, on_damage: DamageHandler) -> SegmentReader:
        """A reader at the first unacked record found by recovery, or at the end."""
        reader = SegmentReader(self.directory, self._segments, on_damage)
        first = self.recovered.first_unacked
        if first is None:
            reader.seek(self._writer.first_id, self._writer.size)
        else:
            reader.seek(first.segment, first.offset)
        return reader

    @property
    def disk_bytes(self) -> int:
        """Bytes in the segment files, as written by this store (read under the lock)."""
        return sum(self._sizes.values())

    def write(self, items: Sequence[Item]) -> tuple[int, list[Record]]:
        """Append ``items`` with one ``write()``: (bytes written, the records).

        Called by the appender only, without the journal's lock.

        Raises:
            ValueError: a payload is too large; nothing was written.
            OSError: the OS refused the write or the fsync under ``always``; nothing of the
                batch is kept in the file.
        """
        self._roll_if_full(items[0][0])
        writer = self._writer
        data, records = encode_frames(items, writer.first_id, writer.size)
        try:
            writer.write(data)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                # Write the next try to a new segment, so that this one, once all its
                # records are confirmed, can be deleted and free its space.
                self._roll_early = writer.size > 0
            raise
        self._written += len(data)
        with self._lock:
            self._sizes[writer.first_id] = writer.size
        if self._fsync == "always":
            writer.fsync()
            self._synced = self._written
        return len(data), records

    def sync(self, state: SavedState, *, fsync: bool = False) -> None:
        """fsync as the policy says (always when ``fsync``), save ``state``, delete what it
        covers.  Called by the syncer (or on close), never by the appender or the loop.

        Raises:
            OSError: the fsync or the save failed (covered segments are deleted anyway).
        """
        with self._sync_lock:
            durable = fsync or self._fsync != "never"
            with self._lock:
                closing, self._closing = self._closing, []
                writer, written = self._writer, self._written
            try:
                if closing and durable:
                    fsync_directory(self.directory)  # the segments that follow them
                for full in list(closing):
                    if durable:
                        full.fsync()
                    full.close()
                    closing.remove(full)
                if not closing and durable and written != self._synced:
                    writer.fsync()
                    self._synced = written
                if state != self._saved:
                    save_state(self.directory, state, durable=durable)
                    self._saved = state
            finally:
                if closing:  # not fsynced yet: the next checkpoint tries again
                    with self._lock:
                        self._closing[:0] = closing
                self._delete_through(state.acked_through)

    def close(self) -> None:
        for full in self._closing:
            full.close()
        self._closing = []
        self._writer.close()

    def _delete_through(self, acked_through: int) -> None:
        with self._lock:
            forgotten = forget_segments_through(self._segments, acked_through)
            for first_id in forgotten:
                self._sizes.pop(first_id, None)
            if forgotten:
                self.on_delete(forgotten)
        for first_id in forgotten:
            try:
                segment_path(self.directory, first_id).unlink(missing_ok=True)
            except OSError as e:
                logger.warning("journal: cannot delete confirmed segment %s: %s", first_id, e)

    def _roll_if_full(self, first_id: int) -> None:
        if self._writer.size < self._segment_bytes and not self._roll_early:
            return
        fresh = SegmentWriter(self.directory, first_id)
        self._roll_early = False
        if self._fsync == "always":
            fsync_directory(self.directory)  # else the syncer's next fsync covers it
        with self._lock:
            self._closing.append(self._writer)
            self._writer = fresh
            self._segments.append(first_id)
            self._sizes[first_id] = 0


def _file_size(directory: Path, first_id: int) -> int:
    try:
        return segment_path(directory, first_id).stat().st_size
    except OSError:
        return 0
