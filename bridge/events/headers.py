"""Turning an ordered AMI header list into model input plus what does not fit a model.

Approach
--------
:func:`fold_headers` walks the headers once.  A key the model knows (matched through
:class:`~bridge.events.fieldmap.FieldMap.lookup`, so any case) goes into the input dict
under its alias; the first value wins and a repeat is recorded under
``repeated[alias]``.  Everything else lands in a :class:`Leftovers`:

* a line without a colon (parser key ``""``) -> ``unparsed_lines``;
* ``ChanVariable`` and ``<Prefix>ChanVariable``, in the current form
  ``ChanVariable: name=value`` and the 1.6-11 form ``ChanVariable(SIP/1-0001): name=value``
  -> ``chan_vars[<header name as sent>][name] = value``.  Keeping the header name as
  sent keeps the variables of each channel of a 1.6-11 event apart.  Asterisk always
  writes the ``=`` (``%s=%s`` in ``main/manager.c``), even for an empty value; a value
  without one is no variable, so it goes to ``extra`` like any unknown header, and
  ``FOO`` stays apart from ``FOO=``;
* any other key -> ``extra`` under its first spelling (keys that differ only in case
  are the same key), a string, or a list of strings when repeated.

Also here: the ``Privilege`` header as a tuple, and the two views of a message whose
bytes were not UTF-8 (the parser decodes those with ``surrogateescape``): values with
U+FFFD in place of each bad byte for publishing, and the exact bytes in base64.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from bridge.ami.protocol import Header
from bridge.events.fieldmap import FieldMap

__all__ = [
    "Leftovers",
    "add_value",
    "fold_headers",
    "headers_base64",
    "parse_privilege",
    "replace_surrogates",
]

_CHAN_VARIABLE = re.compile(r"[A-Za-z]*chanvariable(?:\(.*\))?", re.IGNORECASE)


def add_value(into: dict[str, str | list[str]], key: str, value: str) -> None:
    """File ``value`` under ``key``: a string, or a list of strings once the key repeats."""
    current = into.get(key)
    if current is None:
        into[key] = value
    elif isinstance(current, list):
        current.append(value)
    else:
        into[key] = [current, value]


class Leftovers:
    """The parts of a message that are not model fields (filled by :func:`fold_headers`)."""

    __slots__ = ("_chan_values", "_spellings", "chan_vars", "extra", "repeated", "unparsed_lines")

    def __init__(self) -> None:
        self.extra: dict[str, str | list[str]] = {}
        self.repeated: dict[str, list[str]] = {}
        self.chan_vars: dict[str, dict[str, str]] = {}
        self.unparsed_lines: list[str] = []
        # lower-cased unknown key -> its first spelling, so keys differing only in case
        # group together in constant time (a message may hold thousands of headers).
        self._spellings: dict[str, str] = {}
        # Every value of each ChanVariable header, for the rare variable sent twice.
        self._chan_values: dict[str, list[str]] = {}

    def add_unknown(self, key: str, value: str, into: dict[str, str | list[str]]) -> None:
        """File a header the model does not know: ``""``, a ChanVariable, or ``into``.

        ``into`` receives the other keys under their first spelling: a string, or a
        list of strings once the key repeats.
        """
        if not key:
            self.unparsed_lines.append(value)
        elif "=" in value and _CHAN_VARIABLE.fullmatch(key):
            name, _, var_value = value.partition("=")
            self._chan_values.setdefault(key, []).append(value)
            variables = self.chan_vars.setdefault(key, {})
            if name in variables:
                # The map keeps the first value, as fields do; ``repeated`` gets them all.
                self.repeated[key] = self._chan_values[key]
            else:
                variables[name] = var_value
        else:
            add_value(into, self._spellings.setdefault(key.lower(), key), value)


def fold_headers(
    headers: tuple[Header, ...], fmap: FieldMap
) -> tuple[dict[str, str | list[str]], Leftovers, str | None, str | None]:
    """Split ``headers`` (``Event`` first) into model input and leftovers.

    Returns ``(data, leftovers, privilege, timestamp)``.  ``data`` is keyed by alias;
    for the generic model it also holds every unknown key, since there all keys are
    the event's fields.
    """
    lookup = fmap.lookup
    data: dict[str, str | list[str]] = {}
    left = Leftovers()
    unknown_into = data if fmap.generic else left.extra
    for key, value in headers[1:]:
        alias = lookup.get(key)
        if alias is None:
            alias = lookup.get(key.lower())
            if alias is None:
                left.add_unknown(key, value, unknown_into)
                continue
        first = data.get(alias)
        if first is None:
            data[alias] = value
        elif isinstance(first, str):  # known aliases only ever hold the first string
            left.repeated.setdefault(alias, [first]).append(value)
    privilege = data.pop("Privilege", None)
    timestamp = data.pop("Timestamp", None)
    return data, left, _text(privilege), _text(timestamp)


def _text(value: str | list[str] | None) -> str | None:
    return value if value is None or isinstance(value, str) else value[0]


_PRIVILEGES: dict[str, tuple[str, ...]] = {}


def parse_privilege(value: str | None) -> tuple[str, ...]:
    """``"call,all"`` -> ``("call", "all")``, lower-cased; ``()`` when absent."""
    if not value:
        return ()
    parsed = _PRIVILEGES.get(value)
    if parsed is None:
        parsed = tuple(part.strip().lower() for part in value.split(",") if part.strip())
        if len(_PRIVILEGES) < 1024:  # a handful of distinct values in practice
            _PRIVILEGES[value] = parsed
    return parsed


def replace_surrogates(text: str) -> str:
    """``text`` with U+FFFD for each byte that ``surrogateescape`` smuggled in."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def headers_base64(headers: Iterable[Header]) -> tuple[tuple[str, str], ...]:
    """Each (key, value) as the base64 of its exact original bytes."""
    return tuple((_b64(key), _b64(value)) for key, value in headers)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogateescape")).decode("ascii")
