"""Segment files of the journal: naming, the appending writer and the sequential reader.

A journal directory holds append-only segment files named by the id of their first record
(``00000000000000000001.seg``), so sorting the names sorts the records, and every id in a
segment is lower than the name of the next one.  Only the last segment is ever written.

The writer appends a whole batch with one ``write()`` on an ``O_APPEND`` descriptor; if the
OS refuses part of it (disk full), the file is cut back to its previous size so that no
half batch is left in front of later ones.

The reader walks the segments in order, 1 MiB at a time, decoding frames out of its
buffer: one ``read()`` serves thousands of records.  On damage it searches for the next
valid frame and reports what it skipped; damage that runs to the end of a segment is
reported as trailing (a torn write, when it is the last segment).
"""

from __future__ import annotations

import contextlib
import logging
import os
from bisect import bisect_right
from collections.abc import Callable
from io import FileIO
from pathlib import Path

from bridge.publish import _disk
from bridge.publish._frames import MAGIC_BYTES, Flaw, Record, decode_frame

__all__ = [
    "DamageHandler",
    "SegmentReader",
    "SegmentWriter",
    "delete_segments_through",
    "forget_segments_through",
    "fsync_directory",
    "list_segments",
    "log_damage",
    "segment_path",
]

logger = logging.getLogger(__name__)

_SUFFIX = ".seg"
_READ_CHUNK = 1024 * 1024

#: Called as ``(segment, offset, length, trailing)`` for every damaged byte range skipped.
DamageHandler = Callable[[int, int, int, bool], None]


