"""How the headers of one event map onto its model: computed once per model class.

Approach
--------
Validation must cost little per event, so everything that depends only on the model is
worked out here, once, and kept in a :class:`FieldMap`:

* ``lookup``: wire key -> alias, holding each alias as spelled and in lower case, so a
  wire key is matched with one dict hit (exact spelling, the common case) or two (after
  ``str.lower``).  ``Privilege`` and ``Timestamp`` map to themselves: they belong to the
  envelope and are taken out after the header loop.
* ``exact_keys``: every key a message may carry in canonical spelling.  When a message's
  keys are all in it and none repeats, the header loop is skipped altogether.
* ``int_fields`` and ``enum_fields``: the few fields whose value is not passed through
  unchanged, so the published fields can be built from the input dict plus these.

The model's annotations are the only source: a field is an integer when its annotation
holds ``int``, an open enum when it holds a ``Literal``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from bridge.events.base import AmiEvent, GenericEvent

__all__ = ["ENVELOPE_KEYS", "FieldMap", "field_map"]

#: Headers that live in the message envelope, not in the model.
ENVELOPE_KEYS = ("Event", "Privilege", "Timestamp")


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Precomputed wire-key handling for one model class."""

    model: type[AmiEvent]
    #: The model's compiled validator (``validate_python`` of its core schema).
    validate: Callable[[dict[str, Any]], AmiEvent]
    #: Wire key (canonical or lower case) -> alias; envelope keys map to themselves.
    lookup: dict[str, str]
    #: Canonical aliases plus the envelope keys.
    exact_keys: frozenset[str]
    #: (alias, attribute) of every integer field.
    int_fields: tuple[tuple[str, str], ...]
    #: (alias, documented values) of every open-enum field.
    enum_fields: tuple[tuple[str, frozenset[str]], ...]
    #: The model is the catch-all for events without a model of their own.
    generic: bool
    #: Aliases of the fields a message cannot lack.
    required: frozenset[str] = frozenset()


def _leaves(annotation: Any) -> list[Any]:
    """The member types of a (possibly nested) union annotation."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [leaf for arg in typing.get_args(annotation) for leaf in _leaves(arg)]
    return [annotation]


def _literal_values(annotation: Any) -> frozenset[str] | None:
    values = [
        value
        for leaf in _leaves(annotation)
        if typing.get_origin(leaf) is Literal
        for value in typing.get_args(leaf)
    ]
    return frozenset(values) if values else None


@cache
def field_map(model: type[AmiEvent]) -> FieldMap:
    """The :class:`FieldMap` of ``model`` (computed once per class).

    Raises:
        ValueError: two fields of ``model`` differ only in case, which would make wire
            keys ambiguous.
    """
    lookup: dict[str, str] = {}
    int_fields: list[tuple[str, str]] = []
    enum_fields: list[tuple[str, frozenset[str]]] = []
    for attribute, info in model.model_fields.items():
        alias = info.alias or attribute
        if alias.lower() in lookup:
            raise ValueError(f"{model.__name__}: fields {alias!r} and another differ by case")
        lookup[alias] = alias
        lookup[alias.lower()] = alias
        if int in _leaves(info.annotation):
            int_fields.append((alias, attribute))
        values = _literal_values(info.annotation)
        if values is not None:
            enum_fields.append((alias, values))
    for key in ENVELOPE_KEYS[1:]:
        lookup.setdefault(key, key)
        lookup.setdefault(key.lower(), key)
    return FieldMap(
        model=model,
        validate=model.__pydantic_validator__.validate_python,
        lookup=lookup,
        exact_keys=frozenset(
            {info.alias or name for name, info in model.model_fields.items()} | set(ENVELOPE_KEYS)
        ),
        int_fields=tuple(int_fields),
        enum_fields=tuple(enum_fields),
        generic=model is GenericEvent,
        required=frozenset(
            info.alias or name for name, info in model.model_fields.items() if info.is_required()
        ),
    )
