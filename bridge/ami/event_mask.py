"""AMI event classes as bits: which events a manager session is sent.

Approach
--------
Asterisk gives every event class a bit (``perms[]`` in ``include/asterisk/manager.h``)
and keeps one mask per session.  An event's ``Privilege`` header names its classes;
a session receives the event only when its mask holds every one of those bits.  The
mask comes from ``Events`` at login or from the ``Events`` action's ``EventMask``, read
by the same rules as Asterisk's ``strings_to_mask``: digits, a true or false word, or a
comma list of class names.
"""

from __future__ import annotations

__all__ = ["ALL_CLASSES", "PERMS", "class_mask", "parse_event_mask"]

#: Asterisk's ``perms[]`` table: event class name -> bit (``include/asterisk/manager.h``).
PERMS: dict[str, int] = {
    "system": 1 << 0,
    "call": 1 << 1,
    "log": 1 << 2,
    "verbose": 1 << 3,
    "command": 1 << 4,
    "agent": 1 << 5,
    "user": 1 << 6,
    "config": 1 << 7,
    "dtmf": 1 << 8,
    "reporting": 1 << 9,
    "cdr": 1 << 10,
    "dialplan": 1 << 11,
    "originate": 1 << 12,
    "agi": 1 << 13,
    "cc": 1 << 15,
    "aoc": 1 << 16,
    "test": 1 << 17,
    "security": 1 << 18,
    "message": 1 << 30,
}
#: ``all`` is INT_MAX in Asterisk: every class, present and future.
ALL_CLASSES = 2**31 - 1
_TRUE = frozenset({"yes", "true", "y", "t", "1", "on"})
_FALSE = frozenset({"no", "false", "n", "f", "0", "off"})


def class_mask(privilege: str) -> int:
    """The class bits of an event's ``Privilege`` (``call,all`` -> call); ``all`` adds none."""
    return sum(PERMS.get(name.strip().lower(), 0) for name in set(privilege.split(",")))


def parse_event_mask(text: str | None) -> int | None:
    """Read an ``EventMask``/``Events`` value as Asterisk's ``strings_to_mask`` does.

    Digits are a bitmask, an Asterisk false word (``off``) is 0, a true word (``on``) is
    every class, anything else a comma list of class names.  Returns None when empty.
    """
    if not text or not text.strip():
        return None
    value = text.strip()
    if value.isdigit():
        return int(value) & ALL_CLASSES
    if value.lower() in _FALSE:
        return 0
    if value.lower() in _TRUE:
        return ALL_CLASSES
    names = {name.strip().lower() for name in value.split(",")}
    return ALL_CLASSES if "all" in names else sum(PERMS.get(name, 0) for name in names)
