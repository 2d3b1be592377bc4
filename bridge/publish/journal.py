"""A durable write-ahead journal of opaque records: one directory per AMI server.

Every event the bridge reads is appended here before it goes to the broker, and a
publisher confirm retires it (``ack``).  The journal is also the backlog: while the broker
is down or slow, records wait here and are handed out (``take``) oldest first.  After a
restart, even a SIGKILL, every record not acked is handed out again: delivery is
at-least-once.  The code is synchronous and thread-safe: one appender thread and the event
loop (take, ack, expire) may use it at once.  The internal lock is never held across disk
I/O, so nothing the loop calls waits for a slow or frozen disk.

The pieces: frames and their CRC (:mod:`._frames`), segment files (:mod:`._segments`), the
saved acked prefix and the directory lock (:mod:`._state`), opening after a crash
(:mod:`._recovery`), writing and fsync (:mod:`._store`), delivery order and the memory tail
(:mod:`._backlog`), the limits (:mod:`._overflow`), and the OS calls that write
(:mod:`._disk`).  A background thread of the journal saves the acked prefix every
``fsync_interval`` seconds (and on close), so a restart hands out again only the records
acked in the last interval (and those acked out of order above the prefix).  Segments
wholly inside the acked prefix are deleted.  Segments are ``segment_bytes`` long, by
default an eighth of ``max_bytes`` within 1 to 64 MiB, so a journal whose records are all
confirmed takes one small segment.

fsync policy
------------
``interval`` (default)
    Every append is one ``write()`` to the OS before ``append`` returns, so a crashed or
    killed *process* loses nothing.  The journal's thread fsyncs every ``fsync_interval``
    seconds and on close, so a crashed *machine* can lose the last interval; neither the
    appender nor the event loop ever waits for an fsync.
``always``
    ``fsync`` after every append batch, before ``append`` returns, on the appender's thread
    (it waits for the disk by design): survives a machine crash.
``never``
    The OS writes back when it likes; a crashed process still loses nothing.

A disk that cannot be written
-----------------------------
``append`` never raises for a disk fault (``ENOSPC``, ``EROFS``, ``EIO``: any ``OSError``
of a write, an fsync or a checkpoint).  The journal switches to *memory mode*: records get
their ids as usual and wait in memory, within ``memory_max_bytes``, to be handed out in
order like any other (so they are published straight from memory); past that bound they
are dropped (reason ``memory_full``).  Every record not journalled is counted
(``unwritten``).  Every ``retry_interval`` seconds the next append tries the disk again,
first with the records still in memory; once that works the journal is back on disk.
Each change is reported once by :meth:`Journal.disk_changes`.  Records still in memory
when the process ends are lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from bridge.publish import _frames
from bridge.publish._backlog import Backlog
from bridge.publish._frames import Record
from bridge.publish._overflow import (
    Dropped,
    DropReason,
    DropReports,
    Limits,
    OverflowPolicy,
)
from bridge.publish._segments import log_damage
from bridge.publish._state import SavedState, lock_directory
from bridge.publish._store import FsyncPolicy, SegmentStore

__all__ = [
    "DiskState",
    "DropReason",
    "Dropped",
    "FsyncPolicy",
    "Journal",
    "JournalClosed",
    "JournalError",
    "JournalIOError",
    "JournalLocked",
    "OverflowPolicy",
    "segment_bytes_for",
]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


class JournalError(Exception):
    """Base of the journal's errors."""


class JournalLocked(JournalError):
    """Another journal, in this process or another, has the directory open."""


class JournalClosed(JournalError):
    """The journal was used after :meth:`Journal.close`."""


class JournalIOError(JournalError):
    """The OS failed a journal read, or the directory cannot be opened for writing."""


@dataclass(frozen=True, slots=True)
class DiskState:
    """A change of the journal's disk: it became ``unavailable`` or was ``recovered``.

    ``unwritten`` counts the records kept in memory (or dropped) instead of written since
    the disk became unavailable, ``dropped`` those of them the full memory buffer dropped.
    """

    state: Literal["unavailable", "recovered"]
    reason: str
    unwritten: int
    dropped: int


