"""Every example of the 1.4-era event description (ami-events.rst) keeps its meaning.

The examples are read from the .rst file itself, written out as AMI wire text twice
(with the document's lower-case keys and with the CamelCase keys Asterisk 1.4 sent),
parsed with the real parser and validated into typed models.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bridge.events import InvalidRecord, Validated, legacy, validate
from bridge.events import generated as gen
from tests.events.wire import FIXTURES, parse_event

SEED = (FIXTURES / "ami-events.rst").read_text()

# Header spellings of Asterisk 1.4 for the document's lower-case keys.
CAMEL = {
    "event": "Event",
    "privilege": "Privilege",
    "peer": "Peer",
    "peerstatus": "PeerStatus",
    "time": "Time",
    "channel": "Channel",
    "uniqueid": "Uniqueid",
    "calleridnum": "CallerIDNum",
    "calleridname": "CallerIDName",
    "callerid": "CallerID",
    "state": "State",
    "context": "Context",
    "extension": "Extension",
    "priority": "Priority",
    "application": "Application",
    "appdata": "AppData",
    "cause": "Cause",
    "cause-txt": "Cause-txt",
    "srcuniqueid": "SrcUniqueID",
    "destuniqueid": "DestUniqueID",
    "source": "Source",
    "destination": "Destination",
    "cid-callingpres": "CID-CallingPres",
    "uniqueid1": "Uniqueid1",
    "uniqueid2": "Uniqueid2",
    "channel1": "Channel1",
    "channel2": "Channel2",
    "callerid1": "CallerID1",
    "callerid2": "CallerID2",
    "message": "Message",
    "reloadreason": "ReloadReason",
    "user_count": "User_Count",
    "peer_count": "Peer_Count",
    "registry_count": "Registry_Count",
}

# (model, privilege, typed attribute values) for each example, in document order.
EXPECTED: list[tuple[type[Any], tuple[str, ...], dict[str, Any]]] = [
    (
        legacy.PeerStatus,
        ("system", "all"),
        {"Peer": "SIP/101", "PeerStatus": "Registered", "Time": 37},
    ),
    (legacy.WaitEventComplete, (), {}),
    (
        legacy.Newchannel,
        ("call", "all"),
        {
            "Channel": "SIP/101-086d58a8",
            "Uniqueid": "1261087570.1",
            "CallerIDNum": "101",
            "State": "Down",
            "CallerIDName": "<unknown>",
        },
    ),
    (
        legacy.Newstate,
        ("call", "all"),
        {"State": "Ring", "CallerID": "101", "CallerIDName": "<unknown>"},
    ),
    (
        gen.NewExten,
        ("call", "all"),
        {
            "Channel": "SIP/101-086d58a8",
            "Context": "default",
            "Extension": "100",
            "Priority": 1,
            "Application": "NoOp",
            "AppData": "exec 100",
        },
    ),
    (
        gen.Hangup,
        ("call", "all"),
        {
            "Channel": "SIP/101-086d4280",
            "Uniqueid": "1261087819.2",
            "Cause": 21,
            "Cause_txt": "Call Rejected",
        },
    ),
    (
        legacy.Dial,
        ("call", "all"),
        {
            "SrcUniqueID": "1261088142.3",
            "DestUniqueID": "1261088142.4",
            "Source": "Console/dsp",
            "Destination": "SIP/101-086d4a00",
            "CallerID": "<unknown>",
            "CallerIDName": "<unknown>",
        },
    ),
    (
        legacy.NewCallerid,
        ("call", "all"),
        {
            "CallerID": "101",
            "CallerIDName": "<Unknown>",
            "CID_CallingPres": "0 (Presentation Allowed, Not Screened)",
        },
    ),
    (
        legacy.Link,
        ("call", "all"),
        {
            "Uniqueid1": "1261088142.3",
            "Uniqueid2": "1261088142.4",
            "Channel1": "Console/dsp",
            "Channel2": "SIP/101-086d4a00",
            "CallerID1": "",
            "CallerID2": "101",
        },
    ),
    (gen.Hangup, ("call", "all"), {"Cause": 21, "Cause_txt": "Call Rejected"}),
    (legacy.Reload, ("system", "all"), {"Message": "Reload Requested"}),
    (
        legacy.ChannelReload,
        ("system", "all"),
        {
            "Channel": "SIP",
            "ReloadReason": "RELOAD (Channel module reload)",
            "User_Count": 1,
            "Peer_Count": 1,
            "Registry_Count": 0,
        },
    ),
]


def seed_examples() -> list[list[tuple[str, str]]]:
    """The (key, value) pairs of each example in the document, event first."""
    examples = []
    for block in re.findall(r"\{(.*?)\}", SEED, re.DOTALL):
        pairs = re.findall(r"u'([^']*)'\s*:\s*u'([^']*)'", block)
        event = [pair for pair in pairs if pair[0] == "event"]
        examples.append(event + [pair for pair in pairs if pair[0] != "event"])
    return examples


def wire(pairs: list[tuple[str, str]], camel: bool) -> str:
    return "".join(f"{CAMEL[k] if camel else k}: {v}\r\n" for k, v in pairs) + "\r\n"


def test_the_document_has_the_examples_we_check() -> None:
    names = [pairs[0][1] for pairs in seed_examples()]
    assert names == [
        "PeerStatus",
        "WaitEventComplete",
        "Newchannel",
        "Newstate",
        "Newexten",
        "Hangup",
        "Dial",
        "Newcallerid",
        "Link",
        "Hangup",
        "Reload",
        "ChannelReload",
    ]


@pytest.mark.parametrize("camel", [False, True], ids=["seed-keys", "wire-keys"])
@pytest.mark.parametrize("index", range(len(EXPECTED)))
def test_seed_example_validates_into_its_typed_model(index: int, camel: bool) -> None:
    pairs = seed_examples()[index]
    model, privilege, expected = EXPECTED[index]

    result = validate(parse_event(wire(pairs, camel)))

    assert isinstance(result, Validated), result
    assert type(result.model) is model
    assert result.name == pairs[0][1]
    assert result.privilege == privilege
    assert result.drift == ()
    for attribute, value in expected.items():
        assert getattr(result.model, attribute) == value, attribute
        assert type(getattr(result.model, attribute)) is type(value), attribute


@pytest.mark.parametrize("camel", [False, True], ids=["seed-keys", "wire-keys"])
def test_published_fields_use_the_documented_names(camel: bool) -> None:
    hangup = seed_examples()[5]

    result = validate(parse_event(wire(hangup, camel)))

    assert isinstance(result, Validated)
    assert result.fields == {
        "Channel": "SIP/101-086d4280",
        "Uniqueid": "1261087819.2",
        "Cause": 21,
        "Cause-txt": "Call Rejected",
    }


def test_link_says_both_peers_are_bridged() -> None:
    assert "bridged" in (legacy.Link.__doc__ or "")


def test_hangup_with_a_non_integer_cause_is_invalid_with_its_raw_headers() -> None:
    pairs = [(k, "abc" if k == "cause" else v) for k, v in seed_examples()[5]]
    event = parse_event(wire(pairs, camel=True))

    result = validate(event)

    assert isinstance(result, InvalidRecord)
    assert result.name == "Hangup"
    assert result.headers == event.headers
    assert [(e.field, e.type) for e in result.errors] == [("Cause", "int_parsing")]


def test_peerstatus_with_a_non_integer_time_keeps_the_text_as_drift() -> None:
    result = validate(
        parse_event("Event: PeerStatus\nPeer: SIP/101\nPeerStatus: Reachable\nTime: fast")
    )

    assert isinstance(result, Validated)
    assert "Time" not in result.fields
    assert result.extra == {"Time": "fast"}
    assert result.mistyped == ("Time",)
    assert result.drift == ("Time",)


@pytest.mark.parametrize("status", ["Registered", "Unregistered", "Reachable", "Unreachable"])
def test_peerstatus_time_is_accepted_with_any_status(status: str) -> None:
    result = validate(
        parse_event(f"Event: PeerStatus\nPeer: SIP/101\nPeerStatus: {status}\nTime: -1")
    )

    assert isinstance(result, Validated)
    assert result.fields["Time"] == -1
    assert result.unlisted_values == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Event: Dial\nPrivilege: call,all\nSubEvent: Begin\nChannel: SIP/100-0001\n"
            "Destination: SIP/200-0002\nCallerIDNum: 100\nCallerIDName: Alice\n"
            "UniqueID: 1300000000.1\nDestUniqueID: 1300000000.2\nDialstring: 200",
            {
                "SubEvent": "Begin",
                "Channel": "SIP/100-0001",
                "Destination": "SIP/200-0002",
                "UniqueID": "1300000000.1",
                "DestUniqueID": "1300000000.2",
                "Dialstring": "200",
            },
        ),
        (
            "Event: Dial\nPrivilege: call,all\nSubEvent: End\nChannel: SIP/100-0001\n"
            "UniqueID: 1300000000.1\nDialStatus: ANSWER",
            {"SubEvent": "End", "UniqueID": "1300000000.1", "DialStatus": "ANSWER"},
        ),
    ],
    ids=["begin", "end"],
)
def test_dial_of_asterisk_1_6_to_11_validates(text: str, expected: dict[str, str]) -> None:
    result = validate(parse_event(text))

    assert isinstance(result, Validated)
    assert type(result.model) is legacy.Dial
    assert result.drift == ()
    assert {key: result.fields[key] for key in expected} == expected


def test_unlink_names_both_channels() -> None:
    result = validate(parse_event("Event: Unlink\nChannel1: SIP/100-0001\nChannel2: SIP/200-0002"))
    missing = validate(parse_event("Event: Unlink\nChannel1: SIP/100-0001"))

    assert isinstance(result, Validated)
    assert type(result.model) is legacy.Unlink
    assert isinstance(missing, InvalidRecord)
    assert [(e.field, e.type) for e in missing.errors] == [("Channel2", "missing")]


def test_modern_peerstatus_of_pjsip_validates() -> None:
    result = validate(
        parse_event(
            "Event: PeerStatus\nPrivilege: system,all\nChannelType: PJSIP\n"
            "Peer: PJSIP/alice\nPeerStatus: Reachable\nAddress: 10.0.0.5:5060\nPort: 5060"
        )
    )

    assert isinstance(result, Validated)
    # chan_sip writes the port with %s (chan_iax2 with %d): text, as sent.
    assert result.fields["Port"] == "5060"
    assert "Time" not in result.fields
