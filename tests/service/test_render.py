"""Rendering journal records: the snapshot flag, from the record to the body and headers."""

from __future__ import annotations

import struct

import orjson
import pytest

from bridge.publish.amqp_frames import PublishEncoder
from bridge.publish.records import RecordKind, decode, encode_event, encode_status
from bridge.publish.routing import Router
from bridge.service.render import Renderer
from tests.events.wire import parse_event
from tests.integration.contract import validate_body

CORE_SHOW_CHANNEL = parse_event(
    "Event: CoreShowChannel\n"
    "ActionID: amib-3\n"
    "Channel: PJSIP/111-00000002\n"
    "ChannelState: 6\n"
    "ChannelStateDesc: Up\n"
    "Uniqueid: 1795684652.1\n"
    "Linkedid: 1795684652.0\n"
    "Duration: 00:00:07\n"
    "BridgeId: "
)
HANGUP = parse_event("Event: Hangup\nPrivilege: call,all\nChannel: PJSIP/1-01\nCause: 16")
RECEIVED_AT = 1795684652.25


@pytest.mark.parametrize("snapshot", [True, False])
def test_a_record_keeps_its_snapshot_flag(snapshot: bool) -> None:
    record = decode(encode_event(9, 5, RECEIVED_AT, CORE_SHOW_CHANNEL, snapshot=snapshot))
    assert (record.kind, record.epoch, record.seq, record.snapshot) == (
        RecordKind.EVENT,
        9,
        5,
        snapshot,
    )
    assert record.event() == CORE_SHOW_CHANNEL


def test_a_record_written_before_the_flag_existed_reads_as_no_snapshot() -> None:
    old = struct.pack("<BQQd", 1, 9, 5, RECEIVED_AT) + HANGUP.raw
    assert old == encode_event(9, 5, RECEIVED_AT, HANGUP)
    assert decode(old).snapshot is False
    assert decode(encode_status(9, 6, RECEIVED_AT, "gap", {})).snapshot is False


def test_a_snapshot_item_renders_with_the_flag_in_its_body_and_headers() -> None:
    renderer = Renderer(Router("pbx1"))
    live = renderer.render(decode(encode_event(9, 5, RECEIVED_AT, CORE_SHOW_CHANNEL)))
    snap = renderer.render(
        decode(encode_event(9, 5, RECEIVED_AT, CORE_SHOW_CHANNEL, snapshot=True))
    )
    body = orjson.loads(snap.message.body)
    validate_body(body)
    assert body["snapshot"] is True
    assert body["kind"] == "event"
    assert body["fields"]["Channel"] == "PJSIP/111-00000002"
    assert snap.message.headers["snapshot"] is True
    # Everything else is what the same event read live gets: key, id, the other headers.
    assert "snapshot" not in orjson.loads(live.message.body)
    assert "snapshot" not in live.message.headers
    assert snap.message.routing_key == live.message.routing_key == "pbx1.none.coreshowchannel"
    assert snap.message.message_id == live.message.message_id == "pbx1:9:5"
    assert {k: v for k, v in snap.message.headers.items() if k != "snapshot"} == (
        live.message.headers
    )
    assert {k: v for k, v in body.items() if k != "snapshot"} == orjson.loads(live.message.body)


def test_an_invalid_snapshot_item_is_flagged_too() -> None:
    # Hangup cannot lack its Cause (a mistyped optional field would still be an event).
    broken = parse_event("Event: Hangup\nActionID: amib-3\nChannel: PJSIP/a-1")
    rendered = Renderer(Router("pbx1")).render(
        decode(encode_event(9, 6, RECEIVED_AT, broken, snapshot=True))
    )
    body = orjson.loads(rendered.message.body)
    validate_body(body)
    assert (body["kind"], body["snapshot"]) == ("invalid", True)
    assert rendered.message.routing_key == "pbx1.invalid.hangup"
    assert rendered.message.headers["snapshot"] is True


def test_resync_status_messages_render_on_the_bridge_route() -> None:
    fields = {"phase": "started", "actions": ["CoreShowChannels", "PJSIPShowEndpoints|SIPpeers"]}
    rendered = Renderer(Router("pbx1")).render(
        decode(encode_status(9, 2, RECEIVED_AT, "resync", fields))
    )
    body = orjson.loads(rendered.message.body)
    validate_body(body)
    assert (body["kind"], body["event"], body["fields"]) == ("status", "resync", fields)
    assert rendered.message.routing_key == "pbx1.bridge.resync"
    assert "snapshot" not in body
    assert "snapshot" not in rendered.message.headers


@pytest.mark.parametrize(
    "wire",
    [
        # A privilege class long enough to push the key past AMQP's 255 bytes.
        "Event: Hangup\nPrivilege: " + "x" * 300 + ",all\nChannel: PJSIP/1-01\nCause: 16",
        # A short name whose escaping (% -> %25) triples it past the limit.
        "Event: " + "%" * 90 + "\nPrivilege: system,all",
    ],
)
def test_an_event_whose_routing_key_would_be_too_long_goes_to_the_invalid_route(
    wire: str,
) -> None:
    record = decode(encode_event(9, 5, RECEIVED_AT, parse_event(wire)))
    rendered = Renderer(Router("pbx1")).render(record)
    key = rendered.message.routing_key
    assert (rendered.klass, rendered.valid) == ("invalid", False)
    assert key.startswith("pbx1.invalid.")
    assert len(key.encode()) <= 255
    body = orjson.loads(rendered.message.body)
    assert any("routing key longer than 255 bytes" in str(error) for error in body["errors"])
    out: list[bytes] = []
    PublishEncoder(1, "ami.events", 4096).encode(rendered.message, out)  # does not raise
    assert out


def test_a_snapshot_item_routes_by_the_class_its_live_event_has() -> None:
    renderer = Renderer(Router("pbx1"))
    # DeviceStateList answers with DeviceStateChange items that carry no Privilege.
    item = parse_event(
        "Event: DeviceStateChange\nActionID: amib-4\nDevice: PJSIP/101\nState: INUSE"
    )
    live = parse_event(
        "Event: DeviceStateChange\nPrivilege: call,all\nDevice: PJSIP/101\nState: INUSE"
    )
    snap = renderer.render(decode(encode_event(9, 7, RECEIVED_AT, item, snapshot=True)))
    read_live = renderer.render(decode(encode_event(9, 8, RECEIVED_AT, live)))

    assert snap.message.routing_key == read_live.message.routing_key
    assert snap.message.routing_key == "pbx1.call.devicestatechange"
    # The same item outside a resync (an action's reply) keeps the "none" class.
    reply = renderer.render(decode(encode_event(9, 9, RECEIVED_AT, item)))
    assert reply.message.routing_key == "pbx1.none.devicestatechange"
    # List items that are never sent live stay under "none" as snapshots too.
    channel = renderer.render(
        decode(encode_event(9, 10, RECEIVED_AT, CORE_SHOW_CHANNEL, snapshot=True))
    )
    assert channel.message.routing_key == "pbx1.none.coreshowchannel"


def test_a_nameless_message_has_the_same_empty_name_in_its_headers_and_body() -> None:
    nameless = parse_event("Event: \nChannel: PJSIP/1-01")
    rendered = Renderer(Router("pbx1")).render(decode(encode_event(9, 11, RECEIVED_AT, nameless)))
    body = orjson.loads(rendered.message.body)

    assert body["event"] == rendered.message.headers["event"] == rendered.message.event == ""
    # Only the routing key needs a segment for it.
    assert rendered.message.routing_key.endswith(".malformed")
