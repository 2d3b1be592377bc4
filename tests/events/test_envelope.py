"""The JSON message contract: shape, key order, omitted keys, and the Envelope model."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from bridge.ami.protocol import Malformed
from bridge.events import (
    SCHEMA_VERSION,
    Envelope,
    GenericEvent,
    InvalidRecord,
    Validated,
    encode,
    format_received_at,
    generated,
    invalid_from_malformed,
    message_id,
    validate,
)
from tests.events.wire import parse_event

HANGUP = (
    "Event: Hangup\nPrivilege: call,all\nTimestamp: 1795675153.345209\n"
    "Channel: PJSIP/alice-00000001\nUniqueid: 1795675153.0\nCause: 16\n"
    "Cause-txt: Normal Clearing"
)
RECEIVED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def encoded(result: Validated | InvalidRecord, **options: Any) -> dict[str, Any]:
    data = encode(
        result, server="pbx1", epoch=1795675153000, seq=42, received_at=1795675364.5, **options
    )
    assert isinstance(data, bytes)
    decoded: dict[str, Any] = orjson.loads(data)
    return decoded


def hangup(extra_lines: str = "") -> Validated:
    result = validate(parse_event(HANGUP + extra_lines))
    assert isinstance(result, Validated)
    return result


def test_event_message_has_exactly_the_contract_keys_in_order() -> None:
    message = encoded(hangup())

    assert message == {
        "schema_version": SCHEMA_VERSION,
        "kind": "event",
        "id": "pbx1:1795675153000:42",
        "server": "pbx1",
        "event": "Hangup",
        "privilege": ["call", "all"],
        "received_at": "2026-11-26T06:42:44.500000Z",
        "timestamp": "1795675153.345209",
        "epoch": 1795675153000,
        "seq": 42,
        "fields": {
            "Channel": "PJSIP/alice-00000001",
            "Uniqueid": "1795675153.0",
            "Cause": 16,
            "Cause-txt": "Normal Clearing",
        },
    }
    assert list(message) == list(Envelope.model_fields)[: len(message)]


def test_schema_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", SCHEMA_VERSION)


def test_message_id_is_server_epoch_seq() -> None:
    assert message_id("pbx1", 1795675153000, 42) == "pbx1:1795675153000:42"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (1795675364.123456, "2026-11-26T06:42:44.123456Z"),
        (1795675364.0000002, "2026-11-26T06:42:44.000000Z"),
        (1795675364.9999996, "2026-11-26T06:42:45.000000Z"),
    ],
)
def test_received_at_is_rfc3339_utc_with_microseconds(seconds: float, text: str) -> None:
    assert format_received_at(seconds) == text
    assert RECEIVED_AT.match(text)


def test_received_at_agrees_with_datetime() -> None:
    now = 1795675364.25
    expected = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    assert format_received_at(now) == expected
    assert format_received_at(now + 1) != expected  # the per-second cache moves on


def test_timestamp_is_null_when_asterisk_sent_none() -> None:
    result = hangup()
    without = validate(parse_event(HANGUP.replace("Timestamp: 1795675153.345209\n", "")))
    assert isinstance(without, Validated)

    assert encoded(result)["timestamp"] == "1795675153.345209"
    assert encoded(without)["timestamp"] is None


def test_leftovers_appear_only_when_present() -> None:
    message = encoded(hangup("\nNewThing: 1\nUniqueid: again\nChanVariable: A=1\nno colon here"))

    assert message["extra"] == {"NewThing": "1"}
    assert message["repeated"] == {"Uniqueid": ["1795675153.0", "again"]}
    assert message["chan_vars"] == {"ChanVariable": {"A": "1"}}
    assert message["unparsed_lines"] == ["no colon here"]
    assert "NewThing" not in message["fields"]
    keys = list(message)
    assert keys[keys.index("fields") :] == [
        "fields",
        "extra",
        "repeated",
        "chan_vars",
        "unparsed_lines",
    ]


def test_raw_and_snapshot_only_on_request() -> None:
    plain = encoded(hangup())
    full = encoded(hangup(), include_raw=True, snapshot=True)

    assert "raw" not in plain
    assert "snapshot" not in plain
    assert full["snapshot"] is True
    assert full["raw"][:2] == [["Event", "Hangup"], ["Privilege", "call,all"]]
    assert [tuple(pair) for pair in full["raw"]] == list(hangup().headers)


def test_invalid_message_carries_raw_headers_and_errors_not_fields() -> None:
    result = validate(parse_event(HANGUP.replace("Cause: 16", "Cause: abc")))
    assert isinstance(result, InvalidRecord)

    message = encoded(result)

    assert message["kind"] == "invalid"
    assert "fields" not in message
    assert [tuple(pair) for pair in message["raw"]] == list(result.headers)
    assert message["errors"] == [
        {"field": "Cause", "message": result.errors[0].message, "type": "int_parsing"}
    ]


def test_malformed_message_encodes_with_a_null_field() -> None:
    record = invalid_from_malformed(Malformed("stream ended inside a message", b"Ev", ()))

    message = encoded(record)

    assert message["event"] == ""
    assert message["privilege"] == []
    assert message["raw"] == []
    assert message["errors"] == [
        {"field": None, "message": "stream ended inside a message", "type": "malformed"}
    ]


def test_invalid_utf8_message_is_valid_json_with_the_exact_bytes() -> None:
    data = HANGUP.encode().replace(b"Normal Clearing", b"Normal \xc3(Clearing")
    result = validate(parse_event(data))
    assert isinstance(result, Validated)

    message = encoded(result)

    assert message["fields"]["Cause-txt"] == "Normal \ufffd(Clearing"
    pairs = [(base64.b64decode(k), base64.b64decode(v)) for k, v in message["raw_base64"]]
    assert pairs[-1] == (b"Cause-txt", b"Normal \xc3(Clearing")


def test_generic_event_publishes_every_header_as_fields() -> None:
    result = validate(parse_event("Event: PeerEntry\nActionID: 1\nObjectName: a\nDynamic: yes"))
    assert isinstance(result, Validated)

    message = encoded(result)

    assert message["fields"] == {"ActionID": "1", "ObjectName": "a", "Dynamic": "yes"}
    assert "extra" not in message


def test_envelope_parses_an_encoded_message_back() -> None:
    envelope = Envelope[generated.Hangup].model_validate_json(
        encode(hangup(), server="pbx1", epoch=1, seq=2, received_at=1.0)
    )

    assert envelope.fields is not None
    assert envelope.fields.Cause == 16
    assert envelope.fields.Cause_txt == "Normal Clearing"
    assert envelope.extra == {}
    assert envelope.snapshot is False


def test_envelope_parses_an_invalid_message_back() -> None:
    result = validate(parse_event(HANGUP.replace("Cause: 16", "Cause: abc")))
    assert isinstance(result, InvalidRecord)

    envelope = Envelope[GenericEvent].model_validate_json(
        encode(result, server="pbx1", epoch=1, seq=2, received_at=1.0)
    )

    assert envelope.kind == "invalid"
    assert envelope.errors is not None
    assert envelope.errors[0].field == "Cause"


def test_envelope_rejects_an_event_without_fields() -> None:
    message = encoded(hangup())
    del message["fields"]

    with pytest.raises(ValidationError, match="needs fields"):
        Envelope[generated.Hangup].model_validate(message)


def test_envelope_schema_documents_the_contract() -> None:
    schema = Envelope[generated.Hangup].model_json_schema(by_alias=True)

    assert schema["properties"]["kind"]["enum"] == ["event", "invalid"]
    assert schema["properties"]["received_at"]["format"] == "date-time"
    hangup_schema = schema["$defs"]["Hangup"]
    assert hangup_schema["required"] == ["Cause"]
    assert hangup_schema["properties"]["Cause"]["type"] == "integer"
    assert "Cause-txt" in hangup_schema["properties"]
    desc = hangup_schema["properties"]["ChannelStateDesc"]["anyOf"][0]
    assert "Up" in desc["enum"]
