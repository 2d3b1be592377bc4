"""Routing keys for the topic exchange: ``{server}.{class}.{event}``, escaped so nothing breaks.

Approach
--------
A topic exchange splits keys on ``.`` and treats ``*`` and ``#`` as wildcards in bindings,
so an event name containing any of them (or whitespace, which makes keys unreadable) could
change the key's shape and break consumers' bindings.  Every segment is lower-cased and
percent-encoded for ``%``, ``.``, ``*``, ``#``, whitespace and control characters, which
keeps a key's dot count equal to its template's and makes the encoding reversible
(:func:`unescape_segment`).

The template is a setting.  It is parsed once by :class:`RoutingTemplate` into a positional
``str.format`` string, and :class:`Router` caches finished keys per (class, event), because
one bridge sees a few hundred distinct events and builds a key for each of millions.

Two layouts are fixed rather than templated: records that failed validation go to
``{server}.invalid.{event}`` and the bridge's own status events go to
``{server}.bridge.{status}``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from enum import StrEnum
from functools import lru_cache
from urllib.parse import unquote

__all__ = [
    "DEFAULT_TEMPLATE",
    "PLACEHOLDERS",
    "BridgeStatus",
    "Router",
    "RoutingTemplate",
    "escape_segment",
    "event_class",
    "unescape_segment",
    "validate_server_id",
]

DEFAULT_TEMPLATE = "{server}.{class}.{event}"
PLACEHOLDERS = frozenset({"server", "class", "event"})
# The order of RoutingTemplate.render's arguments.
_POSITIONS = {"server": "{0}", "class": "{1}", "event": "{2}"}

_SERVER_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
_KEY_CACHE_SIZE = 4096


class BridgeStatus(StrEnum):
    """The bridge's own status events, published under ``{server}.bridge.{status}``."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    GAP = "gap"
    OVERFLOW = "overflow"
    RESYNC = "resync"
    REFUSED = "refused"
    JOURNAL = "journal"
    ACTIVE = "active"


def _escape_table() -> dict[int, str]:
    specials = {ord(c) for c in "%.*#"}
    # Control characters are escaped too: they are invisible in logs and management UIs.
    specials |= set(range(0x20)) | {0x7F}
    # Every Unicode whitespace character is below U+3001 (U+3000 is the last one).
    specials |= {cp for cp in range(0x3001) if chr(cp).isspace()}
    table = {cp: "".join(f"%{b:02X}" for b in chr(cp).encode()) for cp in sorted(specials)}
    # AMI text that was not UTF-8 arrives with surrogate escapes (U+DC80..U+DCFF stand for
    # the bytes 0x80..0xFF).  They cannot be sent as UTF-8, so they become the byte they
    # stand for, which unquote(errors="surrogateescape") turns back into the same escape.
    table.update({cp: f"%{cp - 0xDC00:02X}" for cp in range(0xDC80, 0xDD00)})
    return table


_ESCAPES = _escape_table()


def escape_segment(text: str) -> str:
    """Lower-case ``text`` and percent-encode the characters that would break a topic key.

    >>> escape_segment("Foo.Bar *#%")
    'foo%2Ebar%20%2A%23%25'
    """
    return text.lower().translate(_ESCAPES)


def unescape_segment(segment: str) -> str:
    """Reverse :func:`escape_segment` (up to the lower-casing, which is not reversible)."""
    return unquote(segment, errors="surrogateescape")


def validate_server_id(server: str) -> str:
    """Return ``server`` if it is a valid server id: letters, digits, ``-`` and ``_`` only.

    Raises:
        ValueError: the id is empty or has any other character.
    """
    if not isinstance(server, str) or not _SERVER_ID_RE.fullmatch(server):
        raise ValueError(
            f"invalid server id {server!r}: use letters, digits, '-' and '_' only (non-empty)"
        )
    return server


