"""The small files beside the segments: the directory lock and the saved acked prefix.

The acked prefix (every id up to it is confirmed or dropped) and the next id are two
integers, so they live in one tiny text file, ``state``, rewritten whole through a
temporary file and ``os.replace``.  A reader sees the old file or the new one, never a
mix, and opening costs one small read.  An append-only ack log would need framing,
compaction and a replay of its own for the same two numbers.  The file must end with a
newline to count, so a file cut short by a machine crash is ignored rather than misread:
the journal then redelivers more than needed, which at-least-once delivery allows.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bridge.publish import _disk

__all__ = ["SavedState", "load_state", "lock_directory", "save_state"]

logger = logging.getLogger(__name__)

_STATE_FILE = "state"
_LOCK_FILE = "lock"


@dataclass(frozen=True, slots=True)
class SavedState:
    """What survives a restart besides the segments themselves."""

    #: Every id up to this one is acked or dropped.
    acked_through: int = 0
    #: The id the next record gets (ids of refused records are reserved too).
    next_id: int = 1


def load_state(directory: Path) -> SavedState:
    """The saved state, or the empty state when there is none or it is unreadable."""
    path = directory / _STATE_FILE
    try:
        text = path.read_bytes().decode("ascii")
        if not text.endswith("\n"):
            raise ValueError("incomplete")
        acked_through, next_id = (int(field) for field in text.split())
    except FileNotFoundError:
        return SavedState()
    except (OSError, ValueError) as e:
        logger.warning(
            "ignoring unreadable journal state %s (%s); redelivering from the start", path, e
        )
        return SavedState()
    return SavedState(max(acked_through, 0), max(next_id, 1))


def save_state(directory: Path, state: SavedState, *, durable: bool) -> None:
    """Replace the saved state atomically; ``durable`` fsyncs it first.

    Raises:
        OSError: the file cannot be written.
    """
    temporary = directory / f"{_STATE_FILE}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    fd = _disk.create(temporary, flags)
    try:
        _disk.write(fd, memoryview(f"{state.acked_through} {state.next_id}\n".encode("ascii")))
        if durable:
            _disk.fsync(fd)
    finally:
        os.close(fd)
    _disk.replace(temporary, directory / _STATE_FILE)


def lock_directory(directory: Path) -> int | None:
    """Take the directory's exclusive lock: its descriptor, or None if it is held.

    Closing the descriptor releases the lock, as does the death of the process.

    Raises:
        OSError: the lock file cannot be created.
    """
    fd = _disk.create(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
