"""Header redaction: AMI headers the operator never wants published, removed before validation.

Approach
--------
``redact_headers`` holds case-insensitive glob patterns (:mod:`fnmatch` syntax) over
AMI header names.  They are compiled once into one regular expression, and each header
name's verdict is cached, so the cost per event is one dictionary lookup per header;
with no pattern configured :func:`maybe_redactor` returns ``None`` and the renderer
skips the step entirely.

Redaction happens where records are rendered, not where they are read: the journal
keeps what the PBX sent, and a journal replayed after a restart renders exactly as the
first time.  A removed header is gone from everything published: ``fields``,
``extra``, ``repeated``, ``chan_vars``, ``raw`` and ``raw_base64``.

Which names match
-----------------
* A pattern matches the whole header name in any case: ``*CallerIDName`` drops
  ``CallerIDName``, ``DestCallerIDName``, ``TransfererCallerIDName`` and so on.
* A header written ``Name(...)``, such as the 1.6-11 ``ChanVariable(SIP/1-0001)`` or
  the ``Key(0)`` items of a JSON array, is also matched by its base name, so
  ``*ChanVariable`` drops every channel-variable header of every era.
* ``Event``, ``Privilege`` and ``Timestamp`` are never removed: they name, classify
  and date the message.

A required field is still required: an event whose required field is redacted fails
its model and goes to the invalid route, and its published ``raw`` leaves the
redacted headers out as well.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable

from bridge.ami.protocol import Event, Header, Malformed

__all__ = ["PROTECTED_HEADERS", "Redactor", "maybe_redactor"]

#: Header names no pattern removes (compared in lower case).
PROTECTED_HEADERS = frozenset({"event", "privilege", "timestamp"})

#: Distinct header names whose verdict is cached; past this the cache starts over, so
#: a stream of invented names (``UserEvent`` headers are arbitrary) cannot grow it.
_MAX_CACHED = 4096


class _Verdicts(dict[str, bool]):
    """Header name -> removed?  Computed on first sight of a name, then looked up."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self._match = pattern.match

    def __missing__(self, name: str) -> bool:
        if len(self) >= _MAX_CACHED:
            self.clear()
        base = name.partition("(")[0]
        removed = name.lower() not in PROTECTED_HEADERS and (
            self._match(name) is not None or (base != name and self._match(base) is not None)
        )
        self[name] = removed
        return removed


class Redactor:
    """Removes the headers whose name matches any of a set of glob patterns.

    Raises:
        ValueError: ``patterns`` holds no pattern (use :func:`maybe_redactor`).
    """

    __slots__ = ("_verdicts", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(p for p in (p.strip() for p in patterns) if p)
        if not self.patterns:
            raise ValueError("a redactor needs at least one header pattern")
        # fnmatch.translate anchors each pattern at the end; match() anchors the start.
        regex = "|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns)
        self._verdicts = _Verdicts(re.compile(regex, re.IGNORECASE))

    def __repr__(self) -> str:
        return f"Redactor({list(self.patterns)!r})"

    def removes(self, name: str) -> bool:
        """True when a header called ``name`` is left out."""
        return self._verdicts[name]

    def headers(self, headers: tuple[Header, ...]) -> tuple[Header, ...]:
        """``headers`` without the redacted ones; the same tuple when none is."""
        verdicts = self._verdicts
        kept = tuple(header for header in headers if not verdicts[header[0]])
        return headers if len(kept) == len(headers) else kept

    def event(self, event: Event) -> Event:
        """``event`` without the redacted headers; the same object when none is."""
        headers = event.headers
        kept = self.headers(headers)
        if kept is headers:
            return event
        # A new message: its raw bytes are rebuilt from what is kept.
        return Event(kept, event.invalid_utf8)

    def malformed(self, item: Malformed) -> Malformed:
        """``item`` without the redacted headers.

        Its ``data`` (the bytes read) is dropped whenever a header is: it would hold
        the redacted value too.
        """
        kept = self.headers(item.headers)
        if kept is item.headers:
            return item
        return dataclasses.replace(item, headers=kept, data=b"")


def maybe_redactor(patterns: Iterable[str]) -> Redactor | None:
    """A :class:`Redactor` for ``patterns``, or ``None`` when there is none (nothing to do)."""
    cleaned = [p for p in (p.strip() for p in patterns) if p]
    return Redactor(cleaned) if cleaned else None
