"""Validate one parsed AMI event into its typed model, or into an Invalid record.

Approach
--------
:func:`validate` is pure and never raises on input: it returns a :class:`Validated`
or an :class:`InvalidRecord`, and nothing of the message is dropped either way.

1. The event name picks a :class:`~bridge.events.fieldmap.FieldMap` (any case; an
   unknown name gets the generic model, which keeps every header as text).
2. The input dict is built in one pass.  The common case - every key spelled as the
   docs spell it, none repeated - is a single ``dict(headers)`` and a superset test
   in C; anything else goes through :func:`~bridge.events.headers.fold_headers`.
3. pydantic validates the dict.  A wrong type or a missing required field makes an
   :class:`InvalidRecord` with the raw headers and one error per field.
4. The published fields are the input dict with the integer fields replaced by their
   parsed values: every other field type passes a string through unchanged, so this
   equals ``model_dump(by_alias=True, exclude_unset=True)`` at a fraction of the cost.
5. Open-enum values the docs do not list are reported in ``unlisted_values``; unknown
   headers are reported as ``drift`` (unless they are the event's payload).

A valid event from a real Asterisk never becomes invalid because a field holds a value
the model did not foresee: when a field's value does not parse as its type (text in an
integer field), the field is left out of the typed fields, its text is kept with the
unknown headers (``extra``), it is named in ``mistyped`` and counted as drift.  Only a
*required* field that does not parse, or one that is missing, makes a message invalid:
the model's reason to exist is gone.

A message flagged ``invalid_utf8`` is validated with U+FFFD in place of each bad byte
and carries the exact bytes of every header in ``raw_base64``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from pydantic import ValidationError

from bridge.ami.protocol import Event, Header, Malformed
from bridge.events.base import AmiEvent, GenericEvent
from bridge.events.fieldmap import FieldMap, field_map
from bridge.events.headers import (
    Leftovers,
    fold_headers,
    headers_base64,
    parse_privilege,
    replace_surrogates,
)
from bridge.events.registry import REGISTRY

__all__ = ["FieldError", "InvalidRecord", "Validated", "invalid_from_malformed", "validate"]

_GENERIC = field_map(GenericEvent)
# Lower-cased names plus the documented spellings, so the usual name hits first time.
_MAPS: dict[str, FieldMap] = {name: field_map(model) for name, model in REGISTRY.items()}
_MAPS.update({model.event_name: field_map(model) for model in REGISTRY.values()})

_NO_EXTRA: Mapping[str, str | list[str]] = MappingProxyType({})
_NO_LISTS: Mapping[str, list[str]] = MappingProxyType({})
_NO_VARS: Mapping[str, dict[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a message broke its model.  ``field`` is the AMI name, or None."""

    field: str | None
    message: str
    type: str


class Validated(NamedTuple):
    """An event that fits its model (or the generic model).

    A NamedTuple rather than a frozen dataclass: it is built once per event, and a
    frozen dataclass costs five times as much to build.
    """

    #: The validated model instance (unknown headers are in its ``model_extra``).
    model: AmiEvent
    #: The event name as sent on the wire.
    name: str
    #: The ``Privilege`` header, lower-cased and split; ``()`` when absent.
    privilege: tuple[str, ...]
    #: The ``Timestamp`` header exactly as sent, or None.
    timestamp: str | None
    #: Typed field values by AMI name, only those present (owned by this record).
    fields: dict[str, Any]
    #: The headers as validated (U+FFFD in place of undecodable bytes).
    headers: tuple[Header, ...]
    #: What did not fit a field: unknown, repeated, ChanVariable, colonless.
    leftovers: Leftovers | None = None
    #: Names of open-enum fields whose value the docs do not list.
    unlisted_values: tuple[str, ...] = ()
    #: Exact bytes of each header as base64 (key, value), for invalid UTF-8 only.
    raw_base64: tuple[tuple[str, str], ...] | None = None
    #: Known fields whose value did not parse as their type (kept as text in ``extra``).
    mistyped: tuple[str, ...] = ()

    @property
    def is_generic(self) -> bool:
        """True when the event has no model of its own."""
        return type(self.model) is GenericEvent

    @property
    def drift(self) -> tuple[str, ...]:
        """Names of headers that did not fit the model: unknown ones (not counting an
        event's payload) and mistyped ones."""
        left = self.leftovers
        if left is None or not left.extra:
            return ()
        if self.model.payload_extras:
            return self.mistyped
        return tuple(left.extra)

    @property
    def extra(self) -> Mapping[str, str | list[str]]:
        """Unknown headers by their first spelling; a list when repeated."""
        return self.leftovers.extra if self.leftovers else _NO_EXTRA

    @property
    def repeated(self) -> Mapping[str, list[str]]:
        """Every value of each known field that was sent more than once."""
        return self.leftovers.repeated if self.leftovers else _NO_LISTS

    @property
    def chan_vars(self) -> Mapping[str, dict[str, str]]:
        """Channel variables by header name (``ChanVariable``, ``DestChanVariable``...)."""
        return self.leftovers.chan_vars if self.leftovers else _NO_VARS

    @property
    def unparsed_lines(self) -> Sequence[str]:
        """Lines that had no colon."""
        return self.leftovers.unparsed_lines if self.leftovers else ()


