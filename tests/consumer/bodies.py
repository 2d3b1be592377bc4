"""Published message bodies for the consumer tests, made by the bridge's own encoders."""

from __future__ import annotations

from typing import Any

from bridge.ami.protocol import AmiParser, Event, serialize
from bridge.ami.traffic import TrafficGenerator
from bridge.events.envelope import encode
from bridge.events.validation import validate
from bridge.service.render import status_body
from tests.events.wire import parse_event

#: ``received_at`` of every body made here: 2026-11-26T08:22:44.123456Z.
RECEIVED_AT = 1795681364.123456


def event_body(text: str, *, server: str = "pbx1", epoch: int = 1, seq: int = 1) -> bytes:
    """The body the bridge publishes for the AMI event ``text`` (lines end in LF)."""
    return encode(
        validate(parse_event(text)), server=server, epoch=epoch, seq=seq, received_at=RECEIVED_AT
    )


def status(
    event: str, fields: dict[str, Any], *, server: str = "pbx1", epoch: int = 1, seq: int = 1
) -> bytes:
    """The body of one of the bridge's status messages."""
    return status_body(server, epoch, seq, RECEIVED_AT, event, fields)


def gap_status(*, server: str = "pbx1", epoch: int = 2, seq: int = 1) -> bytes:
    """A ``gap`` status: epoch 1 was lost after seq 41."""
    fields = {
        "previous_epoch": 1,
        "last_seq": 41,
        "disconnected_for": 2.5,
        "reason": "connection reset",
    }
    return status("gap", fields, server=server, epoch=epoch, seq=seq)


HANGUP = """Event: Hangup
Privilege: call,all
Timestamp: 1795681364.120000
Channel: PJSIP/101-00000007
ChannelState: 6
ChannelStateDesc: Up
CallerIDNum: 101
Uniqueid: 1795681300.12
Linkedid: 1795681300.11
Cause: 21
Cause-txt: Call Rejected
"""

NEWCHANNEL = """Event: Newchannel
Privilege: call,all
Channel: PJSIP/101-00000007
ChannelState: 4
ChannelStateDesc: Ring
CallerIDNum: 101
Exten: 102
Context: from-internal
Uniqueid: 1795681300.11
Linkedid: 1795681300.11
"""

#: A Hangup whose Cause is not a number: the bridge publishes it as kind=invalid.
BAD_HANGUP = """Event: Hangup
Privilege: call,all
Channel: PJSIP/101-00000007
Cause: twenty-one
"""


def simulated_bodies(count: int, *, seed: int, legacy: bool = False) -> list[bytes]:
    """The bodies the bridge would publish for ``count`` events of the simulated PBX."""
    generator = TrafficGenerator(seed, legacy=legacy, clock=lambda: RECEIVED_AT)
    parser = AmiParser(expect_banner=False)
    bodies = []
    for seq in range(1, count + 1):
        (event,) = parser.feed(serialize(generator.next_event()))
        assert isinstance(event, Event)
        # Spread the receive times 10 ms apart, as a live stream would be.
        received_at = RECEIVED_AT + seq / 100
        result = validate(event)
        bodies.append(encode(result, server="pbx1", epoch=1, seq=seq, received_at=received_at))
    return bodies
