"""What a real wire throws at validation: case, drift, repeats, ChanVariable, odd bytes."""

from __future__ import annotations

import base64
import time

import pytest

from bridge.ami.protocol import AmiParser, Malformed
from bridge.events import (
    GenericEvent,
    InvalidRecord,
    Validated,
    generated,
    invalid_from_malformed,
    validate,
)
from tests.events.wire import parse_event, parse_items

NEWEXTEN = """Event: Newexten
Privilege: dialplan,all
Channel: PJSIP/alice-00000001
ChannelState: 6
ChannelStateDesc: Up
CallerIDNum: 1001
CallerIDName: Alice
Context: test
Exten: 100
Priority: 2
Uniqueid: 1795675154.5
Linkedid: 1795675154.2
Extension: 100
Application: NoOp
AppData: hello"""


def validated(text: str | bytes) -> Validated:
    result = validate(parse_event(text))
    assert isinstance(result, Validated), result
    return result


def test_field_names_match_without_regard_to_case() -> None:
    mixed = validated(NEWEXTEN)
    lower = validated("\n".join(line.lower() for line in NEWEXTEN.split("\n")))
    upper = validated(
        NEWEXTEN.replace("CallerIDNum", "CALLERIDNUM").replace("Priority", "priority")
    )

    assert type(lower.model) is type(mixed.model) is generated.NewExten
    assert list(lower.fields) == list(mixed.fields)
    assert upper.fields == mixed.fields
    assert mixed.fields["Priority"] == 2
    assert lower.privilege == mixed.privilege == ("dialplan", "all")
    assert mixed.drift == lower.drift == upper.drift == ()


def test_event_names_match_without_regard_to_case() -> None:
    for name in ("Newexten", "NewExten", "NEWEXTEN"):
        result = validated(NEWEXTEN.replace("Newexten", name, 1))
        assert type(result.model) is generated.NewExten
        assert result.name == name


def test_unknown_field_is_kept_and_reported_as_drift() -> None:
    result = validated(NEWEXTEN + "\nFancyNewThing: yes")

    assert result.drift == ("FancyNewThing",)
    assert result.extra == {"FancyNewThing": "yes"}
    assert result.model.model_extra == {"FancyNewThing": "yes"}
    assert "FancyNewThing" not in result.fields


def test_repeated_unknown_key_becomes_a_list() -> None:
    result = validated(NEWEXTEN + "\nOutput: one\noutput: two\nOutput: three")

    assert result.extra == {"Output": ["one", "two", "three"]}
    assert result.drift == ("Output",)


def test_repeated_known_field_keeps_the_first_value_and_all_values() -> None:
    result = validated(NEWEXTEN + "\nUniqueid: 1795675154.5\nuniqueid: other")

    assert result.fields["Uniqueid"] == "1795675154.5"
    assert result.model.Uniqueid == "1795675154.5"  # type: ignore[attr-defined]
    assert result.repeated == {"Uniqueid": ["1795675154.5", "1795675154.5", "other"]}
    assert result.drift == ()


def test_repeated_known_integer_field_is_still_typed() -> None:
    result = validated(NEWEXTEN + "\nPriority: not-a-number")

    assert result.fields["Priority"] == 2
    assert result.repeated == {"Priority": ["2", "not-a-number"]}


def test_chan_variables_fold_into_maps_per_header_name() -> None:
    result = validated(
        NEWEXTEN
        + "\nChanVariable: CDR(ua)=Yealink"
        + "\nChanVariable: EMPTY="
        + "\nChanVariable: FORMULA=a=b"
        + "\nDestChanVariable: ROLE=callee"
        + "\nChanVariable(SIP/1-0001): LEGACY=1"
        + "\nChanVariable(SIP/2-0002): LEGACY=2"
    )

    assert result.chan_vars == {
        "ChanVariable": {"CDR(ua)": "Yealink", "EMPTY": "", "FORMULA": "a=b"},
        "DestChanVariable": {"ROLE": "callee"},
        "ChanVariable(SIP/1-0001)": {"LEGACY": "1"},
        "ChanVariable(SIP/2-0002)": {"LEGACY": "2"},
    }
    assert result.drift == ()
    assert result.extra == {}


def test_a_chan_variable_sent_twice_keeps_every_value() -> None:
    result = validated(
        NEWEXTEN
        + "\nChanVariable: A=1"
        + "\nChanVariable: B=x"
        + "\nChanVariable: A=2"
        + "\nDestChanVariable: C=3"
    )

    assert result.chan_vars == {
        "ChanVariable": {"A": "1", "B": "x"},
        "DestChanVariable": {"C": "3"},
    }
    assert result.repeated == {"ChanVariable": ["A=1", "B=x", "A=2"]}
    assert result.drift == ()


def test_line_without_colon_is_kept_in_order() -> None:
    result = validated(NEWEXTEN + "\nthis line has no colon\nand neither has this")

    assert result.unparsed_lines == ["this line has no colon", "and neither has this"]
    assert result.drift == ()


def test_unknown_event_validates_into_the_generic_model() -> None:
    result = validated(
        "Event: BrandNewEvent\nPrivilege: call,all\nTimestamp: 1.5\nActionID: a1\n"
        "Queue: support\nMember: a\nmember: b\nChanVariable: X=1"
    )

    assert type(result.model) is GenericEvent
    assert result.is_generic
    assert result.name == "BrandNewEvent"
    assert result.privilege == ("call", "all")
    assert result.timestamp == "1.5"
    assert result.fields == {"ActionID": "a1", "Queue": "support", "Member": ["a", "b"]}
    assert result.chan_vars == {"ChanVariable": {"X": "1"}}
    assert result.drift == ()


