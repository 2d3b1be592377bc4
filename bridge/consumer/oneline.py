"""One readable line per message, for live views such as ``ami-bridge tail``.

Approach
--------
A line is ``time server class event key=value...``: the local receive time to the
millisecond, then the fields that say what happened.  :data:`KEY_FIELDS` lists, per
event, the few fields worth a glance (the channel, its ids, the cause...); other events
show their first fields.  Invalid messages are marked ``INVALID`` with their errors,
the bridge's status messages ``BRIDGE``.

AMI text comes from the network and ends up on a terminal, so every value is made safe:
control characters (an escape sequence could rewrite the screen) are shown escaped, and
a value with spaces, quotes or ``=`` is quoted.  Colour, one per class, is for terminals
only: the caller decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any

from bridge.consumer.messages import EventMessage, InvalidMessage, Message

__all__ = ["KEY_FIELDS", "format_details", "format_line", "local_time"]

#: Lower-cased event name -> the fields a line shows, when present.
KEY_FIELDS: Mapping[str, tuple[str, ...]] = {
    "newchannel": ("Channel", "Uniqueid", "CallerIDNum", "Exten", "Context", "Linkedid"),
    "newstate": ("Channel", "ChannelStateDesc", "State", "Uniqueid"),
    "newexten": ("Channel", "Context", "Exten", "Extension", "Application", "AppData"),
    "newcallerid": ("Channel", "CallerIDNum", "CallerIDName", "CallerID"),
    "varset": ("Channel", "Variable", "Value"),
    "dialbegin": ("Channel", "DestChannel", "DialString", "Linkedid"),
    "dialend": ("Channel", "DestChannel", "DialStatus"),
    "dial": ("Source", "Destination", "SubEvent", "DialStatus"),
    "bridgecreate": ("BridgeUniqueid", "BridgeType"),
    "bridgeenter": ("BridgeUniqueid", "Channel", "Uniqueid"),
    "bridgeleave": ("BridgeUniqueid", "Channel", "Uniqueid"),
    "bridgedestroy": ("BridgeUniqueid",),
    "link": ("Channel1", "Channel2"),
    "unlink": ("Channel1", "Channel2"),
    "hanguprequest": ("Channel", "Uniqueid", "Cause"),
    "hangup": ("Channel", "Uniqueid", "Cause", "Cause-txt", "Linkedid"),
    "peerstatus": ("Peer", "PeerStatus", "Address", "Time"),
    "reload": ("Module", "Status", "Message"),
    "channelreload": ("Channel", "ReloadReason"),
}
_FALLBACK_COUNT = 4

_RESET = "\x1b[0m"
_CLASS_COLOURS = {
    "call": "\x1b[32m",  # green
    "dialplan": "\x1b[36m",  # cyan
    "system": "\x1b[33m",  # yellow
    "agent": "\x1b[35m",  # magenta
    "invalid": "\x1b[1;31m",  # bold red
    "bridge": "\x1b[1;34m",  # bold blue
}
_NEEDS_QUOTES = frozenset(' "=\\')


def local_time(received_at: str, tz: tzinfo | None = None) -> str:
    """``received_at`` (RFC 3339 UTC) as ``HH:MM:SS.mmm`` in ``tz`` (local time if None)."""
    try:
        moment = datetime.fromisoformat(received_at).astimezone(tz)
    except ValueError:
        return "??:??:??.???"
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"


def format_line(message: Message, *, colour: bool = False, tz: tzinfo | None = None) -> str:
    """One line describing ``message``; ANSI colours by class when ``colour``."""
    klass = message.event_class
    head = f"{_safe(klass):<8} {_safe(message.event) or '(no event)':<16}"
    if colour:
        head = f"{_CLASS_COLOURS.get(klass, '')}{head}{_RESET}"
    time = local_time(message.received_at, tz)
    return f"{time} {_safe(message.server)} {head} {format_details(message)}".rstrip()


def format_details(message: Message) -> str:
    """The key fields of ``message`` as ``key=value`` pairs, safe for a terminal.

    Invalid messages start with ``INVALID`` and their errors, status messages with
    ``BRIDGE``.
    """
    if isinstance(message, EventMessage):
        values = message.fields.model_dump(by_alias=True, exclude_unset=True)
        return _pairs(_key_fields(message.event, values))
    if isinstance(message, InvalidMessage):
        errors = "; ".join(f"{e.field or 'message'}: {e.message}" for e in message.errors)
        headers = dict(reversed(message.raw))  # the first of repeated keys wins
        return f"INVALID {_safe(errors)} | {_pairs(_key_fields(message.event, headers))}"
    return f"BRIDGE {_pairs(message.fields.model_dump().items())}"


def _key_fields(event: str, values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    wanted = KEY_FIELDS.get(event.lower())
    if wanted is None:
        return list(values.items())[:_FALLBACK_COUNT]
    return [(name, values[name]) for name in wanted if name in values]


def _pairs(items: Iterable[tuple[str, Any]]) -> str:
    return " ".join(f"{_safe(str(key))}={_value(value)}" for key, value in items)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(_value(item) for item in value)
    text = str(value)
    if not text or any(c in _NEEDS_QUOTES for c in text) or not text.isprintable():
        return f'"{_escape(text, quotes=True)}"'
    return text


def _safe(text: str) -> str:
    """``text`` with control and other unprintable characters escaped."""
    return text if text.isprintable() else _escape(text, quotes=False)


def _escape(text: str, *, quotes: bool) -> str:
    out = []
    for char in text:
        if quotes and char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() or char == " ":
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)
