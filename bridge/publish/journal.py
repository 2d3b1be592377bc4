"""A durable write-ahead journal of opaque records: one directory per AMI server.

Every event the bridge reads is appended here before it goes to the broker, and a
publisher confirm retires it (``ack``).  The journal is also the backlog: while the broker
is down or slow, records wait here and are handed out (``take``) oldest first.  After a
restart, even a SIGKILL, every record not acked is handed out again: delivery is
at-least-once.  The code is synchronous and thread-safe (one internal lock); async callers
run the slow calls through ``asyncio.to_thread``.

The pieces: frames and their CRC (:mod:`._frames`), segment files (:mod:`._segments`), the
saved acked prefix and the directory lock (:mod:`._state`), opening after a crash
(:mod:`._recovery`), writing and fsync (:mod:`._store`), delivery order and the memory tail
(:mod:`._backlog`), and the limits (:mod:`._overflow`).  The saved prefix is rewritten at
most every ``fsync_interval`` seconds and on close, so a restart hands out again only the
records acked in the last interval (and those acked out of order above the prefix).
Segments wholly inside the saved prefix are deleted, always after the state covering them
is saved.

fsync policy
------------
``interval`` (default)
    Every append is one ``write()`` to the OS before ``append`` returns, so a crashed or
    killed *process* loses nothing.  ``fsync`` runs at most every ``fsync_interval``
    seconds and on close, so a crashed *machine* can lose the last interval.  The interval
    is checked on every call, so an owner that may sit idle calls :meth:`Journal.expire`
    on a timer.
``always``
    ``fsync`` after every append batch, before ``append`` returns: survives a machine crash.
``never``
    The OS writes back when it likes; a crashed process still loses nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from bridge.publish._backlog import Backlog
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
    "DropReason",
    "Dropped",
    "FsyncPolicy",
    "Journal",
    "JournalClosed",
    "JournalError",
    "JournalIOError",
    "JournalLocked",
    "OverflowPolicy",
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
    """The OS failed a journal read or write (disk full, say)."""


class Journal:
    """An append-only journal of ``bytes`` records with ids, acks and a bounded backlog.

    Create it with :meth:`open`.  Counters for metrics: ``appended``, ``acked``,
    ``dropped``, ``corrupt_records`` (damaged ranges skipped) and ``bytes_written``.
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
        clock: Callable[[], float],
    ) -> None:
        """Recover the journal in ``directory``, which ``lock_fd`` locks; see :meth:`open`."""
        self._directory = directory
        self._lock_fd: int | None = lock_fd
        self._lock = threading.Lock()
        self._limits = limits
        self._overflow = overflow
        self._clock = clock
        self._drops = DropReports()
        self._store = SegmentStore(
            directory, fsync=fsync, fsync_interval=fsync_interval, segment_bytes=segment_bytes
        )
        recovered = self._store.recovered
        self._next_id = recovered.next_id
        self._depth = recovered.depth
        self._pending_bytes = recovered.pending_bytes
        self._damage_seen = set(recovered.damaged)
        self.appended = 0
        self.acked = 0
        self.dropped = 0
        self.corrupt_records = len(recovered.damaged)
        self.bytes_written = 0
        try:
            self._reader = self._store.open_reader(self._on_damage)
        except BaseException:
            self._store.close()
            raise
        first = recovered.first_unacked
        cursor_id = self._next_id if first is None else first.id
        self._backlog = Backlog(self._reader, memory_records=memory_records, cursor_id=cursor_id)

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 1.0,
        segment_bytes: int = 64 * _MIB,
        max_bytes: int = 1024 * _MIB,
        max_age: float | None = 24 * 3600.0,
        overflow: OverflowPolicy = "drop_oldest",
        memory_records: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> Self:
        """Open (creating it if needed) the journal in ``directory`` and recover it.

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
        limits = Limits(max_bytes, max_age)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock_fd = lock_directory(directory)
        except OSError as e:
            raise JournalIOError(f"cannot open the journal in {directory}: {e}") from e
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
                clock=clock,
            )
        except OSError as e:
            os.close(lock_fd)
            raise JournalIOError(f"cannot recover the journal in {directory}: {e}") from e
        except BaseException:
            os.close(lock_fd)
            raise

    @property
    def depth(self) -> int:
        """Records appended and neither acked nor dropped."""
        return self._depth

    @property
    def pending_bytes(self) -> int:
        """Bytes on disk of the records counted by :attr:`depth`, frame headers included."""
        return self._pending_bytes

    @property
    def acked_through(self) -> int:
        """Every id up to this one is acked or dropped."""
        with self._lock:
            return self._backlog.acked_through

    def append(self, records: Sequence[bytes]) -> int:
        """Write ``records`` with one ``write()`` (and one fsync under ``always``).

        Returns the id of the last record.  Ids are consecutive and never reused.  Under
        ``drop_newest`` the records past the limits are refused: they get ids but are not
        written, and :meth:`expire` reports them.

        Raises:
            ValueError: a record is larger than 64 MiB.
            JournalIOError: the OS refused the write; nothing of the batch was kept.
            JournalClosed: the journal is closed.
        """
        with self._operation("append to"):
            if not records:
                return self._next_id - 1
            now = self._clock()
            first_id = self._next_id
            admitted, refusal = self._admit(records, now)
            if admitted:
                self._write(records[:admitted], first_id, now)
            self._next_id = first_id + len(records)
            if refusal is not None:
                refused = len(records) - admitted
                self.dropped += refused
                self._drops.add(Dropped(refused, first_id + admitted, self._next_id - 1, refusal))
            if self._overflow == "drop_oldest":
                self._drop_over_limits(now)
            self._store.commit()
            self._maybe_checkpoint()
            return self._next_id - 1

    def take(self, max_records: int) -> list[tuple[int, bytes]]:
        """The next records not handed out yet, oldest first, as ``(id, payload)``.

        Raises:
            JournalIOError: a segment could not be read.
            JournalClosed: the journal is closed.
        """
        with self._operation("read"):
            records = self._backlog.take(max_records)
            self._maybe_checkpoint()
            return [(record.id, record.payload) for record in records]

    def ack(self, record_id: int) -> None:
        """Retire a record handed out by :meth:`take`; acks may come in any order.

        An id that is not in flight (acked already, or dropped) is ignored.

        Raises:
            JournalClosed: the journal is closed.
        """
        with self._operation("ack in"):
            self._retire(record_id)
            self._maybe_checkpoint()

    def ack_many(self, ids: Iterable[int]) -> None:
        """:meth:`ack` each of ``ids``.

        Raises:
            JournalClosed: the journal is closed.
        """
        with self._operation("ack in"):
            for record_id in ids:
                self._retire(record_id)
            self._maybe_checkpoint()

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
            self._maybe_checkpoint()
            return self._drops.collect()

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

        Raises:
            JournalIOError: the OS failed the fsync or the write.
            JournalClosed: the journal is closed.
        """
        with self._operation("sync"):
            self._store.checkpoint(self._state(), fsync=True)

    def close(self) -> None:
        """Save the state, fsync (unless the policy is ``never``), release the directory.

        Closing twice is allowed.

        Raises:
            JournalIOError: the final fsync or save failed (the journal is closed anyway).
        """
        if self._lock_fd is None:
            return
        with self._operation("close"):
            try:
                self._store.checkpoint(self._state())
            finally:
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

    def _on_damage(self, segment: int, offset: int, length: int, trailing: bool) -> None:
        if (segment, offset) not in self._damage_seen:  # else read again after a rewind
            self._damage_seen.add((segment, offset))
            self.corrupt_records += 1
            log_damage(self._directory, segment, offset, length, "CRC mismatch, skipped")

    def _admit(self, records: Sequence[bytes], now: float) -> tuple[int, DropReason | None]:
        """How many of ``records`` to write, and why the rest are refused."""
        if self._overflow == "drop_oldest":
            return len(records), None
        if self._limits.too_old(self._backlog.oldest_appended_at, now):
            return 0, DropReason.MAX_AGE
        admitted = self._limits.room_for(records, self._pending_bytes)
        return admitted, None if admitted == len(records) else DropReason.MAX_BYTES

    def _write(self, payloads: Sequence[bytes], first_id: int, now: float) -> None:
        written, records = self._store.write(payloads, first_id, now)
        self._backlog.appended(records)
        self.appended += len(records)
        self.bytes_written += written
        self._depth += len(records)
        self._pending_bytes += written

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
        record_id, size = dropped
        self.dropped += 1
        self._depth -= 1
        self._pending_bytes -= size
        self._drops.add(Dropped(1, record_id, record_id, reason))
        return True

    def _retire(self, record_id: int) -> None:
        size = self._backlog.ack(record_id)
        if size is not None:
            self.acked += 1
            self._depth -= 1
            self._pending_bytes -= size

    def _state(self) -> SavedState:
        return SavedState(self._backlog.acked_through, self._next_id)

    def _maybe_checkpoint(self) -> None:
        if not self._store.checkpoint_due():
            return
        try:
            self._store.checkpoint(self._state())
        except OSError as e:
            # Retried next interval; meanwhile a restart would redeliver a little more.
            logger.error("journal: cannot checkpoint %s, retrying: %s", self._directory, e)