def test_undocumented_enum_value_is_accepted_and_reported() -> None:
    result = validated(NEWEXTEN.replace("ChannelStateDesc: Up", "ChannelStateDesc: Warping"))

    assert result.fields["ChannelStateDesc"] == "Warping"
    assert result.unlisted_values == ("ChannelStateDesc",)


def test_empty_enum_value_is_not_reported() -> None:
    result = validated(NEWEXTEN.replace("ChannelStateDesc: Up", "ChannelStateDesc: "))

    assert result.fields["ChannelStateDesc"] == ""
    assert result.unlisted_values == ()


def test_unknown_caller_id_and_c_escapes_are_kept_as_sent() -> None:
    text = NEWEXTEN.replace("CallerIDName: Alice", 'CallerIDName: Bob \\"the\\" \\\\Builder\\n')
    result = validated(text.replace("CallerIDNum: 1001", "CallerIDNum: <unknown>"))

    assert result.fields["CallerIDName"] == 'Bob \\"the\\" \\\\Builder\\n'
    assert result.fields["CallerIDNum"] == "<unknown>"


def test_missing_required_field_is_invalid() -> None:
    result = validate(parse_event("Event: Hangup\nPrivilege: call,all\nChannel: PJSIP/a-1"))

    assert isinstance(result, InvalidRecord)
    assert [(e.field, e.type) for e in result.errors] == [("Cause", "missing")]


def test_invalid_record_reports_every_bad_field_by_ami_name() -> None:
    result = validate(parse_event("Event: Hangup\nCause: x\nTechCause: y\nCause-txt: Unknown"))

    assert isinstance(result, InvalidRecord)
    assert {(e.field, e.type) for e in result.errors} == {
        ("Cause", "int_parsing"),
        ("TechCause", "int_parsing"),
    }
    assert all(e.message for e in result.errors)


def test_invalid_utf8_values_are_replaced_and_kept_as_base64() -> None:
    raw_name = b"Jos\xe9 \xff"
    data = NEWEXTEN.replace("Alice", "@@").encode().replace(b"@@", raw_name)
    event = parse_event(data)
    assert event.invalid_utf8

    result = validated(data)

    assert result.fields["CallerIDName"] == "Jos\ufffd \ufffd"
    assert result.raw_base64 is not None
    assert len(result.raw_base64) == len(event.headers)
    decoded = [(base64.b64decode(k), base64.b64decode(v)) for k, v in result.raw_base64]
    assert (b"CallerIDName", raw_name) in decoded
    assert decoded[0] == (b"Event", b"Newexten")


def test_invalid_utf8_in_an_invalid_message_keeps_the_bytes_too() -> None:
    result = validate(parse_event(b"Event: Hangup\r\nCause: \xe9\r\n"))

    assert isinstance(result, InvalidRecord)
    assert result.headers[1] == ("Cause", "\ufffd")
    assert result.raw_base64 is not None
    assert base64.b64decode(result.raw_base64[1][1]) == b"\xe9"


def test_valid_utf8_has_no_base64() -> None:
    assert validated(NEWEXTEN.replace("Alice", "Jos\u00e9")).raw_base64 is None


def test_malformed_message_becomes_an_invalid_record_with_its_reason() -> None:
    parser = AmiParser(expect_banner=False, max_message_size=64)
    items = parser.feed(
        b"Event: Hangup\r\nPrivilege: call,all\r\nCause: " + b"1" * 80 + b"\r\n\r\n"
    )
    malformed = next(item for item in items if isinstance(item, Malformed))

    record = invalid_from_malformed(malformed)

    assert record.name == "Hangup"
    assert record.privilege == ("call", "all")
    assert record.headers == malformed.headers
    assert [(e.field, e.type) for e in record.errors] == [(None, "malformed")]
    assert "max_message_size" in record.errors[0].message


def test_truncated_message_without_event_header_has_an_empty_name() -> None:
    items = parse_items(b"Response: Success\r\nMessage: cut sh\xffort")
    (malformed,) = [item for item in items if isinstance(item, Malformed)]

    record = invalid_from_malformed(malformed)

    assert record.name == ""
    assert record.headers[1] == ("Message", "cut sh\ufffdort")
    assert record.raw_base64 is not None
    assert base64.b64decode(record.raw_base64[1][1]) == b"cut sh\xffort"


@pytest.mark.parametrize("privilege", ["Call", "call,all", "system,user,all", ""])
def test_privilege_is_a_lower_case_list(privilege: str) -> None:
    result = validated(NEWEXTEN.replace("dialplan,all", privilege))

    assert result.privilege == tuple(p for p in privilege.lower().split(",") if p)


def test_an_unknown_event_with_thousands_of_headers_stays_linear() -> None:
    lines = [f"Key{i}: {i}" for i in range(4000)] + [f"key{i}: again" for i in range(4000)]
    event = parse_event("Event: HugeList\n" + "\n".join(lines))

    start = time.perf_counter()
    result = validate(event)
    elapsed = time.perf_counter() - start

    assert isinstance(result, Validated)
    assert result.fields["Key3999"] == ["3999", "again"]
    assert len(result.fields) == 4000
    assert elapsed < 1.0
