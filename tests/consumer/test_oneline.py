"""format_line: one readable, terminal-safe line per message."""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone

from bridge.consumer import format_line, parse_message
from bridge.consumer.oneline import local_time
from tests.consumer.bodies import BAD_HANGUP, HANGUP, event_body, gap_status


def line(body: bytes, *, colour: bool = False) -> str:
    return format_line(parse_message(body), tz=UTC, colour=colour)


def test_an_event_shows_time_server_class_event_and_its_key_fields() -> None:
    text = line(event_body(HANGUP, server="pbx2"))

    assert text == (
        "08:22:44.123 pbx2 call     Hangup           Channel=PJSIP/101-00000007 "
        'Uniqueid=1795681300.12 Cause=21 Cause-txt="Call Rejected" Linkedid=1795681300.11'
    )


def test_the_time_is_local() -> None:
    assert local_time("2026-11-26T08:22:44.123456Z", timezone(timedelta(hours=2))) == (
        "10:22:44.123"
    )


def test_peer_status_shows_peer_status_and_latency() -> None:
    body = event_body(
        "Event: PeerStatus\nPrivilege: system,all\nChannelType: PJSIP\nPeer: PJSIP/101\n"
        "PeerStatus: Reachable\nTime: 23\n"
    )

    assert line(body).endswith(
        "system   PeerStatus       Peer=PJSIP/101 PeerStatus=Reachable Time=23"
    )


def test_an_event_without_a_table_entry_shows_its_first_fields() -> None:
    body = event_body("Event: MyEvent\nPrivilege: user,all\nA: 1\nB: 2\nC: 3\nD: 4\nE: 5\n")

    assert line(body).endswith("user     MyEvent          A=1 B=2 C=3 D=4")


def test_an_invalid_message_is_marked_with_its_errors() -> None:
    text = line(event_body(BAD_HANGUP))

    assert " invalid  Hangup           INVALID Cause: Input should be a valid integer" in text
    assert text.endswith("| Channel=PJSIP/101-00000007 Cause=twenty-one")


def test_a_status_message_is_marked_as_the_bridge_s() -> None:
    text = line(gap_status())

    assert text == (
        "08:22:44.123 pbx1 bridge   gap              BRIDGE previous_epoch=1 last_seq=41 "
        'disconnected_for=2.5 reason="connection reset"'
    )


def test_colour_by_class_only_when_asked() -> None:
    plain = line(event_body(HANGUP))
    coloured = line(event_body(HANGUP), colour=True)

    assert "\x1b" not in plain
    assert "\x1b[32mcall     Hangup          \x1b[0m Channel=" in coloured
    assert "\x1b[1;31m" in line(event_body(BAD_HANGUP), colour=True)


def test_control_characters_from_the_wire_cannot_reach_the_terminal() -> None:
    body = event_body("Event: Newstate\nPrivilege: call,all\nChannel: PJSIP/x\x1b[2J\x9b31m\n")

    text = line(body)

    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", text)
    assert 'Channel="PJSIP/x\\x1b[2J\\x9b31m"' in text
