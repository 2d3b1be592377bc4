"""Event class bits and masks, read the way Asterisk's ``strings_to_mask`` reads them."""

from __future__ import annotations

from bridge.ami.event_mask import ALL_CLASSES, PERMS, class_mask, parse_event_mask


def test_event_mask_parsing_follows_strings_to_mask() -> None:
    assert parse_event_mask("on") == ALL_CLASSES
    assert parse_event_mask("off") == 0
    assert parse_event_mask("") is None
    assert parse_event_mask("3") == PERMS["system"] | PERMS["call"]
    assert parse_event_mask("call, dialplan") == PERMS["call"] | PERMS["dialplan"]
    assert parse_event_mask("system,all") == ALL_CLASSES
    assert class_mask("call,all") == PERMS["call"]
    assert class_mask("system,user,all") == PERMS["system"] | PERMS["user"]
