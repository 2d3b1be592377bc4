"""The published messages as typed models, and :func:`parse_message` to read them back.

Approach
--------
A body is one JSON object whose ``kind`` says what it is (the contract is documented in
:mod:`bridge.events.envelope`):

* ``event``: :class:`EventMessage`.  Its ``fields`` are validated into the event's own
  model from :mod:`bridge.events.registry` - the very models the bridge validated them
  with - so ``message.fields`` is a ``Hangup`` whose ``Cause`` is an ``int``.  Attributes
  are named after the AMI fields (``fields.Cause``, ``fields.Linkedid``); a field whose
  AMI name is not an identifier has ``-`` replaced by ``_`` (``fields.Cause_txt`` for
  ``Cause-txt``).  An event without a model gets :class:`~bridge.events.base.GenericEvent`,
  which keeps every header as text.
* ``invalid``: :class:`InvalidMessage`, with the raw headers and why they broke the model.
* ``status``: :class:`StatusMessage`, the bridge's own news about a server (``connected``,
  ``disconnected``, ``gap``, ``overflow``, ``resync``), its ``fields`` validated into
  the status's model from :mod:`bridge.events.status` the same way.

The models subclass the contract's own (:class:`~bridge.events.envelope.Envelope` with
its keys made required, :class:`bridge.events.status.StatusMessage`), so they cannot
drift from it.  Unknown keys are ignored, as the contract asks of consumers, but a
different *major* schema version is refused: it means the meaning of known keys changed.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import orjson
from pydantic import Field, ValidationError

from bridge.events.base import AmiEvent, GenericEvent
from bridge.events.envelope import SCHEMA_VERSION, Envelope, ErrorDetail
from bridge.events.registry import model_for
from bridge.events.status import STATUS_FIELDS, StatusFields
from bridge.events.status import StatusMessage as _StatusEnvelope
from bridge.publish.routing import event_class

__all__ = [
    "EventMessage",
    "InvalidMessage",
    "Message",
    "MessageError",
    "StatusMessage",
    "parse_message",
]

_MAJOR = SCHEMA_VERSION.split(".", 1)[0]


class MessageError(ValueError):
    """A body that is not a message of the contract (or of another major version)."""


class EventMessage(Envelope[AmiEvent]):
    """An AMI event that fit its model; ``fields`` is an instance of that model."""

    kind: Literal["event"]
    fields: AmiEvent = Field(description="The event's typed fields (its registry model).")

    @property
    def event_class(self) -> str:
        """The routing class: the first privilege class other than ``all``, or ``none``."""
        return event_class(self.privilege)


class InvalidMessage(Envelope[AmiEvent]):
    """An AMI message that broke its model or could not be read whole."""

    kind: Literal["invalid"]
    raw: list[tuple[str, str]] = Field(description="Every header, in wire order.")
    errors: list[ErrorDetail] = Field(description="Why the message is invalid.")

    @property
    def event_class(self) -> str:
        """Always ``invalid``, the routing class of invalid messages."""
        return "invalid"


class StatusMessage(_StatusEnvelope[StatusFields]):
    """The bridge's own status message about one server.

    ``fields`` is the status's model from :data:`~bridge.events.status.STATUS_FIELDS`
    (:class:`~bridge.events.status.GapFields` for ``gap``), or the base model for a
    status this version does not know.  It shares the server's (epoch, seq) numbering
    with the AMI events.
    """

    @property
    def event_class(self) -> str:
        """Always ``bridge``, the routing class of status messages."""
        return "bridge"


#: What :func:`parse_message` returns.
Message: TypeAlias = EventMessage | InvalidMessage | StatusMessage


def parse_message(body: bytes) -> Message:
    """Parse one published message body into its typed model.

    Raises:
        MessageError: the body is not JSON, is not a message of the contract, has an
            unknown ``kind``, or comes from another major schema version.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MessageError("not a JSON object")
    version = data.get("schema_version")
    if not isinstance(version, str) or version.split(".", 1)[0] != _MAJOR:
        raise MessageError(f"schema version {version!r} is not {_MAJOR}.x")
    kind = data.get("kind")
    try:
        if kind == "event":
            return _event(data)
        if kind == "invalid":
            return InvalidMessage.model_validate(data)
        if kind == "status":
            return _status(data)
    except ValidationError as exc:
        raise MessageError(f"{data.get('id', 'message')!s}: {_first_error(exc)}") from exc
    raise MessageError(f"unknown kind {kind!r}")


def _event(data: dict[str, Any]) -> EventMessage:
    fields = data.get("fields")
    if not isinstance(fields, dict):
        raise MessageError(f"{data.get('id', 'event')!s}: fields is not an object")
    model = model_for(str(data.get("event", ""))) or GenericEvent
    # The model instance goes in as is: pydantic keeps a subclass instance of AmiEvent.
    return EventMessage.model_validate({**data, "fields": model.model_validate(fields)})


def _status(data: dict[str, Any]) -> StatusMessage:
    fields = data.get("fields")
    if not isinstance(fields, dict):
        raise MessageError(f"{data.get('id', 'status')!s}: fields is not an object")
    model = STATUS_FIELDS.get(str(data.get("event", ""))) or StatusFields
    return StatusMessage.model_validate({**data, "fields": model.model_validate(fields)})


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "message"
    return f"{where}: {error['msg']}"
