"""The frames of one persistent, mandatory publish, encoded directly for the hot path.

Approach
--------
aiormq's ``basic_publish`` encodes every message through pamqp's generic property and
field-table encoders, which dispatch on the type of every value.  The properties of a
bridge message hardly vary, so :class:`PublishEncoder` builds the frames itself:

* the ``Basic.Publish`` method frame is cached per routing key;
* the content header is packed with ``struct`` around the per-message fields, the
  constant properties (persistent, ``application/json``, ``app_id``) encoded once;
* str, int and list-of-str header values take a direct path (the encoded pairs of
  repeated strings are cached, but for the headers in :data:`UNCACHED_HEADERS`, whose
  value is new in every message); any other value goes to pamqp.

The output equals what pamqp marshals for ``Basic.Publish`` + ``ContentHeader`` +
``ContentBody`` with the same properties.
"""

from __future__ import annotations

import struct
from typing import Any

import pamqp.frame
from pamqp import commands as spec
from pamqp.encode import field_table, table_integer

from bridge.publish.message import HeaderValue, OutgoingMessage

__all__ = ["APP_ID", "CONTENT_TYPE", "UNCACHED_HEADERS", "PublishEncoder"]

APP_ID = "ami-bridge"
CONTENT_TYPE = "application/json"

_FRAME_END = b"\xce"
_U32 = struct.Struct(">I")
_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
# frame head + content header: class id, weight, body size, property flags
_CONTENT_HEAD = struct.Struct(">BHIHHQH")
_CONTENT_HEAD_SIZE = 14  # class id + weight + body size + flags
# content_type, headers, delivery_mode, message_id, timestamp, type, app_id
_PROPERTY_FLAGS = 0x8000 | 0x2000 | 0x1000 | 0x0080 | 0x0040 | 0x0020 | 0x0008
_EMPTY_TABLE = b"\x00\x00\x00\x00"
_MAX_METHOD_CACHE = 4096


def _short_string(value: str, what: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"{what} is {len(raw)} bytes; AMQP allows 255: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


_CONTENT_TYPE_FIELD = _short_string(CONTENT_TYPE, "content type")
_APP_ID_FIELD = _short_string(APP_ID, "app id")
# content type + delivery mode + timestamp + app id
_FIXED_PROPS_SIZE = len(_CONTENT_TYPE_FIELD) + 1 + 8 + len(_APP_ID_FIELD)


def _long_string(value: str) -> bytes:
    raw = value.encode()
    return b"S" + _U32.pack(len(raw)) + raw


# Most header values repeat from message to message (event name, server, schema), so their
# encoded (name, value) pairs are kept; a cleared cache costs only re-encoding.
_pairs: dict[tuple[str, str], bytes] = {}
_names: dict[str, bytes] = {}
_MAX_CACHED = 4096
#: Headers whose value changes with every message (the CloudEvents id, time and subject):
#: caching their pairs would only churn the cache.
UNCACHED_HEADERS = frozenset({"cloudEvents_id", "cloudEvents_time", "cloudEvents_subject"})


def _name(key: str) -> bytes | None:
    name = _names.get(key)
    if name is None:
        raw = key.encode()
        if len(raw) > 128:  # pamqp truncates such names (and warns); keep its behaviour
            return None
        if len(_names) >= _MAX_CACHED:
            _names.clear()
        name = _names[key] = bytes((len(raw),)) + raw
    return name


def _field_table(headers: dict[str, HeaderValue]) -> bytes:
    """Encode ``headers`` as an AMQP field table, byte for byte as pamqp's ``field_table``.

    pamqp dispatches on every type for every value; str, int and list-of-str values take
    a direct (and, for repeated strings, cached) path here, anything else goes to pamqp.
    """
    parts: list[bytes] = []
    for key in sorted(headers):
        value = headers[key]
        if isinstance(value, str):
            if key in UNCACHED_HEADERS:
                name = _name(key)
                if name is None:
                    break
                parts += (name, _long_string(value))
                continue
            pair = _pairs.get((key, value))
            if pair is None:
                name = _name(key)
                if name is None:
                    break
                if len(_pairs) >= _MAX_CACHED:
                    _pairs.clear()
                pair = _pairs[key, value] = name + _long_string(value)
            parts.append(pair)
            continue
        name = _name(key)
        if name is None or isinstance(value, bool):  # bool is an int, but has its own type
            break
        if isinstance(value, int):
            parts += (name, table_integer(value))
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            array = b"".join(map(_long_string, value))
            parts += (name, b"A", _U32.pack(len(array)), array)
        else:
            break
    else:
        payload = b"".join(parts)
        return _U32.pack(len(payload)) + payload
    loose: Any = headers  # dict is invariant; the values are a subset of pamqp's
    return field_table(loose)


class PublishEncoder:
    """Encodes an :class:`OutgoingMessage` as the frames of one persistent, mandatory publish.

    The output equals what pamqp marshals for ``Basic.Publish`` + ``ContentHeader`` +
    ``ContentBody`` with the same properties.
    """

    __slots__ = ("_channel", "_exchange", "_max_body_frame", "_methods")

    def __init__(self, channel_number: int, exchange: str, max_body_frame: int) -> None:
        self._channel = channel_number
        self._exchange = exchange
        self._max_body_frame = max_body_frame
        self._methods: dict[str, bytes] = {}

    def _method_frame(self, routing_key: str) -> bytes:
        frame = self._methods.get(routing_key)
        if frame is None:
            _short_string(routing_key, "routing key")
            frame = pamqp.frame.marshal(
                spec.Basic.Publish(
                    exchange=self._exchange, routing_key=routing_key, mandatory=True
                ),
                self._channel,
            )
            if len(self._methods) >= _MAX_METHOD_CACHE:
                self._methods.clear()
            self._methods[routing_key] = frame
        return frame

    def encode(self, message: OutgoingMessage, out: list[bytes]) -> None:
        """Append the frames for ``message`` to ``out`` (nothing when it raises).

        Raises:
            ValueError: the routing key, message id or event name is over 255 bytes,
                the message id is empty or the timestamp is negative.
            TypeError: a header value cannot be encoded.
        """
        method = self._method_frame(message.routing_key)
        if not message.message_id:  # returns are matched to publishes by message id
            raise ValueError("message id is empty")
        message_id = _short_string(message.message_id, "message id")
        event = _short_string(message.event, "event name")
        if not 0 <= message.timestamp < 2**64:
            raise ValueError(f"timestamp {message.timestamp} is not a 64-bit unix time")
        table = _field_table(message.headers) if message.headers else _EMPTY_TABLE
        body = message.body
        props_size = _FIXED_PROPS_SIZE + len(table) + len(message_id) + len(event)
        out += (
            method,
            _CONTENT_HEAD.pack(
                2,
                self._channel,
                _CONTENT_HEAD_SIZE + props_size,
                60,
                0,
                len(body),
                _PROPERTY_FLAGS,
            ),
            _CONTENT_TYPE_FIELD,
            table,
            b"\x02",  # delivery_mode: persistent
            message_id,
            message.timestamp.to_bytes(8, "big"),
            event,
            _APP_ID_FIELD,
            _FRAME_END,
        )
        step = self._max_body_frame
        for start in range(0, len(body), step):
            chunk = body[start : start + step]
            out += (_FRAME_HEAD.pack(3, self._channel, len(chunk)), chunk, _FRAME_END)
