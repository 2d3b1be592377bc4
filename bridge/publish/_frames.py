"""How one journal record is laid out on disk, and how to read it back safely.

Each record is one frame, little-endian, with a 28-byte header::

    magic u32 | crc32 u32 | length u32 | id u64 | appended_at f64 | payload[length]

The CRC (``zlib.crc32``) covers everything after itself: the length, the id, the append
time and the payload.  A frame cut short by a crash or changed by a flipped bit therefore
never decodes as a record.  The magic number gives a reader a way back in after damage: it
searches for the next magic and accepts the first candidate whose CRC holds.

A batch of records is encoded into one ``bytes`` so that the writer can hand the whole batch
to the OS with a single ``write()``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple

__all__ = [
    "HEADER_SIZE",
    "IN_MEMORY",
    "MAGIC_BYTES",
    "MAX_PAYLOAD",
    "Flaw",
    "Record",
    "decode_frame",
    "encode_batch",
    "encode_frames",
]

_MAGIC = 0x4C4E524A  # b"JRNL" read as a little-endian u32
MAGIC_BYTES = struct.pack("<I", _MAGIC)
_HEADER = struct.Struct("<IIIQd")
_PREFIX = struct.Struct("<II")  # magic, crc
_CHECKED = struct.Struct("<IQd")  # length, id, appended_at: the header part under the CRC
HEADER_SIZE = _HEADER.size
_CRC_START = _PREFIX.size

#: The ``segment`` of a record kept only in memory, while the disk cannot be written.
IN_MEMORY = -1

#: A larger length field is damage, not a record; it also bounds what a reader buffers.
MAX_PAYLOAD = 64 * 1024 * 1024


class Record(NamedTuple):
    """One stored record and where its frame sits (segment first id, byte offset)."""

    id: int
    appended_at: float
    payload: bytes
    segment: int
    offset: int

    @property
    def size(self) -> int:
        """Bytes the frame takes on disk, header included."""
        return HEADER_SIZE + len(self.payload)

    @property
    def in_memory(self) -> bool:
        """True for a record not written to any segment (yet)."""
        return self.segment == IN_MEMORY


class Flaw(Enum):
    """Why no record could be decoded at a position."""

    #: The buffer ends before the frame does: more bytes may complete it.
    SHORT = "short"
    #: Wrong magic, an impossible length or a CRC mismatch.
    DAMAGED = "damaged"


def encode_batch(
    payloads: Sequence[bytes], first_id: int, appended_at: float, segment: int, offset: int
) -> tuple[bytes, list[Record]]:
    """Frame ``payloads`` with consecutive ids from ``first_id``, ready for one ``write()``.

    Returns the bytes and the records as they will sit in ``segment`` at ``offset``.

    Raises:
        ValueError: a payload is longer than :data:`MAX_PAYLOAD`.
    """
    items = [(record_id, appended_at, p) for record_id, p in enumerate(payloads, first_id)]
    return encode_frames(items, segment, offset)


def encode_frames(
    items: Sequence[tuple[int, float, bytes]], segment: int, offset: int
) -> tuple[bytes, list[Record]]:
    """Frame ``(id, appended_at, payload)`` items in order, ready for one ``write()``.

    Raises:
        ValueError: a payload is longer than :data:`MAX_PAYLOAD`.
    """
    parts: list[bytes] = []
    records: list[Record] = []
    for record_id, appended_at, payload in items:
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"journal record of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        checked = _CHECKED.pack(len(payload), record_id, appended_at)
        crc = zlib.crc32(payload, zlib.crc32(checked))
        parts += (_PREFIX.pack(_MAGIC, crc), checked, payload)
        records.append(Record(record_id, appended_at, payload, segment, offset))
        offset += HEADER_SIZE + len(payload)
    return b"".join(parts), records


def decode_frame(buf: bytes, pos: int, segment: int, base: int) -> Record | Flaw:
    """Decode the frame at ``buf[pos:]``; ``base`` is the file offset of ``buf[0]``."""
    available = len(buf) - pos
    if available < HEADER_SIZE:
        # A wrong magic is damage however few bytes follow it.
        if available >= len(MAGIC_BYTES) and buf[pos : pos + len(MAGIC_BYTES)] != MAGIC_BYTES:
            return Flaw.DAMAGED
        return Flaw.SHORT
    magic, crc, length, record_id, appended_at = _HEADER.unpack_from(buf, pos)
    if magic != _MAGIC or length > MAX_PAYLOAD:
        return Flaw.DAMAGED
    start = pos + HEADER_SIZE
    end = start + length
    if end > len(buf):
        return Flaw.SHORT
    payload = buf[start:end]
    if zlib.crc32(payload, zlib.crc32(buf[pos + _CRC_START : start])) != crc:
        return Flaw.DAMAGED
    return Record(record_id, appended_at, payload, segment, base + pos)
