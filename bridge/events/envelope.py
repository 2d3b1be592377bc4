"""The JSON message contract: one JSON object per AMI message, and its encoder.

The contract
------------
Every message the bridge publishes is one compact JSON object (UTF-8)::

    {
      "schema_version": "2.3.0",
      "kind": "event",
      "id": "pbx1:1795675153000:42",
      "server": "pbx1",
      "event": "Newchannel",
      "privilege": ["call", "all"],
      "received_at": "2026-11-26T08:22:44.123456Z",
      "timestamp": "1795675153.345209",
      "epoch": 1795675153000,
      "seq": 42,
      "event_id": "sn:90211",
      "fields": {"Channel": "PJSIP/alice-00000001", "ChannelState": 0, ...},
      "extra": {...}, "repeated": {...}, "chan_vars": {...}, "unparsed_lines": [...],
      "snapshot": true,
      "raw": [["Event", "Newchannel"], ["Privilege", "call,all"], ...],
      "raw_base64": [["RXZlbnQ=", "TmV3Y2hhbm5lbA=="], ...],
      "errors": [{"field": "Cause", "message": "...", "type": "int_parsing"}]
    }

``schema_version``
    :data:`SCHEMA_VERSION`, ``major.minor.patch``.  A new optional key is a minor bump;
    consumers must ignore keys they do not know.
``kind``
    ``"event"``: the message fits its model (or the generic model when the event has
    none).  ``"invalid"``: it broke its model, or the parser could not read it whole.
    ``"status"``: the bridge's own news about its AMI connection (see below).
``id``
    ``"<server>:<epoch>:<seq>"`` (:func:`message_id`), stable across redeliveries and
    also the AMQP ``message_id``: consumers deduplicate on it.
``server``, ``epoch``, ``seq``
    The AMI server's configured name; the connection epoch (an int chosen per
    connection, e.g. its start time in ms); the message's sequence number within the
    epoch.  (epoch, seq) orders the messages of one server.
``event_id`` (since 2.3.0)
    The event's identity across every bridge reading the same PBX: ``sn:<n>`` from
    Asterisk's ``SequenceNumber`` header (``manager.conf`` ``debug = on``), else
    ``fp:<hash of the raw message>:<k>`` (``k`` tells byte-identical events apart).
    Also the ``event_id`` AMQP header.  Two bridges of a hot-standby pair publish the
    same event with the same ``event_id`` but different ``id`` values: consumers of a pair
    deduplicate on ``(server, event_id)``.  Absent on messages the parser could not read
    whole and on status messages.
``event``
    The event name exactly as sent (``Newexten``, not the docs' ``NewExten``); ``""``
    for an unreadable message with no ``Event`` header.
``privilege``
    The ``Privilege`` header, lower-cased and split on commas; ``[]`` when absent
    (events sent in reply to an action usually have none).
``received_at``
    When the bridge read the message: RFC 3339, UTC, always six fraction digits and
    ``Z``.
``timestamp``
    Asterisk's own ``Timestamp`` header exactly as sent (``timestampevents = yes``),
    else ``null``.
``fields`` (``kind=event``)
    The typed fields, keyed by AMI name as the Asterisk docs spell it, only those sent:
    integers as JSON numbers (only where every Asterisk release since 11 writes the
    header as a number, see ``scripts/generate_models.py``), all else strings exactly
    as sent (``<unknown>`` and C escapes are not touched).  ``Event``, ``Privilege``
    and ``Timestamp`` are not repeated here; ``SystemName`` and ``ActionID`` are.  For
    an event without a model every header is here, as a string or a list of strings
    when it was repeated.
``extra``
    Headers that did not fit the model, by their first spelling: a string, or a list of
    strings when repeated.  Omitted when empty.  These are headers the model does not
    know, and known fields whose value does not parse as the field's type (text where
    every Asterisk release writes a number): such a field is left out of ``fields`` and
    its text is kept here.  Either way the message is a valid event, never ``invalid``,
    and the bridge counts the header as drift.
``repeated``
    For a known field sent more than once: every value in order (``fields`` holds the
    first).  Also for a ``ChanVariable`` header that carried one variable twice: every
    value of that header in order (``chan_vars`` holds the first).  Omitted when empty.
``chan_vars``
    ``ChanVariable`` headers folded into ``{header name: {variable: value}}``, the
    header name as sent (``ChanVariable``, ``DestChanVariable``, or the 1.6-11 form
    ``ChanVariable(SIP/1-0001)``).  A value without ``=`` is no variable and is kept in
    ``extra`` instead (``FOO=`` is ``{"FOO": ""}`` here).  Omitted when empty.
``unparsed_lines``
    Lines that had no colon, in order.  Omitted when empty.
``snapshot``
    Present, and ``true``, only for messages produced by a state resync.
``raw``
    Every header as a ``[key, value]`` pair in wire order (the ``Event`` header
    included).  Always present for ``kind=invalid``; for events only when the bridge
    is configured with ``include_raw``.
``raw_base64``
    Present only when the message was not valid UTF-8.  JSON cannot carry the bad
    bytes, so every string above has U+FFFD in their place, and this key holds each
    header as ``[base64(key bytes), base64(value bytes)]`` in wire order: the exact
    original bytes of the whole message.
``errors`` (``kind=invalid``)
    Why the message is invalid: ``field`` is the AMI field name (or ``null`` for a
    message the parser could not read whole), ``message`` is readable, ``type`` is a
    stable code (pydantic's error type, or ``malformed``).

Status messages (``kind=status``) carry the same common keys: ``event`` is the status
(``connected``, ``disconnected``, ``gap``, ``overflow``, ``resync``), ``privilege`` is
``[]``, ``timestamp`` is ``null`` and ``fields`` holds the status's own keys
(:mod:`bridge.events.status`).

:class:`CommonEnvelope` describes the keys every message carries.  :class:`Envelope`
describes event and invalid messages as a pydantic model, generic over the ``fields``
model, for JSON Schema generation and for consumers that parse messages back.
"""