def segment_bytes_for(max_bytes: int) -> int:
    """The segment size for a journal capped at ``max_bytes``: an eighth of it, 1 to 64 MiB.

    Only whole segments of confirmed records are deleted, so a journal whose records are
    all confirmed still holds its newest segment: a small segment keeps that small, and
    lets the cap be honoured.
    """
    return min(max(max_bytes // 8, _MIB), 64 * _MIB)


class Journal:
    """An append-only journal of ``bytes`` records with ids, acks and a bounded backlog.

    Create it with :meth:`open`.  Counters for metrics: ``appended``, ``acked``,
    ``dropped``, ``corrupt_records`` (damaged ranges skipped), ``bytes_written``,
    ``unwritten`` (records kept in memory because the disk failed) and ``memory_dropped``.
    """

    def __init__(
        self,
        directory: Path,
        lock_fd: int,
        *,
        fsync: FsyncPolicy,
        fsync_interval: float,
        segment_bytes: int,
        limits: Limits,
        overflow: OverflowPolicy,
        memory_records: int,
        memory_max_bytes: int,
        retry_interval: float,
        clock: Callable[[], float],
    ) -> None:
        """Recover the journal in ``directory``, which ``lock_fd`` locks; see :meth:`open`."""
        self._directory = directory
        self._lock_fd: int | None = lock_fd
        #: Guards the in-memory state; never held across disk I/O.
        self._lock = threading.Lock()
        #: One appender at a time; held across its write().
        self._append_lock = threading.Lock()
        self._limits = limits
        self._overflow = overflow
        self._clock = clock
        self._fsync_interval = fsync_interval
        self._retry_interval = retry_interval
        self._memory_max_bytes = memory_max_bytes
        self._drops = DropReports()
        self._store = SegmentStore(
            directory, fsync=fsync, segment_bytes=segment_bytes, lock=self._lock
        )
        recovered = self._store.recovered
        self._next_id = recovered.next_id
        self._depth = recovered.depth
        self._pending_bytes = recovered.pending_bytes
        self._damage_seen = set(recovered.damaged)
        for dropped in recovered.drops:
            self._drops.add(dropped)
        self.appended = 0
        self.acked = 0
        self.dropped = sum(dropped.count for dropped in recovered.drops)
        self.corrupt_records = len(recovered.damaged)
        self.bytes_written = 0
        self.unwritten = 0
        self.memory_dropped = 0
        #: Why the disk cannot be written, while it cannot; None while it can.
        self._unavailable: str | None = None
        self._retry_due = False
        self._memory_bytes = 0  # bytes of unacked in-memory-only records
        self._outage_unwritten = 0
        self._outage_dropped = 0
        self._changes: list[DiskState] = []
        if self._store.fault is not None:
            self._disk_failed(self._store.fault)
        try:
            self._reader = self._store.open_reader(self._on_damage)
        except BaseException:
            self._store.close()
            raise
        first = recovered.first_unacked
        cursor_id = self._next_id if first is None else first.id
        self._backlog = Backlog(self._reader, memory_records=memory_records, cursor_id=cursor_id)
        self._store.on_delete = self._backlog.segments_deleted
        self._stop = threading.Event()
        self._syncer = threading.Thread(
            target=self._sync_loop, name=f"journal-sync-{directory.name}", daemon=True
        )
        self._syncer.start()

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 1.0,
        segment_bytes: int | None = None,
        max_bytes: int = 1024 * _MIB,
        max_age: float | None = 24 * 3600.0,
        overflow: OverflowPolicy = "drop_oldest",
        memory_records: int = 100_000,
        memory_max_bytes: int = 64 * _MIB,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> Self:
        """Open (creating it if needed) the journal in ``directory`` and recover it.

        ``segment_bytes`` defaults to :func:`segment_bytes_for` ``max_bytes``.
        ``memory_max_bytes`` bounds the records kept in memory while the disk cannot be
        written, and ``retry_interval`` is how often the disk is tried again meanwhile.
        ``clock`` gives the append times that ``max_age`` and :meth:`oldest_age` use.

        Raises:
            ValueError: a setting is out of range.
            JournalLocked: another journal has ``directory`` open.
            JournalIOError: the directory or its files cannot be read or written.
        """
        if overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown overflow policy {overflow!r}")
        if memory_records < 0:
            raise ValueError(f"memory_records must be >= 0, not {memory_records}")
        if memory_max_bytes < 0 or retry_interval <= 0 or fsync_interval < 0:
            raise ValueError(
                "memory_max_bytes must be >= 0, retry_interval > 0 and fsync_interval >= 0"
            )
        limits = Limits(max_bytes, max_age)
        if segment_bytes is None:
            segment_bytes = segment_bytes_for(max_bytes)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock_fd = lock_directory(directory)
        except OSError as e:
            raise JournalIOError(f"journal directory {directory} is not writable: {_why(e)}") from e
        if lock_fd is None:
            raise JournalLocked(f"the journal in {directory} is already open elsewhere")
        try:
            return cls(
                directory,
                lock_fd,
                fsync=fsync,
                fsync_interval=fsync_interval,
                segment_bytes=segment_bytes,
                limits=limits,
                overflow=overflow,
                memory_records=memory_records,
                memory_max_bytes=memory_max_bytes,
                retry_interval=retry_interval,
                clock=clock,
            )
        except OSError as e:
            os.close(lock_fd)
            raise JournalIOError(f"cannot recover the journal in {directory}: {_why(e)}") from e
        except BaseException:
            os.close(lock_fd)
            raise

    @property
    def depth(self) -> int:
        """Records appended and neither acked nor dropped."""
        return self._depth

    @property
    def pending_bytes(self) -> int:
        """Bytes of the records counted by :attr:`depth`, frame headers included."""
        return self._pending_bytes

    @property
    def memory_bytes(self) -> int:
        """Bytes of the records kept only in memory (the disk failed) and not acked."""
        return self._memory_bytes

    @property
    def records_held(self) -> int:
        """Records held in memory: the newest ``memory_records``, and those kept there
        while the disk failed until they are acked or written."""
        return self._backlog.held

    @property
    def disk_bytes(self) -> int:
        """Bytes of the segment files."""
        with self._lock:
            return self._store.disk_bytes

    @property
    def unavailable(self) -> str | None:
        """Why the disk cannot be written (the OS error), or None while it can."""
        return self._unavailable

    @property
    def acked_through(self) -> int:
        """Every id up to this one is acked or dropped."""
        with self._lock:
            return self._backlog.acked_through

    def append(self, records: Sequence[bytes], *, essential: bool = False) -> int:
        """Journal ``records``: one ``write()`` (and one fsync under ``always``).

        Returns the id of the last record.  Ids are consecutive and never reused.  Under
        ``drop_newest`` the records past the limits are refused: they get ids but are not
        written, and :meth:`expire` reports them.

        A disk fault (any ``OSError``) is not raised: the records are kept in memory,
        within ``memory_max_bytes``, and handed out as usual; past it they are dropped.
        The disk is tried again every ``retry_interval``, the records kept in memory first.
        ``essential`` records (the bridge's own few status messages, which announce those
        drops) are kept in memory even past that bound.

        Raises:
            ValueError: a record is larger than 64 MiB.
            JournalClosed: the journal is closed.
        """
        if records and max(map(len, records)) > _frames.MAX_PAYLOAD:
            raise ValueError(f"journal record exceeds {_frames.MAX_PAYLOAD} bytes")
        with self._append_lock:
            with self._operation("append to"):
                if not records:
                    return self._next_id - 1
                now = self._clock()
                first_id = self._next_id
                admitted, refusal = self._admit(records, now)
                self._next_id = first_id + len(records)
                to_disk = self._unavailable is None or self._retry_due
                self._retry_due = False
                spill = self._backlog.unacked_in_memory() if self._unavailable else []
            items = [(r.id, r.appended_at, r.payload) for r in spill]
            items += [(first_id + n, now, p) for n, p in enumerate(records[:admitted])]
            written, error = None, None
            if items and to_disk:
                try:
                    written = self._store.write(items)
                except OSError as e:
                    error = e
            with self._lock:
                if written is not None:
                    self._written(len(spill), *written)
                elif admitted:
                    self._keep_in_memory(records[:admitted], first_id, now, error, essential)
                if refusal is not None:
                    refused = len(records) - admitted
                    self.dropped += refused
                    self._drops.add(
                        Dropped(refused, first_id + admitted, self._next_id - 1, refusal)
                    )
                if self._overflow == "drop_oldest":
                    self._drop_over_limits(now)
                return self._next_id - 1

    def take(self, max_records: int) -> list[tuple[int, bytes]]:
        """The next records not handed out yet, oldest first, as ``(id, payload)``.

        Never writes: it only reads back segments (page cache, mostly) and memory.

        Raises:
            JournalIOError: a segment could not be read.
            JournalClosed: the journal is closed.
        """
        with self._operation("read"):
            records = self._backlog.take(max_records)
            return [(record.id, record.payload) for record in records]

    def ack(self, record_id: int) -> None:
        """Retire a record handed out by :meth:`take`; acks may come in any order.

        An id that is not in flight (acked already, or dropped) is ignored.

        Raises:
            JournalClosed: the journal is closed.
        """
        with self._operation("ack in"):
            self._retire(record_id)

    def ack_many(self, ids: Iterable[int]) -> None:
        """:meth:`ack` each of ``ids``.

        Raises:
            JournalClosed: the journal is closed.
        """
        with self._operation("ack in"):
            for record_id in ids:
                self._retire(record_id)

    def rewind(self) -> None:
        """Hand out again, from the oldest, every record taken and not acked.

        Call it when the broker connection is lost with records in flight.

        Raises:
            JournalIOError: a segment could not be read.
            JournalClosed: the journal is closed.
        """
        with self._operation("rewind"):
            self._backlog.rewind()

    def expire(self) -> list[Dropped]:
        """Apply ``max_bytes`` and ``max_age`` now; returns every drop not reported yet.

        Raises:
            JournalIOError: a segment could not be read.
            JournalClosed: the journal is closed.
        """
        with self._operation("expire records in"):
            if self._overflow == "drop_oldest":
                self._drop_over_limits(self._clock())
            return self._drops.collect()

    def disk_changes(self) -> list[DiskState]:
        """Every change of the disk's state not reported yet, oldest first.

        Raises:
            JournalClosed: the journal is closed.
        """
        with self._operation("read"):
            changes, self._changes = self._changes, []
            return changes

    def oldest_age(self) -> float | None:
        """Seconds since the oldest unacked record was appended; None when there is none.

        Raises:
            JournalIOError: a segment could not be read.
            JournalClosed: the journal is closed.
        """
        with self._operation("read"):
            appended_at = self._backlog.oldest_appended_at()
            return None if appended_at is None else max(0.0, self._clock() - appended_at)

    def sync(self) -> None:
        """fsync the records written so far and save the acked prefix, whatever the policy.

        Runs in the caller's thread; the journal's own thread does this every
        ``fsync_interval``.

        Raises:
            JournalIOError: the OS failed the fsync or the write.
            JournalClosed: the journal is closed.
        """
        with self._operation("sync"):
            state = self._state()
        try:
            self._store.sync(state, fsync=True)
        except OSError as e:
            raise JournalIOError(f"cannot sync the journal in {self._directory}: {e}") from e

    def close(self) -> None:
        """Stop the sync thread, save the state, fsync (unless the policy is ``never``),
        release the directory.  Closing twice is allowed.

        A final fsync or save that fails is logged, not raised: the journal is closed
        anyway, and a restart redelivers what the saved state does not cover.
        """
        if self._lock_fd is None:
            return
        self._stop.set()
        if threading.current_thread() is not self._syncer:
            self._syncer.join()
        with self._append_lock:
            try:
                with self._operation("close"):
                    state = self._state()
                if self._unavailable is not None:
                    logger.error(
                        "journal %s: %d records kept in memory are lost with the process",
                        self._directory,
                        len(self._backlog.unacked_in_memory()),
                    )
                self._store.sync(state)
            except OSError as e:
                logger.error("journal %s: cannot save on close: %s", self._directory, _why(e))
            finally:
                with self._lock:
                    self._reader.close()
                    self._store.close()
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self._directory)!r}, depth={self._depth})"

    @contextmanager
    def _operation(self, doing: str) -> Iterator[None]:
        """Hold the lock, refuse a closed journal, turn OS failures into JournalIOError."""
        with self._lock:
            if self._lock_fd is None:
                raise JournalClosed(f"the journal in {self._directory} is closed")
            try:
                yield
            except OSError as e:
                raise JournalIOError(f"cannot {doing} the journal in {self._directory}: {e}") from e

    # -- the disk and the memory buffer (called with the lock held) ----------------------

    def _written(self, relocated: int, written: int, records: list[Record]) -> None:
        """A write succeeded: the first ``relocated`` records were kept in memory until now."""
        if relocated:
            self._backlog.relocate(records[:relocated])
            self._memory_bytes = 0
        new = records[relocated:]
        self._backlog.appended(new)
        self.appended += len(new)
        self.bytes_written += written
        self._depth += len(new)
        self._pending_bytes += sum(record.size for record in new)
        if self._unavailable is not None:
            self._changes.append(
                DiskState(
                    "recovered",
                    self._unavailable,
                    self._outage_unwritten,
                    self._outage_dropped,
                )
            )
            self._unavailable = None
            self._outage_unwritten = self._outage_dropped = 0

    def _disk_failed(self, error: OSError) -> None:
        if self._unavailable is None:
            self._unavailable = _why(error)
            self._changes.append(DiskState("unavailable", self._unavailable, 0, 0))

    def _keep_in_memory(
        self,
        payloads: Sequence[bytes],
        first_id: int,
        now: float,
        error: OSError | None,
        essential: bool,
    ) -> None:
        """Keep what could not be written in memory, within ``memory_max_bytes`` unless
        ``essential``."""
        if error is not None:
            self._disk_failed(error)
        room = self._memory_max_bytes - self._memory_bytes
        if essential:
            room = sum(_frames.HEADER_SIZE + len(payload) for payload in payloads)
        kept: list[Record] = []
        for record_id, payload in enumerate(payloads, first_id):
            size = _frames.HEADER_SIZE + len(payload)
            if size > room:
                break
            room -= size
            kept.append(Record(record_id, now, payload, _frames.IN_MEMORY, 0))
        self._backlog.appended(kept)
        size = sum(record.size for record in kept)
        self._memory_bytes += size
        self.unwritten += len(payloads)
        self._outage_unwritten += len(payloads)
        self.appended += len(kept)
        self._depth += len(kept)
        self._pending_bytes += size
        refused = len(payloads) - len(kept)
        if refused:
            self.dropped += refused
            self.memory_dropped += refused
            self._outage_dropped += refused
            last_id = first_id + len(payloads) - 1
            full = DropReason.MEMORY_FULL
            self._drops.add(Dropped(refused, last_id - refused + 1, last_id, full))

    # -- the sync thread ------------------------------------------------------------------

    def _sync_loop(self) -> None:
        interval = min(self._fsync_interval, self._retry_interval)
        while not self._stop.wait(max(interval, 0.01)):
            self._sync_once()

    def _sync_once(self) -> None:
        """fsync and checkpoint; while the disk is unavailable, let the next append retry."""
        with self._lock:
            if self._lock_fd is None:
                return
            state = self._state()
        try:
            self._store.sync(state)
        except OSError as e:
            with self._lock:
                if self._unavailable is None:
                    logger.debug("journal %s: sync failed: %s", self._directory, e)
                    self._disk_failed(e)
        with self._lock:
            if self._unavailable is not None:
                self._retry_due = True

    # -- acks and limits (called with the lock held) --------------------------------------

    def _on_damage(self, segment: int, offset: int, length: int, trailing: bool) -> None:
        if (segment, offset) not in self._damage_seen:  # else read again after a rewind
            self._damage_seen.add((segment, offset))
            self.corrupt_records += 1
            self.dropped += 1
            self._drops.add(Dropped(1, 0, 0, DropReason.DAMAGED))
            log_damage(self._directory, segment, offset, length, "CRC mismatch, skipped")

    def _admit(self, records: Sequence[bytes], now: float) -> tuple[int, DropReason | None]:
        """How many of ``records`` to write, and why the rest are refused."""
        if self._overflow == "drop_oldest":
            return len(records), None
        if self._limits.too_old(self._backlog.oldest_appended_at, now):
            return 0, DropReason.MAX_AGE
        admitted = self._limits.room_for(records, self._pending_bytes)
        return admitted, None if admitted == len(records) else DropReason.MAX_BYTES

    def _drop_over_limits(self, now: float) -> None:
        limits, backlog = self._limits, self._backlog
        while limits.over_size(self._pending_bytes) and self._drop_oldest(DropReason.MAX_BYTES):
            pass
        while limits.too_old(backlog.oldest_appended_at, now):
            self._drop_oldest(DropReason.MAX_AGE)

    def _drop_oldest(self, reason: DropReason) -> bool:
        dropped = self._backlog.drop_oldest()
        if dropped is None:
            return False
        record_id, size, in_memory = dropped
        self.dropped += 1
        self._forget(size, in_memory)
        self._drops.add(Dropped(1, record_id, record_id, reason))
        return True

    def _retire(self, record_id: int) -> None:
        retired = self._backlog.ack(record_id)
        if retired is not None:
            self.acked += 1
            self._forget(*retired)

    def _forget(self, size: int, in_memory: bool) -> None:
        self._depth -= 1
        self._pending_bytes -= size
        if in_memory:
            self._memory_bytes -= size

    def _state(self) -> SavedState:
        return SavedState(self._backlog.acked_through, self._next_id)


def _why(error: OSError) -> str:
    """An OS error as one short line: its text and the file, without the errno prefix."""
    text = error.strerror or str(error)
    return f"{text}: {error.filename}" if error.filename else text
