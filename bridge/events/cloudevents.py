"""CloudEvents 1.0 attributes of every published message (AMQP binding, binary mode).

Approach
--------
In binary mode a message's body is the event's ``data`` as is, its ``content_type``
(``application/json``) is ``datacontenttype``, and every other attribute is an
application property named ``cloudEvents_<attribute>``.  RabbitMQ carries AMQP 0-9-1
headers to AMQP 1.0 consumers as application properties, so these headers make every
message a CloudEvent for both.  The ``_`` separator is the one the binding prefers (a
JMS property name cannot hold ``:``).

=========================== ==================================================================
``cloudEvents_specversion`` ``1.0``
``cloudEvents_id``          the message id, ``<server>:<epoch>:<seq>`` (unique per source)
``cloudEvents_source``      ``urn:ami-bridge:server:<server>``: the bridge and the PBX
``cloudEvents_type``        ``org.asterisk.ami.<Event>`` (the documented spelling),
                            ``org.asterisk.ami.invalid`` for an invalid message,
                            ``org.asterisk.ami.bridge.<status>`` for a status message
``cloudEvents_time``        when the bridge read the message: the body's ``received_at``
``cloudEvents_dataschema``  the ``$id`` of the message's JSON Schema in ``schemas/``
``cloudEvents_subject``     the event's ``Channel``, else ``Peer``, ``Device``,
                            ``EndpointName`` or ``Endpoint``; absent when it has none
=========================== ==================================================================

Every value is an AMQP string: the binding's canonical string form, which it allows for
any attribute.  ``time`` stays a string on purpose: an AMQP 0-9-1 timestamp holds whole
seconds, and the RFC 3339 text keeps the microseconds of ``received_at``.

:data:`ATTRIBUTES` describes the headers for the AsyncAPI document
(:func:`with_cloudevents_headers`); the publisher's side takes the values from
:func:`event_attributes`, :func:`invalid_attributes` and :func:`status_attributes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.events.base import AmiEvent, GenericEvent
from bridge.events.schema import schema_id

__all__ = [
    "ATTRIBUTES",
    "HEADER_PREFIX",
    "INVALID_TYPE",
    "SPEC_VERSION",
    "SUBJECT_FIELDS",
    "event_attributes",
    "header",
    "invalid_attributes",
    "schema_id",
    "source",
    "status_attributes",
    "with_cloudevents_headers",
]

SPEC_VERSION = "1.0"
HEADER_PREFIX = "cloudEvents_"
#: ``type`` of an AMI event is this prefix and the event's name.
EVENT_TYPE_PREFIX = "org.asterisk.ami."
#: ``type`` of the bridge's status messages is this prefix and the status.
STATUS_TYPE_PREFIX = "org.asterisk.ami.bridge."
INVALID_TYPE = "org.asterisk.ami.invalid"
#: The fields that name what an event is about, the first one present is the subject.
SUBJECT_FIELDS = ("Channel", "Peer", "Device", "EndpointName", "Endpoint")


#: Attribute -> (required, description), in the order of the CloudEvents spec.
ATTRIBUTES: dict[str, tuple[bool, str]] = {
    "specversion": (True, "CloudEvents version: 1.0."),
    "id": (True, "The message id, `<server>:<epoch>:<seq>` (as `message_id`)."),
    "source": (True, "`urn:ami-bridge:server:<server>`: the bridge and the AMI server."),
    "type": (
        True,
        "`org.asterisk.ami.<Event>` (documented spelling), `org.asterisk.ami.invalid` for "
        "invalid messages, `org.asterisk.ami.bridge.<status>` for status messages.",
    ),
    "dataschema": (True, "The `$id` of the message's JSON Schema."),
    "subject": (
        False,
        "The event's Channel, else Peer, Device, EndpointName or Endpoint; absent when it "
        "has none.",
    ),
    "time": (True, "When the bridge read the message, RFC 3339 (the body's `received_at`)."),
}


def header(attribute: str) -> str:
    """The AMQP header that carries ``attribute``: ``cloudEvents_<attribute>``."""
    return HEADER_PREFIX + attribute


def source(server: str) -> str:
    """The ``source`` of a server's messages (server ids are URN-safe: letters, digits, _-)."""
    return f"urn:ami-bridge:server:{server}"