from __future__ import annotations

import time
from typing import Any, Generic, Literal, Self, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.events.base import AmiEvent
from bridge.events.validation import FieldError, InvalidRecord, Validated

__all__ = [
    "SCHEMA_VERSION",
    "CommonEnvelope",
    "Envelope",
    "ErrorDetail",
    "encode",
    "format_received_at",
    "message_id",
]

#: Version of the message contract described in this module.
SCHEMA_VERSION = "2.3.0"

FieldsT = TypeVar("FieldsT", bound=AmiEvent)

_RECEIVED_AT_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"


class ErrorDetail(BaseModel):
    """One reason a message is invalid."""

    model_config = ConfigDict(frozen=True)

    field: str | None = Field(description="AMI field name, or null for unreadable messages.")
    message: str = Field(description="Readable explanation.")
    type: str = Field(description="Stable error code: pydantic's error type or `malformed`.")


class CommonEnvelope(BaseModel):
    """The keys every published message carries, whatever its kind."""

    model_config = ConfigDict(frozen=True)

    schema_version: str = Field(
        description="Contract version, major.minor.patch.", pattern=r"^\d+\.\d+\.\d+$"
    )
    kind: Literal["event", "invalid", "status"] = Field(description="event, invalid or status.")
    id: str = Field(description="`<server>:<epoch>:<seq>`; consumers deduplicate on it.")
    server: str = Field(description="Configured name of the AMI server.")
    event: str = Field(description="Event name exactly as sent on the wire.")
    privilege: list[str] = Field(description="Privilege header, lower-cased and split.")
    received_at: str = Field(
        description="Bridge receive time, RFC 3339 UTC with microseconds.",
        pattern=_RECEIVED_AT_PATTERN,
        json_schema_extra={"format": "date-time"},
    )
    timestamp: str | None = Field(description="Asterisk's Timestamp header as sent.")
    epoch: int = Field(description="Connection epoch.")
    seq: int = Field(description="Sequence number within the epoch.")


