"""The base of every AMI event model, and the generic model for events without one.

Approach
--------
A model describes the *body* of one AMI event: every header except ``Event``,
``Privilege`` and ``Timestamp``, which belong to the message envelope.  Field aliases
are the AMI header names exactly as the Asterisk documentation spells them
(``Cause-txt``, ``DestChannel``); the Python attribute is the same name wherever it is a
valid identifier.  Matching wire keys to aliases without regard to case is the job of
:mod:`bridge.events.validation`, which hands a model a dict already keyed by alias.

Field types stay close to the wire: ``str`` for text, ``int`` only where Asterisk's
code formats the header as a number (``%d``/``%u``) in every release since 11, and
*open enums* (``Literal[...] | str``) where the documentation lists values.  An open
enum documents the known values in the JSON Schema but accepts any string, because real
servers send values the documentation does not list.  Validation reports such values
instead of rejecting the event, and the same holds for integers: a value that does not
parse is kept as text with the unknown headers and counted as drift, so a valid event
from a real Asterisk never becomes invalid because a field holds a value nobody
foresaw (:mod:`bridge.events.validation`).

Every model is frozen and keeps unknown headers (``extra="allow"``), so a newer Asterisk
that adds a header never loses it.  Class variables carry the catalog facts that are not
fields: the event name, its documented privilege class, the versions that document it
and the actions it answers; the AsyncAPI document repeats them for each message, while
the JSON Schemas hold only standard keywords (so strict validators load them as they
are).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AmiEvent", "GenericEvent"]


def _ami_schema_extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Close the ``fields`` object of a typed model to undeclared keys.

    Headers a model does not know are published under ``extra``, never in ``fields``,
    so a typed model's schema declares exactly its fields: code generators then give
    each field its own type, with no catch-all index beside it.  Only the generic
    model keeps every header in ``fields``.
    """
    if getattr(model, "event_name", ""):
        schema["additionalProperties"] = False


class AmiEvent(BaseModel):
    """Base of all AMI event models: frozen, unknown headers kept under their AMI name."""

    model_config = ConfigDict(frozen=True, extra="allow", json_schema_extra=_ami_schema_extra)

    #: The event name as the Asterisk documentation spells it ("" for abstract models).
    event_name: ClassVar[str] = ""
    #: The documented privilege class (``call``, ``system``...), None when undocumented.
    privilege_class: ClassVar[str | None] = None
    #: The class the code raises the event with unsolicited (``manager_event`` with an
    #: ``EVENT_FLAG``); None when it is only sent in reply to an action.  A resync's
    #: snapshot items, which come without a Privilege header, route by it.
    live_class: ClassVar[str | None] = None
    #: Asterisk versions whose documentation introduces the event.
    since: ClassVar[tuple[str, ...]] = ()
    #: Actions that answer with this event (list items and ``*Complete`` events).
    response_to: ClassVar[tuple[str, ...]] = ()
    #: True when headers the model does not know are the event's payload rather than
    #: drift (``UserEvent`` copies arbitrary headers from its sender).
    payload_extras: ClassVar[bool] = False

    # Unknown headers: one string, or a list when the header was repeated.
    __pydantic_extra__: dict[str, str | list[str]] = Field(init=False)

    ActionID: str | None = Field(
        None, description="Echo of the ActionID of the action this event answers."
    )
    SystemName: str | None = Field(
        None, description="The server's systemname (asterisk.conf), sent only when set."
    )


class GenericEvent(AmiEvent):
    """An event with no model: every header is kept as sent.

    Values are strings, or lists of strings for headers that were repeated.  Response
    list items that Asterisk does not document (``PeerEntry``, ``QueueMember``...) and
    events of modules newer than the catalog land here.
    """
