"""Header redaction: which names match, and that nothing redacted reaches a rendered message."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest

from bridge.ami.protocol import Event, Malformed
from bridge.publish.records import decode, encode_event, encode_malformed
from bridge.publish.routing import Router
from bridge.service.redact import Redactor, maybe_redactor
from bridge.service.render import Renderer
from tests.events.wire import parse_event
from tests.integration.contract import validate_body

NEWCHANNEL = parse_event(
    "Event: Newchannel\n"
    "Privilege: call,all\n"
    "Timestamp: 1795675309.474070\n"
    "Channel: PJSIP/alice-00000001\n"
    "ChannelState: 4\n"
    "CallerIDNum: 100\n"
    "CallerIDName: Alice Secretname\n"
    "ConnectedLineName: Bob Hiddenname\n"
    "Uniqueid: 1795675309.1\n"
    "ChanVariable: ACCOUNT=acct-4711\n"
    "DestChanVariable: PIN=9876\n"
    "ChanVariable(SIP/1-0001): LEGACY=old-secret"
)
SECRETS = (b"Secretname", b"acct-4711", b"9876", b"old-secret")


def rendered_body(event: Event, patterns: list[str], **options: Any) -> bytes:
    record = decode(encode_event(7, 42, time.time(), event))
    return Renderer(Router("pbx1"), redact=patterns, **options).render(record).message.body


@pytest.mark.parametrize(
    ("pattern", "removed", "kept"),
    [
        (
            "*ChanVariable*",
            ["ChanVariable", "DestChanVariable", "ChanVariable(SIP/1-0001)"],
            ["Channel", "CallerIDName"],
        ),
        (
            "*ChanVariable",  # the legacy ``Name(channel)`` form matches by its base name
            ["ChanVariable", "DestChanVariable", "ChanVariable(SIP/1-0001)", "chanvariable"],
            ["ChanVariables", "Variable"],
        ),
        (
            "*CallerIDName",
            ["CallerIDName", "DestCallerIDName", "TransfererCallerIDName", "CALLERIDNAME"],
            ["CallerIDNum", "CallerIDNameX", "ConnectedLineName"],
        ),
        ("Caller?DNum", ["CallerIDNum"], ["CallerIDName", "DestCallerIDNum"]),
        ("Variable", ["Variable", "Variable(0)"], ["Value", "DestVariable"]),
        ("[AB]ccountCode", ["AccountCode", "bccountcode"], ["CccountCode"]),
    ],
)
def test_patterns_are_case_insensitive_globs_over_whole_names(
    pattern: str, removed: list[str], kept: list[str]
) -> None:
    redactor = Redactor([pattern])
    assert [name for name in removed if not redactor.removes(name)] == []
    assert [name for name in kept if redactor.removes(name)] == []


def test_event_privilege_and_timestamp_are_never_removed() -> None:
    redactor = Redactor(["*"])
    assert [h for h, _ in redactor.event(NEWCHANNEL).headers] == [
        "Event",
        "Privilege",
        "Timestamp",
    ]


def test_no_pattern_means_no_redactor_and_no_step_in_the_renderer() -> None:
    assert maybe_redactor([]) is None
    assert maybe_redactor(["", "  "]) is None
    assert Renderer(Router("pbx1")).redactor is None
    assert Renderer(Router("pbx1"), redact=[" *CallerIDName "]).redactor is not None
    with pytest.raises(ValueError, match="at least one"):
        Redactor([" "])


def test_an_event_with_nothing_to_redact_is_passed_on_as_is() -> None:
    redactor = Redactor(["*Secret*"])
    assert redactor.event(NEWCHANNEL) is NEWCHANNEL


def test_a_redacted_event_keeps_everything_else_in_wire_order() -> None:
    redacted = Redactor(["*ChanVariable*", "*CallerIDName"]).event(NEWCHANNEL)
    assert [h for h, _ in redacted.headers] == [
        "Event",
        "Privilege",
        "Timestamp",
        "Channel",
        "ChannelState",
        "CallerIDNum",
        "ConnectedLineName",
        "Uniqueid",
    ]
    assert redacted.raw.startswith(b"Event: Newchannel\nPrivilege: call,all\n")
    assert not any(secret in redacted.raw for secret in SECRETS)


def test_redacted_headers_are_in_no_part_of_the_body() -> None:
    unredacted = rendered_body(NEWCHANNEL, [], include_raw=True)
    assert all(secret in unredacted for secret in SECRETS)  # the check below can fail
    body = rendered_body(NEWCHANNEL, ["*ChanVariable*", "*CallerIDName"], include_raw=True)
    assert not any(secret in body for secret in SECRETS)
    message = orjson.loads(body)
    validate_body(message)
    assert message["kind"] == "event"
    assert "CallerIDName" not in message["fields"]
    assert message["fields"]["ConnectedLineName"] == "Bob Hiddenname"  # not matched
    assert "chan_vars" not in message
    assert "extra" not in message
    assert ["CallerIDName", "Alice Secretname"] not in message["raw"]


def test_a_redacted_required_field_makes_the_event_invalid_without_leaking_it() -> None:
    fax_stats = parse_event(
        "Event: FAXStats\n"
        "Privilege: reporting,all\n"
        "CurrentSessions: 31337\n"
        "ReservedSessions: 0\n"
        "TransmitAttempts: 1\n"
        "ReceiveAttempts: 2\n"
        "CompletedFAXes: 3\n"
        "FailedFAXes: 0\n"
        "ChanVariable: TOKEN=tok-555"
    )
    assert orjson.loads(rendered_body(fax_stats, []))["kind"] == "event"
    body = rendered_body(fax_stats, ["currentsessions", "*ChanVariable*"])
    assert b"31337" not in body
    assert b"tok-555" not in body
    message = orjson.loads(body)
    validate_body(message)
    assert message["kind"] == "invalid"
    assert {"field": "CurrentSessions", "message": "Field required", "type": "missing"} in (
        message["errors"]
    )
    assert [key for key, _ in message["raw"]] == [
        "Event",
        "Privilege",
        "ReservedSessions",
        "TransmitAttempts",
        "ReceiveAttempts",
        "CompletedFAXes",
        "FailedFAXes",
    ]


def test_invalid_utf8_in_a_redacted_header_leaves_no_trace_in_raw_base64() -> None:
    event = parse_event(
        b"Event: Newchannel\nPrivilege: call,all\nChannel: PJSIP/1-01\n"
        b"CallerIDName: Jos\xe9 Caf\xe9"
    )
    secret = base64.b64encode(b"Jos\xe9 Caf\xe9")
    assert secret in rendered_body(event, [])  # the bad bytes are kept as base64 ...
    body = rendered_body(event, ["*CallerIDName"])
    assert secret not in body  # ... unless the header is redacted
    assert b"Jos" not in body
    message = orjson.loads(body)
    validate_body(message)
    assert message["fields"] == {"Channel": "PJSIP/1-01"}


def test_a_malformed_record_is_redacted_too() -> None:
    item = Malformed(
        "message larger than 4194304 bytes",
        b"Event: UserEvent\r\nCallerIDName: Alice Secretname\r\n",
        (("Event", "UserEvent"), ("CallerIDName", "Alice Secretname"), ("Body", "x" * 10)),
    )
    record = decode(encode_malformed(7, 1, time.time(), item))
    renderer = Renderer(Router("pbx1"), redact=["*CallerIDName"])
    body = renderer.render(record).message.body
    assert b"Secretname" not in body
    message = orjson.loads(body)
    validate_body(message)
    assert message["kind"] == "invalid"
    assert message["raw"] == [["Event", "UserEvent"], ["Body", "x" * 10]]


def test_a_replayed_record_renders_to_the_same_bytes() -> None:
    record = decode(encode_event(7, 42, 1795675309.5, NEWCHANNEL))
    renderer = Renderer(Router("pbx1"), redact=["*ChanVariable*"], include_raw=True)
    first = renderer.render(record).message
    again = Renderer(Router("pbx1"), redact=["*ChanVariable*"], include_raw=True).render(record)
    assert again.message == first
    assert renderer.render(record).message == first