class InvalidRecord(NamedTuple):
    """A message that broke its model or could not be parsed whole."""

    #: The event name as sent ("" when the message had no Event header).
    name: str
    privilege: tuple[str, ...]
    timestamp: str | None
    #: Every header in wire order (U+FFFD in place of undecodable bytes).
    headers: tuple[Header, ...]
    errors: tuple[FieldError, ...]
    #: Exact bytes of each header as base64 (key, value), for invalid UTF-8 only.
    raw_base64: tuple[tuple[str, str], ...] | None = None


def validate(event: Event) -> Validated | InvalidRecord:
    """Validate one parsed AMI event (pure; never raises on bad input)."""
    if event.invalid_utf8:
        clean = tuple((replace_surrogates(k), replace_surrogates(v)) for k, v in event.headers)
        return _validate(clean, headers_base64(event.headers))
    return _validate(event.headers, None)


def invalid_from_malformed(item: Malformed) -> InvalidRecord:
    """An :class:`InvalidRecord` for what the parser could not deliver whole."""
    headers = item.headers
    raw_base64 = None
    if any(_has_surrogates(k) or _has_surrogates(v) for k, v in headers):
        raw_base64 = headers_base64(headers)
        headers = tuple((replace_surrogates(k), replace_surrogates(v)) for k, v in headers)
    is_event = bool(headers) and headers[0][0].lower() == "event"
    by_key = {key.lower(): value for key, value in reversed(headers)}
    return InvalidRecord(
        name=headers[0][1] if is_event else "",
        privilege=parse_privilege(by_key.get("privilege")),
        timestamp=by_key.get("timestamp"),
        headers=headers,
        errors=(FieldError(None, item.reason, "malformed"),),
        raw_base64=raw_base64,
    )


def _validate(
    headers: tuple[Header, ...], raw_base64: tuple[tuple[str, str], ...] | None
) -> Validated | InvalidRecord:
    name = headers[0][1]
    fmap = _MAPS.get(name) or _MAPS.get(name.lower()) or _GENERIC
    data: dict[str, Any] = dict(headers)
    left: Leftovers | None = None
    if len(data) == len(headers) and fmap.exact_keys.issuperset(data):
        del data[headers[0][0]]
        privilege = data.pop("Privilege", None)
        timestamp = data.pop("Timestamp", None)
    else:
        data, left, privilege, timestamp = fold_headers(headers, fmap)
    privileges = parse_privilege(privilege)
    try:
        if left is not None and left.extra:
            model = fmap.validate({**data, **left.extra})
        else:
            model = fmap.validate(data)
    except ValidationError as exc:
        mistyped = _mistyped_fields(exc, fmap, data)
        if not mistyped:
            return InvalidRecord(name, privileges, timestamp, headers, _errors(exc), raw_base64)
        texts = {alias: data.pop(alias) for alias in mistyped}
        if left is None:
            left = Leftovers()
        model = fmap.validate({**data, **left.extra})
        left.extra.update(texts)
    else:
        mistyped = ()
    values = model.__dict__
    for alias, attribute in fmap.int_fields:
        if alias in data:
            data[alias] = values[attribute]
    unlisted: tuple[str, ...] = ()
    for alias, documented in fmap.enum_fields:
        value = data.get(alias)
        # An empty value means "not set", not an undocumented value.
        if value and value not in documented:
            unlisted += (alias,)
    return Validated(
        model, name, privileges, timestamp, data, headers, left, unlisted, raw_base64, mistyped
    )


def _mistyped_fields(
    exc: ValidationError, fmap: FieldMap, data: Mapping[str, Any]
) -> tuple[str, ...]:
    """The optional fields whose value failed to parse, when those are all the errors.

    Empty when any error is of another sort (a required field missing or mistyped), so
    the message is invalid as before.
    """
    names: list[str] = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = error["loc"]
        alias = loc[0] if loc else None
        if error["type"] == "missing" or alias not in data or alias in fmap.required:
            return ()
        if alias not in names:
            names.append(str(alias))
    return tuple(names)


def _errors(exc: ValidationError) -> tuple[FieldError, ...]:
    return tuple(
        FieldError(str(error["loc"][0]) if error["loc"] else None, error["msg"], error["type"])
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    )


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
