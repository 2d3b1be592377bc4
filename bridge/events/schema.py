"""The published contract as JSON Schema (draft 2020-12), generated from the models.

Approach
--------
Every schema comes from a pydantic model: :class:`~bridge.events.envelope.CommonEnvelope`
for the keys all messages share, ``Envelope[Model]`` for each event,
``Envelope[GenericEvent]`` for events without a model, and ``StatusMessage[Fields]`` for
the bridge's status messages.  One ``Envelope`` model serves event and invalid messages
alike, so each kind's schema then states what the model leaves open: the ``kind``
constant, the keys that kind always carries (no longer nullable), the keys it never
carries (dropped), and the ``event`` name.  Event names match without regard to case
on the wire, so an event's schema matches its name with a case-folding character-class
pattern (``^[Nn][Ee][Ww]...$``) that every JSON Schema dialect reads the same way.

Each schema is self-contained (its models under ``$defs``), names the contract version
in ``$comment`` (standard keywords only: strict validators such as ajv reject unknown
ones), pins the major version in the ``schema_version``
pattern, and has a URN ``$id`` (``urn:ami-bridge:schema:1:event:Newchannel``) so no
host is needed.  Where each schema is written is :mod:`bridge.events.contract`'s job.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from bridge.events.base import AmiEvent, GenericEvent
from bridge.events.envelope import SCHEMA_VERSION, CommonEnvelope, Envelope
from bridge.events.status import STATUS_FIELDS, StatusMessage

__all__ = [
    "CONTRACT_MAJOR",
    "JSON_SCHEMA_DIALECT",
    "absent_not_null",
    "case_insensitive_pattern",
    "contract_comment",
    "envelope_schema",
    "event_schema",
    "generic_schema",
    "invalid_schema",
    "model_schema",
    "schema_id",
    "status_schema",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

CONTRACT_MAJOR = SCHEMA_VERSION.split(".", 1)[0]
# Keys only event messages carry, and keys only invalid messages carry.
_EVENT_ONLY = ("fields", "extra", "repeated", "chan_vars", "unparsed_lines")
_INVALID_ONLY = ("errors",)
_REF_PREFIX = "#/$defs/"
_REGEX_SYNTAX = frozenset("^$\\.*+?()[]{}|/")


class _ContractSchemaGenerator(GenerateJsonSchema):
    """pydantic's generator without the per-property titles it derives from names.

    Properties are named by their AMI name already; ``"title": "Cause-Txt"`` next to
    ``Cause-txt`` only adds noise and bytes to every file.
    """

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def contract_comment() -> str:
    """The ``$comment`` of every published schema: the contract version it describes."""
    return f"ami-bridge contract {SCHEMA_VERSION}"


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, schema_generator=_ContractSchemaGenerator)


def case_insensitive_pattern(name: str) -> str:
    """An anchored pattern matching ``name`` with ASCII letters in any case.

    Each letter becomes a two-letter class and only regex syntax characters are
    escaped, so the pattern means the same in ECMA-262 (with or without its unicode
    flag) and in Python.

    >>> case_insensitive_pattern("AOC-D")
    '^[Aa][Oo][Cc]-[Dd]$'
    """
    parts = []
    for char in name:
        if char.isascii() and char.isalpha():
            parts.append(f"[{char.upper()}{char.lower()}]")
        elif char in _REGEX_SYNTAX:
            parts.append("\\" + char)
        else:
            parts.append(char)
    return "^" + "".join(parts) + "$"


def schema_id(suffix: str) -> str:
    """The ``$id`` of a published schema: ``urn:ami-bridge:schema:<major>:<suffix>``."""
    return f"urn:ami-bridge:schema:{CONTRACT_MAJOR}:{suffix}"


def _with_contract(schema: dict[str, Any], id_suffix: str, title: str, text: str) -> None:
    """Add the identity and version keys of a published schema; pin the major version."""
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = schema_id(id_suffix)
    schema["title"] = title
    schema["description"] = text
    schema["$comment"] = contract_comment()
    schema["properties"]["schema_version"]["pattern"] = rf"^{CONTRACT_MAJOR}\.\d+\.\d+$"
    absent_not_null(schema)


def _not_null(prop: dict[str, Any]) -> None:
    """Drop the ``null`` branch and the ``null`` default of one property schema."""
    prop.pop("default", None)
    branches = prop.get("anyOf")
    if branches is None:
        return
    kept = [b for b in branches if b != {"type": "null"}]
    del prop["anyOf"]
    if len(kept) == 1:
        prop.update(kept[0])
    else:
        prop["anyOf"] = kept


def _require(schema: dict[str, Any], *keys: str) -> None:
    """Make ``keys`` required and non-null: this kind of message always carries them."""
    for key in keys:
        _not_null(schema["properties"][key])
        if key not in schema.setdefault("required", []):
            schema["required"].append(key)


def absent_not_null(schema: dict[str, Any]) -> None:
    """Optional keys are left out of a message, never sent as ``null``: say so.

    pydantic describes an optional field (``str | None = None``) as "string or null";
    the encoder writes only the keys it has, so the schema admits the value type alone.
    Required keys that may be null (``timestamp``) keep their ``null``.
    """
    for node in [schema, *schema.get("$defs", {}).values()]:
        required = set(node.get("required", ()))
        for key, prop in node.get("properties", {}).items():
            if key not in required and "default" in prop and prop["default"] is None:
                _not_null(prop)


def _drop(schema: dict[str, Any], *keys: str) -> None:
    """Remove keys this kind of message never carries, and the definitions they used."""
    for key in keys:
        del schema["properties"][key]
    defs = schema.get("$defs")
    if not defs:
        return
    used = set(_refs(schema["properties"]))
    pending = list(used)
    while pending:
        for ref in _refs(defs[pending.pop()]):
            if ref not in used:
                used.add(ref)
                pending.append(ref)
    schema["$defs"] = {name: defs[name] for name in defs if name in used}
    if not schema["$defs"]:
        del schema["$defs"]


def _refs(node: Any) -> Iterator[str]:
    """Names of the ``$defs`` entries that ``node`` refers to, at any depth."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            yield ref.removeprefix(_REF_PREFIX)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _set_kind(schema: dict[str, Any], kind: str) -> None:
    prop = schema["properties"]["kind"]
    prop.pop("enum", None)
    prop["const"] = kind
    prop["description"] = f"Always {kind}."


