"""Journal record -> AMQP message: redact, validate, encode, route, stamp headers.

Pure and deterministic: the same record always renders to the same message (same body,
same message id), which is what makes republishing after a restart safe to dedupe.
Headers matching ``redact_headers`` are removed first (:mod:`bridge.service.redact`), so
a replayed journal is redacted with the settings of the bridge that publishes it.  An
event read by a state resync renders with ``"snapshot": true`` in its body and a
``snapshot`` AMQP header set to true, on the routing key it would have anyway.  Every
message also carries the ``cloudEvents_*`` headers of :mod:`bridge.events.cloudevents`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.events.amqp_headers import amqp_headers
from bridge.events.cloudevents import event_attributes, invalid_attributes, status_attributes
from bridge.events.envelope import SCHEMA_VERSION, encode, format_received_at, message_id
from bridge.events.validation import (
    FieldError,
    InvalidRecord,
    Validated,
    invalid_from_malformed,
    validate,
)
from bridge.publish.message import HeaderValue, OutgoingMessage
from bridge.publish.records import Record, RecordKind, decode
from bridge.publish.routing import BridgeStatus, Router, event_class
from bridge.service.redact import maybe_redactor

__all__ = ["Rendered", "Renderer", "status_body"]


@dataclass(frozen=True, slots=True)
class Rendered:
    message: OutgoingMessage
    #: The routing class ("call", "invalid", "bridge"...), for metrics.
    klass: str
    valid: bool
    #: Header names the event models do not know (schema drift), for metrics.
    drift: tuple[str, ...] = ()


def status_body(
    server: str, epoch: int, seq: int, received_at: float, status: str, fields: dict[str, Any]
) -> bytes:
    """The bridge's own status message, in the same envelope as AMI events."""
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "status",
            "id": message_id(server, epoch, seq),
            "server": server,
            "event": status,
            "privilege": [],
            "received_at": format_received_at(received_at),
            "timestamp": None,
            "epoch": epoch,
            "seq": seq,
            "fields": fields,
        }
    )


#: AMQP caps routing keys at 255 bytes; an event name longer than this cannot be routed
#: as itself, so it goes to the invalid route under its first characters.
_MAX_NAME = 96
#: The AMQP limit itself: escaping (``%20`` for a space) or a long privilege class can
#: push a key past it even with a short name, and such a message could never be sent.
_MAX_KEY = 255


def _fits(key: str) -> bool:
    return len(key.encode("utf-8", "replace")) <= _MAX_KEY


def _routable(result: Validated | InvalidRecord) -> Validated | InvalidRecord:
    if len(result.name.encode("utf-8", "replace")) <= _MAX_NAME:
        return result
    return _invalid(result, f"event name longer than {_MAX_NAME} bytes")


def _invalid(result: Validated | InvalidRecord, why: str) -> InvalidRecord:
    """``result`` as an invalid record with one more error, on the ``Event`` field."""
    error = FieldError("Event", why, "too_long")
    earlier: tuple[FieldError, ...] = getattr(result, "errors", ())
    return InvalidRecord(
        result.name,
        result.privilege,
        result.timestamp,
        result.headers,
        (*earlier, error),
        result.raw_base64,
    )