def segment_path(directory: Path, first_id: int) -> Path:
    """The file of the segment whose first record has id ``first_id``."""
    return directory / f"{first_id:020d}{_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """The first ids of the segments in ``directory``, in order."""
    first_ids = []
    for path in directory.glob(f"*{_SUFFIX}"):
        if path.stem.isdigit():
            first_ids.append(int(path.stem))
        else:
            logger.warning("ignoring unexpected file %s in journal directory", path)
    return sorted(first_ids)


def delete_segments_through(directory: Path, segments: list[int], acked_through: int) -> None:
    """Delete from disk and from ``segments`` every segment but the last whose ids are all
    ``acked_through`` or lower.

    Raises:
        OSError: a segment cannot be deleted.
    """
    for first_id in forget_segments_through(segments, acked_through):
        segment_path(directory, first_id).unlink(missing_ok=True)


def forget_segments_through(segments: list[int], acked_through: int) -> list[int]:
    """Remove from ``segments`` (and return) every segment but the last whose ids are all
    ``acked_through`` or lower; the caller deletes their files."""
    count = 0
    while count < len(segments) - 1 and segments[count + 1] <= acked_through + 1:
        count += 1
    forgotten = segments[:count]
    del segments[:count]
    return forgotten


def log_damage(directory: Path, segment: int, offset: int, length: int, verdict: str) -> None:
    """Log a damaged byte range of a segment."""
    path = segment_path(directory, segment)
    logger.warning("journal: %d damaged bytes at %s offset %d: %s", length, path, offset, verdict)


def fsync_directory(directory: Path) -> None:
    """Make file creations and renames in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _disk.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """The segment being appended to."""

    def __init__(self, directory: Path, first_id: int) -> None:
        self.first_id = first_id
        self.path = segment_path(directory, first_id)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = _disk.create(self.path, flags)
        #: Bytes in the file; also the offset the next write lands at.
        self.size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Append ``data`` whole.

        Raises:
            OSError: the OS refused the write; the file is back at its previous size.
        """
        view = memoryview(data)
        written = 0
        try:
            # One write() unless the kernel accepts only part of it.
            while written < len(data):
                written += _disk.write(self._fd, view[written:])
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(data)

    def fsync(self) -> None:
        _disk.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class SegmentReader:
    """Reads records in order across segments, from any frame position.

    ``segments`` is the journal's own list of segment first ids; the reader follows it as
    segments are added and deleted.
    """

    def __init__(self, directory: Path, segments: list[int], on_damage: DamageHandler) -> None:
        self._directory = directory
        self._segments = segments
        self._on_damage = on_damage
        self._segment: int | None = None
        self._file: FileIO | None = None
        self._buf = b""
        self._base = 0  # file offset of _buf[0]
        self._pos = 0  # index in _buf of the next frame

    @property
    def segment(self) -> int | None:
        """The segment the reader has open, if any."""
        return self._segment

    def seek(self, segment: int, offset: int) -> None:
        """Continue from the frame at ``offset`` in ``segment``.

        Raises:
            OSError: the segment file cannot be opened.
        """
        if segment == self._segment and self._base <= offset <= self._base + len(self._buf):
            self._pos = offset - self._base  # already buffered: a rewind, usually
            return
        # Opened before the current one is let go: a failure leaves the reader where it
        # was, so the next read tries again instead of finding a false end.
        file = FileIO(segment_path(self._directory, segment), "rb")
        try:
            file.seek(offset)
        except OSError:
            file.close()
            raise
        self.close()
        self._file, self._segment = file, segment
        self._buf, self._base, self._pos = b"", offset, 0

    def seek_id(self, record_id: int) -> None:
        """Continue from the first record whose id is ``record_id`` or more."""
        index = max(bisect_right(self._segments, record_id) - 1, 0)
        self.seek(self._segments[index], 0)
        while (record := self._frame()) is not None and record.id < record_id:
            self.advance(record)

    def peek(self, below: int | None = None) -> Record | None:
        """The next record, not consumed; None at the end or at an id of ``below`` or more."""
        record = self._frame()
        if record is None or (below is not None and record.id >= below):
            return None
        return record

    def advance(self, record: Record) -> None:
        """Consume ``record``, which :meth:`peek` just returned."""
        self._pos = record.offset + record.size - self._base

    def read(self, limit: int, below: int | None = None) -> list[Record]:
        """Consume and return up to ``limit`` records, stopping before an id of ``below``.

        Raises:
            OSError: the disk failed before any record was read (after some, the records
                read are returned and the next call meets the failure again).
        """
        records: list[Record] = []
        while len(records) < limit:
            try:
                record = self.peek(below)
            except OSError:
                if records:
                    break
                raise
            if record is None:
                break
            self._pos += record.size
            records.append(record)
        return records

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._segment = None

    def _frame(self) -> Record | None:
        while self._segment is not None:
            found = decode_frame(self._buf, self._pos, self._segment, self._base)
            if isinstance(found, Record):
                return found
            if found is Flaw.SHORT and self._fill():
                continue
            if self._pos == len(self._buf):
                if not self._next_segment():
                    return None  # the live end; later appends extend this segment
                continue
            self._skip_damage()
        return None

    def _fill(self) -> bool:
        assert self._file is not None
        data = self._file.read(_READ_CHUNK)
        if not data:
            return False
        self._base += self._pos
        self._buf = self._buf[self._pos :] + data
        self._pos = 0
        return True

    def _next_segment(self) -> bool:
        assert self._segment is not None
        index = bisect_right(self._segments, self._segment)
        if index == len(self._segments):
            return False
        self.seek(self._segments[index], 0)
        return True

    def _skip_damage(self) -> None:
        assert self._segment is not None
        segment, start = self._segment, self._base + self._pos
        resumed = self._resync()
        self._on_damage(segment, start, self._base + self._pos - start, not resumed)

    def _resync(self) -> bool:
        """Move to the next frame that decodes; False (at the end) if none is left."""
        assert self._segment is not None
        self._pos += 1
        while True:
            hit = self._buf.find(MAGIC_BYTES, self._pos)
            if hit < 0:
                # Keep a possible magic split across the end of the buffer.
                self._pos = max(self._pos, len(self._buf) - len(MAGIC_BYTES) + 1)
                if not self._fill():
                    self._pos = len(self._buf)
                    return False
                continue
            self._pos = hit
            found = decode_frame(self._buf, hit, self._segment, self._base)
            if isinstance(found, Record):
                return True
            if found is Flaw.SHORT and self._fill():
                continue
            self._pos = hit + 1
