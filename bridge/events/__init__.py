"""Typed AMI events: models, validation, and the JSON message contract.

A parsed :class:`bridge.ami.protocol.Event` goes through :func:`validate`, which returns
a :class:`Validated` (the typed model plus what did not fit it) or an
:class:`InvalidRecord`; :func:`encode` turns either into one JSON message.  The contract
of that message is documented in :mod:`bridge.events.envelope`.

Modules: ``base`` (the base model), ``generated`` (one model per documented event,
written by ``scripts/generate_models.py``), ``legacy`` (1.4-11 era events and fields),
``registry`` (event name -> model), ``fieldmap`` and ``headers`` (wire keys -> model
input), ``validation`` and ``envelope``; ``status`` (the bridge's own status messages)
and ``rpc`` (AMI actions over the bus); ``schema``, ``asyncapi`` and ``contract`` (the
published JSON Schema and AsyncAPI files) and ``schema_evolution`` (breaking changes
between two versions of them).
"""

from bridge.events.base import AmiEvent, GenericEvent
from bridge.events.envelope import (
    SCHEMA_VERSION,
    Envelope,
    ErrorDetail,
    encode,
    format_received_at,
    message_id,
)
from bridge.events.registry import REGISTRY, EventModelInfo, list_models, model_for
from bridge.events.validation import (
    FieldError,
    InvalidRecord,
    Validated,
    invalid_from_malformed,
    validate,
)

__all__ = [
    "REGISTRY",
    "SCHEMA_VERSION",
    "AmiEvent",
    "Envelope",
    "ErrorDetail",
    "EventModelInfo",
    "FieldError",
    "GenericEvent",
    "InvalidRecord",
    "Validated",
    "encode",
    "format_received_at",
    "invalid_from_malformed",
    "list_models",
    "message_id",
    "model_for",
    "validate",
]