def event_class(privileges: Iterable[str]) -> str:
    """The routing class of an event: its first privilege class other than ``all``, or ``none``.

    ``privileges`` is the event's ``Privilege`` header split on commas (blank items ignored).
    """
    for item in privileges:
        name = item.strip().lower()
        if name and name != "all":
            return name
    return "none"


class RoutingTemplate:
    """A validated routing key template such as ``{server}.{class}.{event}``.

    Raises:
        ValueError: the template is empty, uses a placeholder other than ``server``,
            ``class`` and ``event``, uses a format spec or conversion, has a malformed
            brace, or its literal text holds ``*``, ``#``, whitespace or an empty segment.
    """

    __slots__ = ("_format", "dots", "placeholders", "template")

    def __init__(self, template: str = DEFAULT_TEMPLATE) -> None:
        self.template = template
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as e:
            raise ValueError(f"routing key template {template!r}: {e}") from None
        fields: list[str] = []
        literal_parts: list[str] = []
        positional: list[str] = []
        for literal, field, spec, conversion in parsed:
            literal_parts.append(literal)
            positional.append(literal.replace("{", "{{").replace("}", "}}"))
            if field is None:
                continue
            if field not in PLACEHOLDERS:
                allowed = ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
                raise ValueError(
                    f"routing key template {template!r}: unknown placeholder {{{field}}}; "
                    f"allowed: {allowed}"
                )
            if spec or conversion:
                raise ValueError(
                    f"routing key template {template!r}: {{{field}}} takes no format spec "
                    "or conversion"
                )
            fields.append(field)
            positional.append(_POSITIONS[field])
        if not fields:
            raise ValueError(f"routing key template {template!r} has no placeholder")
        literal = "\x00".join(literal_parts)
        if any(c in literal for c in "*#") or any(c.isspace() for c in literal):
            raise ValueError(
                f"routing key template {template!r}: literal text may not hold '*', '#' "
                "or whitespace"
            )
        # Literal text alone must not make an empty segment, as in "a..{event}".
        probe = "".join(positional).format("s", "c", "e")
        if "" in probe.split("."):
            raise ValueError(f"routing key template {template!r} has an empty segment")
        self._format = "".join(positional)
        self.placeholders = frozenset(fields)
        self.dots = probe.count(".")

    def render(self, server: str, privilege_class: str, event: str) -> str:
        """The key for one event; every value is escaped with :func:`escape_segment`."""
        return self._format.format(
            escape_segment(server), escape_segment(privilege_class), escape_segment(event)
        )

    def __repr__(self) -> str:
        return f"RoutingTemplate({self.template!r})"


class Router:
    """Builds routing keys for one server id with one template.

    Raises:
        ValueError: ``server`` is not a valid server id or ``template`` is invalid.
    """

    __slots__ = ("_event_key", "server", "template")

    def __init__(self, server: str, template: str | RoutingTemplate = DEFAULT_TEMPLATE) -> None:
        self.server = validate_server_id(server)
        if not isinstance(template, RoutingTemplate):
            template = RoutingTemplate(template)
        self.template = template
        render = self.template.render

        @lru_cache(maxsize=_KEY_CACHE_SIZE)
        def event_key(cls: str, event: str) -> str:
            return render(server, cls, event)

        self._event_key = event_key

    def event_key(self, event: str, privilege_class: str) -> str:
        """The key for a valid event routed under ``privilege_class``.

        Use :func:`event_class` to find the class from the event's privileges.
        """
        return self._event_key(privilege_class, event)

    def invalid_key(self, event: str) -> str:
        """The key for a record that failed validation: ``{server}.invalid.{event}``."""
        return f"{escape_segment(self.server)}.invalid.{escape_segment(event)}"

    def bridge_key(self, status: BridgeStatus) -> str:
        """The key for one of the bridge's own status events: ``{server}.bridge.{status}``."""
        return f"{escape_segment(self.server)}.bridge.{BridgeStatus(status).value}"