class Envelope(CommonEnvelope, Generic[FieldsT]):
    """One published message; ``Envelope[Hangup]`` is a Hangup event's message."""

    kind: Literal["event", "invalid"] = Field(description="event, or invalid.")
    fields: FieldsT | None = Field(None, description="Typed fields (kind=event).")
    extra: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Headers that did not fit the model: unknown ones, and known fields "
        "whose value did not parse as their type (then absent from fields).",
    )
    repeated: dict[str, list[str]] = Field(
        default_factory=dict, description="Every value of known fields sent more than once."
    )
    chan_vars: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Channel variables by ChanVariable header name."
    )
    unparsed_lines: list[str] = Field(default_factory=list, description="Lines with no colon.")
    snapshot: bool = Field(False, description="True for messages produced by a state resync.")
    event_id: str | None = Field(
        None,
        description="Identity of the event across every bridge reading the PBX (`sn:<n>` "
        "from SequenceNumber, else `fp:<hash>:<k>`); a hot-standby pair's consumers "
        "deduplicate on (server, event_id). Since 2.3.0.",
    )
    raw: list[tuple[str, str]] | None = Field(None, description="Every header, in wire order.")
    raw_base64: list[tuple[str, str]] | None = Field(
        None, description="Exact bytes of each header (key, value) when not UTF-8."
    )
    errors: list[ErrorDetail] | None = Field(None, description="Why the message is invalid.")

    @model_validator(mode="after")
    def _kind_has_its_keys(self) -> Self:
        if self.kind == "event" and self.fields is None:
            raise ValueError("an event message needs fields")
        if self.kind == "invalid" and (self.errors is None or self.raw is None):
            raise ValueError("an invalid message needs errors and raw")
        return self


def message_id(server: str, epoch: int, seq: int) -> str:
    """The stable id of a message: ``"<server>:<epoch>:<seq>"``."""
    return f"{server}:{epoch}:{seq}"


_last_second: tuple[int, str] = (-1, "")


def format_received_at(epoch_seconds: float) -> str:
    """``time.time()`` as RFC 3339 UTC with microseconds: ``2026-11-26T08:22:44.123456Z``."""
    global _last_second
    micros_total = int(epoch_seconds * 1_000_000 + 0.5)  # round half up, in integers
    seconds, micros = divmod(micros_total, 1_000_000)
    cached_second, prefix = _last_second
    if cached_second != seconds:
        # Messages arrive in bursts within one second: format the date part once.
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, prefix)
    return f"{prefix}.{micros:06d}Z"


def encode(
    result: Validated | InvalidRecord,
    *,
    server: str,
    epoch: int,
    seq: int,
    received_at: float,
    include_raw: bool = False,
    snapshot: bool = False,
    event_id: str | None = None,
) -> bytes:
    """Encode one validated (or invalid) message as compact JSON bytes (the contract).

    ``received_at`` is ``time.time()`` when the message was read.  Empty optional keys
    are left out; ``raw`` is always present for an invalid record.
    """
    message: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "event" if isinstance(result, Validated) else "invalid",
        "id": f"{server}:{epoch}:{seq}",
        "server": server,
        "event": result.name,
        "privilege": result.privilege,
        "received_at": format_received_at(received_at),
        "timestamp": result.timestamp,
        "epoch": epoch,
        "seq": seq,
    }
    if event_id is not None:
        message["event_id"] = event_id
    if isinstance(result, Validated):
        message["fields"] = result.fields
        left = result.leftovers
        if left is not None:
            if left.extra:
                message["extra"] = left.extra
            if left.repeated:
                message["repeated"] = left.repeated
            if left.chan_vars:
                message["chan_vars"] = left.chan_vars
            if left.unparsed_lines:
                message["unparsed_lines"] = left.unparsed_lines
        if snapshot:
            message["snapshot"] = True
        if include_raw:
            message["raw"] = result.headers
        if result.raw_base64 is not None:
            message["raw_base64"] = result.raw_base64
        return orjson.dumps(message)
    if snapshot:
        message["snapshot"] = True
    message["raw"] = result.headers
    if result.raw_base64 is not None:
        message["raw_base64"] = result.raw_base64
    message["errors"] = [_error_dict(error) for error in result.errors]
    return orjson.dumps(message)


def _error_dict(error: FieldError) -> dict[str, str | None]:
    return {"field": error.field, "message": error.message, "type": error.type}
