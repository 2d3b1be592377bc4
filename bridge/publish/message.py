"""The message the publisher sends, and its compact record form for the disk journal.

Approach
--------
:class:`OutgoingMessage` holds everything one AMQP publish needs: the routing key, the body
(the event's JSON, already encoded), and the few properties that vary per message.  The
constant properties (persistent delivery, content type, app id) belong to the publisher.

The record form must be fast to write and read and must keep the body byte for byte, so it
is not JSON-in-JSON: one version byte, a 4-byte big-endian length, the metadata as an
orjson array, then the raw body::

    0x01 | len(meta) | orjson([routing_key, message_id, event, timestamp, headers]) | body
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["HeaderValue", "OutgoingMessage"]

HeaderValue = str | int | list[str]

_VERSION = 1
_PREFIX = struct.Struct(">BI")


def _check_headers(headers: Any) -> dict[str, HeaderValue]:
    if not isinstance(headers, dict):
        raise ValueError("headers must be an object")
    for key, value in headers.items():
        if not isinstance(key, str):
            raise ValueError(f"header name {key!r} is not a string")
        if isinstance(value, bool) or not isinstance(value, str | int | list):
            raise ValueError(f"header {key!r} has an unsupported value type")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ValueError(f"header {key!r} must be a list of strings")
    return headers


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message for the event exchange.

    ``headers`` carries the metadata consumers of a headers exchange match on (event name,
    server, privilege classes as a list, epoch, sequence, schema version); the caller fills
    them.
    """

    routing_key: str
    body: bytes
    message_id: str
    #: The AMI event name, sent as the AMQP ``type`` property.
    event: str
    #: Unix time in seconds, sent as the AMQP ``timestamp`` property.
    timestamp: int
    headers: dict[str, HeaderValue] = field(default_factory=dict)

    def to_record(self) -> bytes:
        """Encode for the journal; :meth:`from_record` restores an equal message."""
        meta = orjson.dumps(
            [self.routing_key, self.message_id, self.event, self.timestamp, self.headers]
        )
        return _PREFIX.pack(_VERSION, len(meta)) + meta + self.body

    @classmethod
    def from_record(cls, record: bytes) -> OutgoingMessage:
        """Decode a record written by :meth:`to_record`.

        Raises:
            ValueError: the record is truncated, of an unknown version, or its metadata
                is not what :meth:`to_record` writes.
        """
        if len(record) < _PREFIX.size:
            raise ValueError(f"message record too short ({len(record)} bytes)")
        version, meta_size = _PREFIX.unpack_from(record)
        if version != _VERSION:
            raise ValueError(f"unknown message record version {version}")
        body_start = _PREFIX.size + meta_size
        if body_start > len(record):
            raise ValueError("message record truncated inside its metadata")
        try:
            meta = orjson.loads(memoryview(record)[_PREFIX.size : body_start])
            routing_key, message_id, event, timestamp, headers = meta
        except (TypeError, ValueError) as e:  # orjson.JSONDecodeError is a ValueError
            raise ValueError(f"message record metadata unreadable: {e}") from None
        if not (
            isinstance(routing_key, str)
            and isinstance(message_id, str)
            and isinstance(event, str)
            and isinstance(timestamp, int)
            and not isinstance(timestamp, bool)
        ):
            raise ValueError("message record metadata has the wrong types")
        return cls(
            routing_key, record[body_start:], message_id, event, timestamp, _check_headers(headers)
        )
