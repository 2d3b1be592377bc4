"""What the journal holds: one record per message read, written before anything else.

The reader task journals what it read as cheaply as it can: the message's raw bytes plus
its place in the stream (server epoch, sequence number, receive time).  Validation,
routing and JSON encoding happen on the publishing side, from the record, so a record
replayed after a restart renders to the very same message, with the same message id.

Layout: a fixed little-endian head (kind, epoch, seq, received_at) and a payload:

* ``EVENT``: the message's raw header bytes (``Message.raw``);
* ``MALFORMED``: JSON ``{"reason", "headers", "data"}`` (data in base64);
* ``STATUS``: JSON ``{"status", "fields"}``, the bridge's own status messages.

The kind byte's high bit flags an event read as an item of a state resync (a
*snapshot*), so a snapshot costs no extra byte and records written before the flag
existed read back unchanged.  The next bit flags an event that carries its PBX-wide
``event_id`` (:mod:`bridge.ha.event_id`): the payload then starts with the id's length
(one byte) and the id (ASCII), before the raw bytes.  The id is computed as the record is
written, because its occurrence count depends on the stream read so far.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from bridge.ami.protocol import Event, Malformed

__all__ = ["Record", "RecordKind", "decode", "encode_event", "encode_malformed", "encode_status"]

_HEAD = struct.Struct("<BQQd")
#: Set in the kind byte of an event read as a state resync item.
_SNAPSHOT = 0x80
#: Set in the kind byte of an event whose payload starts with its event id.
_EVENT_ID = 0x40
_FLAGS = _SNAPSHOT | _EVENT_ID


class RecordKind(IntEnum):
    EVENT = 1
    MALFORMED = 2
    STATUS = 3


@dataclass(frozen=True, slots=True)
class Record:
    kind: RecordKind
    epoch: int
    seq: int
    received_at: float
    payload: bytes
    #: True for an event read as an item of a state resync.
    snapshot: bool = False
    #: The event's PBX-wide identity (:mod:`bridge.ha.event_id`), when it has one.
    event_id: str | None = None

    def event(self) -> Event:
        return Event.from_raw(self.payload)

    def malformed(self) -> Malformed:
        data = orjson.loads(self.payload)
        headers = tuple((str(k), str(v)) for k, v in data["headers"])
        return Malformed(data["reason"], base64.b64decode(data["data"]), headers)

    def status(self) -> tuple[str, dict[str, Any]]:
        data = orjson.loads(self.payload)
        return data["status"], data["fields"]


def _json_safe(text: str) -> str:
    # Surrogate escapes from invalid UTF-8 cannot go into JSON; the exact bytes are in "data".
    return text.encode("utf-8", "replace").decode("utf-8")


def encode_event(
    epoch: int,
    seq: int,
    received_at: float,
    event: Event,
    *,
    snapshot: bool = False,
    event_id: str | None = None,
) -> bytes:
    """An ``EVENT`` record; ``snapshot`` marks an item read by a state resync.

    ``event_id`` (ASCII, at most 255 bytes) is kept in the record when given.
    """
    kind = RecordKind.EVENT | _SNAPSHOT if snapshot else RecordKind.EVENT
    if event_id is None:
        return _HEAD.pack(kind, epoch, seq, received_at) + event.raw
    tag = event_id.encode("ascii")
    head = _HEAD.pack(kind | _EVENT_ID, epoch, seq, received_at)
    return head + bytes((len(tag),)) + tag + event.raw


def encode_malformed(epoch: int, seq: int, received_at: float, item: Malformed) -> bytes:
    payload = orjson.dumps(
        {
            "reason": item.reason,
            "headers": [[_json_safe(k), _json_safe(v)] for k, v in item.headers],
            "data": base64.b64encode(item.data).decode("ascii"),
        }
    )
    return _HEAD.pack(RecordKind.MALFORMED, epoch, seq, received_at) + payload


def encode_status(
    epoch: int, seq: int, received_at: float, status: str, fields: dict[str, Any]
) -> bytes:
    payload = orjson.dumps({"status": status, "fields": fields})
    return _HEAD.pack(RecordKind.STATUS, epoch, seq, received_at) + payload


def decode(record: bytes) -> Record:
    """Split a journal record into its head and payload.

    Raises:
        ValueError: the record is too short or of an unknown kind.
    """
    if len(record) < _HEAD.size:
        raise ValueError(f"journal record of {len(record)} bytes is shorter than its head")
    kind, epoch, seq, received_at = _HEAD.unpack_from(record)
    snapshot = bool(kind & _SNAPSHOT)
    start = _HEAD.size
    event_id = None
    if kind & _EVENT_ID:
        if len(record) <= start:
            raise ValueError("journal record ends before its event id")
        end = start + 1 + record[start]
        event_id = record[start + 1 : end].decode("ascii")
        start = end
    return Record(
        RecordKind(kind & ~_FLAGS), epoch, seq, received_at, record[start:], snapshot, event_id
    )