#: Routing-key segment and AMQP ``type`` of a message that has no event name.
_NAMELESS = "malformed"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Renderer:
    """Renders the records of one server.

    ``redact`` holds glob patterns of AMI header names to leave out of every message
    (see :mod:`bridge.service.redact`).

    Raises:
        ValueError: the router's server id is invalid (from :class:`Router`).
    """

    def __init__(
        self, router: Router, *, include_raw: bool = False, redact: Iterable[str] = ()
    ) -> None:
        self.router = router
        self.server = router.server
        self.include_raw = include_raw
        self.redactor = maybe_redactor(redact)

    def render(self, record: Record) -> Rendered:
        """The message for one journal record (never raises on the record's content)."""
        if record.kind is RecordKind.STATUS:
            return self._status(record)
        redactor = self.redactor
        if record.kind is RecordKind.EVENT:
            event = record.event()
            if redactor is not None:
                event = redactor.event(event)
            result: Validated | InvalidRecord = _routable(validate(event))
        else:
            malformed = record.malformed()
            if redactor is not None:
                malformed = redactor.malformed(malformed)
            result = invalid_from_malformed(malformed)
        # The headers and the AMQP type repeat the body's name ("" for a nameless
        # message); only the routing key needs a segment, and says "malformed".
        name = result.name[:_MAX_NAME]
        key = None
        if type(result) is Validated:
            klass = event_class(result.privilege)
            if klass == "none" and record.snapshot and result.model.live_class:
                # A list item that is also a live event (DeviceStateChange, sent by
                # DeviceStateList without a Privilege header) routes where the live one does.
                klass = result.model.live_class
            key = self.router.event_key(name or _NAMELESS, klass)
            drift = result.drift
            if not _fits(key):
                result = _invalid(result, f"routing key longer than {_MAX_KEY} bytes")
                key = None
        if key is None:
            klass, key, drift = "invalid", self._invalid_key(name or _NAMELESS), ()
        body = encode(
            result,
            server=self.server,
            epoch=record.epoch,
            seq=record.seq,
            received_at=record.received_at,
            include_raw=self.include_raw,
            snapshot=record.snapshot,
            event_id=record.event_id,
        )
        mid = message_id(self.server, record.epoch, record.seq)
        time_text = format_received_at(record.received_at)
        if type(result) is Validated and klass != "invalid":
            model = type(result.model)
            cloud = event_attributes(self.server, mid, time_text, model, name, result.fields)
        else:
            cloud = invalid_attributes(self.server, mid, time_text)
        message = self._message(record, key, body, name, list(result.privilege), cloud)
        return Rendered(message, klass, klass != "invalid", drift)

    def unrenderable(self, payload: bytes, error: BaseException) -> Rendered:
        """A last resort for a journal record :meth:`render` (or publishing) choked on.

        The record goes to the invalid route of a nameless message, with the error and its
        exact bytes, so nothing is lost and the pipeline is not stuck on it forever.
        """
        try:
            record = decode(payload)
        except ValueError:
            record = Record(RecordKind.MALFORMED, 0, 0, time.time(), payload)
        problem = FieldError(None, f"internal error: {type(error).__name__}: {error}", "internal")
        invalid = InvalidRecord("", (), None, (), (problem,), (("", _b64(payload)),))
        body = encode(
            invalid,
            server=self.server,
            epoch=record.epoch,
            seq=record.seq,
            received_at=record.received_at,
        )
        cloud = invalid_attributes(
            self.server,
            message_id(self.server, record.epoch, record.seq),
            format_received_at(record.received_at),
        )
        message = self._message(record, self._invalid_key(_NAMELESS), body, "", [], cloud)
        return Rendered(message, "invalid", False)

    def _invalid_key(self, name: str) -> str:
        """The invalid route for ``name``, shortened until the key fits AMQP's limit."""
        key = self.router.invalid_key(name)
        while not _fits(key) and name:
            name = name[:-1]
            key = self.router.invalid_key(name)
        return key

    def _status(self, record: Record) -> Rendered:
        status, fields = record.status()
        body = status_body(
            self.server, record.epoch, record.seq, record.received_at, status, fields
        )
        key = self.router.bridge_key(BridgeStatus(status))
        cloud = status_attributes(
            self.server,
            message_id(self.server, record.epoch, record.seq),
            format_received_at(record.received_at),
            status,
        )
        return Rendered(self._message(record, key, body, status, [], cloud), "bridge", True)

    def _message(
        self,
        record: Record,
        key: str,
        body: bytes,
        event: str,
        privilege: list[str],
        cloud: dict[str, HeaderValue],
    ) -> OutgoingMessage:
        """The AMQP message for ``record``: its id, time and headers come from the record.

        ``cloud`` holds the CloudEvents headers, and becomes the message's header dict.
        """
        return OutgoingMessage(
            routing_key=key,
            body=body,
            message_id=message_id(self.server, record.epoch, record.seq),
            event=event,
            timestamp=int(record.received_at),
            headers=self._headers(event, privilege, record, cloud),
        )

    def _headers(
        self, event: str, privilege: list[str], record: Record, cloud: dict[str, HeaderValue]
    ) -> dict[str, HeaderValue]:
        headers = cloud
        headers |= amqp_headers(
            event=event,
            server=self.server,
            privilege=privilege,
            epoch=record.epoch,
            seq=record.seq,
            snapshot=record.snapshot,
            event_id=record.event_id,
        )
        return headers
