"""parse_message: bodies made by the bridge's own encoders come back as typed models."""

from __future__ import annotations

import orjson
import pytest

from bridge.consumer import EventMessage, InvalidMessage, MessageError, StatusMessage, parse_message
from bridge.events.base import GenericEvent
from bridge.events.generated import Hangup
from bridge.events.legacy import Newchannel
from bridge.events.status import ConnectedFields, GapFields, StatusFields
from tests.consumer.bodies import BAD_HANGUP, HANGUP, NEWCHANNEL, event_body, gap_status, status


def test_an_event_gets_its_registry_model_with_typed_fields() -> None:
    message = parse_message(event_body(HANGUP, server="pbx2", epoch=7, seq=42))

    assert isinstance(message, EventMessage)
    assert isinstance(message.fields, Hangup)
    assert message.fields.Cause == 21
    assert type(message.fields.Cause) is int
    assert message.fields.Cause_txt == "Call Rejected"
    assert message.fields.Linkedid == "1795681300.11"
    assert (message.id, message.server, message.epoch, message.seq) == ("pbx2:7:42", "pbx2", 7, 42)
    assert message.event == "Hangup"
    assert message.privilege == ["call", "all"]
    assert message.event_class == "call"
    assert message.timestamp == "1795681364.120000"
    assert message.received_at == "2026-11-26T08:22:44.123456Z"


def test_the_model_is_the_one_the_bridge_validates_with() -> None:
    message = parse_message(event_body(NEWCHANNEL))

    assert isinstance(message, EventMessage)
    # The registry maps Newchannel to the model that also knows the 1.4-era fields.
    assert type(message.fields) is Newchannel
    assert message.fields.Exten == "102"


def test_an_event_without_a_model_keeps_every_header_as_text() -> None:
    message = parse_message(event_body("Event: MyModuleEvent\nPrivilege: user,all\nCount: 3\n"))

    assert isinstance(message, EventMessage)
    assert type(message.fields) is GenericEvent
    assert message.fields.model_extra == {"Count": "3"}
    assert message.event_class == "user"


def test_unknown_headers_stay_in_extra() -> None:
    message = parse_message(event_body(HANGUP + "X-Site: berlin\n"))

    assert isinstance(message, EventMessage)
    assert message.extra == {"X-Site": "berlin"}


def test_an_invalid_message_carries_its_errors_and_raw_headers() -> None:
    message = parse_message(event_body(BAD_HANGUP))

    assert isinstance(message, InvalidMessage)
    assert message.event_class == "invalid"
    assert [error.field for error in message.errors] == ["Cause"]
    assert ("Cause", "twenty-one") in message.raw
    assert message.fields is None


def test_a_gap_status_gets_the_gap_fields_model() -> None:
    message = parse_message(gap_status(epoch=9, seq=1))

    assert isinstance(message, StatusMessage)
    assert message.event_class == "bridge"
    assert isinstance(message.fields, GapFields)
    assert (message.fields.previous_epoch, message.fields.last_seq) == (1, 41)
    assert message.fields.disconnected_for == 2.5


def test_status_fields_are_typed_per_status_and_unknown_statuses_still_parse() -> None:
    connected = parse_message(
        status("connected", {"target": "ami://b@h:5038", "ami_version": None})
    )
    future = parse_message(status("paused", {"why": "maintenance"}))

    assert isinstance(connected, StatusMessage)
    assert isinstance(connected.fields, ConnectedFields)
    assert isinstance(future, StatusMessage)
    assert type(future.fields) is StatusFields
    assert future.fields.model_extra == {"why": "maintenance"}


def test_keys_of_a_later_minor_version_are_ignored() -> None:
    data = orjson.loads(event_body(HANGUP))
    data.update(schema_version="2.9.0", new_key={"a": 1})

    message = parse_message(orjson.dumps(data))

    assert isinstance(message, EventMessage)
    assert message.schema_version == "2.9.0"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schema_version": "3.0.0", "kind": "event"}', "schema version '3.0.0'"),
        (b'{"kind": "event"}', "schema version None"),
    ],
)
def test_bodies_outside_the_contract_are_refused(body: bytes, complaint: str) -> None:
    with pytest.raises(MessageError, match=complaint):
        parse_message(body)


def test_an_unknown_kind_is_refused() -> None:
    data = orjson.loads(event_body(HANGUP))
    data["kind"] = "telemetry"

    with pytest.raises(MessageError, match="unknown kind 'telemetry'"):
        parse_message(orjson.dumps(data))


def test_fields_that_break_the_model_are_refused_with_the_field_named() -> None:
    data = orjson.loads(event_body(HANGUP))
    data["fields"]["Cause"] = "many"

    with pytest.raises(MessageError, match="Cause"):
        parse_message(orjson.dumps(data))


def test_an_event_message_without_fields_is_refused() -> None:
    data = orjson.loads(event_body(HANGUP))
    del data["fields"]

    with pytest.raises(MessageError, match="fields is not an object"):
        parse_message(orjson.dumps(data))