_SPECVERSION = header("specversion")
_ID = header("id")
_SOURCE = header("source")
_TYPE = header("type")
_TIME = header("time")
_DATASCHEMA = header("dataschema")
_SUBJECT = header("subject")

_INVALID_SCHEMA = schema_id("invalid")
# Per model class: (type, dataschema); built once per event kind, the hot path reads it.
_by_model: dict[type[AmiEvent], tuple[str, str]] = {}
_by_status: dict[str, tuple[str, str]] = {}


def _event_identity(model: type[AmiEvent], wire_name: str) -> tuple[str, str]:
    identity = _by_model.get(model)
    if identity is None:
        if model is GenericEvent or not model.event_name:
            # No model of its own: the generic schema, and the name as sent.
            return EVENT_TYPE_PREFIX + wire_name, schema_id("generic")
        name = model.event_name
        identity = _by_model[model] = (EVENT_TYPE_PREFIX + name, schema_id(f"event:{name}"))
    return identity


def _common(server: str, message_id: str, time: str) -> dict[str, Any]:
    return {_SPECVERSION: SPEC_VERSION, _ID: message_id, _SOURCE: source(server), _TIME: time}


def event_attributes(
    server: str,
    message_id: str,
    time: str,
    model: type[AmiEvent],
    wire_name: str,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """The headers of a valid event's message; ``time`` is its ``received_at`` text."""
    attributes = _common(server, message_id, time)
    attributes[_TYPE], attributes[_DATASCHEMA] = _event_identity(model, wire_name)
    for name in SUBJECT_FIELDS:
        subject = fields.get(name)
        if isinstance(subject, str) and subject:
            attributes[_SUBJECT] = subject
            break
    return attributes


def invalid_attributes(server: str, message_id: str, time: str) -> dict[str, Any]:
    """The headers of an invalid message (its schema is the invalid message's)."""
    attributes = _common(server, message_id, time)
    attributes[_TYPE] = INVALID_TYPE
    attributes[_DATASCHEMA] = _INVALID_SCHEMA
    return attributes


def status_attributes(server: str, message_id: str, time: str, status: str) -> dict[str, Any]:
    """The headers of one of the bridge's status messages."""
    identity = _by_status.get(status)
    if identity is None:
        identity = _by_status[status] = (
            STATUS_TYPE_PREFIX + status,
            schema_id(f"status:{status}"),
        )
    attributes = _common(server, message_id, time)
    attributes[_TYPE], attributes[_DATASCHEMA] = identity
    return attributes


def with_cloudevents_headers(headers_schema: dict[str, Any]) -> dict[str, Any]:
    """``headers_schema`` (a JSON Schema object of AMQP headers) with the CloudEvents ones."""
    properties = headers_schema.setdefault("properties", {})
    required = headers_schema.setdefault("required", [])
    for attribute, (needed, text) in ATTRIBUTES.items():
        name = header(attribute)
        properties[name] = {"type": "string", "description": f"CloudEvents `{attribute}`: {text}"}
        if needed and name not in required:
            required.append(name)
    properties[header("specversion")]["const"] = SPEC_VERSION
    headers_schema["description"] = (
        headers_schema.get("description", "").rstrip()
        + " The `cloudEvents_*` headers make each message a CloudEvent 1.0 in the AMQP "
        "binding's binary mode (`content_type` is its `datacontenttype`); RabbitMQ passes "
        "them to AMQP 1.0 consumers as application properties."
    ).lstrip()
    return headers_schema