def envelope_schema() -> dict[str, Any]:
    """The keys every message carries, whatever its kind; other keys are allowed."""
    schema = model_schema(CommonEnvelope)
    _with_contract(
        schema,
        "envelope",
        "ami-bridge message envelope",
        "The keys every message published by ami-bridge carries. Consumers must "
        "ignore keys they do not know.",
    )
    return schema


@functools.cache
def _event_envelope() -> dict[str, Any]:
    """``Envelope`` as an event message, ``fields`` referring to the ``AmiEvent`` base."""
    schema = model_schema(Envelope[AmiEvent])
    _set_kind(schema, "event")
    _require(schema, "fields")
    _drop(schema, *_INVALID_ONLY)
    return schema


def _event_message(model: type[AmiEvent]) -> dict[str, Any]:
    """The schema of ``Envelope[model]`` as an event message.

    Built from the event envelope and the model's own schema instead of parametrizing
    ``Envelope`` per model: the result is the same and the contract generates in half
    the time.
    """
    schema = copy.deepcopy(_event_envelope())
    fields = model_schema(model)
    defs = {k: v for k, v in schema.pop("$defs").items() if k != AmiEvent.__name__}
    defs.update(fields.pop("$defs", {}))
    defs[model.__name__] = fields
    schema["$defs"] = defs
    schema["properties"]["fields"]["$ref"] = f"{_REF_PREFIX}{model.__name__}"
    return schema


def event_schema(model: type[AmiEvent]) -> dict[str, Any]:
    """The schema of one event's messages (``kind=event``, its typed ``fields``)."""
    name = model.event_name
    schema = _event_message(model)
    event = schema["properties"]["event"]
    event["pattern"] = case_insensitive_pattern(name)
    event["description"] = f"The event name as sent: {name} in any case."
    _with_contract(
        schema,
        f"event:{name}",
        f"{name} message",
        f"An AMI {name} event as published by ami-bridge (kind=event).",
    )
    return schema


def generic_schema() -> dict[str, Any]:
    """The schema of events without a model: every header in ``fields`` as text."""
    schema = _event_message(GenericEvent)
    _with_contract(
        schema,
        "generic",
        "Generic event message",
        "An AMI event that has no model of its own (kind=event): every header is in "
        "fields, as a string or a list of strings when repeated.",
    )
    return schema


def invalid_schema() -> dict[str, Any]:
    """The schema of invalid messages: raw headers and the errors, no ``fields``."""
    schema = model_schema(Envelope[GenericEvent])
    _set_kind(schema, "invalid")
    _require(schema, "raw", "errors")
    _drop(schema, *_EVENT_ONLY)
    _with_contract(
        schema,
        "invalid",
        "Invalid message",
        "A message that broke its model or that the parser could not read whole "
        "(kind=invalid): every header in raw, and why in errors.",
    )
    return schema


def status_schema(status: str) -> dict[str, Any]:
    """The schema of one of the bridge's status messages (``kind=status``).

    Raises:
        KeyError: ``status`` is not a known status.
    """
    fields_model = STATUS_FIELDS[status]
    schema = model_schema(StatusMessage[fields_model])  # type: ignore[valid-type]
    _set_kind(schema, "status")
    event = schema["properties"]["event"]
    event["const"] = status
    event["description"] = f"The status: {status}."
    _with_contract(
        schema,
        f"status:{status}",
        f"{status} status message",
        f"The bridge's {status} status message (kind=status): "
        f"{(fields_model.__doc__ or '').strip()}",
    )
    return schema
